"""``relama-bench list``: every registered method, its family, and whether it can run now."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from bench.cli.options import parse_weights_options
from methods.registry import available_methods
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


def run(args: argparse.Namespace) -> int:
    weights = parse_weights_options(args.weights)
    rows = [
        [info.name, info.family, info.resolution, weights_cell(info.weights),
         "yes" if info.available else f"no: {info.unavailable_reason}", info.summary]
        for info in available_methods(weights)
    ]
    print(tabulate(rows, headers=["method", "family", "resolution", "--weights", "can run", "what it is"]))
    print("each method's weights (files, official source, licence, checks): relama-bench weights METHOD")
    return 0
