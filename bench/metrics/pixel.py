"""Pixel metrics of one prediction against its original: PSNR, SSIM and L1.

Conventions (stated in every report):

- Inputs are uint8 RGB, scaled to [0, 1] in float64.
- PSNR is computed over all RGB values with peak 1; identical images give ``inf``.
- SSIM uses an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances,
  computed per RGB channel and averaged (the convention of LaMa's evaluation, and of Wang et al. 2004
  on each channel). The whole-image value is scikit-image's mean, which leaves out the 5-pixel border
  the window cannot cover.
- L1 is the mean absolute difference in [0, 1].
- ``*_hole`` variants use the hole pixels only; SSIM's hole value averages the SSIM map over them.
  With no hole they are NaN.
- A metric is NaN for images smaller than its catalogue ``minimum_side`` (SSIM's window needs 11 x 11);
  the report lists the images concerned, and the other metrics are still computed.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from bench.metrics.catalogue import CATALOGUE

SSIM_SIGMA = 1.5
SSIM_CONVENTION = "RGB, per channel, 11x11 Gaussian window, sigma 1.5 (LaMa's evaluation convention)"
#: What `pixel_metrics` computes; labels, directions and tolerances live in `bench.metrics.catalogue`.
METRIC_NAMES = ("psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole")


def psnr(mse: float) -> float:
    """PSNR in dB for images in [0, 1] from their mean squared error."""
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def pixel_metrics(original: np.ndarray, prediction: np.ndarray, hole_mask: np.ndarray) -> dict[str, float]:
    """All pixel metrics of ``prediction`` against ``original``.

    Parameters
    ----------
    original, prediction : (H, W, 3) uint8 ndarray
        RGB images of the same size.
    hole_mask : (H, W) bool ndarray
        ``True`` = hole.

    Returns
    -------
    dict
        Keys `METRIC_NAMES`; SSIM values are NaN for images smaller than SSIM's ``minimum_side``.
    """
    if original.shape != prediction.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from the original's {original.shape}")
    reference = original.astype(np.float64) / 255.0
    estimate = prediction.astype(np.float64) / 255.0
    difference = estimate - reference
    if min(original.shape[:2]) >= CATALOGUE["ssim"].minimum_side:
        ssim_mean, ssim_map = _ssim(reference, estimate)
    else:
        ssim_mean, ssim_map = float("nan"), np.full(original.shape[:2], np.nan)
    metrics = {
        "psnr": psnr(float(np.mean(difference ** 2))),
        "ssim": ssim_mean,
        "l1": float(np.mean(np.abs(difference))),
    }
    if hole_mask.any():
        hole_difference = difference[hole_mask]
        metrics["psnr_hole"] = psnr(float(np.mean(hole_difference ** 2)))
        metrics["ssim_hole"] = float(ssim_map[hole_mask].mean())
        metrics["l1_hole"] = float(np.mean(np.abs(hole_difference)))
    else:
        metrics.update(psnr_hole=float("nan"), ssim_hole=float("nan"), l1_hole=float("nan"))
    return metrics


def _ssim(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, np.ndarray]:
    mean_value, full_map = structural_similarity(
        reference, estimate, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True,
    )
    return float(mean_value), full_map.mean(axis=-1)
