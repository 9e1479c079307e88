"""``relama-bench list``: every registered method, its family, and whether it can run now."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from bench.cli.options import parse_weights_options
from methods.registry import available_methods


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list the registered methods and whether they can run")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                        help="weights for a method (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    weights = parse_weights_options(args.weights)
    rows = [
        [info.name, info.family, info.resolution, "yes" if info.available else f"no: {info.unavailable_reason}",
         info.summary]
        for info in available_methods(weights)
    ]
    print(tabulate(rows, headers=["method", "family", "resolution", "can run", "what it is"]))
    return 0
