"""Parsing of ``--weights METHOD=PATH`` options."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bench.errors import UserError
from methods.registry import list_methods


def parse_weights_options(values: Iterable[str]) -> dict[str, Path]:
    """Map method name to weights path from ``METHOD=PATH`` strings.

    Unknown names are refused, and so is a method given two different paths; the same pair given
    twice counts once.
    """
    weights: dict[str, Path] = {}
    known = list_methods()
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--weights {value!r} is not METHOD=PATH, e.g. --weights lama=big-lama/models/best.ckpt")
        if name not in known:
            raise UserError(f"--weights names unknown method {name!r}; known methods: {', '.join(known)}")
        chosen = Path(path).expanduser()
        if weights.get(name, chosen) != chosen:
            raise UserError(f"--weights gives {name} two files ({weights[name]} and {chosen}): keep one")
        weights[name] = chosen
    return weights
