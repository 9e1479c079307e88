"""The metric catalogue: one `MetricSpec` per metric the suite reports, read by every table and check.

Labels, decimals, the better direction, the regression tolerance and the unit of a metric are
written here once; Markdown, HTML, the regression check, statistics and sweeps all read them, so
they format a value, mark the best method and judge a change the same way. To add a metric, add
its spec here and compute it in `bench.metrics.pixel` (per image) or `bench.metrics.learned`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: PSNR of identical images and upper bound of every PSNR, in dB (`bench.metrics.pixel` caps at it).
PSNR_CAP_DB = 100.0


@dataclass(frozen=True)
class Tolerance:
    """How far a mean may move before the regression check reports it.

    Parameters
    ----------
    value : float
        Allowed absolute difference, or allowed fraction of the baseline's magnitude when ``relative``.
    relative : bool
        Whether ``value`` is relative to the baseline mean.
    unit : str
        Unit for messages.
    """

    value: float
    relative: bool = False
    unit: str = ""

    def allowed(self, baseline: float) -> float:
        """The largest difference from ``baseline`` that still passes."""
        return self.value * abs(baseline) if self.relative else self.value

    def describe(self) -> str:
        """The tolerance for messages, e.g. ``0.05 dB`` or ``2 %``."""
        return f"{self.value * 100:g} %" if self.relative else f"{self.value:g}{self.unit}"


@dataclass(frozen=True)
class MetricSpec:
    """Everything a table or check needs to know about one metric.

    Parameters
    ----------
    name : str
        Column name in ``rows.parquet`` / ``summary.csv``.
    label : str
        Human label, with its unit.
    higher_is_better : bool
        The better direction.
    decimals : int
        Decimals of a printed value.
    tolerance : Tolerance
        How far its mean may move in the regression check. The tolerances absorb floating-point
        differences between machines and library builds (OpenCV's SIMD paths, BLAS) while catching
        any change a reader of the tables would notice at the precision they are printed with.
    kind : {"pixel", "learned", "set"}
        ``pixel`` and ``learned`` metrics score one image (a column of the result rows; pixel ones come
        from `bench.metrics.pixel`, learned ones from a network); ``set`` metrics score a set (FID, KID).
    hole_only : bool
        Computed over the hole pixels only.
    unit : str
        Unit of a value ("dB"), empty for unitless metrics.
    minimum_side : int
        Smallest image side (pixels) the metric can score; smaller images get NaN, and the report
        names them.
    value_range : (float, float)
        The values the metric can take; a mean's confidence interval is clipped to them.
    """

    name: str
    label: str
    higher_is_better: bool
    decimals: int
    tolerance: Tolerance
    kind: str = "pixel"
    hole_only: bool = False
    unit: str = ""
    minimum_side: int = 1
    value_range: tuple[float, float] = (-math.inf, math.inf)

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, else ``↓``."""
        return "↑" if self.higher_is_better else "↓"

    def format(self, value: float | None) -> str:
        """A value with the metric's decimals; ``n/a`` for a missing value, ``inf``/``-inf`` as such."""
        return format_number(value, self.decimals)


def format_number(value: float | None, decimals: int) -> str:
    """``value`` with ``decimals`` decimals; ``n/a`` for None or NaN, ``inf``/``-inf`` for infinities."""
    if value is None or not np.isfinite(value):
        return "n/a" if value is None or np.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{decimals}f}"


#: Every metric, in the order tables list them.
CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in (
    # AlexNet's pooling stack needs 31 pixels; SSIM's Gaussian window 11.
    MetricSpec("lpips", "LPIPS", False, 4, Tolerance(0.002), kind="learned", minimum_side=31,
               value_range=(0.0, math.inf)),
    MetricSpec("psnr", "PSNR (dB)", True, 2, Tolerance(0.05, unit=" dB"), unit="dB", value_range=(0.0, PSNR_CAP_DB)),
    MetricSpec("ssim", "SSIM", True, 4, Tolerance(0.002), minimum_side=11, value_range=(-1.0, 1.0)),
    MetricSpec("l1", "L1", False, 4, Tolerance(0.0005), value_range=(0.0, 1.0)),
    MetricSpec("psnr_hole", "PSNR hole (dB)", True, 2, Tolerance(0.05, unit=" dB"), hole_only=True, unit="dB",
               value_range=(0.0, PSNR_CAP_DB)),
    MetricSpec("ssim_hole", "SSIM hole", True, 4, Tolerance(0.002), hole_only=True, minimum_side=11,
               value_range=(-1.0, 1.0)),
    MetricSpec("l1_hole", "L1 hole", False, 4, Tolerance(0.0005), hole_only=True, value_range=(0.0, 1.0)),
    MetricSpec("fid", "FID", False, 2, Tolerance(0.02, relative=True), kind="set"),
    MetricSpec("kid", "KID×1000", False, 2, Tolerance(0.05, relative=True), kind="set"),
)}
#: Metrics of one image (columns of the result rows), in table order.
PER_IMAGE_METRICS: tuple[str, ...] = tuple(name for name, spec in CATALOGUE.items() if spec.kind != "set")
#: Pixel metrics over the hole only, then over the whole image: the sweeps' metrics, key ones first.
HOLE_PIXEL_METRICS: tuple[str, ...] = tuple(name for name, spec in CATALOGUE.items()
                                            if spec.kind == "pixel" and spec.hole_only)
PIXEL_METRICS: tuple[str, ...] = HOLE_PIXEL_METRICS + tuple(
    name for name, spec in CATALOGUE.items() if spec.kind == "pixel" and not spec.hole_only)
#: Decimals of a value of a metric the catalogue does not list.
DEFAULT_DECIMALS = 4
#: Tolerance of a metric the catalogue does not list: 1 % of the baseline value.
DEFAULT_TOLERANCE = Tolerance(0.01, relative=True)


def label(metric: str) -> str:
    """The metric's label, or its name when the catalogue does not list it."""
    return CATALOGUE[metric].label if metric in CATALOGUE else metric


def label_with_arrow(metric: str) -> str:
    """Column label with the arrow of the better direction (no arrow for unlisted metrics)."""
    return f"{CATALOGUE[metric].label} {CATALOGUE[metric].arrow}" if metric in CATALOGUE else metric


def format_value(metric: str, value: float | None) -> str:
    """One value of ``metric`` as every table prints it."""
    return format_number(value, CATALOGUE[metric].decimals if metric in CATALOGUE else DEFAULT_DECIMALS)


def format_bounds(metric: str, low: float, high: float) -> str:
    """``[low, high]``: a confidence interval as every table prints it."""
    return f"[{format_value(metric, low)}, {format_value(metric, high)}]"


def format_interval(metric: str, mean: float, low: float, high: float) -> str:
    """``mean [low, high]``, the one way every table prints an estimate with its interval."""
    return f"{format_value(metric, mean)} {format_bounds(metric, low, high)}"


def best_labels(means: pd.Series, metric: str) -> set:
    """Index labels of ``means`` to mark as best: every one tied at the best finite value.

    Nothing is marked with fewer than two entries, for a metric without a known direction, or when
    no value is finite.
    """
    if metric not in CATALOGUE or len(means) < 2:
        return set()
    finite = means.astype(float).replace([math.inf, -math.inf], np.nan).dropna()
    if finite.empty:
        return set()
    best = finite.max() if CATALOGUE[metric].higher_is_better else finite.min()
    return set(finite[finite == best].index)
