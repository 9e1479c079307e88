"""Safe, strict loading of checkpoint files shared by every deep adapter.

Checkpoints are untrusted input: ``.pt``/``.pth``/``.ckpt`` files are read with
``torch.load(..., weights_only=True)`` and ``.safetensors`` with safetensors. Errors name the file
and say what to do, and key mismatches list the missing and unexpected keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the fix."""


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
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file: check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({error})") from None
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely ({first_line}); it must be a torch.save file of "
            "tensors and plain containers, or a .safetensors file"
        ) from None


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key that has it; keys without it are kept unchanged."""
    return {(key[len(prefix):] if key.startswith(prefix) else key): value for key, value in state.items()}


def _summarise(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


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
        With the file name, the missing and unexpected keys, and shape mismatches, in one message.
    """
    expected = module.state_dict()
    allowed = set(allow_missing)
    missing = [key for key in expected if key not in state and key not in allowed]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
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
    module.load_state_dict(state, strict=not allowed)
