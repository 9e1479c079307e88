"""``relama-bench list``: every registered method, its family, and whether it can run now (with the
weights given, else those fetched into the cache)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.cli.options import parse_weights_options
from bench.run.fetch import FetchedWeightsChanged, fetch_command, fetchable, fetched_weights
from methods.registry import MethodInfo, available_methods, get_method_class
from methods.weights_record import WeightsRecord


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list the registered methods and whether they can run")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                        help="weights for a method (repeatable)")
    parser.set_defaults(func=run)


def weights_cell(record: WeightsRecord | None) -> str:
    """What ``--weights`` takes for a method, in a few words (details: ``relama-bench weights``)."""
    if record is None:
        return "none needed"
    if record.shipped:
        return f"shipped ({record.shipped})"
    return f"a {record.takes}"


def _default_weights(given: dict[str, Path]) -> tuple[dict[str, Path], dict[str, str]]:
    """``given`` plus the fetched weights of every other method with a release; reasons for changed ones."""
    weights, changed = dict(given), {}
    for method in fetchable():
        if method in weights:
            continue
        try:
            fetched = fetched_weights(method)
        except FetchedWeightsChanged as error:
            changed[method] = str(error)
            continue
        if fetched is not None:
            weights[method] = fetched
    return weights, changed


def _can_run(info: MethodInfo, changed: dict[str, str]) -> str:
    if info.name in changed:
        return f"no: {changed[info.name]}"
    if info.available:
        return "yes"
    hint = f"; or run `{fetch_command(info.name)}`" if info.weights is not None and info.weights.release else ""
    return f"no: {info.unavailable_reason}{hint}"


def _default_run(name: str) -> str:
    reason = get_method_class(name).default_run_reason("photos")
    return "yes" if reason is None else f"no: {reason}"


def run(args: argparse.Namespace) -> int:
    weights, changed = _default_weights(parse_weights_options(args.weights))
    rows = [[info.name, info.family, info.resolution, weights_cell(info.weights), _can_run(info, changed),
             _default_run(info.name), info.summary]
            for info in available_methods(weights)]
    print(tabulate(rows, headers=["method", "family", "resolution", "--weights", "can run",
                                  "default run (photos)", "what it is"]))
    print("each method's weights (files, official source, licence, checks): relama-bench weights METHOD")
    return 0
