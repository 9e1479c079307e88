"""``relama-bench perf``: arguments of `bench.studies.perf.perf_study`, its table printed and written."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.cli.options import add_device_argument, comma_list, method_names, parse_weights_options
from bench.errors import UserError
from bench.studies.perf import (DEFAULT_SIZES, DEFAULT_TIME_LIMIT_S, RANDOM_WEIGHTS_LABEL, PerfRow, format_table,
                                perf_entries, perf_study, write_tables)
from methods.registry import list_methods


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("perf", help="latency and memory per method and image size, each method in its "
                                                "own process")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every method that can run)")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="square sizes, e.g. 256,512,1024")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                        help="weights for a method (repeatable)")
    parser.add_argument("--random-weights", action="store_true",
                        help="time deep methods that have no weights with fresh random weights (timing only; "
                             "their outputs are meaningless and their rows say so)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per size (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds after the first (memory) call")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and OpenCV threads of every worker (default: torch's choice on this machine, "
                             "stated in the table)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="arithmetic of the methods that declare it (bf16 on CPU or CUDA, fp16 on CUDA); the "
                             "others run in their only precision and the table says which")
    parser.add_argument("--reference-path", action="store_true",
                        help="also time the unoptimised, reference-equivalent path of the methods that have one "
                             "(the LaMa family), in fp32, in the same rounds")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, metavar="SECONDS",
                        help="longest one call may take before that method is stopped and its row says so "
                             f"(default {DEFAULT_TIME_LIMIT_S:g}; ICT needs about 725 CPU-s per 256x256 image)")
    parser.add_argument("--out", type=Path, default=Path("perf"), help="folder for perf.csv and perf.md")
    add_device_argument(parser)
    parser.set_defaults(func=run, on_interrupt="the tables of the sizes already measured are kept; a rerun "
                                               "measures every size again")


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in comma_list(text, "--sizes")]
    except ValueError:
        raise UserError(f"--sizes {text!r} must be comma-separated integers, e.g. 256,512,1024") from None
    if not sizes or any(size < 8 for size in sizes):
        raise UserError(f"--sizes {text!r} must list sizes of at least 8 pixels")
    return sizes


def run(args: argparse.Namespace) -> int:
    weights = parse_weights_options(args.weights)
    sizes = _parse_sizes(args.sizes)
    names = method_names(args.methods, list_methods())
    entries, notes = perf_entries(names, args.precision, args.reference_path)
    threads = args.threads if args.threads is not None else torch.get_num_threads()

    def write_so_far(rows: list[PerfRow]) -> None:
        write_tables(rows, args.out)

    study = perf_study(entries, weights, sizes, repeats=args.repeats, warmup=args.warmup,
                       random_weights=args.random_weights, threads=threads, time_limit_s=args.time_limit,
                       device=args.device, on_size_done=write_so_far)
    print(format_table(study.rows))
    if any(row.weights == RANDOM_WEIGHTS_LABEL for row in study.rows):
        print("rows with 'random (timing only)' weights measure speed and memory only; their images are meaningless")
    for line in notes:
        print(f"note: {line}")
    for line in dict.fromkeys(study.skipped):
        print(f"skipped {line}")
    csv_path, md_path = write_tables(study.rows, args.out)
    print(f"wrote {csv_path} and {md_path}")
    return 0
