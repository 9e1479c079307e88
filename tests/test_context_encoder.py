"""Checkpoint loading, view geometry and the any-hole adapter of ``methods.context_encoder``."""

from __future__ import annotations

import shutil
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import shared_path
from methods.base import MethodUnavailable
from methods.checkpoint import CheckpointError
from methods.context_encoder import (
    FILL_SIDE,
    FILL_START,
    FILL_STOP,
    FILL_VALUES_8BIT,
    IMAGE_SIZE,
    ContextEncoder,
    evaluate_center_hole,
    hole_pieces,
    load_context_encoder,
    main,
    resize_and_crop,
    to_uint8,
    view_origin,
    view_side,
)
from methods.registry import available_methods, create_method, get_method_class

REPLICAS = ["replica_netG_streetview_small.pth", "replica_netG_streetview_small_py3resave.pth"]


@pytest.fixture(scope="module")
def golden():
    return torch.load(shared_path("golden", "context_encoder", "golden_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def replica_path():
    return shared_path("golden", "context_encoder", "replica", REPLICAS[0])


@pytest.fixture(scope="module")
def adapter(replica_path):
    return create_method("context-encoder", weights=replica_path)


def _paris(name: str) -> np.ndarray:
    return np.asarray(Image.open(shared_path("datasets", "paris_streetview_eval", name)).convert("RGB"))


# --- checkpoint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("replica", REPLICAS)
def test_replicas_of_the_released_file_load_and_reproduce_the_golden_output(golden, replica):
    loaded = load_context_encoder(shared_path("golden", "context_encoder", "replica", replica))
    assert loaded.epoch == 200
    assert (loaded.network.nef, loaded.network.ngf, loaded.network.n_bottleneck) == (8, 8, 32)
    assert not loaded.network.training
    with torch.no_grad():
        for batch in ("batch1", "batch2"):
            output = loaded.network(golden[batch]["input_cropped"])
            torch.testing.assert_close(output, golden[batch]["output"], rtol=0, atol=1e-6)


def test_flat_state_dicts_with_num_batches_tracked_and_module_prefix_load(golden, tmp_path):
    path = tmp_path / "generator.safetensors"
    save_file({f"module.{key}": value.contiguous() for key, value in golden["state_dict"].items()}, str(path))
    loaded = load_context_encoder(path)
    assert loaded.epoch is None
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(golden["batch1"]["input_cropped"]), golden["batch1"]["output"],
                                   rtol=0, atol=1e-6)


def test_missing_and_unexpected_keys_are_named(golden, tmp_path):
    state = {key: value for key, value in golden["state_dict"].items() if key != "main.3.running_var"}
    state["main.99.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"epoch": 3, "state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"broken\.pth.*missing keys: main\.3\.running_var.*"
                                              r"unexpected keys: main\.99\.weight"):
        load_context_encoder(path)


def test_the_discriminator_is_refused_as_a_generator(tmp_path):
    netd = torch.load(shared_path("golden", "context_encoder", "golden_small_netlocalD.pt"), weights_only=True)
    path = tmp_path / "netlocalD.pth"
    torch.save({"epoch": 1, "state_dict": netd["state_dict"]}, path)
    with pytest.raises(CheckpointError, match="does not fit ContextEncoderGenerator"):
        load_context_encoder(path)


def test_files_that_are_not_generator_checkpoints_raise_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_context_encoder(tmp_path / "absent.pth")
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="not a Context Encoder generator"):
        load_context_encoder(tensor_only)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"main.0.weight": torch.zeros(1)}, "options": _PickledOptions()}, unsafe)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_context_encoder(unsafe)


class _PickledOptions:
    """Stands in for a pickled options object, which ``weights_only`` loading must refuse to rebuild."""


# --- registry -----------------------------------------------------------------------------------------


def test_registered_as_a_cnn_and_unavailable_without_weights():
    assert get_method_class("context-encoder") is ContextEncoder
    info = next(info for info in available_methods() if info.name == "context-encoder")
    assert info.family == "cnn"
    assert info.unavailable_reason.startswith("weights missing: pass --weights context-encoder=PATH")
    with pytest.raises(MethodUnavailable, match="weights missing"):
        create_method("context-encoder")


def test_describe_states_the_view_rule(adapter):
    facts = adapter.describe()
    assert facts["epoch"] == "200"
    assert "tiled" in facts["views"] and "56" in facts["views"]


# --- geometry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("top", [0, 7])
def test_every_hole_box_fits_the_blanked_square_of_its_view(top):
    for height in range(1, 301):
        for width in (1, height, max(1, height // 3)):
            extent = max(height, width)
            side = view_side(extent)
            # Native scale for holes up to 56 px; otherwise the smallest view with one pixel to spare.
            assert side == IMAGE_SIZE or (side - 1) * FILL_SIDE < (extent + 1) * IMAGE_SIZE
            row, col = view_origin(top, top + height, 3, 3 + width, side)
            scale = Fraction(side, IMAGE_SIZE)
            assert row + FILL_START * scale <= top and top + height <= row + FILL_STOP * scale, (height, width)
            assert col + FILL_START * scale <= 3 and 3 + width <= col + FILL_STOP * scale, (height, width)
    assert view_side(FILL_SIDE) == IMAGE_SIZE and view_side(FILL_SIDE + 1) > IMAGE_SIZE


def test_large_components_are_tiled_into_disjoint_pieces_that_cover_the_mask():
    mask = np.zeros((500, 700), bool)
    mask[10:490, 20:690] = True  # one component, 480 x 670
    mask[200:210, 0:5] = True  # a second, small one, not touching the first
    pieces = hole_pieces(mask, max_fill_side=224)
    covered = np.zeros_like(mask, dtype=int)
    for rows, cols in pieces:
        assert rows.max() - rows.min() < 224 and cols.max() - cols.min() < 224
        covered[rows, cols] += 1
    assert np.array_equal(covered, mask.astype(int))
    assert len(pieces) == 1 + 3 * 3


# --- adapter ------------------------------------------------------------------------------------------


def _small_mask(shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    for start, end in [((10, 20), (60, 45)), ((150, 30), (200, 90)), ((40, 180), (120, 170))]:
        cv2.line(canvas, start, end, 1, 3)
    return canvas.astype(bool)


def _region_mask(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[70:150, 60:170] = True
    return mask


def _large_mask(shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    for start, end in [((0, 30), (226, 200)), ((20, 220), (210, 10)), ((110, 0), (120, 226))]:
        cv2.line(canvas, start, end, 1, 40)
    return canvas.astype(bool)


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[:25, :40] = True  # top-left corner
    mask[150:, 200:] = True  # bottom-right corner, larger than one native view
    mask[100:110, -6:] = True  # right edge
    return mask


@pytest.mark.parametrize("make_mask", [_small_mask, _region_mask, _large_mask, _border_mask],
                         ids=["small", "region", "large", "border"])
def test_adapter_fills_every_hole_and_keeps_known_pixels(adapter, make_mask):
    image = _paris("002_im.png")
    mask = make_mask(image.shape[:2])
    result = adapter.inpaint(image, mask)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert np.array_equal(result[~mask], image[~mask])
    # No hole pixel keeps the placeholder colour, and the fill is not a copy of the input.
    assert not np.all(result[mask] == np.array(FILL_VALUES_8BIT, np.uint8), axis=-1).any()
    assert not np.array_equal(result[mask], image[mask])
    assert np.array_equal(adapter.inpaint(image, mask, seed=5), result)


def test_adapter_on_the_native_centre_hole_equals_the_reference_reconstruction(adapter, golden):
    image = resize_and_crop(_paris("001_im.png"))
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    mask[FILL_START:FILL_STOP, FILL_START:FILL_STOP] = True
    expected = to_uint8(golden["batch1"]["recon"][0])
    assert np.array_equal(adapter.inpaint(image, mask)[mask], expected[mask])


def test_adapter_handles_images_smaller_than_a_view(adapter):
    image = np.full((30, 45, 3), 90, np.uint8)
    mask = np.zeros((30, 45), bool)
    mask[5:30, 40:45] = True
    result = adapter.inpaint(image, mask)
    assert result.shape == image.shape
    assert np.array_equal(result[~mask], image[~mask])


def test_end_to_end_on_paris_streetview_centre_holes(replica_path, golden, tmp_path, capsys):
    names = golden["batch2"]["image_names"]
    paths = [shared_path("datasets", "paris_streetview_eval", name) for name in names]
    metrics = evaluate_center_hole(load_context_encoder(replica_path).network, paths)
    assert metrics["psnr_mean"] == pytest.approx(golden["batch2"]["psnr_mean"], rel=1e-5)
    assert metrics["l2_mean"] == pytest.approx(golden["batch2"]["l2_mean"], rel=1e-5)
    for path in paths:
        shutil.copy(path, tmp_path / path.name)
    assert main(["--weights", str(replica_path), "--images", str(tmp_path)]) == 0
    assert f"PSNR {golden['batch2']['psnr_mean']:.2f} dB" in capsys.readouterr().out

    # The adapter on the original 227x227 photographs with the reference's 99x99 corrupted square:
    # the hole needs a scaled view (229 px), which the adapter fills without touching known pixels.
    image = _paris(names[1])
    mask = np.zeros(image.shape[:2], bool)
    mask[64:163, 64:163] = True
    result = create_method("context-encoder", weights=replica_path).inpaint(image, mask)
    assert np.array_equal(result[~mask], image[~mask])
    hole_error = np.abs(result[mask].astype(float) - image[mask].astype(float)).mean()
    assert 0 < hole_error < 128
