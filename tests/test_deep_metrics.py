"""LPIPS input convention and batching, Inception equivalence, FID/KID statistics, unavailable state.

Every test here runs without the real weights: backbones get seeded random states passed
explicitly, and FID/KID are checked on synthetic features.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from bench.metrics import learned as deep_metrics
from bench.metrics.learned import (
    FIDKID, FID_RELIABLE_MIN_N, InceptionFeatures, InceptionPool3, LPIPSMetric, frechet_distance, kernel_inception_distance,
    kid_subset_size, to_lpips_input,
)
from bench.metrics.backbones import WeightsLocations, WeightsUnavailable


@pytest.fixture
def empty_locations(tmp_path: Path) -> WeightsLocations:
    return WeightsLocations(weights_dir=tmp_path / "user", hub_dir=tmp_path / "hub", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def random_alexnet_features() -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(0)
    return {f"features.{key}": value for key, value in torchvision.models.alexnet(weights=None).features.state_dict().items()}


def _images(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def test_lpips_input_is_minus_one_to_one():
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[0, 0] = 255
    image[1, 1] = (0, 128, 255)
    tensor = to_lpips_input(image)
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == torch.float32
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    torch.testing.assert_close(tensor[0, :, 1, 1], torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        to_lpips_input(image.astype(np.float32))


def test_lpips_agrees_with_the_package_on_its_own_unit_range(random_alexnet_features):
    metric = LPIPSMetric("alex", backbone_state=random_alexnet_features)
    predictions, targets = _images(3, (32, 48), 1), _images(3, (32, 48), 2)
    ours = metric(predictions, targets)
    unit = lambda batch: torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    with torch.no_grad():
        package = metric.model(unit(predictions), unit(targets), normalize=True).flatten().double().numpy()
    np.testing.assert_allclose(ours, package, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        wrong_range = metric.model(unit(predictions), unit(targets)).flatten().double().numpy()
    assert not np.allclose(ours, wrong_range, rtol=1e-3), "feeding [0,1] as if it were [-1,1] must change LPIPS"


def test_lpips_is_batched_consistently_and_zero_on_identical_images(random_alexnet_features):
    metric = LPIPSMetric("alex", backbone_state=random_alexnet_features)
    predictions = list(_images(3, (32, 32), 3)) + list(_images(2, (40, 64), 4))
    targets = list(_images(3, (32, 32), 5)) + list(_images(2, (40, 64), 6))
    batched = metric(predictions, targets, batch_size=2)
    one_by_one = np.array([metric(p, t)[0] for p, t in zip(predictions, targets)])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-7)
    assert np.all(batched > 0)
    np.testing.assert_allclose(metric(predictions, predictions), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="pair 0"):
        metric([predictions[0]], [targets[3]])


def test_metrics_are_unavailable_without_weights(empty_locations):
    reason = deep_metrics.lpips_unavailable_reason("alex", empty_locations)
    assert reason.startswith("unavailable: run `relama-bench weights fetch`")
    assert deep_metrics.lpips_unavailable_reason("vgg", empty_locations).startswith("unavailable")
    assert deep_metrics.fid_unavailable_reason(empty_locations).startswith("unavailable")
    with pytest.raises(WeightsUnavailable, match="relama-bench weights fetch"):
        LPIPSMetric("alex", locations=empty_locations)
    with pytest.raises(WeightsUnavailable, match="relama-bench weights fetch"):
        InceptionFeatures(locations=empty_locations)
    with pytest.raises(ValueError, match="alex"):
        LPIPSMetric("squeeze", locations=empty_locations)


def test_inception_matches_torch_fidelity_extractor(tmp_path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(0)
    ours = InceptionPool3()
    for module in ours.modules():  # non-trivial batch-norm statistics so that a wrong order would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    state = dict(ours.state_dict(), **{"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)})
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    reference = FeatureExtractorInceptionV3("reference", ["2048"], feature_extractor_weights_path=str(path))
    images = torch.from_numpy(_images(2, (64, 80), 7)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        expected = reference(images)[0]
        actual = ours(images)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def _scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mean_gap = real.mean(0) - fake.mean(0)
    cov_real, cov_fake = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(cov_real @ cov_fake).real
    return float(mean_gap @ mean_gap + np.trace(cov_real + cov_fake - 2 * root))


def _features(count: int, seed: int, dim: int = 24) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return torch.randn(count, dim, generator=generator, dtype=torch.float64) @ mixing


def test_fid_of_a_set_with_itself_is_zero():
    features = _features(120, 0)
    assert abs(frechet_distance(features, features)) < 1e-6 * float(features.var(0).sum())


def test_fid_agrees_with_an_independent_scipy_computation():
    real, fake = _features(150, 1), _features(110, 2) * 1.2 + 0.3
    expected = _scipy_fid(real.numpy(), fake.numpy())
    assert math.isclose(frechet_distance(real, fake), expected, rel_tol=1e-6)


def test_a_known_mean_shift_adds_its_squared_norm_to_fid():
    real = _features(100, 3)
    direction = torch.zeros(real.shape[1], dtype=torch.float64)
    direction[0] = 1.0
    previous = frechet_distance(real, real)
    for step in (1.0, 2.0, 4.0):
        shifted = frechet_distance(real, real + step * direction)
        assert math.isclose(shifted, step ** 2, rel_tol=1e-6, abs_tol=1e-6)
        assert shifted > previous
        previous = shifted


def test_kid_subset_size_follows_n():
    assert kid_subset_size(50, 80) == 50
    assert kid_subset_size(5000, 3000) == 1000
    generator = torch.Generator().manual_seed(4)
    real, same_distribution = (torch.randn(count, 24, generator=generator, dtype=torch.float64) for count in (30, 45))
    shifted = torch.randn(45, 24, generator=generator, dtype=torch.float64) + 1.0
    mean, std, subset = kernel_inception_distance(real, shifted)
    assert subset == 30 and mean > 0 and std > 0, "30 of 45 fakes per subset: subsets differ"
    same_mean, _, _ = kernel_inception_distance(real, same_distribution)
    assert abs(same_mean) < mean / 10
    assert kernel_inception_distance(real, shifted, seed=3) == kernel_inception_distance(real, shifted, seed=3)


class _MeanColourFeatures(nn.Module):
    """Stand-in extractor: per-channel means and squares, padded to 8 features."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        values = images.float().mean(dim=(2, 3)) / 255
        return torch.cat([values, values ** 2, values[:, :2] * values[:, 1:]], dim=1)


def test_fidkid_update_compute_reset_and_small_n_flag():
    metric = FIDKID(InceptionFeatures(inception=_MeanColourFeatures(), batch_size=3))
    metric.update(list(_images(4, (16, 16), 8)) + list(_images(3, (20, 12), 9)), real=True)
    metric.update(_images(7, (16, 16), 10) // 2, real=False)
    assert metric.features(True).shape == (7, 8)
    result = metric.compute()
    assert result.n == 7 and result.kid_subset_size == 7
    assert result.fid > 0 and result.indicative and 7 < FID_RELIABLE_MIN_N
    assert "N = 7" in result.note and "Chong & Forsyth 2020" in result.note and "Bińkowski" in result.note
    metric.reset()
    metric.update(_images(1, (16, 16), 11), real=True)
    metric.update(_images(1, (16, 16), 12), real=False)
    empty = metric.compute()
    assert math.isnan(empty.fid) and empty.n == 1 and "at least 2" in empty.note


def test_fidkid_states_merge_like_one_process():
    """Split over two "processes" and merged, the state gives what one process sees (the distributed contract)."""
    rng = np.random.default_rng(4)
    real, fake = torch.from_numpy(rng.normal(size=(12, 8))).float(), torch.from_numpy(rng.normal(1, 1, (12, 8))).float()
    whole = FIDKID()
    whole.update_features(real, real=True)
    whole.update_features(fake, real=False)
    first, second = FIDKID(), FIDKID()
    first.update_features(real[:5], real=True)
    first.update_features(fake[:7], real=False)
    second.update_features(real[5:], real=True)
    second.update_features(fake[7:], real=False)
    first.merge(second)
    assert first.compute(seed=1) == whole.compute(seed=1)
    with pytest.raises(ValueError, match="update_features"):
        FIDKID().update(np.zeros((4, 4, 3), np.uint8), real=True)


def test_inception_features_do_not_depend_on_batch_size_or_weight_layout():
    torch.manual_seed(1)
    planar = InceptionPool3()
    channels_last = copy.deepcopy(planar).to(memory_format=torch.channels_last)
    images = _images(3, (48, 56), 11)
    one_by_one = InceptionFeatures(inception=planar, batch_size=1).extract(images)
    batched = InceptionFeatures(inception=channels_last, batch_size=8).extract(images)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-5)
