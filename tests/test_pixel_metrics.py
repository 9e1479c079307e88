from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics.catalogue import CATALOGUE
from bench.metrics.pixel import (
    PSNR_CAP_DB, gaussian_window, hole_rim_share, pixel_metrics, ssim, ssim_map_lama, ssim_map_lama_reference,
)


def _pair(seed=0, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    prediction = np.clip(original.astype(int) + rng.integers(-20, 21, original.shape), 0, 255).astype(np.uint8)
    mask = np.zeros(shape, bool)
    mask[5:20, 10:30] = True
    return original, prediction, mask


def _lama_ssim_reference(first: np.ndarray, second: np.ndarray) -> float:
    """LaMa's formula, written out independently: grouped 2-D convolution with an 11x11 Gaussian
    (sigma 1.5) outer-product window, zero padding 5, C1 = 0.01^2, C2 = 0.03^2, whole-map mean."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    taps = torch.from_numpy(taps / taps.sum())
    window = torch.outer(taps, taps).expand(3, 1, 11, 11)
    x = torch.from_numpy(first).permute(2, 0, 1)[None]
    y = torch.from_numpy(second).permute(2, 0, 1)[None]

    def local(image):
        return torch.nn.functional.conv2d(image, window, padding=5, groups=3)

    mx, my = local(x), local(y)
    sxx, syy, sxy = local(x * x) - mx ** 2, local(y * y) - my ** 2, local(x * y) - mx * my
    value = ((2 * mx * my + 1e-4) * (2 * sxy + 9e-4)) / ((mx ** 2 + my ** 2 + 1e-4) * (sxx + syy + 9e-4))
    return float(value.mean())


def test_identical_images_score_perfect_with_psnr_at_its_cap():
    original, _, mask = _pair()
    metrics = pixel_metrics(original, original, mask)
    assert metrics["psnr"] == PSNR_CAP_DB and metrics["psnr_hole"] == PSNR_CAP_DB
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["ssim_hole"] == pytest.approx(1.0)
    assert metrics["l1"] == 0 and np.isfinite(metrics["psnr"])


def test_default_ssim_is_lamas_convention():
    original, prediction, mask = _pair()
    metrics = pixel_metrics(original, prediction, mask)
    assert metrics["ssim"] == pytest.approx(_lama_ssim_reference(original / 255.0, prediction / 255.0), abs=1e-12)
    skimage_value = structural_similarity(original, prediction, data_range=255, channel_axis=-1,
                                          gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(metrics["ssim"] - skimage_value) > 1e-3  # the border convention matters


def test_separable_filter_gives_the_two_dimensional_convolution():
    original, prediction, _ = _pair(shape=(64, 77))
    first, second = original / 255.0, prediction / 255.0
    window = np.outer(gaussian_window(), gaussian_window())[:, :, None]

    def local(image):
        return ndimage.correlate(image, window, mode="constant", cval=0.0)

    mx, my = local(first), local(second)
    slow = (((2 * mx * my + 1e-4) * (2 * (local(first * second) - mx * my) + 9e-4))
            / ((mx ** 2 + my ** 2 + 1e-4) * (local(first ** 2) - mx ** 2 + local(second ** 2) - my ** 2 + 9e-4)))
    assert np.abs(ssim_map_lama(first, second) - slow).max() < 1e-12


@pytest.mark.parametrize("shape", [(11, 11), (37, 451), (64, 77), (45, 64), (97, 451), (150, 33)])
def test_banded_ssim_map_is_bit_identical_to_the_formula_on_whole_arrays(shape):
    """Bands of rows filtered apart (including a short last one, and bands that start or end within
    the filter's reach of the image's edge) and the reordered operations change no bit of the map, so
    results of runs before the speed-up stay valid."""
    for seed in range(3):
        original, prediction, _ = _pair(seed, shape=shape)
        first, second = original / 255.0, prediction / 255.0
        np.testing.assert_array_equal(ssim_map_lama(first, second), ssim_map_lama_reference(first, second))


@pytest.mark.parametrize("convention", ["lama", "skimage"])
def test_hole_ssim_is_the_hole_mean_of_the_channel_mean_map_bit_for_bit(convention):
    """pixel_metrics reads the hole pixels' channel means without averaging the whole map over its
    channels: the same values, summed in the same order."""
    rng = np.random.default_rng(3)
    for shape, hole_share in [((40, 50), 0.3), ((61, 47), 0.02), ((30, 30), 1.0)]:
        original, prediction, _ = _pair(int(rng.integers(1000)), shape=shape)
        mask = rng.random(shape) < hole_share
        metrics = pixel_metrics(original, prediction, mask, ssim_convention=convention)
        full_map = ssim(original / 255.0, prediction / 255.0, convention)[1]
        assert metrics["ssim_hole"] == float(full_map.mean(axis=-1)[mask].mean())
        difference = prediction / 255.0 - original / 255.0
        assert metrics["psnr_hole"] == 10.0 * np.log10(1.0 / np.mean(difference[mask] ** 2))
        assert metrics["l1_hole"] == float(np.mean(np.abs(difference[mask])))


def test_ssim_of_two_flat_images_by_hand():
    """Inside the image a window over two flat greys 0.5 and 0.25 has no variance, so SSIM is
    (2 * 0.5 * 0.25 + C1) / (0.5^2 + 0.25^2 + C1); at the corner, zero padding darkens both means."""
    first, second = np.full((11, 11, 3), 0.5), np.full((11, 11, 3), 0.25)
    centre = (2 * 0.5 * 0.25 + 1e-4) / (0.5 ** 2 + 0.25 ** 2 + 1e-4)
    lama_map = ssim_map_lama(first, second)
    assert lama_map[5, 5, 0] == pytest.approx(centre, rel=1e-12)
    mean, _ = ssim(first, second, "skimage")  # skimage's mean is the single uncropped pixel here
    assert mean == pytest.approx(centre, rel=1e-12)
    assert lama_map.mean() == pytest.approx(_lama_ssim_reference(first, second), abs=1e-12)


def test_skimage_convention_is_scikit_images_ssim():
    original, prediction, mask = _pair()
    metrics = pixel_metrics(original, prediction, mask, ssim_convention="skimage")
    assert metrics["psnr"] == pytest.approx(peak_signal_noise_ratio(original, prediction, data_range=255))
    reference_ssim = structural_similarity(original, prediction, data_range=255, channel_axis=-1,
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert metrics["ssim"] == pytest.approx(reference_ssim, abs=1e-9)
    assert metrics["l1"] == pytest.approx(np.abs(original / 255.0 - prediction / 255.0).mean())
    with pytest.raises(ValueError, match="unknown SSIM convention"):
        pixel_metrics(original, prediction, mask, ssim_convention="matlab")


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


def test_hole_rim_share_counts_hole_pixels_whose_window_reaches_known_pixels():
    block = np.zeros((64, 64), bool)
    block[12:52, 12:52] = True  # 40 x 40: the inner 30 x 30 is more than 5 px from known pixels
    assert hole_rim_share(block) == pytest.approx(1 - 30 * 30 / (40 * 40))
    scratch = np.zeros((64, 64), bool)
    scratch[30:33, 5:60] = True
    assert hole_rim_share(scratch) == 1.0
    assert np.isnan(hole_rim_share(np.zeros((64, 64), bool)))
    original, prediction, mask = _pair()
    assert pixel_metrics(original, prediction, mask)["hole_rim_share"] == hole_rim_share(mask)


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
