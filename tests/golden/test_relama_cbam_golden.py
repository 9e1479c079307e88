"""ReLaMa-CBAM against its golden tensors (``shared/golden/relama_cbam``), float32 on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from methods.nets.cbam import FFCChannelAttention, FFCSpatialAttention, ReLaMaCBAMGenerator, attention_keys
from methods.nets.configs import build_generator
from conftest import shared_path

ATOL = 1e-5
CASES = ["", "_nonsquare", "_odd_bottleneck"]


def _load(name: str) -> dict:
    return torch.load(shared_path("golden", "relama_cbam", name), map_location="cpu", weights_only=True)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= ATOL


@pytest.fixture(scope="module")
def small() -> dict:
    return _load("golden_small.pt")


@pytest.fixture(scope="module")
def small_model(small: dict) -> ReLaMaCBAMGenerator:
    model = ReLaMaCBAMGenerator(**json.loads(small["config"])).eval()
    model.load_state_dict(small["state_dict"], strict=True)
    return model


def test_state_dict_keys_and_order_match(small: dict, small_model: ReLaMaCBAMGenerator) -> None:
    assert list(small_model.state_dict()) == list(small["state_dict"])
    assert sum(p.numel() for p in small_model.parameters()) == small["parameter_count"]


@pytest.mark.parametrize("case", CASES)
def test_output_and_blend_match(small: dict, small_model: ReLaMaCBAMGenerator, case: str) -> None:
    with torch.no_grad():
        output = small_model(small["input" + case])
    _close(output, small["output" + case])
    mask = small["mask" + case]
    _close(mask * output + (1 - mask) * small["image" + case], small["inpainted" + case])


def test_intermediates_match(small: dict, small_model: ReLaMaCBAMGenerator) -> None:
    x = small["input"]
    with torch.no_grad():
        for index, layer in enumerate(small_model.model):
            x = layer(x)
            expected = small["intermediates"].get(f"model.{index}")
            if isinstance(expected, dict):
                _close(x[0], expected["local"])
                if torch.is_tensor(expected["global"]):
                    _close(x[1], expected["global"])
                else:
                    assert x[1] == expected["global"]
            elif expected is not None:
                _close(x, expected)


def test_block0_internals_including_attention_match(small: dict, small_model: ReLaMaCBAMGenerator) -> None:
    expected = small["block0_internals"]
    assert {"model.5.ca", "model.5.sa"} <= set(expected)
    modules = dict(small_model.named_modules())
    captured = {}

    def hook_for(name):
        def hook(_module, _inputs, output):
            captured[name] = tuple(p.clone() for p in output) if isinstance(output, tuple) else output.clone()
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in expected]
    with torch.no_grad():
        small_model(small["input"])
    for handle in handles:
        handle.remove()
    for name, value in expected.items():
        if isinstance(value, dict):
            _close(captured[name][0], value["local"])
            _close(captured[name][1], value["global"])
        else:
            _close(captured[name], value)


@pytest.mark.parametrize("case", ["small", "full"])
def test_attention_modules_match(case: str) -> None:
    golden = _load("golden_attention.pt")[case]
    config = json.loads(golden["config"])
    channel = FFCChannelAttention(config["channels"], ratio_g=config["ratio_g"], ratio=config["ratio"])
    spatial = FFCSpatialAttention(kernel_size=config["kernel_size"])
    channel.load_state_dict(golden["ca_state_dict"], strict=True)
    spatial.load_state_dict(golden["sa_state_dict"], strict=True)
    pair = (golden["input_local"], golden["input_global"])
    with torch.no_grad():
        after_channel = channel(pair)
        after_both = spatial(after_channel)
        spatial_only = spatial(pair)
    for produced, prefix in ((after_channel, "ca_output"), (after_both, "ca_then_sa_output"),
                             (spatial_only, "sa_only_output")):
        _close(produced[0], golden[f"{prefix}_local"])
        _close(produced[1], golden[f"{prefix}_global"])


def test_channel_gates_lie_in_double_sigmoid_range() -> None:
    torch.manual_seed(0)
    channel = FFCChannelAttention(128, ratio_g=0.75)
    ones = (torch.ones(1, 32, 4, 4), torch.ones(1, 96, 4, 4))
    with torch.no_grad():
        gated_local, gated_global = channel(ones)
    gates = torch.cat([gated_local.flatten(), gated_global.flatten()])
    assert gates.min() > 0.5 and gates.max() < 0.881


def test_big_relama_cbam_on_meta_device_matches_manifest() -> None:
    manifest = json.loads(shared_path("golden", "relama_cbam", "manifest_big_relama_cbam_generator.json").read_text())
    model = build_generator("big-relama-cbam", device="meta")
    expected = [(entry["key"], entry["shape"]) for entry in manifest["keys"]]
    assert [(key, list(value.shape)) for key, value in model.state_dict().items()] == expected
    assert sum(p.numel() for p in model.parameters()) == manifest["parameter_count"]
    assert len(attention_keys(model)) == 18 * 6


def test_big_lama_keys_are_relama_keys_minus_attention() -> None:
    lama = build_generator("big-lama", device="meta").state_dict()
    relama = build_generator("big-relama-cbam", device="meta").state_dict()
    attention = set(attention_keys(build_generator("big-relama-cbam", device="meta")))
    assert set(relama) - set(lama) == attention
    assert all(lama[key].shape == relama[key].shape for key in lama)
