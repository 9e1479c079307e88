"""MI-GAN port against the reference's tensors and manifests in ``../shared/golden/migan``.

Tolerances follow the golden README: 1e-5 on float tensors, 1e-4 on the clamp probe (outputs up to
about 100), uint8 results exact but for at most one level on a tiny fraction of values.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch

from conftest import shared_path
from methods.checkpoint import CheckpointError, load_state_strict
from methods.migan import crop_square, load_migan, network_input, squash_like_evaluation
from methods.nets import migan as migan_net
from methods.nets.migan import MIGANGenerator, channels_at

FLOAT_ATOL = 1e-5
CLAMP_ATOL = 1e-4
#: Largest share of uint8 values allowed to differ (by one level) from the stored ones.
UINT8_FLIP_SHARE = 1e-3


def _golden_path(*parts: str):
    return shared_path("golden", "migan", *parts)


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(_golden_path("golden_small.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def small(golden) -> MIGANGenerator:
    config = golden["config"]
    generator = MIGANGenerator(config["resolution"], ch_base=config["ch_base"], ch_max=config["ch_max"])
    generator.load_state_dict(golden["state_dict"], strict=True)
    return generator.eval()


def _manifest(side: int) -> dict:
    return json.loads(_golden_path(f"manifest_migan_{side}.json").read_text())


def _assert_uint8_close(ours: torch.Tensor, expected: torch.Tensor) -> None:
    difference = (ours.to(torch.int16) - expected.to(torch.int16)).abs()
    assert ours.shape == expected.shape
    assert int(difference.max()) <= 1
    assert float((difference > 0).float().mean()) <= UINT8_FLIP_SHARE


def test_small_config_builds_through_the_width_rule(golden, small):
    config = golden["config"]
    widths = {side: channels_at(side, config["ch_base"], config["ch_max"]) for side in (64, 32, 16, 8, 4)}
    assert widths == {int(side): width for side, width in golden["channels_per_resolution"].items()}
    assert list(small.state_dict()) == golden["state_dict_keys"]
    assert sum(p.numel() for p in small.parameters()) == golden["parameter_count"]
    assert sum(b.numel() for b in small.buffers()) == golden["buffer_numel"]


@pytest.mark.parametrize("case", ["main", "batch"])
def test_outputs_and_the_evaluation_blend_match(golden, small, case):
    stored = golden[case]
    images = stored["image_uint8"].permute(0, 2, 3, 1).numpy()
    known = stored["mask_uint8"][:, 0].numpy() // 255
    x = torch.cat([network_input(image, mask) for image, mask in zip(images, known)])
    torch.testing.assert_close(x, stored["input"], atol=0, rtol=0)
    with torch.no_grad():
        output = small(x)
    torch.testing.assert_close(output, stored["output"], atol=FLOAT_ATOL, rtol=0)
    mask = stored["mask"]
    composed = mask * stored["image"] + (1 - mask) * output
    torch.testing.assert_close(composed, stored["composed"], atol=FLOAT_ATOL, rtol=0)
    torch.testing.assert_close((composed * 0.5 + 0.5).clamp(0, 1), stored["composed_01"], atol=FLOAT_ATOL, rtol=0)
    exported = (composed * 127.5 + 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    _assert_uint8_close(exported, stored["export_uint8"])


def test_every_block_matches(golden, small):
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name in golden["intermediate_names"]:
        module = small.get_submodule(name)
        handles.append(module.register_forward_hook(
            lambda _module, _inputs, output, name=name: outputs.__setitem__(name, tuple(t.clone() for t in output))))
    with torch.no_grad():
        small(golden["main"]["input"])
    for handle in handles:
        handle.remove()
    assert list(outputs) == golden["intermediate_names"]
    for name, expected in golden["intermediates"].items():
        second = "feat" if name.startswith("encoder") else "img"
        for ours, key in zip(outputs[name], ("x", second)):
            torch.testing.assert_close(ours, expected[key], atol=FLOAT_ATOL, rtol=0,
                                       msg=lambda text, name=name, key=key: f"{name}.{key}: {text}")


def test_block_internals_match_in_execution_order(golden, small):
    wanted = set(golden["block_internal_names"])
    fired: list[tuple[str, torch.Tensor]] = []
    handles = [
        module.register_forward_hook(lambda _module, _inputs, output, name=name: fired.append((name, output.clone())))
        for name, module in small.named_modules() if name in wanted
    ]
    with torch.no_grad():
        small(golden["main"]["input"])
    for handle in handles:
        handle.remove()
    assert [name for name, _ in fired] == golden["block_internal_names"]
    for name, ours in fired:
        torch.testing.assert_close(ours, golden["block_internals"][name], atol=FLOAT_ATOL, rtol=0,
                                   msg=lambda text, name=name: f"{name}: {text}")


def test_clamp_probe_engages_the_activation_clamp(golden, small, monkeypatch):
    probe = golden["clamp_probe"]
    counts = {"calls": 0, "calls_with_clamping": 0, "clamped": 0}
    original = migan_net.activation

    def counting(x: torch.Tensor) -> torch.Tensor:
        unclamped = torch.nn.functional.leaky_relu(x, migan_net.LEAKY_SLOPE) * migan_net.ACTIVATION_GAIN
        clamped = int((unclamped.abs() > migan_net.ACTIVATION_CLAMP).sum())
        counts["calls"] += 1
        counts["calls_with_clamping"] += clamped > 0
        counts["clamped"] += clamped
        return original(x)

    monkeypatch.setattr(migan_net, "activation", counting)
    torch.testing.assert_close(probe["input"], golden["main"]["input"] * probe["scale"], atol=0, rtol=0)
    with torch.no_grad():
        output = small(probe["input"])
    torch.testing.assert_close(output, probe["output"], atol=CLAMP_ATOL, rtol=0)
    assert counts == {"calls": probe["activation_calls"],
                      "calls_with_clamping": probe["activation_calls_with_clamping"],
                      "clamped": probe["clamped_elements_total"]}


@pytest.mark.parametrize("case", ["large", "small"])
def test_demo_pipeline_network_and_squash(golden, small, case):
    demo = golden["demo_pipeline"][case]
    # demo.py squashes its (possibly shrunk) image and mask to R x R exactly as the evaluation script does.
    squashed, known = squash_like_evaluation(demo["image_resized_uint8"].numpy(),
                                             demo["mask_resized_uint8"].numpy() < 255, demo["resolution"])
    torch.testing.assert_close(network_input(squashed, known), demo["net_input"], atol=0, rtol=0)
    with torch.no_grad():
        output = small(demo["net_input"])
    torch.testing.assert_close(output, demo["net_output"], atol=FLOAT_ATOL, rtol=0)
    truncated = ((output[0] * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0)
    _assert_uint8_close(truncated, demo["result_uint8_res"])


@pytest.mark.parametrize("variant", ["default", "antialias_false"])
def test_onnx_pipeline_network_and_crop_context(golden, small, variant):
    crop = golden["crop_pipeline"]
    stored = crop[variant]
    with torch.no_grad():
        output = small(stored["model_input"])
    torch.testing.assert_close(output, stored["model_output"], atol=FLOAT_ATOL, rtol=0)
    # The crop mode's square has the authors' side and horizontal placement; the authors clip it to the
    # 256-pixel height, the crop mode mirrors the image to keep it square.
    hole = crop["mask_uint8"][0, 0].numpy() < 255
    x_min, x_max, y_min, y_max = stored["bbox_xmin_xmax_ymin_ymax"]
    top, left, side = crop_square(hole, crop["resolution"], crop["padding"])
    assert (left, left + side) == (x_min, x_max)
    assert top <= y_min and top + side >= y_max and side == x_max - x_min


@pytest.mark.parametrize("side", [256, 512])
def test_meta_generator_matches_the_released_manifest(side):
    manifest = _manifest(side)
    with torch.device("meta"):
        generator = MIGANGenerator(side)
    parameters = {id(p) for p in generator.parameters()}
    ours = [{"key": key, "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
             "numel": value.numel(), "kind": "parameter" if id(value) in parameters else "buffer"}
            for key, value in generator.state_dict(keep_vars=True).items()]
    assert ours == manifest["state_dict"]
    counts = manifest["counts"]
    assert sum(p.numel() for p in generator.parameters()) == counts["parameters"]
    assert sum(b.numel() for b in generator.buffers()) == counts["buffer_elements"]
    assert len(ours) == counts["state_dict_entries"]
    widths = {str(r): channels_at(r, migan_net.RELEASED_CH_BASE, migan_net.RELEASED_CH_MAX)
              for r in map(int, manifest["channels_per_resolution"])}
    assert widths == manifest["channels_per_resolution"]


@pytest.mark.parametrize("side", [256, 512])
def test_meta_forward_matches_the_layer_table(side):
    manifest = _manifest(side)
    with torch.device("meta"):
        generator = MIGANGenerator(side).eval()
    table: list[dict] = []

    def shapes(value):
        if isinstance(value, dict):
            return {str(key): shapes(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return [shapes(item) for item in value]
        return list(value.shape)

    resamplers = {name for name, module in generator.named_modules()
                  if isinstance(module, (migan_net.Downsample2d, migan_net.Upsample2d))}
    for name, module in generator.named_modules():
        # The manifest lists every module below the root that holds weights or buffers, with the
        # resamplers as leaves.
        if name and name.rpartition(".")[0] not in resamplers and any(True for _ in module.state_dict()):
            module.register_forward_hook(lambda module, _inputs, output, name=name: table.append({
                "module": name, "cls": type(module).__name__,
                "output_shapes": shapes(output if isinstance(output, tuple) else (output,))}))
    with torch.no_grad():
        output = generator(torch.empty(manifest["input"]["shape"], device="meta"))
    assert list(output.shape) == manifest["output_shape"]
    assert table == manifest["layer_table_for_zero_input"]


def test_constructor_constants_match_the_manifest():
    constants = _manifest(256)["constants"]
    generator = MIGANGenerator(256)
    down = generator.encoder.b256.conv2.downsample.filter.weight
    up = generator.synthesis.b256.conv1.upsample
    expected_down = torch.tensor(constants["downsample_filter_weight_each_channel"])
    expected_up = torch.tensor(constants["upsample_filter_weight_each_channel"])
    assert torch.equal(down.detach(), expected_down.expand_as(down))
    assert torch.equal(up.filter.weight.detach(), expected_up.expand_as(up.filter.weight))
    assert torch.equal(up.filter_const[0, 0, :4, :4], torch.tensor(constants["filter_const_top_left_4x4"]))
    assert torch.equal(up.filter_const[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]).repeat(128, 128))


def test_replica_container_is_a_plain_state_dict(golden):
    content = torch.load(_golden_path("replica", "replica_migan_small.pt"), map_location="cpu", weights_only=True)
    assert isinstance(content, OrderedDict)
    assert list(content) == golden["state_dict_keys"]
    assert all(value.dtype == torch.float32 for value in content.values())


@pytest.mark.parametrize("case", ["main", "batch"])
def test_replica_loads_and_reproduces_the_golden_outputs(golden, case):
    generator = load_migan(_golden_path("replica", "replica_migan_small.pt"))
    assert not generator.training and generator.resolution == 64
    assert list(generator.state_dict()) == golden["state_dict_keys"]
    with torch.no_grad():
        output = generator(golden[case]["input"])
    torch.testing.assert_close(output, golden[case]["output"], atol=FLOAT_ATOL, rtol=0)


def test_a_mismatched_resolution_is_one_readable_error(golden, small):
    replica = _golden_path("replica", "replica_migan_small.pt")
    with pytest.raises(CheckpointError) as caught:
        load_migan(replica, resolution=256)
    message = str(caught.value)
    assert "holds a 64x64 MI-GAN" in message and "resolution=256" in message and "\n" not in message
    with pytest.raises(ValueError) as caught:
        small(torch.zeros(1, 4, 32, 32))
    assert "built for 64x64" in str(caught.value) and "(1, 4, 32, 32)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_larger_generator_state_names_the_missing_and_unexpected_keys(golden, small):
    # Reference issue 12: a 512 file in a 256 generator; here a 128 state in the 64 golden generator.
    config = golden["config"]
    larger = MIGANGenerator(128, ch_base=config["ch_base"] * 2, ch_max=config["ch_max"])
    with pytest.raises(CheckpointError) as caught:
        load_state_strict(small, larger.state_dict(), "larger.pt")
    message = str(caught.value)
    assert "missing keys: encoder.b64.fromrgb.weight, encoder.b64.fromrgb.bias" in message
    assert "unexpected keys: synthesis.b128." in message
