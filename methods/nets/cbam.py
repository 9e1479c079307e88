"""ReLaMa-CBAM: LaMa's generator with FFC-aware channel and spatial attention in every residual block.

The behaviour follows ``shared/golden/relama_cbam/README.md`` exactly, including two properties of
the seed code that are part of the specification: the channel gate is a sigmoid of the sum of two
sigmoids (so it lies in (0.5, 0.881)), and the spatial attention applies one shared convolution to
the local and the global part.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from methods.nets.ffc import FeaturePair, FFCResnetBlock, FFCResNetGenerator, split_channels


class FFCChannelAttention(nn.Module):
    """Channel attention over the concatenated ``(local, global)`` pair, with one head per part.

    Parameters
    ----------
    channels : int
        Total channels of the pair.
    ratio_g : float
        Global fraction of ``channels`` (the block's ``ratio_gin``).
    ratio : int
        Reduction of the shared bottleneck convolution (``channels // ratio`` hidden channels).
    """

    def __init__(self, channels: int, ratio_g: float, ratio: int = 4) -> None:
        super().__init__()
        local_channels, global_channels = split_channels(channels, ratio_g)
        hidden = channels // ratio
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.relu = nn.ReLU()
        self.conv_a2l = nn.Conv2d(hidden, local_channels, kernel_size=1) if local_channels else None
        self.conv_a2g = nn.Conv2d(hidden, global_channels, kernel_size=1) if global_channels else None

    @staticmethod
    def _gate(head: nn.Module, avg_code: torch.Tensor, max_code: torch.Tensor) -> torch.Tensor:
        # The double sigmoid is the specified behaviour, not an accident to fix.
        return torch.sigmoid(torch.sigmoid(head(avg_code)) + torch.sigmoid(head(max_code)))

    def forward(self, x: FeaturePair) -> FeaturePair:
        x_local, x_global = x
        parts = [part for part in (x_local, x_global) if torch.is_tensor(part)]
        joined = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        avg_code = self.relu(self.conv1(torch.mean(joined, dim=(2, 3), keepdim=True)))
        max_code = self.relu(self.conv1(torch.amax(joined, dim=(2, 3), keepdim=True)))
        if torch.is_tensor(x_local) and self.conv_a2l is not None:
            x_local = x_local * self._gate(self.conv_a2l, avg_code, max_code)
        if torch.is_tensor(x_global) and self.conv_a2g is not None:
            x_global = x_global * self._gate(self.conv_a2g, avg_code, max_code)
        return x_local, x_global


class FFCSpatialAttention(nn.Module):
    """Spatial attention: one ``2 -> 1`` convolution on ``[channel mean, channel max]``, shared by both parts."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"spatial attention kernel size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def attend(self, part: torch.Tensor) -> torch.Tensor:
        """``part`` multiplied by its own attention map."""
        descriptor = torch.cat((part.mean(dim=1, keepdim=True), part.amax(dim=1, keepdim=True)), dim=1)
        return part * torch.sigmoid(self.conv(descriptor))

    def forward(self, x: FeaturePair) -> FeaturePair:
        x_local, x_global = x
        if torch.is_tensor(x_local):
            x_local = self.attend(x_local)
        if torch.is_tensor(x_global):
            x_global = self.attend(x_global)
        return x_local, x_global


class CBAMFFCResnetBlock(FFCResnetBlock):
    """`FFCResnetBlock` with channel (``ca``) then spatial (``sa``) attention before the residual sum."""

    def __init__(self, dim: int, attention_ratio: int = 4, attention_kernel_size: int = 7, **block_kwargs: Any) -> None:
        super().__init__(dim, **block_kwargs)
        self.ca = FFCChannelAttention(dim, ratio_g=block_kwargs.get("ratio_gin", 0), ratio=attention_ratio)
        self.sa = FFCSpatialAttention(kernel_size=attention_kernel_size)

    def residual(self, x: FeaturePair) -> FeaturePair:
        return self.sa(self.ca(super().residual(x)))


class ReLaMaCBAMGenerator(FFCResNetGenerator):
    """`FFCResNetGenerator` whose residual blocks are `CBAMFFCResnetBlock`; same constructor parameters."""

    block_class = CBAMFFCResnetBlock


def attention_keys(generator: nn.Module) -> list[str]:
    """State-dict keys of the attention modules (``ca``/``sa``) in ``generator``, in order."""
    return [key for key in generator.state_dict() if ".ca." in key or ".sa." in key]
