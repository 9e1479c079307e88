"""ICT against the reference's stored tensors (../shared/golden/ict, see its README)."""

from __future__ import annotations

import importlib.resources
import json

import numpy as np
import pytest
import torch

from conftest import shared_path
from methods import ict
from methods.nets.ict_transformer import ICT_TRANSFORMER_CONFIGS, ICTTransformer, ICTTransformerConfig
from methods.nets.ict_upsampler import ICTUpsampler


@pytest.fixture(scope="module")
def golden_transformer() -> dict:
    return torch.load(shared_path("golden", "ict", "golden_transformer_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def golden_upsampler() -> dict:
    return torch.load(shared_path("golden", "ict", "golden_upsampler_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def transformer(golden_transformer) -> ICTTransformer:
    config = golden_transformer["config"]
    model = ICTTransformer(ICTTransformerConfig(
        grid_size=config["image_size"], n_layer=config["n_layer"], n_head=config["n_head"],
        n_embd=config["n_embd"], vocab_size=config["vocab_size"], layer_norm_eps=config["layer_norm_eps"],
    ))
    state = dict(golden_transformer["state_dict"])
    size = config["block_size"]
    for key in golden_transformer["omitted_buffer_keys"]:
        state[key] = torch.tril(torch.ones(size, size)).view(1, 1, size, size)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def upsampler(golden_upsampler) -> ICTUpsampler:
    config = golden_upsampler["config"]
    model = ICTUpsampler(base_width=config["base_width"], residual_blocks=config["residual_blocks"])
    model.load_state_dict(golden_upsampler["state_dict"], strict=True)
    return model.eval()


def test_packaged_palette_is_the_released_one(golden_transformer):
    released = np.load(shared_path("golden", "ict", "kmeans_centers.npy"))
    with importlib.resources.files("methods.data").joinpath("ict_kmeans_centers.npy").open("rb") as handle:
        assert np.array_equal(np.load(handle), released)
    palette = ict.palette_255()
    assert palette.dtype == np.float32
    assert np.array_equal(palette, golden_transformer["palette_255"].numpy())
    assert len(np.unique(palette, axis=0)) == 512
    assert np.array_equal(ict.quantise(palette.astype(np.uint8)), np.arange(512))


def test_transformer_preprocessing_and_quantisation(golden_transformer):
    example = golden_transformer["example"]
    small, tokens, missing = ict.reference_transformer_inputs(
        example["image_256"].numpy(), example["mask_256"].numpy(), 32)
    assert np.array_equal(small, example["image_32"].numpy())
    assert np.array_equal(ict.quantise(small), example["tokens"].numpy())
    assert np.array_equal(tokens, example["input_ids"][0].numpy())
    assert np.array_equal(missing, example["mask_32"].numpy())
    assert np.array_equal(missing, example["input_mask"][0].numpy())
    assert int(missing.sum()) == 142
    assert np.array_equal(ict.dequantise(example["tokens"].numpy(), 32), example["dequant_32"].numpy())


def test_quantisation_of_random_pixels(golden_transformer):
    pin = golden_transformer["quant_random"]
    assert np.array_equal(ict.quantise(pin["pixels_32"].numpy()), pin["tokens"].numpy())
    assert np.array_equal(ict.dequantise(pin["tokens"].numpy(), 32), pin["dequant_32"].numpy())


def test_transformer_logits(golden_transformer, transformer):
    example = golden_transformer["example"]
    with torch.no_grad():
        logits = transformer(example["input_ids"], example["input_mask"])
    torch.testing.assert_close(logits, example["logits"], atol=1e-6, rtol=0)


def test_single_position_logits_equal_full_forward(golden_transformer, transformer):
    example = golden_transformer["example"]
    ids, missing = example["input_ids"].repeat(2, 1), example["input_mask"].repeat(2, 1)
    with torch.no_grad():
        full = transformer(ids, missing)
        for position in (0, 3, 88, 500, 1019, 1023):
            assert torch.equal(transformer(ids, missing, position=position), full[:, position])


def test_top_k_filter(golden_transformer):
    pin = golden_transformer["topk"]
    filtered = ict.top_k_filter(pin["logits_in"], pin["k"])
    assert torch.equal(filtered, pin["logits_out"])
    assert int(torch.isfinite(filtered).sum()) >= pin["k"]


def test_seeded_sampling_is_exact(golden_transformer, transformer):
    """Optional-strength check: exact tokens need bit-identical logits and the same CPU generator."""
    run = golden_transformer["sampling"]
    generator = torch.Generator().manual_seed(run["seed"])
    tokens, visit_order = ict.sample_tokens(
        transformer, run["context"], run["mask"], top_k=run["top_k"], temperature=run["temperature"],
        generator=generator, fast=True,
    )
    assert visit_order == run["visit_order"].tolist()
    assert torch.equal(tokens, run["tokens_out"])
    priors = np.stack([ict.dequantise(row, 32) for row in tokens.numpy()])
    assert np.array_equal(priors, run["prior_32"].numpy())


def test_upsampler_at_128(golden_transformer, golden_upsampler, upsampler):
    example, forward = golden_transformer["example"], golden_upsampler["forward"]
    prior = golden_transformer["sampling"]["prior_32"].numpy()[:1]
    image, hole, priors = ict.reference_upsampler_inputs(
        example["image_256"].numpy(), example["mask_256"].numpy(), prior, size=forward["size"])
    assert np.array_equal(image, forward["image_u8"].numpy())
    assert np.array_equal(priors[0], forward["prior_u8"].numpy())
    assert np.array_equal(np.repeat(hole[..., None], 3, axis=2) * np.uint8(255), forward["mask_u8"].numpy())
    generator_input = ICTUpsampler.build_input(
        ict.image_to_tensor(image), torch.from_numpy(hole).float()[None, None], ict.image_to_tensor(priors))
    assert torch.equal(generator_input, forward["generator_input"])
    with torch.no_grad():
        output = upsampler(generator_input)
    torch.testing.assert_close(output, forward["output"], atol=1e-5, rtol=0)
    with torch.no_grad():
        stored_input_output = upsampler(forward["generator_input"])
    assert np.array_equal(ict.truncate_to_uint8(stored_input_output), forward["output_u8"].numpy())


def test_upsampler_preprocessing_at_256(golden_transformer, golden_upsampler):
    example, pipeline = golden_transformer["example"], golden_upsampler["pipeline_256"]
    image, hole, priors = ict.reference_upsampler_inputs(
        example["image_256"].numpy(), example["mask_256"].numpy(), pipeline["prior_32"].numpy(), size=256)
    assert np.array_equal(image, pipeline["image_u8"].numpy())
    assert np.array_equal(np.repeat(hole[..., None], 3, axis=2) * np.uint8(255), pipeline["mask_u8"].numpy())
    assert np.array_equal(priors, pipeline["prior_u8"].numpy())


def _manifest(name: str) -> dict:
    return json.loads(shared_path("golden", "ict", name).read_text())


@pytest.mark.parametrize("dataset", ["ImageNet", "FFHQ", "Places2_Nature"])
def test_transformer_matches_manifest(dataset):
    manifest = _manifest(f"manifest_transformer_{dataset}.json")
    config = ICT_TRANSFORMER_CONFIGS[dataset]
    expected = manifest["config"]
    assert (config.block_size, config.grid_size, config.n_layer, config.n_head, config.n_embd) == (
        expected["block_size"], expected["image_size"], expected["n_layer"], expected["n_head"], expected["n_embd"])
    with torch.device("meta"):
        model = ICTTransformer(config)
    state = model.state_dict()
    assert [(key, list(value.shape)) for key, value in state.items()] == [
        (entry["key"], entry["shape"]) for entry in manifest["state_dict"]]
    assert all(value.dtype == torch.float32 for value in state.values())
    assert sum(parameter.numel() for parameter in model.parameters()) == manifest["num_parameters"]
    buffers = {key for key, _ in model.named_buffers(remove_duplicate=False)}
    assert buffers == {entry["key"] for entry in manifest["state_dict"] if entry["kind"] == "buffer"}


def test_upsampler_matches_manifest():
    manifest = _manifest("manifest_upsampler.json")
    with torch.device("meta"):
        model = ICTUpsampler()
    assert [(key, list(value.shape)) for key, value in model.state_dict().items()] == [
        (entry["key"], entry["shape"]) for entry in manifest["state_dict"]]
    assert sum(parameter.numel() for parameter in model.parameters()) == manifest["num_parameters"]
