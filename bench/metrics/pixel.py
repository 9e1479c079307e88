"""Pixel metrics of one prediction against its original: PSNR, SSIM and L1.

Conventions (stated in every report):

- Inputs are uint8 RGB, scaled to [0, 1] in float64.
- PSNR is computed over all RGB values with peak 1 and capped at `PSNR_CAP_DB`, so a perfect fill
  scores the cap and stays in every statistic instead of being an infinity that drops out.
- SSIM uses an 11 x 11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population covariances,
  per RGB channel. Two conventions differ at the border:

  ``lama`` (default): LaMa's evaluation (``saicinpainting/evaluation/losses/ssim.py``): the local
  means and moments are convolutions with zero padding, so border windows see black outside the
  image, and the score is the mean of the whole map over pixels and channels.
  ``skimage``: scikit-image's ``structural_similarity`` (reflect padding), whose mean leaves out the
  5-pixel border the window cannot cover.

- L1 is the mean absolute difference in [0, 1].
- ``*_hole`` variants use the hole pixels only; SSIM's hole value averages the SSIM map (mean over
  channels) over them. A hole pixel's window reaches known pixels, identical in prediction and
  original, when it lies within `RIM_DISTANCE` pixels of one, so hole SSIM largely scores the rim of
  thin holes: `hole_rim_share` is the share of hole pixels for which that is so. With no hole the hole
  variants are NaN.
- A metric is NaN for images smaller than its catalogue ``minimum_side`` (SSIM's window needs 11 x 11);
  the report lists the images concerned, and the other metrics are still computed.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from bench.metrics.catalogue import CATALOGUE, PSNR_CAP_DB

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: Chebyshev distance within which a pixel's SSIM window reaches a given pixel.
RIM_DISTANCE = SSIM_WINDOW // 2
SSIM_CONVENTIONS = {
    "lama": ("LaMa's evaluation convention: RGB, per channel, 11x11 Gaussian window, sigma 1.5, zero padding, "
             "mean of the whole map over pixels and channels"),
    "skimage": ("scikit-image's structural_similarity: RGB, per channel, 11x11 Gaussian window, sigma 1.5, "
                "reflect padding, mean leaving out the 5-pixel border"),
}
DEFAULT_SSIM = "lama"
#: What `pixel_metrics` computes; labels, directions, ranges and tolerances live in `bench.metrics.catalogue`.
METRIC_NAMES = ("psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole")


def psnr(mse: float) -> float:
    """PSNR in dB for images in [0, 1] from their mean squared error, capped at `PSNR_CAP_DB`."""
    if mse <= 10.0 ** (-PSNR_CAP_DB / 10.0):
        return PSNR_CAP_DB
    return float(10.0 * np.log10(1.0 / mse))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (float64); the 2-D window is its outer product."""
    offsets = np.arange(size, dtype=np.float64) - size // 2
    taps = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
    return taps / taps.sum()


#: Rows of the SSIM map computed per band: the band's moments are filtered and turned into SSIM while
#: they are still in the CPU cache, instead of streaming fifteen whole-image float64 planes through
#: memory three times.
_SSIM_BAND_ROWS = 48


def ssim_map_lama(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """LaMa's SSIM map: ``(H, W, C)`` float64 for two ``(H, W, C)`` images in [0, 1].

    The 11 x 11 window is separable, so each local moment is one row and one column pass of the 1-D
    Gaussian (zero padding) instead of a 121-tap 2-D convolution: the same map to rounding, about
    three times faster at 512 x 512. The map is bit-identical to `ssim_map_lama_reference` (tested):
    bands of rows are filtered with `RIM_DISTANCE` rows of their real neighbours above and below (the
    filter's arithmetic per value does not depend on the row, only on the position in the row, which
    a band keeps), and the element-wise formula runs with the reference's operations in the same order
    (``2 mu_r mu_e`` as ``2 (mu_r mu_e)``, exact in binary).
    """
    height, width, channels = reference.shape
    ssim_map = np.empty((height, width, channels))
    for top in range(0, height, _SSIM_BAND_ROWS):
        bottom = min(top + _SSIM_BAND_ROWS, height)
        first, last = max(top - RIM_DISTANCE, 0), min(bottom + RIM_DISTANCE, height)
        filtered = _filtered_moments(reference[first:last], estimate[first:last])[top - first:bottom - first]
        _ssim_formula(filtered.reshape(-1, 5 * channels), ssim_map[top:bottom].reshape(-1, channels))
    return ssim_map


def _ssim_formula(filtered: np.ndarray, out: np.ndarray) -> None:
    """SSIM of ``(N, 5 C)`` filtered moments (five moments of each channel, interleaved as
    `_filtered_moments` gives them) into ``out``, ``(N, C)``.

    The moments are transposed to planes first (OpenCV's blocked transpose) so that every operation
    below runs over one long array instead of pixel-strided slices of ``C`` values.
    """
    pixels, channels = out.shape
    mu_ref, mu_est, ref_sq, est_sq, cross = cv2.transpose(filtered).reshape(5, channels, pixels)
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mu_ref_sq = mu_ref * mu_ref
    mu_est_sq = mu_est * mu_est
    mu_cross = np.multiply(mu_ref, mu_est, out=mu_ref)
    variance_sum = np.subtract(ref_sq, mu_ref_sq, out=ref_sq)
    variance_sum += np.subtract(est_sq, mu_est_sq, out=est_sq)
    variance_sum += c2
    covariance = np.subtract(cross, mu_cross, out=cross)
    covariance *= 2.0
    covariance += c2
    mu_cross *= 2.0
    mu_cross += c1
    mu_cross *= covariance
    mu_ref_sq += mu_est_sq
    mu_ref_sq += c1
    mu_ref_sq *= variance_sum
    np.divide(mu_cross, mu_ref_sq, out=mu_cross)
    out[...] = cv2.transpose(mu_cross)


def ssim_map_lama_reference(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """`ssim_map_lama` written as the formula reads, on whole-image arrays (the tests' reference)."""
    channels = reference.shape[2]
    filtered = _filtered_moments(reference, estimate)
    filtered = filtered.reshape(*filtered.shape[:2], 5, channels)
    mu_ref, mu_est = filtered[..., 0, :], filtered[..., 1, :]
    var_ref = filtered[..., 2, :] - mu_ref ** 2
    var_est = filtered[..., 3, :] - mu_est ** 2
    covariance = filtered[..., 4, :] - mu_ref * mu_est
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    return (((2 * mu_ref * mu_est + c1) * (2 * covariance + c2))
            / ((mu_ref ** 2 + mu_est ** 2 + c1) * (var_ref + var_est + c2)))


def _filtered_moments(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """The five local moments of SSIM, ``(H, W, 5 C)`` float64: ``reference``, ``estimate``, their squares
    and their product, interleaved per pixel (five moments of each channel), each filtered with the SSIM
    Gaussian, zero padding.

    Both SSIM map functions filter this one layout: OpenCV's result for a value can depend on its
    position in a row (vector loop or scalar tail), so the layout is part of the map's bits.
    """
    moments = cv2.merge([reference, estimate, reference * reference, estimate * estimate, reference * estimate])
    taps = gaussian_window()
    return cv2.sepFilter2D(moments, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_CONSTANT)


def ssim(reference: np.ndarray, estimate: np.ndarray, convention: str = DEFAULT_SSIM) -> tuple[float, np.ndarray]:
    """SSIM of two ``(H, W, 3)`` float images in [0, 1] in the named convention.

    Returns
    -------
    mean : float
        The image's SSIM.
    full_map : (H, W, 3) float64 ndarray
        The SSIM map of each channel (hole SSIM averages its channel means over the hole).
    """
    if convention not in SSIM_CONVENTIONS:
        raise ValueError(f"unknown SSIM convention {convention!r}; known: {', '.join(SSIM_CONVENTIONS)}")
    if min(reference.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {reference.shape[1]}x{reference.shape[0]}")
    if convention == "lama":
        full_map = ssim_map_lama(reference, estimate)
        return float(full_map.mean()), full_map
    mean_value, full_map = structural_similarity(
        reference, estimate, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True,
    )
    return float(mean_value), full_map


def _channel_means(values: np.ndarray) -> np.ndarray:
    """``values.mean(axis=-1)`` of ``(N, 3)`` float64 values, bit for bit: NumPy sums the three in order
    and divides by 3; written out, it runs over three long columns instead of N rows of three."""
    first, second, third = values.T
    return (first + second + third) / 3.0


def hole_rim_share(hole_mask: np.ndarray) -> float:
    """Share of hole pixels within `RIM_DISTANCE` pixels (Chebyshev) of a known pixel, i.e. whose SSIM
    window covers known pixels; NaN without a hole."""
    if not hole_mask.any():
        return float("nan")
    side = 2 * RIM_DISTANCE + 1
    near_known = cv2.dilate((~hole_mask).astype(np.uint8), np.ones((side, side), np.uint8),
                            borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return float(near_known[hole_mask].mean())


def pixel_metrics(original: np.ndarray, prediction: np.ndarray, hole_mask: np.ndarray, *,
                  ssim_convention: str = DEFAULT_SSIM) -> dict[str, float]:
    """All pixel metrics of ``prediction`` against ``original``.

    Parameters
    ----------
    original, prediction : (H, W, 3) uint8 ndarray
        RGB images of the same size.
    hole_mask : (H, W) bool ndarray
        ``True`` = hole.
    ssim_convention : str
        A key of `SSIM_CONVENTIONS`.

    Returns
    -------
    dict
        Keys `METRIC_NAMES` and ``hole_rim_share``; SSIM values are NaN for images smaller than SSIM's
        ``minimum_side``.
    """
    if original.shape != prediction.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from the original's {original.shape}")
    reference = np.divide(original, 255.0, dtype=np.float64)
    estimate = np.divide(prediction, 255.0, dtype=np.float64)
    difference = estimate - reference
    # Hole pixels by flat index (np.take along the pixel axis gathers them ~10x faster than boolean
    # indexing of the 3-channel arrays); the same pixels in the same order.
    hole_pixels = np.flatnonzero(hole_mask)
    metrics = {"psnr": psnr(float(np.mean(difference ** 2))), "ssim": float("nan"),
               "l1": float(np.mean(np.abs(difference))), "psnr_hole": float("nan"), "ssim_hole": float("nan"),
               "l1_hole": float("nan")}
    if hole_pixels.size:
        hole_difference = np.take(difference.reshape(-1, difference.shape[-1]), hole_pixels, axis=0)
        metrics["psnr_hole"] = psnr(float(np.mean(hole_difference ** 2)))
        metrics["l1_hole"] = float(np.mean(np.abs(hole_difference)))
    if min(original.shape[:2]) >= CATALOGUE["ssim"].minimum_side:
        metrics["ssim"], ssim_map = ssim(reference, estimate, ssim_convention)
        if hole_pixels.size:
            hole_ssim = np.take(ssim_map.reshape(-1, ssim_map.shape[-1]), hole_pixels, axis=0)
            metrics["ssim_hole"] = float(_channel_means(hole_ssim).mean())
    metrics["hole_rim_share"] = hole_rim_share(hole_mask)
    return metrics
