"""PICNet port against the reference's tensors and manifests in ``../shared/golden/pluralistic``.

The stored ``z`` replaces the reference's ``Normal(mu, sigma).sample()``; everything else is the
reference test path. Tolerances follow the golden README (1e-5 on features, 1e-4 on images).
"""

from __future__ import annotations

import json

import pytest
import torch

from methods.nets.pluralistic import (
    PICNetEncoder,
    PICNetGenerator,
    SpectralNormConv,
    attention_mask,
    power_iteration_state,
    restore_power_iteration_state,
)
from conftest import shared_path

FEATURE_ATOL = 1e-5
IMAGE_ATOL = 1e-4
SMALL_WIDTHS = {"ngf": 8, "z_nc": 32, "img_f": 32}


def _load_golden(name: str) -> dict:
    return torch.load(shared_path("golden", "pluralistic", name), map_location="cpu", weights_only=True)


def _build_small(golden: dict) -> tuple[PICNetEncoder, PICNetGenerator]:
    config = json.loads(golden["config"])
    for part in ("encoder", "generator"):
        assert {key: config[part][key] for key in SMALL_WIDTHS} == SMALL_WIDTHS
    encoder, generator = PICNetEncoder(**SMALL_WIDTHS), PICNetGenerator(**SMALL_WIDTHS)
    encoder.load_state_dict(golden["state_dict_E"], strict=True)
    generator.load_state_dict(golden["state_dict_G"], strict=True)
    return encoder.eval(), generator.eval()


def _capture_children(net: torch.nn.Module, store: dict) -> None:
    """Record every top-level block's output (first element for blocks returning a tuple)."""
    for name, child in net.named_children():
        child.register_forward_hook(
            lambda _module, _inputs, output, name=name: store.__setitem__(
                name, (output[0] if isinstance(output, tuple) else output).detach().clone()
            )
        )


@pytest.fixture(scope="module")
def small_run() -> dict:
    """The 128x128 golden case run through the port: encoder once, generator three times."""
    golden = _load_golden("golden_small.pt")
    encoder, generator = _build_small(golden)
    encoder_blocks: dict = {}
    generator_blocks: dict = {}
    _capture_children(encoder, encoder_blocks)
    _capture_children(generator, generator_blocks)
    generator_uv_before = power_iteration_state(generator)
    with torch.no_grad():
        mu, std, features = encoder(golden["img_m"])
        mask = attention_mask(golden["mask"], tuple(features[2].shape[-2:]))
        images, attention = generator(golden["z"], features[-1], features[2], mask)
        first_call_blocks = dict(generator_blocks)
        uv_after_encoder = encoder.state_dict()
        uv_after_generator = {key: value.clone() for key, value in generator.state_dict().items()}
        second_images, _ = generator(golden["z2"], features[-1], features[2], mask)
        third_images, _ = generator(golden["z"], features[-1], features[2], mask)
        restore_power_iteration_state(generator, generator_uv_before)
        restored_images, _ = generator(golden["z"], features[-1], features[2], mask)
    return {
        "golden": golden, "mu": mu, "std": std, "features": features, "mask": mask, "images": images,
        "attention": attention, "encoder_blocks": encoder_blocks, "generator_blocks": first_call_blocks,
        "uv_after_encoder": uv_after_encoder, "uv_after_generator": uv_after_generator,
        "second_images": second_images, "third_images": third_images, "restored_images": restored_images,
    }


def _compose(images: list[torch.Tensor], golden: dict) -> torch.Tensor:
    return (1 - golden["mask"]) * images[-1] + golden["mask"] * golden["img_m"]


def test_golden_inputs_follow_the_readme_conventions(small_run):
    golden = small_run["golden"]
    torch.testing.assert_close(golden["image"], 2 * golden["image_01"] - 1, atol=1e-6, rtol=0)
    torch.testing.assert_close(golden["img_m"], golden["mask"] * golden["image"], atol=0, rtol=0)
    assert set(golden["mask"].unique().tolist()) == {0.0, 1.0}


def test_small_encoder_blocks_match(small_run):
    golden = small_run["golden"]
    assert list(small_run["encoder_blocks"]) == list(golden["intermediates_E"])
    for name, expected in golden["intermediates_E"].items():
        torch.testing.assert_close(small_run["encoder_blocks"][name], expected, atol=FEATURE_ATOL, rtol=0,
                                   msg=lambda text, name=name: f"encoder block {name}: {text}")


def test_small_encoder_outputs_match(small_run):
    golden = small_run["golden"]
    torch.testing.assert_close(small_run["mu"], golden["mu"], atol=FEATURE_ATOL, rtol=0)
    torch.testing.assert_close(small_run["std"], golden["std"], atol=FEATURE_ATOL, rtol=0)
    assert len(small_run["features"]) == len(golden["features"]) == 5
    for ours, expected in zip(small_run["features"], golden["features"]):
        torch.testing.assert_close(ours, expected, atol=FEATURE_ATOL, rtol=0)


def test_small_attention_mask_is_bilinear_align_corners(small_run):
    golden = small_run["golden"]
    torch.testing.assert_close(small_run["mask"], golden["mask_attn"], atol=1e-6, rtol=0)


def test_small_first_generator_call_matches(small_run):
    golden = small_run["golden"]
    assert list(small_run["generator_blocks"]) == list(golden["intermediates_G"])
    for name, expected in golden["intermediates_G"].items():
        torch.testing.assert_close(small_run["generator_blocks"][name], expected, atol=FEATURE_ATOL, rtol=0,
                                   msg=lambda text, name=name: f"generator block {name}: {text}")
    assert [image.shape for image in small_run["images"]] == [image.shape for image in golden["img_g"]]
    for ours, expected in zip(small_run["images"], golden["img_g"]):
        torch.testing.assert_close(ours, expected, atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(small_run["attention"], golden["attention"], atol=FEATURE_ATOL, rtol=0)
    torch.testing.assert_close(_compose(small_run["images"], golden), golden["img_out"], atol=IMAGE_ATOL, rtol=0)


def test_power_iteration_writes_u_v_back_in_eval_mode(small_run):
    golden = small_run["golden"]
    for stored, ours in (("sn_uv_after_E", "uv_after_encoder"), ("sn_uv_after_G_call1", "uv_after_generator")):
        expected = golden[stored]
        assert expected, stored
        for key, value in expected.items():
            torch.testing.assert_close(small_run[ours][key], value, atol=1e-6, rtol=0,
                                       msg=lambda text, key=key: f"{stored} {key}: {text}")
    changed = [key for key, value in golden["sn_uv_after_E"].items()
               if not torch.equal(value, golden["state_dict_E"][key])]
    assert changed, "the golden u/v must move on the first call for this test to mean anything"


def test_second_sample_uses_drifted_generator_state(small_run):
    golden = small_run["golden"]
    torch.testing.assert_close(small_run["second_images"][-1], golden["img_g2_last"], atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(_compose(small_run["second_images"], golden), golden["img_out2"],
                               atol=IMAGE_ATOL, rtol=0)


def test_third_call_with_same_z_differs_only_by_drift(small_run):
    golden = small_run["golden"]
    torch.testing.assert_close(small_run["third_images"][-1], golden["img_g3_last_same_z"], atol=IMAGE_ATOL, rtol=0)
    drift = (small_run["third_images"][-1] - golden["img_g"][-1]).abs().max().item()
    assert drift > 0.1, f"u/v drift should change the output visibly, got {drift}"
    # Restoring the u/v snapshot brings back the first call's output exactly.
    torch.testing.assert_close(small_run["restored_images"][-1], golden["img_g"][-1], atol=IMAGE_ATOL, rtol=0)


def test_seeded_normal_sampling_reproduces_the_reference_draw(small_run):
    # The golden z came from torch.manual_seed(1234) and Normal(mu, std).sample() (see config).
    golden = small_run["golden"]
    config = json.loads(golden["config"])
    assert "manual_seed(1234)" in config["seeds"]["z"]
    z = torch.normal(golden["mu"], golden["std"], generator=torch.Generator().manual_seed(1234))
    torch.testing.assert_close(z, golden["z"], atol=0, rtol=0)
    torch.testing.assert_close(golden["mu"] + golden["std"] * golden["eps"], golden["z"], atol=1e-6, rtol=0)


def test_256_case_matches():
    golden = _load_golden("golden_256.pt")
    encoder, generator = _build_small(golden)
    with torch.no_grad():
        mu, std, features = encoder(golden["mask"] * golden["image"])
        mask = attention_mask(golden["mask"], tuple(features[2].shape[-2:]))
        images, attention = generator(golden["z"], features[-1], features[2], mask)
    torch.testing.assert_close(mu, golden["mu"], atol=FEATURE_ATOL, rtol=0)
    torch.testing.assert_close(std, golden["std"], atol=FEATURE_ATOL, rtol=0)
    torch.testing.assert_close(features[2], golden["f_e"], atol=FEATURE_ATOL, rtol=0)
    torch.testing.assert_close(features[-1], golden["f_m"], atol=FEATURE_ATOL, rtol=0)
    torch.testing.assert_close(mask, golden["mask_attn"], atol=1e-6, rtol=0)
    assert attention.shape == (1, 32 * 32, 32 * 32)
    for ours, expected in zip(images, golden["img_g"], strict=True):
        torch.testing.assert_close(ours, expected, atol=IMAGE_ATOL, rtol=0)
    composed = (1 - golden["mask"]) * images[-1] + golden["mask"] * golden["image"]
    torch.testing.assert_close(composed, golden["img_out"], atol=IMAGE_ATOL, rtol=0)


def _manifest(name: str) -> dict:
    return json.loads(shared_path("golden", "pluralistic", name).read_text())


def _build_on_meta(manifest: dict) -> torch.nn.Module:
    config = manifest["config"]
    # The port implements exactly these reference switches; the manifest must describe them.
    assert (config["activation"], config["use_spect"], config["use_coord"]) == ("LeakyReLU", True, False)
    widths = {key: config[key] for key in ("ngf", "z_nc", "img_f", "layers")}
    with torch.device("meta"):
        if "input_nc" in config:
            assert config["norm"] == "none"
            return PICNetEncoder(input_nc=config["input_nc"], num_refinements=config["L"], **widths)
        assert (config["norm"], config["L"], config["use_attn"]) == ("instance", 0, True)
        return PICNetGenerator(output_nc=config["output_nc"], output_scale=config["output_scale"], **widths)


@pytest.mark.parametrize("manifest_name", ["manifest_encoder.json", "manifest_generator.json"])
def test_default_configuration_has_the_manifest_state_dict(manifest_name):
    manifest = _manifest(manifest_name)
    net = _build_on_meta(manifest)
    state = net.state_dict(keep_vars=True)
    entries = manifest["state_dict"]
    assert list(state) == [entry["key"] for entry in entries]
    for entry in entries:
        assert list(state[entry["key"]].shape) == entry["shape"], entry["key"]
        assert str(state[entry["key"]].dtype) == f"torch.{entry['dtype']}"
        if entry["alias_of"] is not None:
            assert state[entry["key"]] is state[entry["alias_of"]], entry["key"]
    for group in manifest["alias_groups"].values():
        assert all(state[name] is state[group[0]] for name in group)
    assert len({id(value) for value in state.values()}) == manifest["counts"]["state_dict_unique_tensors"]


@pytest.mark.parametrize("manifest_name", ["manifest_encoder.json", "manifest_generator.json"])
def test_default_configuration_has_the_manifest_counts_and_layers(manifest_name):
    manifest = _manifest(manifest_name)
    net = _build_on_meta(manifest)
    counts = manifest["counts"]
    parameters = list(net.parameters())
    assert sum(p.numel() for p in parameters) == counts["parameters_unique_numel_as_reference_print_network"]
    assert sum(p.numel() for p in parameters if p.requires_grad) == counts["parameters_learnable_numel"]
    assert sum(p.numel() for name, p in net.named_parameters()
               if name.endswith((".weight_u", ".weight_v"))) == counts["spectral_norm_u_v_numel"]
    assert sum(isinstance(module, SpectralNormConv) for module in net.modules()) == counts["spectral_norm_layers"]
    for entry in manifest["modules"]:
        module = net.get_submodule(entry["path"])
        assert type(module).__name__ == entry["type"], entry["path"]
        for alias in entry["aliases"]:
            assert net.get_submodule(alias) is module
        if entry["type"] == "InstanceNorm2d":
            assert (module.num_features, module.affine, module.eps, module.track_running_stats) == (
                entry["num_features"], entry["affine"], entry["eps"], entry["track_running_stats"])
            continue
        assert (module.in_channels, module.out_channels) == (entry["in_channels"], entry["out_channels"])
        assert [list(module.kernel_size), list(module.stride), list(module.padding)] == [
            entry["kernel_size"], entry["stride"], entry["padding"]]
        assert list(getattr(module, "output_padding", [0, 0])) == entry.get("output_padding", [0, 0])
        assert (module.bias is not None) == entry["bias"]
        assert entry["path"].endswith(".module") == entry["spectral_norm"]


def test_leaky_relu_slopes_are_the_reference_ones():
    generator = PICNetGenerator(**SMALL_WIDTHS)
    slopes = {name: module.negative_slope for name, module in generator.named_modules()
              if isinstance(module, torch.nn.LeakyReLU)}
    assert slopes
    for name, slope in slopes.items():
        # The README's values: 0.01 inside the attention layer's residual block, 0.1 elsewhere.
        assert slope == (0.01 if name.startswith("attn1.") else 0.1), name
    encoder = PICNetEncoder(**SMALL_WIDTHS)
    assert {module.negative_slope for module in encoder.modules() if isinstance(module, torch.nn.LeakyReLU)} == {0.1}
