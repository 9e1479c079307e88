"""Reference equivalence of the Context Encoder port (``../shared/golden/context_encoder``).

The stored tensors come from the reference ``_netG``/``_netlocalD`` and its ``test.py`` procedure; the
port must reproduce preprocessing, every layer, the outputs and the paste-back on CPU float32.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_path
from methods.context_encoder import (
    CENTER_START,
    CENTER_STOP,
    FILL_START,
    FILL_STOP,
    blank_center,
    center_hole_metrics,
    fill_values,
    paste_center,
    prepare_reference_input,
    real_center,
)
from methods.nets.context_encoder import ContextEncoderGenerator, ContextEncoderLocalDiscriminator

ATOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    # Two threads on a busy two-core machine make these tiny convolutions a hundred times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def golden():
    return torch.load(shared_path("golden", "context_encoder", "golden_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def golden_netd():
    return torch.load(shared_path("golden", "context_encoder", "golden_small_netlocalD.pt"), weights_only=True)


@pytest.fixture(scope="module")
def generator(golden):
    network = ContextEncoderGenerator.from_options(json.loads(golden["config"]))
    network.load_state_dict(golden["state_dict"], strict=True)
    return network.eval()


def _manifest(name: str) -> dict:
    return json.loads(shared_path("golden", "context_encoder", name).read_text())


def _paris_images(names: list[str]) -> list[np.ndarray]:
    folder = shared_path("datasets", "paris_streetview_eval")
    return [np.asarray(Image.open(folder / name).convert("RGB")) for name in names]


def test_constants_match_the_stored_regions_and_fill_values(golden):
    assert [CENTER_START, CENTER_STOP] == golden["center_region"] == [32, 96]
    assert [FILL_START, FILL_STOP] == golden["fill_region"] == [36, 92]
    assert torch.equal(fill_values(), golden["fill_values"])
    # The reference's order: channel 0 gets 117, channel 2 gets 123.
    assert fill_values()[0] < fill_values()[2]


@pytest.mark.parametrize("batch", ["batch1", "batch2"])
def test_preprocessing_reproduces_the_stored_inputs_bit_exactly(golden, batch):
    stored = golden[batch]
    real = prepare_reference_input(_paris_images(stored["image_names"]))
    assert torch.equal(real, stored["input_real"])
    assert torch.equal(blank_center(real), stored["input_cropped"])
    assert torch.equal(real_center(real), stored["real_center"])


@pytest.mark.parametrize("batch", ["batch1", "batch2"])
def test_generator_output_and_paste_back_match(golden, generator, batch):
    stored = golden[batch]
    with torch.no_grad():
        output = generator(stored["input_cropped"])
    torch.testing.assert_close(output, stored["output"], rtol=0, atol=ATOL)
    assert torch.equal(paste_center(stored["input_cropped"], stored["output"]), stored["recon"])
    torch.testing.assert_close(paste_center(stored["input_cropped"], output), stored["recon"], rtol=0, atol=ATOL)


def test_all_31_intermediate_activations_match(golden, generator):
    stored = golden["batch1"]
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _module, _inputs, output, key=f"main.{index}": captured.__setitem__(key, output.clone()))
        for index, module in generator.main.named_children()
    ]
    try:
        with torch.no_grad():
            generator(stored["input_cropped"])
    finally:
        for handle in handles:
            handle.remove()
    assert len(stored["intermediates"]) == 31
    assert list(captured) == list(stored["intermediates"])
    assert [type(module).__name__ for module in generator.main] == stored["intermediate_types"]
    for key, expected in stored["intermediates"].items():
        torch.testing.assert_close(captured[key], expected, rtol=0, atol=ATOL, msg=f"activation {key} differs")


def test_batch_of_two_has_no_cross_sample_effect(golden, generator):
    with torch.no_grad():
        pair = generator(golden["batch2"]["input_cropped"])
    torch.testing.assert_close(pair[:1], golden["batch1"]["output"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("batch", ["batch1", "batch2"])
def test_metrics_match_the_reference_printout(golden, batch):
    stored = golden[batch]
    metrics = center_hole_metrics(stored["output"], stored["real_center"])
    assert metrics["l2_mean"] == pytest.approx(stored["l2_mean"], rel=1e-5)
    assert metrics["l2_mean"] == pytest.approx(stored["mse_criterion"], rel=1e-5)
    assert metrics["l1_mean"] == pytest.approx(stored["l1_mean"], rel=1e-5)
    assert metrics["psnr_per_image"] == pytest.approx(stored["psnr_per_image"], rel=1e-5)
    assert metrics["psnr_mean"] == pytest.approx(stored["psnr_mean"], rel=1e-5)


def test_local_discriminator_matches_on_real_and_fake_centres(golden_netd):
    network = ContextEncoderLocalDiscriminator.from_options(json.loads(golden_netd["config"]))
    network.load_state_dict(golden_netd["state_dict"], strict=True)
    network.eval()
    with torch.no_grad():
        real = network(golden_netd["input_real_center"])
        fake = network(golden_netd["input_fake_center"])
    assert real.shape == (2, 1)
    torch.testing.assert_close(real, golden_netd["output_real_center"], rtol=0, atol=ATOL)
    torch.testing.assert_close(fake, golden_netd["output_fake_center"], rtol=0, atol=ATOL)


def _check_against_manifest(network: torch.nn.Module, manifest: dict) -> None:
    state = network.state_dict()
    entries = manifest["state_dict"]
    assert list(state) == [entry["key"] for entry in entries]
    for entry in entries:
        tensor = state[entry["key"]]
        assert list(tensor.shape) == entry["shape"], entry["key"]
        assert str(tensor.dtype).removeprefix("torch.") == entry["dtype"], entry["key"]
        assert entry["expected_in_released_checkpoint"] == (not entry["key"].endswith("num_batches_tracked"))
    counts = manifest["counts"]
    assert len(state) == counts["state_dict_entries"]
    assert sum(parameter.numel() for parameter in network.parameters()) == counts["parameters_total"]

    shapes: dict[str, list[int]] = {}
    for index, module in network.main.named_children():
        module.register_forward_hook(
            lambda _module, _inputs, output, key=f"main.{index}": shapes.__setitem__(key, list(output.shape)))
    output = network.eval()(torch.empty(manifest["input_shape"], device="meta"))
    assert list(output.shape) == manifest["output_shape"]
    for layer in manifest["layers"]:
        module = network.main[layer["index"]]
        assert type(module).__name__ == layer["type"], layer["name"]
        assert shapes[layer["name"]] == layer["output_shape_for_batch1"], layer["name"]
        for attribute in ("in_channels", "out_channels", "negative_slope", "num_features", "eps", "momentum"):
            if attribute in layer:
                assert getattr(module, attribute) == layer[attribute], (layer["name"], attribute)
        for attribute in ("kernel_size", "stride", "padding"):
            if attribute in layer:
                assert list(getattr(module, attribute)) == layer[attribute], (layer["name"], attribute)
        if "bias" in layer:
            assert (module.bias is not None) == layer["bias"], layer["name"]


def test_full_generator_on_meta_device_matches_the_manifest():
    manifest = _manifest("manifest_netG.json")
    with torch.device("meta"):
        network = ContextEncoderGenerator.from_options(manifest["options"])
    _check_against_manifest(network, manifest)
    assert manifest["counts"]["parameters_total"] == 71_124_544


def test_full_discriminator_on_meta_device_matches_the_manifest():
    manifest = _manifest("manifest_netD.json")
    with torch.device("meta"):
        network = ContextEncoderLocalDiscriminator.from_options(manifest["options"])
    _check_against_manifest(network, manifest)
