"""Safe, strict loading of checkpoint files shared by every deep adapter.

Checkpoints are untrusted input: ``.pt``/``.pth``/``.ckpt`` files are read with
``torch.load(..., weights_only=True)`` and ``.safetensors`` with safetensors. Errors name the file
and say what to do, and key mismatches list the missing and unexpected keys.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import torch
from torch import nn


ModuleT = TypeVar("ModuleT", bound=nn.Module)


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the fix."""


#: How a ``torch.save`` file begins: a zip archive (torch >= 1.6) or a pickle (the legacy format).
_TORCH_FILE_MAGICS = (b"PK\x03\x04", b"\x80")
#: Lines of torch's ``weights_only`` refusal that are advice (often to disable the protection), not the reason.
#: Reasons of ``torch.load`` failures that mean the bytes of a real checkpoint are incomplete or altered.
_DAMAGED = re.compile(r"EOF|central directory|zip archive|truncat|corrupt", re.IGNORECASE)
_TORCH_ADVICE = re.compile(r"weights.only|check the documentation|please file an issue|trusted source", re.IGNORECASE)


def read_checkpoint(path: Path | str, *, safe_globals: Iterable[Any] = ()) -> Any:
    """Read a checkpoint file without executing code from it.

    Parameters
    ----------
    path : path-like
        A ``.safetensors`` file, or any file written by ``torch.save``.
    safe_globals : iterable, optional
        Extra classes or functions that ``weights_only`` unpickling may reconstruct (e.g. a
        stand-in for a config class pickled into a Lightning checkpoint).

    Returns
    -------
    object
        For safetensors a ``dict[str, Tensor]``; otherwise whatever the file holds.

    Raises
    ------
    CheckpointError
        One sentence naming the file and what is wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: pass the checkpoint file itself")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path")
    try:
        with path.open("rb") as stream:
            head = stream.read(4)
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} cannot be opened ({error.strerror or error})") from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): download or copy it again")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({_first_line(error)}): "
                                  "it is truncated or not a safetensors file") from None
    if not head.startswith(_TORCH_FILE_MAGICS):
        raise CheckpointError(f"checkpoint {path} is not a torch.save file (it is neither a zip archive nor a "
                              "pickle): pass the checkpoint file the method's authors released")
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            # torch warns about pickle protocols it reads fine; the refusal, if any, is the message that matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError:
        raise CheckpointError(f"checkpoint {path} ends early: it is truncated, download or copy it again") from None
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, KeyError, ...
        reason = _torch_reason(error)
        if _DAMAGED.search(reason):
            raise CheckpointError(f"checkpoint {path} is truncated or damaged ({reason}): download or copy it "
                                  "again") from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely ({reason}); it must be a torch.save file of "
            "tensors and plain containers, or a .safetensors file"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _torch_reason(error: BaseException) -> str:
    """The line of a ``torch.load`` error that says what is wrong, without torch's advice."""
    text = str(error)
    if "weights only load failed" not in text.lower():
        # e.g. "PytorchStreamReader failed reading zip archive: failed finding central directory. This is ..."
        return _first_line(error).split(". ")[0].rstrip(".")
    for line in text.splitlines():
        reason = line.split("WeightsUnpickler error:")[-1].strip()
        if reason and not _TORCH_ADVICE.search(reason):
            # "Unsupported global: GLOBAL x was not an allowed global by default. Please use ..." keeps its first sentence.
            return reason.split(". ")[0].rstrip(".")
    return "it holds objects other than tensors and plain containers"


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it; keys without it are kept unchanged."""
    return {(key[len(prefix):] if key.startswith(prefix) else key): value for key, value in state.items()}


def _summarise(keys: list[Any], limit: int = 8) -> str:
    shown = ", ".join(str(key) for key in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_fits(
    module: nn.Module,
    state: Mapping[str, Any],
    source: Path | str,
    *,
    allow_missing: Iterable[str] = (),
) -> None:
    """Check that ``state`` has exactly ``module``'s keys (less ``allow_missing``) and shapes.

    ``module`` may live on the meta device: only its keys and shapes are read.

    Raises
    ------
    CheckpointError
        With the file name, the missing and unexpected keys, and shape mismatches, in one message.
    """
    expected = module.state_dict()
    allowed = set(allow_missing)
    not_tensors = [key for key, value in state.items() if not torch.is_tensor(value)]
    missing = [key for key in expected if key not in state and key not in allowed]
    unexpected = [key for key in state if key not in expected and key not in not_tensors]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and key not in not_tensors and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched or not_tensors:
        parts = []
        if not_tensors:
            parts.append(f"entries that are not tensors: {_summarise(not_tensors)}")
        if missing:
            parts.append(f"missing keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarise(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches (file vs model): {_summarise(mismatched)}")
        raise CheckpointError(
            f"checkpoint {source} does not fit {type(module).__name__} ({'; '.join(parts)}); "
            "check that the file is for this method and configuration"
        )


def load_state_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: Path | str,
    *,
    allow_missing: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``module``; every key must match unless listed in ``allow_missing``.

    Raises
    ------
    CheckpointError
        See `check_state_fits`.
    """
    allowed = set(allow_missing)
    check_state_fits(module, state, source, allow_missing=allowed)
    module.load_state_dict(state, strict=not allowed)


def build_and_load(
    build: Callable[[], ModuleT],
    state: Mapping[str, Any],
    source: Path | str,
    *,
    allow_missing: Callable[[nn.Module], Iterable[str]] | None = None,
) -> ModuleT:
    """Build a network for ``state`` and load it strictly, checking keys and shapes before allocating.

    Architectures are read from checkpoint files (widths from tensor shapes, configs from metadata),
    so a hostile or mistaken file could describe a network far larger than itself. ``build`` runs
    first on the meta device, where parameters take no memory; only when ``state`` fits that
    skeleton is the network built for real, so no network larger than the file is ever allocated.

    Parameters
    ----------
    build : callable
        Makes the network; called twice (meta device, then the default device).
    state : mapping
        The state dict read from ``source``.
    source : path-like
        The file, for messages.
    allow_missing : callable, optional
        Given the network, the keys ``state`` may lack (they keep their fresh initialisation).

    Raises
    ------
    CheckpointError
        The network cannot be built from what the file describes, or the file does not fit it.
    """
    try:
        with torch.device("meta"):
            skeleton = build()
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {source} describes a network that cannot be built ({_first_line(error)}); "
                              "check that the file is for this method") from None
    allowed = list(allow_missing(skeleton)) if allow_missing is not None else []
    check_state_fits(skeleton, state, source, allow_missing=allowed)
    module = build()
    load_state_strict(module, state, source, allow_missing=allowed)
    return module
