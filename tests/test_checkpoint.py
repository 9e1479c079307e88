"""Bad weights files give one sentence naming the file, for every deep method and every kind of damage.

Each deep method reads its checkpoint from a different place (a file, or a file inside a folder); the
`LAYOUTS` put a damaged file in that place, next to intact replicas of the others, and the adapter must
refuse it with a `CheckpointError` or `MethodUnavailable` whose message names the damaged file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from conftest import ict_replica_folder, pluralistic_replica_folder, shared_path

from methods import context_encoder, lama
from methods.base import MethodUnavailable
from methods.checkpoint import CheckpointError, build_and_load, read_checkpoint
from methods.registry import create_method


def _golden_state_file(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / f"{name}_state.pt"
        torch.save(torch.load(shared_path("golden", name, "golden_small.pt"), weights_only=True)["state_dict"], path)
        return path

    return make


def _single_file(make_good: Callable[[Path], Path], suffix: str) -> Callable[[Path], tuple[Path, Path, Path]]:
    """A layout where ``--weights`` is the checkpoint file itself."""

    def layout(folder: Path) -> tuple[Path, Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        good = make_good(folder)
        target = folder / f"weights{suffix}"
        return target, target, good

    return layout


def _pluralistic(folder: Path) -> tuple[Path, Path, Path]:
    weights = pluralistic_replica_folder(folder / "pluralistic")
    target = weights / "latest_net_E.pth"
    good = target.resolve()
    target.unlink()
    return weights, target, good


def _ict(folder: Path) -> tuple[Path, Path, Path]:
    weights = ict_replica_folder(folder / "ckpts_ICT")
    target = weights / "Transformer" / "Places2_Nature.pth"
    good = target.resolve()
    target.unlink()
    return weights, target, good


#: method -> layout(folder) -> (the --weights path, where the damaged file goes, an intact file for that place)
LAYOUTS: dict[str, Callable[[Path], tuple[Path, Path, Path]]] = {
    "lama": _single_file(_golden_state_file("lama"), ".ckpt"),
    "relama-cbam": _single_file(_golden_state_file("relama_cbam"), ".pt"),
    "context-encoder": _single_file(
        lambda folder: shared_path("golden", "context_encoder", "replica", "replica_netG_streetview_small.pth"), ".pth"),
    "pluralistic": _pluralistic,
    "ict": _ict,
}

#: Options the replicas need (the ICT replica is not a released configuration, so its head count is given).
OPTIONS: dict[str, dict[str, Any]] = {"ict": {"n_head": 2, "progress": False}}


def _first_tensor_widened(content: Any) -> Any:
    """``content`` with its first tensor one row larger (every other entry unchanged)."""
    done = False

    def visit(value: Any) -> Any:
        nonlocal done
        if isinstance(value, dict):
            return {key: visit(item) for key, item in value.items()}
        if torch.is_tensor(value) and value.dim() >= 1 and not done:
            done = True
            return torch.cat([value, value[:1]])
        return value

    return visit(content)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _write_damage(kind: str, target: Path, good: Path) -> None:
    good_bytes = good.read_bytes()
    if kind == "missing":
        return
    if kind == "folder":
        target.mkdir()
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "random bytes":
        target.write_bytes(bytes(range(7, 250)) * 40)
    elif kind == "text":
        target.write_text("these are not weights\n")
    elif kind == "truncated":
        target.write_bytes(good_bytes[: len(good_bytes) // 2])
    elif kind == "pickled code":
        torch.save({"state_dict": _Evil()}, target)
    elif kind == "wrong shapes":
        torch.save(_first_tensor_widened(read_checkpoint(good)), target)
    else:
        raise AssertionError(kind)


DAMAGE = ["missing", "folder", "empty", "random bytes", "text", "truncated", "pickled code", "wrong shapes"]


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("method", list(LAYOUTS))
def test_bad_weights_are_one_sentence_naming_the_file(method: str, kind: str, tmp_path, capfd) -> None:
    weights, target, good = LAYOUTS[method](tmp_path)
    _write_damage(kind, target, good)
    with pytest.raises((CheckpointError, MethodUnavailable)) as error:
        create_method(method, weights=weights, **OPTIONS.get(method, {}))
    message = str(error.value)
    assert target.name in message and "\n" not in message
    # torch's advice to turn the protection off must never reach the user.
    assert "weights_only" not in message and "trusted source" not in message
    if kind == "pickled code":
        assert "posix.system" in message or "_Evil" in message
    if kind == "wrong shapes":
        assert "does not fit" in message or "shapes" in message
    captured = capfd.readouterr()
    assert "this must never run" not in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_safetensors_metadata_that_is_not_json_names_the_file(tmp_path) -> None:
    from safetensors.torch import save_file

    state = read_checkpoint(shared_path("golden", "lama", "replica", "replica_best_small.ckpt"),
                            safe_globals=lama.LIGHTNING_SAFE_GLOBALS)["state_dict"]
    generator = {key[len("generator."):]: value.contiguous() for key, value in state.items()
                 if key.startswith("generator.")}
    path = tmp_path / "broken_meta.safetensors"
    save_file(generator, str(path), metadata={"generator_config": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON") as error:
        create_method("lama", weights=path)
    assert str(path) in str(error.value)
    save_file(generator, str(path), metadata={"generator_config": "[1, 2]"})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        create_method("lama", weights=path)


def test_a_config_larger_than_the_weights_is_refused_before_building(tmp_path, monkeypatch) -> None:
    from safetensors.torch import save_file

    state = read_checkpoint(shared_path("golden", "lama", "replica", "replica_best_small.ckpt"),
                            safe_globals=lama.LIGHTNING_SAFE_GLOBALS)
    generator = {key[len("generator."):]: value.contiguous() for key, value in state["state_dict"].items()
                 if key.startswith("generator.")}
    config = lama.read_generator_checkpoint(shared_path("golden", "lama", "replica", "replica_best_small.ckpt")).config
    path = tmp_path / "huge_config.safetensors"
    # ngf 16384 is a 19 GB generator; the file holds a few MB.
    save_file(generator, str(path), metadata={"generator_config": json.dumps({**config, "ngf": 16384})})
    built: list[Any] = []
    monkeypatch.setattr(lama, "build_generator", lambda *args, **kwargs: built.append(args) or pytest.fail("built"))
    with pytest.raises(CheckpointError, match="ngf 16384 but the weights have 16") as error:
        create_method("lama", weights=path)
    assert str(path) in str(error.value)
    assert not built


def test_widths_read_from_shapes_are_checked_on_the_meta_device(tmp_path, monkeypatch) -> None:
    content = read_checkpoint(shared_path("golden", "context_encoder", "replica", "replica_netG_streetview_small.pth"))
    state = dict(content["state_dict"])
    # A first layer 4096 wide makes the adapter build a generator of about 45 GB unless it checks first.
    state["main.0.weight"] = torch.zeros(4096, *state["main.0.weight"].shape[1:])
    path = tmp_path / "wide.pth"
    torch.save({"state_dict": state}, path)
    devices: list[str] = []
    real_class = context_encoder.ContextEncoderGenerator

    def recording(**widths: int) -> torch.nn.Module:
        devices.append(str(torch.get_default_device()))
        return real_class(**widths)

    monkeypatch.setattr(context_encoder, "ContextEncoderGenerator", recording)
    with pytest.raises(CheckpointError, match="shape mismatches") as error:
        create_method("context-encoder", weights=path)
    assert str(path) in str(error.value)
    assert devices == ["meta"]


def test_build_and_load_names_a_network_that_cannot_be_built(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="cannot be built") as error:
        build_and_load(lambda: torch.nn.Linear(-3, 2), {}, tmp_path / "odd.pt")
    assert "odd.pt" in str(error.value)


def test_intact_weights_still_load(tmp_path) -> None:
    for method, layout in LAYOUTS.items():
        weights, target, good = layout(tmp_path / method.replace("-", "_"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(good, target)
        assert create_method(method, weights=weights, **OPTIONS.get(method, {})).name == method


class _Unlisted:
    """A class that weights-only unpickling does not know."""


def test_refusal_quotes_torch_reason_not_its_advice(tmp_path) -> None:
    path = tmp_path / "custom.pt"
    torch.save({"config": _Unlisted()}, path)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert "custom.pt" in message and "_Unlisted" in message and "GLOBAL" in message
    assert "add_safe_globals" not in message and "weights_only" not in message and "\n" not in message


@pytest.mark.parametrize("kind", ["empty", "random bytes", "text", "truncated"])
def test_damaged_safetensors_name_the_file(kind: str, tmp_path) -> None:
    good = Path(lama.__file__).parent / "data" / "lama_celebahq64.safetensors"
    target = tmp_path / "weights.safetensors"
    _write_damage(kind, target, good)
    with pytest.raises(CheckpointError) as error:
        create_method("lama", weights=target)
    assert str(target) in str(error.value) and "\n" not in str(error.value)


def test_a_config_of_an_unknown_kind_names_the_file(tmp_path) -> None:
    from safetensors.torch import save_file

    generator = lama.read_generator_checkpoint(shared_path("golden", "lama", "replica", "replica_best_small.ckpt"))
    path = tmp_path / "odd_kind.safetensors"
    save_file({key: value.contiguous() for key, value in generator.state.items()}, str(path),
              metadata={"generator_config": json.dumps({**generator.config, "kind": "mystery"})})
    with pytest.raises(CheckpointError, match="does not know") as error:
        create_method("lama", weights=path)
    assert str(path) in str(error.value)
