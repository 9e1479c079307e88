"""``relama-bench sweep resolution`` and ``relama-bench sweep area``: arguments of `bench.studies.sweep_study`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.cli.erf import arguments_hash
from bench.cli.options import (add_data_domain_argument, comma_list, default_run_methods, method_names,
                               parse_weights_options)
from bench.errors import UserError
from bench.run.data import load_images
from bench.studies import sweeps
from bench.studies.sweep_study import SweepRequest, sweep_study
from masks.cases import CASES


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help="resolution robustness or hole-size curves of methods")
    parser.add_argument("kind", choices=("resolution", "area"),
                        help="resolution: the same images and relative holes at several sizes; "
                             "area: masks of growing area on one image set")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods; default: every method of the default run that can run here")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                        help="weights of a deep method (repeatable)")
    parser.add_argument("--data", type=Path, default=None, help="folder of images; default: the embedded set")
    add_data_domain_argument(parser)
    parser.add_argument("--images", type=int, default=4, help="number of images (default 4)")
    parser.add_argument("--cases", default="small,region,large", help="resolution sweep: comma-separated mask cases")
    parser.add_argument("--resolutions", default=",".join(map(str, sweeps.RESOLUTIONS)),
                        help="resolution sweep: comma-separated long sides in pixels (default 256,512,1024)")
    parser.add_argument("--size", type=int, default=256, help="area sweep: square image side (default 256)")
    parser.add_argument("--shapes", default=",".join(sweeps.SHAPES),
                        help=f"area sweep: mask shape families ({', '.join(sweeps.SHAPES)})")
    parser.add_argument("--levels", type=int, default=24, help="area sweep: number of hole sizes (default 24)")
    parser.add_argument("--min-area", type=float, default=0.02, help="area sweep: smallest hole fraction (0.02)")
    parser.add_argument("--max-area", type=float, default=0.7, help="area sweep: largest hole fraction (0.7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of masks and stochastic methods (default 0)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where output folders go (default runs/)")
    parser.add_argument("--out", default=None, help="output folder name; default: sweep-<kind>-<hash of the arguments>")
    parser.set_defaults(func=sweep_command)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_resolutions(value: str) -> list[int]:
    """``"256,512"`` -> ``[256, 512]`` (sorted, each at least 32)."""
    try:
        resolutions = sorted({int(item) for item in _split(value)})
    except ValueError:
        raise UserError(f"--resolutions {value!r} is not a list of integers: pass e.g. 256,512,1024") from None
    if not resolutions or resolutions[0] < 32:
        raise UserError(f"--resolutions {value!r} needs long sides of at least 32 pixels, e.g. 256,512,1024")
    return resolutions


def area_fractions(levels: int, low: float, high: float) -> np.ndarray:
    """``levels`` evenly spaced hole fractions from ``low`` to ``high``."""
    if levels < 2:
        raise UserError(f"--levels {levels} cannot draw a curve: pass at least 2")
    if not 0 < low < high < 1:
        raise UserError(f"--min-area {low} and --max-area {high} must satisfy 0 < min < max < 1")
    return np.linspace(low, high, levels)


def _load_images(args: argparse.Namespace, size: int | None):
    if args.images < 1:
        raise UserError(f"--images {args.images} selects no image: pass a positive number")
    return load_images(args.data, size=size, limit=args.images)


def sweep_command(args: argparse.Namespace) -> int:
    weights = parse_weights_options(args.weights)
    out_dir = Path(args.runs_dir) / (args.out or f"sweep-{args.kind}-{arguments_hash(args)}")
    if args.kind == "resolution":
        resolutions = parse_resolutions(args.resolutions)
        cases = comma_list(args.cases, "--cases")
        unknown = [case for case in cases if case not in CASES]
        if unknown:
            raise UserError(f"unknown mask case {unknown[0]!r}: choose from {', '.join(CASES)}")
        request = SweepRequest("resolution", method_names(args.methods, default_run_methods(args.data_domain)),
                               _load_images(args, None), weights, args.data, args.seed, cases=cases,
                               resolutions=resolutions)
    else:
        if args.size < 32 or args.size % 8:
            raise UserError(f"--size {args.size} is not usable: pass a multiple of 8 of at least 32 (e.g. 256)")
        fractions = area_fractions(args.levels, args.min_area, args.max_area)
        shapes = comma_list(args.shapes, "--shapes")
        unknown = [shape for shape in shapes if shape not in sweeps.SHAPES]
        if unknown or not shapes:
            raise UserError(f"unknown mask shape family {(unknown or [''])[0]!r}: "
                            f"choose from {', '.join(sweeps.SHAPES)}")
        request = SweepRequest("area", method_names(args.methods, default_run_methods(args.data_domain)),
                               _load_images(args, args.size), weights, args.data, args.seed, shapes=shapes,
                               fractions=fractions)
    markdown_path, html_path = sweep_study(request, out_dir, log=lambda message: print(f"sweep: {message}",
                                                                                     flush=True))
    print(f"sweep: wrote {markdown_path} and {html_path}")
    return 0
