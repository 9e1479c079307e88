"""LaMa's patch discriminator (``pix2pixhd_nlayer``): the pix2pixHD N-layer discriminator.

State-dict names match the reference (``model0.*`` ... ``model<n_layers+1>.*``), so the
``discriminator.*`` part of a "with-discr" Lightning checkpoint loads strictly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class NLayerDiscriminator(nn.Module):
    """Patch discriminator returning ``(logits, features)``.

    Parameters
    ----------
    input_nc : int
        Input channels (3: RGB in [0, 1], no normalisation).
    ndf : int
        Width of the first layer; doubled per layer, capped at 512.
    n_layers : int
        Number of stride-2 layers after the first (big-lama: 4).
    norm_layer : callable
        Norm layer factory, BatchNorm2d by default.

    Notes
    -----
    All convolutions are 4x4 with padding 2 and bias; ``logits`` has no sigmoid, and ``features``
    are the ``n_layers + 1`` activations (after LeakyReLU) used by the feature-matching loss.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.n_layers = n_layers
        kernel, padding = 4, 2
        stages: list[list[nn.Module]] = [[nn.Conv2d(input_nc, ndf, kernel, stride=2, padding=padding),
                                          nn.LeakyReLU(0.2, inplace=True)]]
        width = ndf
        for _ in range(1, n_layers):
            previous, width = width, min(width * 2, 512)
            stages.append([nn.Conv2d(previous, width, kernel, stride=2, padding=padding), norm_layer(width),
                           nn.LeakyReLU(0.2, inplace=True)])
        previous, width = width, min(width * 2, 512)
        stages.append([nn.Conv2d(previous, width, kernel, stride=1, padding=padding), norm_layer(width),
                       nn.LeakyReLU(0.2, inplace=True)])
        stages.append([nn.Conv2d(width, 1, kernel, stride=1, padding=padding)])
        for index, stage in enumerate(stages):
            setattr(self, f"model{index}", nn.Sequential(*stage))

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every stage in order; the last one is the logits map."""
        outputs = []
        for index in range(self.n_layers + 2):
            x = getattr(self, f"model{index}")(x)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outputs = self.activations(x)
        return outputs[-1], outputs[:-1]
