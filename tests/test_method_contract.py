"""The `Inpainter` contract, checked for every registered method (timm's ``test_models.py`` pattern).

Each method is built with small weights (the golden replicas, tiny generated checkpoints, or the
shipped files) and must keep the image and mask contract, be reproducible for a seed, and honour
every capability it declares. A newly registered method fails here until it gets a builder in
`SMALL_WEIGHTS`.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from bench.run.runner import composite
from conftest import ict_replica_folder, pluralistic_replica_folder, shared_path
from methods.base import Family, Inpainter, MethodUnavailable, Resolution
from methods.lama import save_generator
from methods.nets.configs import build_generator
from methods.registry import create_method, get_method_class, list_methods
from methods.training.config import TrainConfig


def _tiny_generator(arch: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        config = TrainConfig(arch=arch, ngf=4, n_blocks=1).generator_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            generator = build_generator(config).eval()
        path = folder / f"{arch}.safetensors"
        save_generator(generator, path, config)
        return path
    return build


def _no_weights(folder: Path) -> None:
    return None


#: Method name -> function making small weights for it in a folder (None: no weights or the shipped ones).
SMALL_WEIGHTS: dict[str, Callable[[Path], Path | None]] = {
    **{name: _no_weights for name in ("telea", "ns", "fsr-fast", "fsr-best", "shiftmap", "biharmonic",
                                      "lama-celebahq64", "relama-cbam-celebahq64", "lama-scenes", "relama-cbam-scenes")},
    "context-encoder": lambda folder: shared_path("golden", "context_encoder", "replica",
                                                  "replica_netG_streetview_small.pth"),
    "pluralistic": lambda folder: pluralistic_replica_folder(folder / "pluralistic"),
    "ict": lambda folder: ict_replica_folder(folder / "ckpts_ICT"),
    "migan": lambda folder: shared_path("golden", "migan", "replica", "replica_migan_small.pt"),
    "lama": _tiny_generator("lama"),
    "relama-cbam": _tiny_generator("relama-cbam"),
}

#: Options the small weights need (the ICT replica is not a released configuration).
SMALL_OPTIONS: dict[str, dict] = {"ict": {"n_head": 2, "progress": False}}

#: Odd sizes on purpose: no method may assume even or modulo-aligned sides.
SIZES = ((29, 37), (48, 64))
#: Methods too slow for more than one small image per call on a shared CPU.
ONE_SIZE_ONLY = {"fsr-best", "shiftmap", "ict"}


def _pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None]
    image = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), bool)
    mask[height // 3: height // 3 + max(2, height // 6), width // 3: width // 3 + max(2, width // 6)] = True
    return image, mask


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Callable[[str], Inpainter]:
    cache: dict[str, Inpainter] = {}

    def build(name: str) -> Inpainter:
        if name not in cache:
            if name not in SMALL_WEIGHTS:
                pytest.fail(f"method {name!r} has no small-weights builder in SMALL_WEIGHTS: add one so the "
                            "contract covers it")
            weights = SMALL_WEIGHTS[name](tmp_path_factory.mktemp(name.replace("-", "_")))
            cache[name] = create_method(name, weights, device="cpu", **SMALL_OPTIONS.get(name, {}))
        return cache[name]
    return build


METHODS = list_methods()


def _keyword_parameters(function: Callable) -> set[str]:
    return {name for name, parameter in inspect.signature(function).parameters.items()
            if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)}


@pytest.mark.parametrize("name", METHODS)
def test_declarations_are_complete_and_match_the_constructor(name):
    cls = get_method_class(name)
    assert isinstance(cls.family, Family) and isinstance(cls.resolution, Resolution)
    assert cls.summary, "a method says in one line what it is"
    parameters = _keyword_parameters(cls.__init__)
    assert ("weights" in parameters) == (cls.weights_record is not None)
    assert ("device" in parameters) == bool(cls.devices)
    assert set(cls.options) == parameters - {"weights", "device"}, "every constructor option is declared"
    assert set(cls.devices) <= {"cpu", "cuda"}
    overrides_random = cls.with_random_weights.__func__ is not Inpainter.with_random_weights.__func__
    assert not cls.can_use_random_weights or overrides_random
    if cls.can_use_random_weights:
        assert {"seed", "device"} <= _keyword_parameters(cls.with_random_weights)
    assert not cls.can_sample or cls.sample is not Inpainter.sample
    assert not cls.has_erf_network or cls.erf_network is not Inpainter.erf_network


@pytest.mark.parametrize("name", METHODS)
def test_unavailable_methods_explain_themselves(name, tmp_path):
    cls = get_method_class(name)
    record = cls.weights_record
    if record is None:
        assert cls.unavailable_reason(None) is None
        assert "uses no weights" in cls.unavailable_reason(tmp_path / "any.pth")
        return
    absent = tmp_path / "absent"
    assert f"--weights {name}=" in cls.unavailable_reason(absent) or "not found" in cls.unavailable_reason(absent)
    if record.shipped:
        assert cls.unavailable_reason(None) is None
    else:
        reason = cls.unavailable_reason(None)
        assert reason.startswith("weights missing") and f"--weights {name}=PATH" in reason
        with pytest.raises(MethodUnavailable, match=name):
            create_method(name)


SHIPPED = [name for name in METHODS
           if get_method_class(name).weights_record is not None and get_method_class(name).weights_record.shipped]


def test_the_shipped_methods_are_the_suites_own_models():
    assert set(SHIPPED) == {"lama-celebahq64", "relama-cbam-celebahq64", "lama-scenes", "relama-cbam-scenes"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_match_their_record(name):
    record = get_method_class(name).weights_record
    path = record.default_path()
    (file,) = record.files
    assert f"{path.stat().st_size} bytes" == file.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256


@pytest.mark.parametrize("name", METHODS)
def test_any_size_keeps_size_dtype_and_known_pixels(name, built):
    method = built(name)
    for height, width in SIZES[:1] if name in ONE_SIZE_ONLY else SIZES:
        image, mask = _pair(height, width)
        result = method.inpaint(image.copy(), mask.copy(), seed=0)
        assert result.dtype == np.uint8 and result.shape == (height, width, 3)
        final = composite(image, result, mask)
        np.testing.assert_array_equal(final[~mask], image[~mask])


@pytest.mark.parametrize("name", METHODS)
def test_reproducible_for_a_seed_and_seed_free_when_deterministic(name, built):
    method = built(name)
    image, mask = _pair(*SIZES[0], seed=1)
    first = method.inpaint(image, mask, seed=3)
    np.testing.assert_array_equal(first, method.inpaint(image, mask, seed=3))
    if not get_method_class(name).stochastic:
        np.testing.assert_array_equal(first, method.inpaint(image, mask, seed=4))


@pytest.mark.parametrize("name", METHODS)
def test_declared_capabilities_are_honoured(name, built):
    cls = get_method_class(name)
    method = built(name)
    image, mask = _pair(*SIZES[0], seed=2)
    if cls.can_sample:
        samples = method.sample(image, mask, 2, seed=5)
        assert len(samples) == 2 and all(sample.shape == image.shape for sample in samples)
    else:
        with pytest.raises(NotImplementedError):
            method.sample(image, mask, 2, seed=5)
    if cls.has_erf_network:
        module, make_input = method.erf_network()
        images, masks = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
        with torch.no_grad():
            assert module(make_input(images, masks)).shape == (1, 3, 32, 32)
    else:
        with pytest.raises(NotImplementedError):
            method.erf_network()
    if cls.devices:
        assert torch.device(method.device).type == "cpu"
    if cls.training_domain:
        assert method.describe()["training domain"] == cls.training_domain


def test_list_and_weights_show_each_methods_weights_record(capsys, tmp_path):
    from bench.cli.app import main

    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "--weights" in listing and "shipped (lama_celebahq64.safetensors)" in listing
    assert main(["weights", "lama", "telea", "--weights-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "lama: --weights lama=FILE" in shown and "https://github.com/advimman/lama" in shown
    assert "BSD-3-Clause" in shown and "telea: needs no weights" in shown
    assert "entry" not in shown, "naming only methods shows no metric table"
