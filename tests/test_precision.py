"""Reduced-precision inference of the LaMa family: accuracy bounds on the shipped face models, option checks.

The bounds are the largest values `bench.studies.precision_accuracy` measured over 50 CelebA-HQ test
images (max pixel change 9 grey levels, mean hole change 1.1) with a margin for other CPUs.
"""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from bench.cli.run import parse_method_options, precision_options
from bench.errors import UserError
from masks.cases import case_mask
from methods.registry import create_method
from conftest import shared_path

MAX_PIXEL_CHANGE = 16
MAX_MEAN_HOLE_CHANGE = 2.5


@pytest.fixture(scope="module")
def faces() -> tuple[list[str], list[np.ndarray]]:
    folder = shared_path("datasets", "celebahq_64", "test")
    paths = sorted(folder.glob("*.jpg"))[:3]
    return [path.stem for path in paths], [np.asarray(Image.open(path).convert("RGB")) for path in paths]


@pytest.mark.parametrize("model", ["lama-celebahq64", "relama-cbam-celebahq64"])
def test_bf16_stays_within_the_measured_bounds_and_fp32_paths_agree(model: str, faces) -> None:
    names, images = faces
    masks = [case_mask(image.shape[:2], name, "large") for name, image in zip(names, images)]
    reference = create_method(model, optimize=False).inpaint_batch(images, masks)
    fast = create_method(model).inpaint_batch(images, masks)
    reduced = create_method(model, precision="bf16").inpaint_batch(images, masks)
    for exact, fused, low, mask in zip(reference, fast, reduced, masks):
        # fp32 outputs differ by < 1e-4 before the truncation to uint8, so by at most one level after it.
        assert np.abs(exact.astype(int) - fused.astype(int)).max() <= 1
        change = np.abs(exact.astype(int) - low.astype(int))
        assert 0 < change.max() <= MAX_PIXEL_CHANGE
        assert change[mask].mean() <= MAX_MEAN_HOLE_CHANGE


def test_precision_option_is_checked() -> None:
    with pytest.raises(ValueError, match="fp8"):
        create_method("lama-celebahq64", precision="fp8")
    with pytest.raises(ValueError, match="CUDA"):
        create_method("lama-celebahq64", device="cpu", precision="fp16")
    assert "bf16" in create_method("lama-celebahq64", precision="bf16").describe()["precision"]


def test_run_precision_flag_becomes_a_method_option() -> None:
    methods = ["telea", "lama-celebahq64"]
    options = precision_options("bf16", methods, parse_method_options([], methods))
    assert options == {"lama-celebahq64": {"precision": "bf16"}}
    assert precision_options("fp32", methods, {}) == {}
    with pytest.raises(UserError, match="twice"):
        precision_options("bf16", methods, parse_method_options(["lama-celebahq64.precision=fp32"], methods))
    with pytest.raises(UserError, match="pluralistic"):
        precision_options("bf16", ["pluralistic"], {})


def test_precisions_never_share_a_run() -> None:
    from bench.run.config import RunConfig

    methods = ["lama-celebahq64"]
    exact = RunConfig(methods=methods, cases=["small"], options=precision_options("fp32", methods, {}))
    reduced = RunConfig(methods=methods, cases=["small"], options=precision_options("bf16", methods, {}))
    assert exact.resolved_run_id() != reduced.resolved_run_id()
