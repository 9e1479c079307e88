"""``relama-bench score``: score folders of predictions made elsewhere exactly like built-in methods."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench.cli.options import add_metric_weights_arguments
from bench.cli.run import execute_run
from bench.errors import UserError
from bench.metrics.pixel import DEFAULT_SSIM, SSIM_CONVENTIONS
from bench.run.config import RunConfig
from bench.run.metadata import NO_SIDE_CAP
from bench.run.runner import USER_CASE, default_worker_count

#: Names of prediction sets become folder names and table labels: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    score = subparsers.add_parser(
        "score", help="score folders of predictions made elsewhere (same rows, tables and report as `run`)")
    score.add_argument("--data", type=Path, required=True, help="folder of the original images")
    score.add_argument("--masks", type=Path, required=True,
                       help="folder of the masks, one per image (STEM.png, white = hole, or labelme STEM.json)")
    score.add_argument("--predictions", action="append", required=True, metavar="NAME=DIR",
                       help="a method's predictions, DIR/STEM.png (any image format) for each image, at the "
                            "image's size (repeatable)")
    score.add_argument("--mask-invert", action="store_true", help="dark mask pixels are holes")
    score.add_argument("--mask-threshold", type=int, default=0,
                       help="grey values above this (0-255) are holes; default 0 (any non-zero grey)")
    score.add_argument("--limit", type=int, default=None, help="score only the first N images")
    score.add_argument("--ssim", choices=sorted(SSIM_CONVENTIONS), default=DEFAULT_SSIM,
                       help=f"SSIM convention, as for run (default {DEFAULT_SSIM})")
    score.add_argument("--seed", type=int, default=0, help="seed of KID's subset draw (default 0)")
    score.add_argument("--no-learned-metrics", action="store_true", help="skip LPIPS, FID and KID")
    add_metric_weights_arguments(score)
    score.add_argument("--workers", type=int, default=default_worker_count(), help="processes reading predictions")
    score.add_argument("--figure-rows", type=int, default=8, help="images shown in each figure grid")
    score.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    score.add_argument("--run-id", default=None,
                       help="name of the run directory; default: derived from the arguments, so a rerun resumes")
    score.add_argument("--run-dir-shared", choices=("auto", "yes", "no"), default="auto",
                       help="under torchrun: whether every rank sees one run directory; default: find out")
    score.add_argument("--reference", default=None, help="reference set of paired comparisons (a NAME)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.add_argument("--save-predictions", choices=("all", "grids", "none", "auto"), default="auto",
                     help="which predictions to keep in pred/: all, grids (those the figures show) or none; "
                          "default auto: all up to 50,000 jobs, else grids")
    score.set_defaults(func=score_command)


def parse_predictions(values: list[str]) -> dict[str, str]:
    """``NAME=DIR`` strings to ``{name: dir}``; bad names, missing folders and repeats are refused."""
    predictions: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not _NAME.fullmatch(name) or not folder:
            raise UserError(f"--predictions {value!r} is not NAME=DIR with a plain NAME (letters, digits, . _ -), "
                            "e.g. --predictions mat=outputs/mat")
        if name in predictions:
            raise UserError(f"--predictions names {name!r} twice: give each set of predictions its own name")
        if not Path(folder).is_dir():
            raise UserError(f"--predictions {value!r}: folder {folder} does not exist")
        predictions[name] = str(folder)
    return predictions


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if not args.data.is_dir():
        raise UserError(f"data folder {args.data} does not exist: pass --data DIR with the original images")
    if not args.masks.is_dir():
        raise UserError(f"mask folder {args.masks} does not exist: pass --masks DIR with one mask per image")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit} selects no image: pass a positive number or leave it out")
    predictions = parse_predictions(args.predictions)
    if args.reference is not None and args.reference not in predictions:
        raise UserError(f"--reference {args.reference!r} is not a NAME of --predictions: pass one of "
                        f"{', '.join(predictions)}")
    return RunConfig(
        methods=list(predictions), cases=[USER_CASE], data=str(args.data), masks=str(args.masks),
        mask_invert=args.mask_invert, mask_threshold=args.mask_threshold, limit=args.limit,
        # Predictions are compared with the images they were made from, so nothing is resized.
        size=None, max_side=NO_SIDE_CAP, seed=args.seed, learned_metrics=not args.no_learned_metrics,
        workers=max(1, args.workers), figure_rows=args.figure_rows, runs_root=str(args.runs_dir),
        run_id=args.run_id, predictions=predictions, run_dir_shared=args.run_dir_shared,
        save_predictions=args.save_predictions, ssim=args.ssim,
    )


def score_command(args: argparse.Namespace) -> int:
    return execute_run(config_from_args(args), args, named_methods=True)
