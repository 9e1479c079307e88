"""ICT's guided upsampler generator (the reference's ``InpaintGenerator_5``).

A residual encoder-decoder without normalisation: it takes the masked image (holes set to white) and
the transformer's appearance prior upsampled to the same size, six channels in all, and returns an
RGB image in (0, 1). Layer indices inside the ``encoder``/``middle``/``decoder`` Sequentials match
the reference so released checkpoints load by name; padding and activation layers hold no weights
but keep their slots.
"""

from __future__ import annotations

import torch
from torch import nn


class DilatedResidualBlock(nn.Module):
    """``x + conv(relu(dilated_conv(x)))`` with reflection padding and no normalisation."""

    def __init__(self, channels: int, dilation: int = 2) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(channels, channels, kernel_size=3, dilation=dilation),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ICTUpsampler(nn.Module):
    """Guided upsampler generator.

    Parameters
    ----------
    base_width : int
        Channels after the first convolution; the encoder then widens to 2x and 4x (64 in the
        released model).
    residual_blocks : int
        Number of dilated residual blocks at 1/4 resolution (8 in the released model).
    """

    #: Height and width of the input must be multiples of this.
    size_multiple = 4

    def __init__(self, base_width: int = 64, residual_blocks: int = 8) -> None:
        super().__init__()
        wide = 4 * base_width
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(6, base_width, kernel_size=7),
            nn.ReLU(inplace=True),
            nn.Conv2d(base_width, 2 * base_width, kernel_size=4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * base_width, wide, kernel_size=4, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.middle = nn.Sequential(*(DilatedResidualBlock(wide, dilation=2) for _ in range(residual_blocks)))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(wide, 2 * base_width, kernel_size=4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * base_width, base_width, kernel_size=4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(base_width, 3, kernel_size=7),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a (B, 6, H, W) input (masked image, prior) to a (B, 3, H, W) image in (0, 1)."""
        height, width = x.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"upsampler input {width}x{height} is not a multiple of {self.size_multiple}")
        x = self.decoder(self.middle(self.encoder(x)))
        return (torch.tanh(x) + 1) / 2

    @staticmethod
    def build_input(image: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """Assemble the generator input: ``image * (1 - mask) + mask`` (holes white), then the prior.

        All three are (B, C, H, W) floats in [0, 1]; ``mask`` has 1 or 3 channels, 1 = hole.
        """
        return torch.cat((image * (1 - mask) + mask, prior), dim=1)


def upsampler_shape_from_state_dict(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(base_width, residual_blocks)`` read from an upsampler state dict's shapes.

    Raises
    ------
    ValueError
        When ``encoder.1.weight`` is missing.
    """
    if "encoder.1.weight" not in state:
        raise ValueError("state dict has no 'encoder.1.weight'")
    base_width = int(state["encoder.1.weight"].shape[0])
    residual_blocks = len({key.split(".")[1] for key in state if key.startswith("middle.")})
    return base_width, residual_blocks
