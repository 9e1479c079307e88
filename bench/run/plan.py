"""What a run will cost before it runs (``relama-bench run --dry-run``): jobs, time, disk.

Image sizes come from file headers (nothing is decoded), so planning 10^5 images takes seconds. The
predicted time of a job is the method's median latency from a ``relama-bench perf`` table at the
measured size nearest in area, scaled by the pixel count (latency taken as linear in area, which holds
for the convolutional and classical methods away from tiny sizes; ICT and other fixed-resolution
methods are constant, which perf's numbers at their native size show). Disk figures are upper bounds,
uncompressed RGB bytes: the run stores its prepared images that way (within ~0.3 %), its predictions as
compressed PNGs (photographs usually 40-70 % of it); masks take much less.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import UserError
from bench.run.config import RunConfig
from bench.run.data import ImageSource

#: Bytes of one cached Inception feature file (2048 float32 and the .npy header).
FEATURE_FILE_BYTES = 2048 * 4 + 128
#: Precision column of a perf table for methods that run NumPy/OpenCV code and have no precision choice.
NO_PRECISION = "n/a"
#: Bytes of one job record (a line of a job log), an upper bound: indented record files of a run with
#: learned metrics measured 700, their compact log lines are shorter.
RECORD_BYTES = 700


@dataclass
class MethodPlan:
    """One method's share of a run."""

    method: str
    jobs: int
    predicted_seconds: float | None
    basis: str


@dataclass
class RunPlan:
    """Jobs, predicted inference time and disk space of a run."""

    images: int
    cases: int
    methods: list[MethodPlan]
    disk_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return sum(method.jobs for method in self.methods)


def read_perf_table(path: Path) -> pd.DataFrame:
    """A ``perf.csv`` written by ``relama-bench perf`` (columns method, size, median_ms, ...)."""
    try:
        # "n/a" is a precision label here, not a missing value.
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as error:
        raise UserError(f"--perf {path} cannot be read as a perf table ({error}): pass the perf.csv that "
                        "`relama-bench perf --out DIR` wrote") from None
    missing = {"method", "size", "median_ms"} - set(table.columns)
    if missing:
        raise UserError(f"--perf {path} lacks the column(s) {', '.join(sorted(missing))}: pass the perf.csv that "
                        "`relama-bench perf --out DIR` wrote")
    return table


def _seconds_per_job(measured: pd.DataFrame, pixels: int) -> float:
    sizes = measured["size"].to_numpy()
    nearest = measured.iloc[int(abs(sizes.astype(float) ** 2 - pixels).argmin())]
    return float(nearest["median_ms"]) / 1000 * pixels / float(nearest["size"]) ** 2


def _timed_rows(perf: pd.DataFrame, method: str, options: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``perf`` that time ``method`` as the run will call it.

    Rows without a time (a call stopped at perf's time limit, or failed) are left out, and when the
    table states a precision only rows of the run's precision count (fp32 unless the run's options ask
    for another; ``n/a`` for methods without a precision choice).
    """
    measured = perf[(perf["method"] == method) & np.isfinite(pd.to_numeric(perf["median_ms"], errors="coerce"))]
    if "precision" in measured.columns:
        wanted = str(options.get("precision", "fp32"))
        measured = measured[measured["precision"].astype(str).isin([wanted, NO_PRECISION])]
    return measured


def plan_run(config: RunConfig, methods: list[str], sources: list[ImageSource],
             perf: pd.DataFrame | None) -> RunPlan:
    """The plan of running ``methods`` over ``sources`` and ``config.cases``.

    Parameters
    ----------
    perf : DataFrame or None
        A perf table; without one (or without a method's rows) that method's time is unknown.
    """
    shapes = [source.prepared_shape() for source in sources]
    pixel_counts = [height * width for height, width in shapes]
    cases = len(config.cases)
    plans = []
    for method in methods:
        jobs = len(sources) * cases
        measured = _timed_rows(perf, method, config.options.get(method, {})) if perf is not None else None
        if measured is None or measured.empty:
            plans.append(MethodPlan(method, jobs, None, "no perf numbers for this method"))
            continue
        seconds = cases * sum(_seconds_per_job(measured, pixels) for pixels in pixel_counts)
        sizes = ", ".join(str(int(size)) for size in sorted(measured["size"].unique()))
        plans.append(MethodPlan(method, jobs, seconds, f"perf median at {sizes} px, scaled by area"))
    total_pixels = sum(pixel_counts)
    jobs = sum(plan.jobs for plan in plans)
    disk = {
        "predictions": 3 * total_pixels * cases * len(methods) * config.samples,
        "images and masks": 3 * total_pixels + total_pixels * cases,
        "records": RECORD_BYTES * jobs,
    }
    if config.learned_metrics:
        disk["Inception features"] = FEATURE_FILE_BYTES * (jobs + len(sources))
    return RunPlan(len(sources), cases, plans, disk)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _size(count: int) -> str:
    return f"{count / 2 ** 30:.2f} GiB" if count >= 2 ** 30 else f"{count / 2 ** 20:.1f} MiB"


def format_plan(plan: RunPlan, processes: int = 1) -> str:
    """The dry run's text: jobs and predicted time per method, totals, disk."""
    lines = [f"{plan.images} images x {plan.cases} case(s) x {len(plan.methods)} method(s) = {plan.jobs} jobs"]
    known = 0.0
    for method in plan.methods:
        predicted = _duration(method.predicted_seconds) if method.predicted_seconds is not None else "unknown"
        lines.append(f"  {method.method}: {method.jobs} jobs, predicted inference {predicted} ({method.basis})")
        known += method.predicted_seconds or 0.0
    if any(method.predicted_seconds is None for method in plan.methods):
        lines.append("  (times unknown without perf numbers: run `relama-bench perf --methods ... --sizes ... "
                     "--out perf` on this machine and pass --perf perf/perf.csv)")
    lines.append(f"predicted inference in total: {_duration(known)} in one process"
                 + (f", about {_duration(known / processes)} with {processes} processes" if processes > 1 else "")
                 + " (learned metrics and loading not included)")
    lines.append("disk, upper bound (uncompressed; predicted photographs usually take 40-70 % of it, masks much less):")
    lines += [f"  {name}: {_size(size)}" for name, size in plan.disk_bytes.items()]
    lines.append(f"  total: {_size(sum(plan.disk_bytes.values()))}")
    return "\n".join(lines)
