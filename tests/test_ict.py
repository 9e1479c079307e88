"""ICT adapter: checkpoint loading (replicas of the released files), strict errors, the pipeline modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ict_replica_folder, shared_path
from methods import ict
from methods.base import Family, MethodUnavailable
from methods.checkpoint import CheckpointError
from methods.registry import create_method, get_method_class, list_methods


@pytest.fixture(scope="module")
def replica_dir() -> Path:
    return shared_path("golden", "ict", "replica")


@pytest.fixture(scope="module")
def golden_transformer() -> dict:
    return torch.load(shared_path("golden", "ict", "golden_transformer_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """A ckpts_ICT folder in the released layout holding the replicas as the Places2_Nature variant."""
    return ict_replica_folder(tmp_path_factory.mktemp("ckpts_ICT"))


@pytest.fixture(scope="module")
def adapters(weights_dir) -> dict[str, ict.ICT]:
    return {mode: ict.ICT(weights_dir, mode=mode, n_head=2, progress=False) for mode in ict.MODES}


def _odd_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), dtype=bool)
    mask[12:15, 24:27] = True
    return image, mask


def test_registered_as_stochastic_transformer():
    assert "ict" in list_methods()
    cls = get_method_class("ict")
    assert cls is ict.ICT
    assert cls.family is Family.TRANSFORMER and cls.can_sample and cls.stochastic


def test_unavailable_without_weights(tmp_path):
    assert ict.ICT.unavailable_reason(None).startswith("weights missing: pass --weights ict=PATH")
    assert "not a folder" in ict.ICT.unavailable_reason(tmp_path / "absent")
    assert "weights incomplete" in ict.ICT.unavailable_reason(tmp_path)
    with pytest.raises(MethodUnavailable, match="weights missing"):
        create_method("ict")


def test_replica_transformer_loads_and_reproduces_logits(replica_dir, golden_transformer):
    model = ict.load_transformer(replica_dir / "replica_transformer_small.pth", n_head=2)
    for key, value in golden_transformer["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
    example = golden_transformer["example"]
    with torch.no_grad():
        logits = model(example["input_ids"], example["input_mask"])
    assert torch.equal(logits, example["logits"])


def test_replica_upsampler_strips_module_prefix_and_reproduces_output(replica_dir):
    forward = torch.load(shared_path("golden", "ict", "golden_upsampler_small.pt"), weights_only=True)["forward"]
    raw = torch.load(replica_dir / "replica_InpaintingModel_gen_small.pth", map_location="cpu", weights_only=True)
    assert all(key.startswith("module.") for key in raw["generator"])
    model = ict.load_upsampler(replica_dir / "replica_InpaintingModel_gen_small.pth")
    with torch.no_grad():
        assert torch.equal(model(forward["generator_input"]), forward["output"])


def test_transformer_file_formats_and_strict_errors(tmp_path, replica_dir, golden_transformer):
    state = ict.load_transformer(replica_dir / "replica_transformer_small.pth", n_head=2).state_dict()
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    assert isinstance(ict.load_transformer(bare, n_head=2), ict.ICTTransformer)
    bare_pth = tmp_path / "bare.pth"
    torch.save(state, bare_pth)
    with pytest.raises(CheckpointError, match="bare.pth has no 'model' state dict"):
        ict.load_transformer(bare_pth, n_head=2)
    incomplete = tmp_path / "incomplete.pth"
    torch.save({"model": {key: value for key, value in state.items() if key != "blocks.1.attn.mask"}}, incomplete)
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.1\.attn\.mask"):
        ict.load_transformer(incomplete, n_head=2)
    with pytest.raises(CheckpointError, match="released Places2_Nature transformer.*n_head"):
        ict.load_transformer(replica_dir / "replica_transformer_small.pth", "Places2_Nature")


def test_upsampler_strict_errors(tmp_path, replica_dir):
    with pytest.raises(CheckpointError, match="has no 'generator' state dict"):
        ict.load_upsampler(replica_dir / "replica_transformer_small.pth")
    state = ict.load_upsampler(replica_dir / "replica_InpaintingModel_gen_small.pth").state_dict()
    state["decoder.9.weight"] = torch.zeros(1)
    extra = tmp_path / "extra.pth"
    torch.save({"iteration": 1, "generator": state}, extra)
    with pytest.raises(CheckpointError, match=r"unexpected keys: decoder\.9\.weight"):
        ict.load_upsampler(extra)


def test_dataset_selection(weights_dir, tmp_path):
    assert ict.installed_datasets(weights_dir) == ["Places2_Nature"]
    nested = tmp_path / "download"
    nested.mkdir()
    (nested / "ckpts_ICT").symlink_to(weights_dir)
    assert ict.installed_datasets(nested) == ["Places2_Nature"]
    with pytest.raises(CheckpointError, match="FFHQ checkpoints are not under"):
        ict.ICT(weights_dir, dataset="FFHQ", n_head=2)
    with pytest.raises(ValueError, match="dataset must be one of"):
        ict.ICT(weights_dir, dataset="CelebA", n_head=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        ict.ICT(weights_dir, mode="merge", n_head=2)


@pytest.mark.parametrize("mode", ict.MODES)
def test_adapter_on_odd_size(adapters, mode):
    adapter = adapters[mode]
    image, mask = _odd_pair()
    result = adapter.inpaint(image, mask, seed=1)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert adapter.stats.forward_passes > 0
    assert adapter.describe()["mode"].startswith(mode)
    if mode == "default":
        assert np.array_equal(result[~mask], image[~mask])
        hidden_changed = image.copy()
        hidden_changed[mask] = 255 - hidden_changed[mask]
        assert np.array_equal(adapter.inpaint(hidden_changed, mask, seed=1), result)


def test_seed_reproducibility_and_samples(adapters):
    adapter = adapters["default"]
    image, mask = _odd_pair()
    first = adapter.inpaint(image, mask, seed=7)
    assert np.array_equal(adapter.inpaint(image, mask, seed=7), first)
    assert not np.array_equal(adapter.inpaint(image, mask, seed=8), first)
    samples = adapter.sample(image, mask, 3, seed=7)
    assert len(samples) == 3 and adapter.stats.samples == 3
    assert all(sample.shape == image.shape for sample in samples)
    assert all(np.array_equal(a, b) for a, b in zip(samples, adapter.sample(image, mask, 3, seed=7)))


def test_fast_sampler_equals_reference_sampler(adapters):
    model = adapters["default"].transformer
    length = model.config.block_size
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(rng.integers(0, 512, length)).repeat(3, 1)
    missing = torch.zeros(3, length)
    missing[:, [0, 1, 40, 41, 77, 500, 1018, 1021, 1023]] = 1.0
    runs = [
        ict.sample_tokens(model, tokens, missing, generator=torch.Generator().manual_seed(11), fast=fast)
        for fast in (False, True)
    ]
    assert runs[0][1] == runs[1][1] == [0, 1, 40, 41, 77, 500, 1018, 1021, 1023]
    assert torch.equal(runs[0][0], runs[1][0])
    assert not torch.equal(runs[0][0], tokens)


def test_contributing_holes_covers_every_pixel_the_filter_reads():
    rng = np.random.default_rng(1)
    mask = rng.random((61, 45)) > 0.97
    for (width, height), resample, support in [
        ((32, 32), Image.Resampling.BILINEAR, 1.0),
        ((256, 256), Image.Resampling.BICUBIC, 2.0),
        ((20, 50), Image.Resampling.BICUBIC, 2.0),
    ]:
        spread = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((width, height), resample=resample))
        rule = ict.contributing_holes(mask, width, height, support)
        assert np.all(rule[np.abs(spread) > 0])
    assert np.array_equal(ict.contributing_holes(mask, 45, 61, 2.0), mask)


def test_random_weights_instance_for_timing():
    with pytest.raises(ValueError, match="dataset must be one of"):
        ict.ICT.with_random_weights("CelebA")
    adapter = ict.ICT.with_random_weights("Places2_Nature", progress=False)
    assert adapter.transformer.config == ict.ICT_TRANSFORMER_CONFIGS["Places2_Nature"]
    assert adapter.describe()["weights"] == "random (timing only)"
    assert adapter.grid_size == 32
