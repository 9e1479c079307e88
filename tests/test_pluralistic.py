"""The Pluralistic adapter: checkpoint loading, resolution policy, seeded sampling, availability.

Uses the small replicas of the released ``latest_net_E/G.pth`` files from
``../shared/golden/pluralistic/replica`` (golden weights, ``module.`` prefix, legacy torch format).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import pluralistic_replica_folder, shared_path
from methods.base import Family, MethodUnavailable
from methods.checkpoint import CheckpointError
from methods.nets.pluralistic import attention_mask
from methods.pluralistic import (
    ENCODER_FILE,
    GENERATOR_FILE,
    Pluralistic,
    load_pluralistic,
    read_reference_state,
)
from methods.registry import available_methods, create_method, get_method_class

@pytest.fixture(scope="module")
def replica_dir(tmp_path_factory) -> Path:
    """A checkpoint folder laid out like the reference's, holding the replicas."""
    return pluralistic_replica_folder(tmp_path_factory.mktemp("pluralistic_weights"))


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(shared_path("golden", "pluralistic", "golden_small.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def padding_adapter(replica_dir) -> Pluralistic:
    """Runs at the input size (padded to 32), which keeps the tests small and fast."""
    return Pluralistic(replica_dir, working_size=None)


def _case(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 4: height // 2 + 5, width // 5: width // 2 + 7] = True
    return image, mask


def test_registered_with_the_declared_contract():
    cls = get_method_class("pluralistic")
    assert cls is Pluralistic
    assert cls.family is Family.CNN
    assert cls.can_sample and cls.stochastic
    assert (cls.resolution.kind, cls.resolution.value) == ("native", 256)


def test_unavailable_without_weights(tmp_path):
    reason = Pluralistic.unavailable_reason(None)
    assert reason.startswith("weights missing: pass --weights pluralistic=PATH")
    with pytest.raises(MethodUnavailable, match="weights missing"):
        create_method("pluralistic")
    info = {entry.name: entry for entry in available_methods()}["pluralistic"]
    assert not info.available and "--weights pluralistic=" in info.unavailable_reason
    assert "not a folder" in Pluralistic.unavailable_reason(tmp_path / "absent")
    (tmp_path / ENCODER_FILE).write_bytes(b"")
    incomplete = Pluralistic.unavailable_reason(tmp_path)
    assert GENERATOR_FILE in incomplete and "no " + ENCODER_FILE not in incomplete


def test_available_with_a_complete_folder(replica_dir):
    assert Pluralistic.unavailable_reason(replica_dir) is None
    assert isinstance(create_method("pluralistic", replica_dir, working_size=None), Pluralistic)


def test_replicas_reproduce_the_golden_outputs(replica_dir, golden):
    encoder, generator = load_pluralistic(replica_dir)
    assert not encoder.training and not generator.training
    with torch.no_grad():
        mu, std, features = encoder(golden["img_m"])
        mask = attention_mask(golden["mask"], tuple(features[2].shape[-2:]))
        images, attention = generator(golden["z"], features[-1], features[2], mask)
    composed = (1 - golden["mask"]) * images[-1] + golden["mask"] * golden["img_m"]
    for ours, expected in ((mu, golden["mu"]), (std, golden["std"]), (attention, golden["attention"])):
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    for ours, expected in zip(images, golden["img_g"], strict=True):
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(composed, golden["img_out"], atol=1e-4, rtol=0)


def test_exactly_one_leading_module_prefix_is_stripped(replica_dir):
    raw = torch.load(replica_dir / ENCODER_FILE, map_location="cpu", weights_only=True)
    assert all(key.startswith("module.") for key in raw)
    state = read_reference_state(replica_dir / ENCODER_FILE)
    assert "block0.conv1.module.weight_bar" in state
    assert not any(key.startswith("module.") for key in state)


def test_files_without_the_prefix_load_too(tmp_path, replica_dir, golden):
    torch.save(golden["state_dict_E"], tmp_path / ENCODER_FILE)
    torch.save(golden["state_dict_G"], tmp_path / GENERATOR_FILE)
    plain_encoder, plain_generator = load_pluralistic(tmp_path)
    encoder, generator = load_pluralistic(replica_dir)
    for ours, reference in ((plain_encoder, encoder), (plain_generator, generator)):
        for (key, value), (reference_key, reference_value) in zip(ours.state_dict().items(),
                                                                  reference.state_dict().items(), strict=True):
            assert key == reference_key and torch.equal(value, reference_value)


def test_strict_loading_names_the_file_and_the_keys(tmp_path, golden):
    encoder_state = dict(golden["state_dict_E"])
    del encoder_state["prior.bypass.module.weight_u"]
    encoder_state["prior.extra"] = torch.zeros(1)
    torch.save(encoder_state, tmp_path / ENCODER_FILE)
    torch.save(golden["state_dict_G"], tmp_path / GENERATOR_FILE)
    with pytest.raises(CheckpointError) as caught:
        load_pluralistic(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / ENCODER_FILE) in message
    assert "missing keys: prior.bypass.module.weight_u" in message
    assert "unexpected keys: prior.extra" in message


def test_swapped_files_are_refused_readably(tmp_path, replica_dir):
    shutil.copy(replica_dir / GENERATOR_FILE, tmp_path / ENCODER_FILE)
    shutil.copy(replica_dir / ENCODER_FILE, tmp_path / GENERATOR_FILE)
    with pytest.raises(CheckpointError, match="not a Pluralistic encoder"):
        load_pluralistic(tmp_path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path, replica_dir):
    torch.save(torch.zeros(3), tmp_path / ENCODER_FILE)
    shutil.copy(replica_dir / GENERATOR_FILE, tmp_path / GENERATOR_FILE)
    with pytest.raises(CheckpointError, match="plain state dict"):
        load_pluralistic(tmp_path)


def test_options_are_validated(replica_dir, padding_adapter):
    with pytest.raises(ValueError, match="multiple of 32"):
        Pluralistic(replica_dir, working_size=100)
    with pytest.raises(ValueError, match="spectral_state"):
        Pluralistic(replica_dir, spectral_state="keep")
    image, mask = _case(32, 32)
    with pytest.raises(ValueError, match="at least 1"):
        padding_adapter.sample(image, mask, 0, seed=1)
    with pytest.raises(ValueError, match="working_size=256"):
        padding_adapter.inpaint(*_case(600, 600))


@pytest.mark.parametrize("working_size", [256, None])
def test_odd_sizes_come_back_at_the_input_size(replica_dir, working_size):
    adapter = Pluralistic(replica_dir, working_size=working_size)
    image, mask = _case(45, 70)
    result = adapter.inpaint(image, mask, seed=1)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert ("256x256" in adapter.describe()["resolution"]) == (working_size == 256)


def test_padding_policy_keeps_known_pixels_exactly(padding_adapter):
    image, mask = _case(64, 96)
    result = padding_adapter.inpaint(image, mask, seed=2)
    np.testing.assert_array_equal(result[~mask], image[~mask])
    assert not np.array_equal(result[mask], image[mask])


def test_a_seed_reproduces_the_completion(padding_adapter):
    image, mask = _case(64, 64)
    first = padding_adapter.inpaint(image, mask, seed=3)
    np.testing.assert_array_equal(padding_adapter.inpaint(image, mask, seed=3), first)
    assert not np.array_equal(padding_adapter.inpaint(image, mask, seed=4)[mask], first[mask])
    assert "reproducible" in padding_adapter.describe()["spectral-norm u/v"]


def test_sample_draws_n_distinct_completions_reproducibly(padding_adapter):
    image, mask = _case(64, 64, seed=1)
    samples = padding_adapter.sample(image, mask, 3, seed=5)
    assert len(samples) == 3 and all(sample.shape == image.shape for sample in samples)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(samples[i][mask], samples[j][mask])
    for again, sample in zip(padding_adapter.sample(image, mask, 3, seed=5), samples, strict=True):
        np.testing.assert_array_equal(again, sample)
    np.testing.assert_array_equal(samples[0], padding_adapter.inpaint(image, mask, seed=5))


def test_sample_follows_the_reference_test_loop(replica_dir, padding_adapter):
    # One encoder pass, then z_k ~ N(mu, sigma) from one seeded generator and one generator call per
    # sample, the generator's u/v advancing between samples.
    image, mask = _case(64, 64, seed=2)
    known = torch.from_numpy((~mask).astype(np.float32))[None, None]
    tensor = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
    encoder, generator = load_pluralistic(replica_dir)
    noise = torch.Generator().manual_seed(7)
    expected = []
    with torch.no_grad():
        masked = known * tensor
        mu, std, features = encoder(masked)
        scaled_mask = attention_mask(known, tuple(features[2].shape[-2:]))
        for _ in range(2):
            images, _ = generator(torch.normal(mu, std, generator=noise), features[-1], features[2], scaled_mask)
            completed = (1 - known) * images[-1] + known * masked
            pixels = ((completed[0].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255)
            expected.append(np.rint(pixels).astype(np.uint8))
    for ours, reference in zip(padding_adapter.sample(image, mask, 2, seed=7), expected, strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_carry_mode_lets_u_v_drift_across_calls(replica_dir):
    adapter = Pluralistic(replica_dir, working_size=None, spectral_state="carry")
    image, mask = _case(64, 64)
    first = adapter.inpaint(image, mask, seed=3)
    assert not np.array_equal(adapter.inpaint(image, mask, seed=3), first)
    assert "carried" in adapter.describe()["spectral-norm u/v"]
