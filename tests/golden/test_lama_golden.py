"""LaMa port against the reference's golden tensors (``shared/golden/lama``), float32 on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from methods.nets.configs import build_discriminator, build_generator, generator_config
from methods.nets.ffc import FFCResNetGenerator
from methods.nets.pix2pixhd import NLayerDiscriminator
from conftest import shared_path

ATOL = 1e-5
CASES = ["", "_nonsquare", "_odd_bottleneck"]


def _load(name: str) -> dict:
    return torch.load(shared_path("golden", "lama", name), map_location="cpu", weights_only=True)


def _close(actual: torch.Tensor | int, expected: torch.Tensor | int) -> None:
    if not torch.is_tensor(expected):
        assert actual == expected
        return
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= ATOL


def _close_pair(actual: tuple, expected: dict) -> None:
    _close(actual[0], expected["local"])
    _close(actual[1], expected["global"])


@pytest.fixture(scope="module")
def small() -> dict:
    return _load("golden_small.pt")


@pytest.fixture(scope="module")
def small_model(small: dict) -> FFCResNetGenerator:
    model = FFCResNetGenerator(**json.loads(small["config"])).eval()
    model.load_state_dict(small["state_dict"], strict=True)
    return model


@pytest.fixture(scope="module")
def lfu() -> dict:
    return _load("golden_enable_lfu.pt")


@pytest.fixture(scope="module")
def lfu_model(lfu: dict) -> FFCResNetGenerator:
    model = FFCResNetGenerator(**json.loads(lfu["config"])).eval()
    model.load_state_dict(lfu["state_dict"], strict=True)
    return model


def _capture(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> dict:
    """Outputs of the named submodules during one forward pass (cloned before in-place ops touch them)."""
    modules = dict(model.named_modules())
    captured: dict = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            captured[name] = tuple(part.clone() if torch.is_tensor(part) else part for part in output) \
                if isinstance(output, tuple) else output.clone()
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def test_state_dict_keys_and_order_match(small: dict, small_model: FFCResNetGenerator) -> None:
    assert list(small_model.state_dict()) == list(small["state_dict"])
    assert sum(p.numel() for p in small_model.parameters()) == small["parameter_count"]


@pytest.mark.parametrize("case", CASES)
def test_output_and_blend_match(small: dict, small_model: FFCResNetGenerator, case: str) -> None:
    with torch.no_grad():
        output = small_model(small["input" + case])
    _close(output, small["output" + case])
    mask = small["mask" + case]
    _close(mask * output + (1 - mask) * small["image" + case], small["inpainted" + case])
    _close(torch.cat([small["image" + case] * (1 - mask), mask], dim=1), small["input" + case])


def test_intermediates_match(small: dict, small_model: FFCResNetGenerator) -> None:
    x = small["input"]
    seen = set()
    with torch.no_grad():
        for index, layer in enumerate(small_model.model):
            x = layer(x)
            key = f"model.{index}"
            if key in small["intermediates"]:
                expected = small["intermediates"][key]
                _close_pair(x, expected) if isinstance(expected, dict) else _close(x, expected)
                seen.add(key)
    assert seen == set(small["intermediates"])


def test_block0_internals_match(small: dict, small_model: FFCResNetGenerator) -> None:
    expected = small["block0_internals"]
    captured = _capture(small_model, list(expected), small["input"])
    for name, value in expected.items():
        _close_pair(captured[name], value) if isinstance(value, dict) else _close(captured[name], value)


def test_predict_pipeline_matches_reference(small: dict, tmp_path) -> None:
    from methods.lama import LaMa, pad_to_modulo

    pipeline = small["predict_pipeline"]
    image = pipeline["raw_image_uint8"].numpy()
    grey_mask = pipeline["raw_mask_uint8"].numpy()
    padded_image = pad_to_modulo(image.astype(np.float32) / 255, 8)
    padded_mask = pad_to_modulo(grey_mask.astype(np.float32) / 255, 8)
    _close(torch.from_numpy(padded_image).permute(2, 0, 1)[None], pipeline["padded_image"])
    _close(torch.from_numpy(padded_mask)[None, None], pipeline["padded_mask_before_binarize"])

    weights = tmp_path / "small.pt"
    torch.save(small["state_dict"], weights)
    exact = LaMa(weights=weights, device="cpu", optimize=False)
    result = exact.inpaint(image, grey_mask > 0)
    assert np.array_equal(result, pipeline["result_uint8_rgb"].numpy())
    # The folded network may move a value across a truncation step, by one level at most.
    fast = LaMa(weights=weights, device="cpu", optimize=True).inpaint(image, grey_mask > 0)
    assert np.abs(fast.astype(int) - result.astype(int)).max() <= 1


@pytest.mark.parametrize("case", ["", "_64"])
def test_lfu_outputs_match(lfu: dict, lfu_model: FFCResNetGenerator, case: str) -> None:
    with torch.no_grad():
        _close(lfu_model(lfu["input" + case]), lfu["output" + case])


def test_lfu_internals_match(lfu: dict, lfu_model: FFCResNetGenerator) -> None:
    expected = lfu["block0_internals"]
    captured = _capture(lfu_model, list(expected), lfu["input"])
    for name, value in expected.items():
        _close_pair(captured[name], value) if isinstance(value, dict) else _close(captured[name], value)


def test_lfu_refuses_the_shapes_the_reference_fails_on(lfu: dict, lfu_model: FFCResNetGenerator) -> None:
    assert len(lfu["lfu_shape_probe"]) == 6
    for probe in lfu["lfu_shape_probe"]:
        assert probe["result"].startswith("RuntimeError")
        height, width = probe["input_hw"]
        with pytest.raises(ValueError, match="square feature map with an even side"):
            with torch.no_grad():
                lfu_model(torch.rand(1, 4, height, width))
    with torch.no_grad():
        for side in (16, 48):  # bottlenecks 2x2 and 6x6 work
            assert lfu_model(torch.rand(1, 4, side, side)).shape == (1, 3, side, side)


def test_discriminator_matches() -> None:
    golden = _load("golden_discriminator.pt")
    model = NLayerDiscriminator(**json.loads(golden["config"])).eval()
    model.load_state_dict(golden["state_dict"], strict=True)
    assert list(model.state_dict()) == list(golden["state_dict"])
    with torch.no_grad():
        for suffix in ("", "_fake"):
            logits, features = model(golden["input" + suffix])
            _close(logits, golden["output" + suffix])
            assert len(features) == len(golden["features" + suffix]) == 5
            for actual, expected in zip(features, golden["features" + suffix]):
                _close(actual, expected)


def _manifest_entries(name: str) -> list[tuple[str, list[int]]]:
    manifest = json.loads(shared_path("golden", *name.split("/")).read_text())
    return [(entry["key"], entry["shape"]) for entry in manifest["keys"]], manifest


def test_big_lama_on_meta_device_matches_manifest() -> None:
    expected, manifest = _manifest_entries("lama/manifest_big_lama_generator.json")
    model = build_generator("big-lama", device="meta")
    assert [(key, list(value.shape)) for key, value in model.state_dict().items()] == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["parameter_count"]
    assert sum(b.numel() for b in model.buffers()) == manifest["buffer_numel"]
    config = generator_config("big-lama")
    assert config.pop("kind") == "ffc_resnet"
    assert config == manifest["constructor_kwargs"]


def test_big_discriminator_on_meta_device_matches_manifest() -> None:
    expected, manifest = _manifest_entries("lama/manifest_pix2pixhd_nlayer_discriminator.json")
    model = build_discriminator("pix2pixhd_nlayer", device="meta")
    assert [(key, list(value.shape)) for key, value in model.state_dict().items()] == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["parameter_count"]
