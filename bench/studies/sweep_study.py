"""The sweep studies: resolution robustness and hole-size curves, run and written as a document.

`sweep_study` builds the methods, runs `bench.studies.sweeps.resolution_rows` or `area_rows`, writes
``rows.csv``, the summary tables and figures into the output folder, and renders ``report.md`` /
``report.html`` there (`bench.report.document`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from bench.errors import UserError
from bench.metrics.catalogue import HOLE_PIXEL_METRICS, format_interval, format_value, label
from bench.report.document import Section, write_reports
from bench.run.data import BenchImage
from bench.run.rundir import write_table
from bench.studies import sweeps
from methods.base import Inpainter, MethodUnavailable
from methods.registry import create_method

#: Metrics with a figure and a table in the sweep reports.
KEY_METRICS = HOLE_PIXEL_METRICS


@dataclass(frozen=True)
class SweepRequest:
    """One sweep: ``kind`` is ``resolution`` (``cases`` at each of ``resolutions``) or ``area`` (``fractions``
    of hole area drawn from each of ``shapes``); ``images`` are prepared already; ``data`` names their source."""

    kind: str
    methods: list[str]
    images: list[BenchImage]
    weights: dict[str, Path] = field(default_factory=dict)
    data: Path | None = None
    seed: int = 0
    cases: Sequence[str] = ()
    resolutions: Sequence[int] = ()
    shapes: Sequence[str] = ()
    fractions: np.ndarray = field(default_factory=lambda: np.empty(0))


def sweep_study(request: SweepRequest, out_dir: Path, *, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Run ``request`` into ``out_dir``; returns the paths of ``report.md`` and ``report.html``."""
    methods, skipped = build_methods(request.methods, request.weights)
    started = time.perf_counter()
    if request.kind == "resolution":
        rows = sweeps.resolution_rows(request.images, methods, list(request.cases),
                                      resolutions=list(request.resolutions), seed=request.seed, progress=log)
        sections = resolution_sections(rows, out_dir, time.perf_counter() - started)
        title = "relama-bench: resolution robustness"
    else:
        rows = sweeps.area_rows(request.images, methods, request.fractions, shapes=list(request.shapes),
                                seed=request.seed, progress=log)
        sections = area_sections(rows, out_dir, time.perf_counter() - started)
        title = "relama-bench: hole-size curves"
    write_table(out_dir / "rows.csv", rows)
    intro = [
        f"Images: {', '.join(item.image_id for item in request.images)} "
        f"({request.data if request.data else 'embedded scikit-image photographs'}); seed {request.seed}.",
        "Methods: " + "; ".join(f"{name} ({_facts(method)})" for name, method in methods.items()) + ".",
        "Every prediction is composited with the known pixels before scoring; 'hole' metrics use hole pixels only.",
    ]
    if skipped:
        intro.append("Skipped: " + "; ".join(skipped.values()) + ".")
    return write_reports(out_dir, title, intro, sections)


def build_methods(names: list[str], weights: dict[str, Path]) -> tuple[dict[str, Inpainter], dict[str, str]]:
    """Built methods and skipped ones with the reason."""
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


def _facts(method: Inpainter) -> str:
    return ", ".join(f"{key} {value}" for key, value in method.describe().items()) or "no weights"


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
