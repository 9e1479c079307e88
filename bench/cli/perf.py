"""``relama-bench perf``: arguments of `bench.studies.perf.perf_study`, its table printed and written."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.cli.options import add_device_argument, comma_list, method_names, parse_weights_options
from bench.errors import UserError
from bench.studies.perf import DEFAULT_SIZES, RANDOM_WEIGHTS_LABEL, format_table, perf_study, write_tables
from methods.registry import list_methods


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("perf", help="median latency and peak memory per method and image size")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every method that can run)")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="square sizes, e.g. 256,512,1024")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                        help="weights for a method (repeatable)")
    parser.add_argument("--random-weights", action="store_true",
                        help="time deep methods that have no weights with fresh random weights (timing only; "
                             "their outputs are meaningless and their rows say so)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("perf"), help="folder for perf.csv and perf.md")
    add_device_argument(parser)
    parser.set_defaults(func=run)


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in comma_list(text, "--sizes")]
    except ValueError:
        raise UserError(f"--sizes {text!r} must be comma-separated integers, e.g. 256,512,1024") from None
    if not sizes or any(size < 8 for size in sizes):
        raise UserError(f"--sizes {text!r} must list sizes of at least 8 pixels")
    return sizes


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = parse_weights_options(args.weights)
    sizes = _parse_sizes(args.sizes)
    names = method_names(args.methods, list_methods())
    study = perf_study(names, weights, sizes, repeats=args.repeats, warmup=args.warmup,
                       random_weights=args.random_weights, device=args.device)
    print(format_table(study.rows))
    if any(row.weights == RANDOM_WEIGHTS_LABEL for row in study.rows):
        print("rows with 'random (timing only)' weights measure speed and memory only; their images are meaningless")
    for line in study.skipped:
        print(f"skipped {line}")
    csv_path, md_path = write_tables(study.rows, args.out)
    print(f"wrote {csv_path} and {md_path}")
    return 0
