"""``relama-bench sweep resolution`` and ``relama-bench sweep area`` (see `bench.studies.sweeps`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.studies import sweeps
from bench.run.data import load_images
from bench.cli.erf import arguments_hash
from bench.errors import UserError
from bench.metrics.catalogue import HOLE_PIXEL_METRICS, format_interval, format_value, label
from bench.report.document import Section, write_reports
from bench.run.rundir import write_table
from bench.cli.options import comma_list, default_run_methods, method_names, parse_weights_options
from masks.cases import CASES
from methods.base import Inpainter, MethodUnavailable
from methods.registry import create_method

#: Metrics with a figure and a table in the sweep reports.
KEY_METRICS = HOLE_PIXEL_METRICS


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
    parser.add_argument("--images", type=int, default=4, help="number of images (default 4)")
    parser.add_argument("--cases", default=",".join(CASES), help="resolution sweep: comma-separated mask cases")
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


def resolve_methods(value: str | None, weights: dict[str, Path]) -> tuple[dict[str, Inpainter], dict[str, str]]:
    """Built methods and skipped ones with the reason; unknown names are an error."""
    names = method_names(value, default_run_methods())
    methods, skipped = {}, {}
    for name in names:
        try:
            methods[name] = create_method(name, weights=weights.get(name))
        except MethodUnavailable as error:
            skipped[name] = str(error)
    if not methods:
        raise UserError("no method can run: pass --weights for a deep method or choose classical methods "
                        "with --methods")
    return methods, skipped


def _load_images(args: argparse.Namespace, size: int | None):
    if args.images < 1:
        raise UserError(f"--images {args.images} selects no image: pass a positive number")
    return load_images(args.data, size=size, limit=args.images)


def sweep_command(args: argparse.Namespace) -> int:
    weights = parse_weights_options(args.weights)
    out_name = args.out or f"sweep-{args.kind}-{arguments_hash(args)}"
    out_dir = Path(args.runs_dir) / out_name
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.kind == "resolution":
        resolutions = parse_resolutions(args.resolutions)
        cases = comma_list(args.cases, "--cases")
        unknown = [case for case in cases if case not in CASES]
        if unknown:
            raise UserError(f"unknown mask case {unknown[0]!r}: choose from {', '.join(CASES)}")
        images = _load_images(args, None)
        methods, skipped = resolve_methods(args.methods, weights)
        started = time.perf_counter()
        rows = sweeps.resolution_rows(images, methods, cases, resolutions=resolutions, seed=args.seed,
                                      progress=_progress)
        sections = resolution_sections(rows, out_dir, time.perf_counter() - started)
        title = "relama-bench: resolution robustness"
    else:
        if args.size < 32 or args.size % 8:
            raise UserError(f"--size {args.size} is not usable: pass a multiple of 8 of at least 32 (e.g. 256)")
        fractions = area_fractions(args.levels, args.min_area, args.max_area)
        shapes = comma_list(args.shapes, "--shapes")
        unknown = [shape for shape in shapes if shape not in sweeps.SHAPES]
        if unknown or not shapes:
            raise UserError(f"unknown mask shape family {(unknown or [''])[0]!r}: "
                            f"choose from {', '.join(sweeps.SHAPES)}")
        images = _load_images(args, args.size)
        methods, skipped = resolve_methods(args.methods, weights)
        started = time.perf_counter()
        rows = sweeps.area_rows(images, methods, fractions, shapes=shapes, seed=args.seed, progress=_progress)
        sections = area_sections(rows, out_dir, time.perf_counter() - started)
        title = "relama-bench: hole-size curves"
    write_table(out_dir / "rows.csv", rows)
    intro = [
        f"Images: {', '.join(item.image_id for item in images)} "
        f"({args.data if args.data else 'embedded scikit-image photographs'}); seed {args.seed}.",
        "Methods: " + "; ".join(f"{name} ({_facts(method)})" for name, method in methods.items()) + ".",
        "Every prediction is composited with the known pixels before scoring; 'hole' metrics use hole pixels only.",
    ]
    if skipped:
        intro.append("Skipped: " + "; ".join(skipped.values()) + ".")
    markdown_path, html_path = write_reports(out_dir, title, intro, sections)
    print(f"sweep: wrote {markdown_path} and {html_path}")
    return 0


def _facts(method: Inpainter) -> str:
    return ", ".join(f"{key} {value}" for key, value in method.describe().items()) or "no weights"


def _progress(message: str) -> None:
    print(f"sweep: {message}", flush=True)


def _cell(metric: str, row: pd.Series) -> str:
    return format_interval(metric, row["mean"], row["ci_low"], row["ci_high"])


def resolution_sections(rows: pd.DataFrame, out_dir: Path, duration: float) -> list[Section]:
    summary = sweeps.summarise_by(rows, ["method", "case", "resolution"])
    write_table(out_dir / "resolution_summary.csv", summary)
    section = Section("Resolution robustness", [
        "The same images and the same relative holes (drawn once at the smallest size and resized with "
        "nearest-neighbour sampling) at each long side. Cells: mean [95 % bootstrap CI] over images.",
    ])
    upscaled = rows[rows["upscaled"]][["image_id", "resolution"]].drop_duplicates()
    if not upscaled.empty:
        listing = ", ".join(f"{image} at {resolution}" for image, resolution in upscaled.itertuples(index=False))
        section.paragraphs.append(f"Upscaled from a smaller original (bicubic, so smoother than a real photo of "
                                  f"that size, which flatters every method): {listing}.")
    for metric in KEY_METRICS:
        data = summary[summary["metric"] == metric].copy()
        data["cell"] = [_cell(metric, row) for _, row in data.iterrows()]
        table = data.pivot_table(index=["case", "method"], columns="resolution", values="cell", aggfunc="first",
                                 sort=False).reset_index()
        table.columns = [str(column) for column in table.columns]
        section.tables.append((label(metric), table))
        relative = f"figures/resolution_{metric}.png"
        sweeps.resolution_figure(summary, metric, out_dir / relative, label=label(metric))
        section.figures.append((f"{label(metric)} against resolution", relative))
    timing = rows.groupby(["method", "resolution"], sort=False)["wall_time_s"].median().unstack("resolution")
    timing = timing.map(lambda value: f"{value:.3f}").reset_index()
    timing.columns = [str(column) for column in timing.columns]
    section.tables.append(("Median seconds per image on this machine", timing))
    section.paragraphs.append(f"Computed in {duration:.0f} s.")
    return [section]


def area_sections(rows: pd.DataFrame, out_dir: Path, duration: float) -> list[Section]:
    bins = sweeps.fine_bins(rows)
    write_table(out_dir / "area_bins.csv", bins)
    section = Section("Hole-size curves", [
        "Each image gets masks of growing area from one shape family (growing box; strokes added one at a "
        "time, so every level contains the previous one). Means per 5 % hole-fraction bin; where a curve "
        "drops is where the method breaks down.",
        f"Computed in {duration:.0f} s over {rows['image_id'].nunique()} images and "
        f"{rows['level'].nunique()} hole sizes per shape family.",
    ])
    for metric in KEY_METRICS:
        data = bins[bins["metric"] == metric].copy()
        data["cell"] = data["mean"].map(lambda value: format_value(metric, value))
        table = data.pivot_table(index=["shape", "method"], columns="bin_low", values="cell", aggfunc="first",
                                 sort=False)
        table = table[sorted(table.columns)].fillna("-").reset_index()
        table.columns = [f"{column * 100:.0f}-{(column + sweeps.FINE_BIN_WIDTH) * 100:.0f}%"
                         if isinstance(column, float) else str(column) for column in table.columns]
        section.tables.append((f"{label(metric)} by hole-area bin", table))
        relative = f"figures/area_{metric}.png"
        sweeps.area_figure(bins, metric, out_dir / relative, label=label(metric))
        section.figures.append((f"{label(metric)} against hole size", relative))
    return [section]
