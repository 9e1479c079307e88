"""PSNR and SSIM on ``N x 3 x H x W`` tensors in [0, 1] (per image), for validation during training.

SSIM follows LaMa's evaluator: 11x11 Gaussian window with sigma 1.5 per channel, zero padding,
C1 = 0.01^2, C2 = 0.03^2, averaged over channels and pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (peak 1); identical images give ``inf``."""
    mse = (predicted - target).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    profile = torch.exp(-coords.pow(2) / (2 * sigma ** 2))
    profile /= profile.sum()
    return (profile[:, None] * profile[None, :]).float()


def ssim(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (LaMa's settings)."""
    channels = predicted.shape[1]
    window = _gaussian_window().to(predicted).expand(channels, 1, 11, 11).contiguous()

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, padding=5, groups=channels)

    mu_x, mu_y = blur(predicted), blur(target)
    sigma_x = blur(predicted * predicted) - mu_x.pow(2)
    sigma_y = blur(target * target) - mu_y.pow(2)
    sigma_xy = blur(predicted * target) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (sigma_x + sigma_y + c2))
    return ssim_map.flatten(1).mean(dim=1)
