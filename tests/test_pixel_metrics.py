from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics.catalogue import CATALOGUE
from bench.metrics.pixel import pixel_metrics


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    prediction = np.clip(original.astype(int) + rng.integers(-20, 21, original.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[5:20, 10:30] = True
    return original, prediction, mask


def test_identical_images():
    original, _, mask = _pair()
    metrics = pixel_metrics(original, original, mask)
    assert metrics["psnr"] == np.inf and metrics["ssim"] == pytest.approx(1.0) and metrics["l1"] == 0


def test_agrees_with_scikit_image_conventions():
    original, prediction, mask = _pair()
    metrics = pixel_metrics(original, prediction, mask)
    assert metrics["psnr"] == pytest.approx(peak_signal_noise_ratio(original, prediction, data_range=255))
    reference_ssim = structural_similarity(original, prediction, data_range=255, channel_axis=-1,
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert metrics["ssim"] == pytest.approx(reference_ssim, abs=1e-9)
    assert metrics["l1"] == pytest.approx(np.abs(original / 255.0 - prediction / 255.0).mean())


def test_hole_metrics_use_hole_pixels_only():
    original, _, mask = _pair()
    prediction = original.copy()
    prediction[mask] = 0
    metrics = pixel_metrics(original, prediction, mask)
    hole_mse = np.mean((original[mask] / 255.0) ** 2)
    assert metrics["psnr_hole"] == pytest.approx(10 * np.log10(1 / hole_mse))
    assert metrics["l1_hole"] == pytest.approx(np.mean(original[mask] / 255.0))
    assert metrics["l1"] == pytest.approx(metrics["l1_hole"] * mask.mean())
    assert metrics["ssim_hole"] < metrics["ssim"]


def test_empty_mask_gives_nan_hole_metrics():
    original, prediction, mask = _pair()
    metrics = pixel_metrics(original, prediction, np.zeros_like(mask))
    assert np.isnan(metrics["psnr_hole"]) and np.isnan(metrics["ssim_hole"]) and np.isnan(metrics["l1_hole"])


@pytest.mark.parametrize("side", [1, 3, 10])
def test_images_too_small_for_ssim_keep_psnr_and_l1(side):
    original, prediction, mask = _pair()
    original, prediction, mask = original[:side, :side], prediction[:side, :side], mask[:side, :side].copy()
    mask[0, 0] = True
    metrics = pixel_metrics(original, prediction, mask)
    assert side < CATALOGUE["ssim"].minimum_side
    assert np.isnan(metrics["ssim"]) and np.isnan(metrics["ssim_hole"])
    difference = prediction / 255.0 - original / 255.0
    assert metrics["l1"] == pytest.approx(np.mean(np.abs(difference)))
    assert metrics["psnr"] == pytest.approx(10 * np.log10(1 / np.mean(difference ** 2)))
    assert np.isfinite(metrics["l1_hole"])
