from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from methods import registry
from methods.base import Family, Inpainter, MethodUnavailable
from methods.registry import available_methods, create_method, get_method_class, list_methods, register_method
from methods.weights_record import WeightsFile, WeightsRecord


def test_builtin_methods_are_registered():
    names = list_methods()
    for name in ("telea", "ns", "fsr-fast", "fsr-best", "shiftmap", "biharmonic"):
        assert name in names


def test_unknown_name_lists_known_methods():
    with pytest.raises(KeyError, match="known methods: .*telea"):
        get_method_class("no-such-method")


def test_duplicate_name_is_refused():
    class Clash(Inpainter):
        name = "telea"
        family = Family.TRADITIONAL

        def inpaint(self, image, mask, *, seed=None):
            return image

    with pytest.raises(ValueError, match="registered twice"):
        register_method(Clash)


def test_register_requires_inpainter_and_family():
    with pytest.raises(TypeError):
        register_method(object)  # type: ignore[arg-type]

    class NoFamily(Inpainter):
        name = "no-family"
        family = "cnn"  # type: ignore[assignment]

        def inpaint(self, image, mask, *, seed=None):
            return image

    with pytest.raises(TypeError, match="family"):
        register_method(NoFamily)


class _NeedsWeights(Inpainter):
    name = "test-needs-weights"
    family = Family.CNN
    weights_record = WeightsRecord(takes="file", what="a test file",
                                   files=(WeightsFile(path="", source="this test", licence="none"),),
                                   verification="none")

    def __init__(self, weights: Path) -> None:
        self.weights = weights

    def inpaint(self, image, mask, *, seed=None):
        return image


def test_method_without_weights_is_unavailable_with_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, _NeedsWeights.name, _NeedsWeights)
    with pytest.raises(MethodUnavailable, match="weights missing: pass --weights test-needs-weights=PATH"):
        create_method(_NeedsWeights.name)
    with pytest.raises(MethodUnavailable, match="not found"):
        create_method(_NeedsWeights.name, weights=tmp_path / "absent.pth")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert create_method(_NeedsWeights.name, weights=weights).weights == weights
    infos = {info.name: info for info in available_methods({_NeedsWeights.name: weights})}
    assert infos[_NeedsWeights.name].available
    assert not {info.name: info for info in available_methods()}[_NeedsWeights.name].available


def test_entry_point_plugins_are_loaded(monkeypatch):
    loaded = []

    class FakeEntryPoint:
        name = "plugin"
        value = "plugin_module:Method"

        def load(self):
            class PluginMethod(Inpainter):
                name = "test-plugin-method"
                family = Family.TRADITIONAL

                def inpaint(self, image, mask, *, seed=None):
                    return np.zeros_like(image)

            register_method(PluginMethod)
            loaded.append(PluginMethod)

    class BrokenEntryPoint:
        name = "broken"
        value = "broken:thing"

        def load(self):
            raise ImportError("no module named broken")

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [FakeEntryPoint(), BrokenEntryPoint()] if group == registry.ENTRY_POINT_GROUP else [])
    with pytest.warns(UserWarning, match="broken"):
        names = list_methods()
    assert "test-plugin-method" in names and loaded


def test_one_device_policy_for_every_method():
    import torch

    from methods.registry import pick_device, resolve_device

    deep, classical = get_method_class("lama"), get_method_class("telea")
    assert resolve_device(classical, "cuda:1") == "cpu"
    assert resolve_device(deep, "cpu") == "cpu"
    assert resolve_device(deep, "auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MethodUnavailable, match="runs on cpu, not on cuda"):
        pick_device("cuda", ("cpu",), "a CPU-only metric")
    if not torch.cuda.is_available():
        with pytest.raises(MethodUnavailable, match="no GPU"):
            resolve_device(deep, "cuda:0")


def test_device_option_accepts_the_policy_words_only():
    import argparse

    from bench.cli.options import device_option

    assert [device_option(text) for text in ("auto", "cpu", "cuda", "cuda:1")] == ["auto", "cpu", "cuda", "cuda:1"]
    for text in ("gpu", "cuda:", "mps"):
        with pytest.raises(argparse.ArgumentTypeError, match="auto, cpu, cuda or cuda:N"):
            device_option(text)
