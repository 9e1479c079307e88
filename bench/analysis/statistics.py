"""Summary statistics of result rows: means with bootstrap confidence intervals, paired
comparisons against a reference method, and breakdowns by hole-area bin.

All functions take the long result table (one row per method, case, image, sample) and return
tidy pandas tables. Rows whose mask had no hole are left out of every statistic (their scores are
trivially perfect); rows with a missing value for a metric are left out of that metric only, and
counted (``n_missing``) so N never shrinks silently. PSNR is capped at `PSNR_CAP_DB` (runs scored
before the cap stored a perfect fill as +inf; it is read as the cap).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from bench.errors import UserError
from bench.metrics.catalogue import CATALOGUE, PER_IMAGE_METRICS
from bench.metrics.pixel import PSNR_CAP_DB

CONFIDENCE = 0.95
N_RESAMPLES = 2000
#: LaMa's evaluation groups images by hole fraction into ten bins of width 10 %.
AREA_BIN_EDGES = np.linspace(0.0, 1.0, 11)


CI_METHOD = (f"{CONFIDENCE * 100:.0f} % CI of the mean: the union of the Student-t interval and the studentized "
             f"(bootstrap-t) interval, {N_RESAMPLES} resamples")


def mean_intervals(samples: np.ndarray, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Confidence intervals of the mean of each row of ``samples`` (``(..., n)`` float64, all finite).

    The interval is the union of the Student-t interval and the studentized bootstrap (bootstrap-t)
    interval. The percentile bootstrap covers a nominal 95 % only about 88 % of the time at n = 8
    for normal data and 78 % for lognormal data; the t interval is exact for normal data, and the
    bootstrap-t corrects much of the skew's effect at small n (measured in the tests' coverage
    simulation). A resample with zero spread has no studentized value and is left out. Rows with
    zero spread get a zero-width interval.
    """
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.shape[-1]
    mean = samples.mean(axis=-1)
    standard_error = samples.std(axis=-1, ddof=1) / np.sqrt(n)
    tail = (1.0 - confidence) / 2.0
    t_quantile = stats.t.ppf(1.0 - tail, n - 1)
    indices = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    resampled = samples[..., indices]
    resampled_se = resampled.std(axis=-1, ddof=1) / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        studentized = (resampled.mean(axis=-1) - mean[..., None]) / resampled_se
    studentized[~np.isfinite(studentized)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-degenerate rows: NaN quantiles, handled below
        low_quantile, high_quantile = np.nanquantile(studentized, [tail, 1.0 - tail], axis=-1)
    low = np.fmin(mean - t_quantile * standard_error, mean - high_quantile * standard_error)
    high = np.fmax(mean + t_quantile * standard_error, mean - low_quantile * standard_error)
    flat = standard_error == 0
    return np.where(flat, mean, low), np.where(flat, mean, high)


def bootstrap_ci(values: np.ndarray, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Confidence interval of the mean of the finite ``values`` (see `mean_intervals`).

    Returns ``(nan, nan)`` for fewer than two finite values; a constant sample gives a zero-width
    interval.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    low, high = mean_intervals(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return float(low), float(high)


def metric_values(values: pd.Series | np.ndarray, metric: str) -> np.ndarray:
    """A metric's values as float64, PSNR capped; NaN stays NaN (missing)."""
    values = np.asarray(values, dtype=np.float64)
    return np.minimum(values, PSNR_CAP_DB) if metric.startswith("psnr") else values


def scored_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that enter statistics: those whose mask had a hole."""
    return rows[rows["hole_fraction"] > 0]


def metric_columns(rows: pd.DataFrame) -> list[str]:
    """The metric columns present in ``rows``, in report order."""
    return [name for name in PER_IMAGE_METRICS if name in rows.columns]


def summarise(rows: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation, 95 % CI (`CI_METHOD`) and N per method, case and metric.

    Returns
    -------
    DataFrame
        Columns ``method, case, metric, mean, std, ci_low, ci_high, n, n_missing`` (``n_missing``: rows
        left out because the metric is NaN for them).
    """
    metrics = metrics or metric_columns(rows)
    records = []
    for (method, case), group in scored_rows(rows).groupby(["method", "case"], sort=False):
        for metric in metrics:
            values = metric_values(group[metric], metric)
            finite = values[np.isfinite(values)]
            low, high = bootstrap_ci(finite)
            # At very small N the t interval can reach past what the metric can take (SSIM above 1).
            bounds = CATALOGUE[metric].value_range if metric in CATALOGUE else (-np.inf, np.inf)
            low, high = float(np.clip(low, *bounds)), float(np.clip(high, *bounds))
            records.append({
                "method": method, "case": case, "metric": metric,
                "mean": float(finite.mean()) if finite.size else float("nan"),
                "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                "ci_low": low, "ci_high": high, "n": int(finite.size), "n_missing": int(values.size - finite.size),
            })
    return pd.DataFrame(records, columns=["method", "case", "metric", "mean", "std", "ci_low", "ci_high", "n",
                                          "n_missing"])


def timing_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Median and mean wall time per image, per method and case (rows without a time, such as
    predictions made elsewhere, are left out)."""
    timed = scored_rows(rows)
    timed = timed[timed["wall_time_s"].notna()]
    return (timed.groupby(["method", "case"], sort=False)["wall_time_s"]
            .agg(median_s="median", mean_s="mean", n="count").reset_index())


def choose_reference(methods: list[str], preferred: str | None = None) -> str | None:
    """The reference for paired comparisons: ``preferred``, else LaMa, else Telea, else the first method.

    Raises
    ------
    UserError
        ``preferred`` is given but has no rows among ``methods``.
    """
    if preferred is not None and preferred not in methods:
        raise UserError(f"--reference {preferred!r} has no results in this run: pass one of "
                        f"{', '.join(methods) or 'its methods'}")
    for candidate in (preferred, "lama", "telea"):
        if candidate and candidate in methods:
            return candidate
    return methods[0] if methods else None


def paired_comparison(rows: pd.DataFrame, reference: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Each method against ``reference`` on the same images.

    For every other method, case and metric: the mean per-image difference (method - reference)
    with its 95 % bootstrap CI, the Wilcoxon signed-rank p-value (two-sided, zero differences
    dropped; NaN when all differences are zero or fewer than two pairs remain), and the win rate
    (share of images where the method is better, ties counting half).
    """
    metrics = metrics or metric_columns(rows)
    scored = scored_rows(rows)
    keys = ["case", "image_id", "sample"]
    reference_rows = scored[scored["method"] == reference]
    records = []
    for (method, case), group in scored[scored["method"] != reference].groupby(["method", "case"], sort=False):
        joined = group.merge(reference_rows, on=keys, how="inner", suffixes=("", "_ref"))
        for metric in metrics:
            difference = metric_values(joined[metric], metric) - metric_values(joined[f"{metric}_ref"], metric)
            difference = difference[np.isfinite(difference)]
            sign = 1.0 if CATALOGUE[metric].higher_is_better else -1.0
            wins = float(np.mean((sign * difference > 0) + 0.5 * (difference == 0))) if difference.size else float("nan")
            low, high = bootstrap_ci(difference)
            records.append({
                "method": method, "reference": reference, "case": case, "metric": metric,
                "mean_diff": float(difference.mean()) if difference.size else float("nan"),
                "ci_low": low, "ci_high": high, "p_wilcoxon": _wilcoxon(difference),
                "win_rate": wins, "n": int(difference.size),
            })
    return pd.DataFrame(records, columns=["method", "reference", "case", "metric", "mean_diff", "ci_low",
                                          "ci_high", "p_wilcoxon", "win_rate", "n"])


def _wilcoxon(difference: np.ndarray) -> float:
    nonzero = difference[difference != 0]
    if nonzero.size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(nonzero).pvalue)


def area_bins(rows: pd.DataFrame, metrics: list[str] | None = None,
              edges: np.ndarray = AREA_BIN_EDGES) -> pd.DataFrame:
    """Mean of each metric per method and hole-area bin; bins without data are left out.

    Returns
    -------
    DataFrame
        Columns ``method, bin, bin_low, bin_high, metric, mean, n``; bins are labelled ``"10-20%"``.
    """
    metrics = metrics or metric_columns(rows)
    scored = scored_rows(rows).copy()
    index = np.clip(np.digitize(scored["hole_fraction"], edges[1:-1], right=True), 0, len(edges) - 2)
    scored["bin_low"], scored["bin_high"] = edges[index], edges[index + 1]
    records = []
    for (method, low, high), group in scored.groupby(["method", "bin_low", "bin_high"], sort=True):
        for metric in metrics:
            values = metric_values(group[metric], metric)
            values = values[np.isfinite(values)]
            records.append({"method": method, "bin": f"{low * 100:.0f}-{high * 100:.0f}%", "bin_low": low,
                            "bin_high": high, "metric": metric,
                            "mean": float(values.mean()) if len(values) else float("nan"), "n": int(len(values))})
    return pd.DataFrame(records, columns=["method", "bin", "bin_low", "bin_high", "metric", "mean", "n"])


MASK_SUMMARY_COLUMNS = ["case", "n_images", "area_mean", "area_p10", "area_p50", "area_p90", "box_share",
                        "generators", "frames", "hole_rim_share"]


def mask_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """What each case's masks actually were, one row per case, from the rows of its images (every
    method sees the same mask, so each image counts once).

    Returns
    -------
    DataFrame
        Columns `MASK_SUMMARY_COLUMNS`: hole-fraction mean and 10/50/90th percentiles, the share of
        box masks, the generators and frames with their counts (``"strokes 77, boxes 23"``), and the
        mean share of hole pixels within 5 px of known pixels. Columns a run did not record are NaN.
    """
    records = []
    for case, group in rows.groupby("case", sort=False):
        images = group.drop_duplicates("image_id")
        areas = images["hole_fraction"].to_numpy(dtype=np.float64)
        record = {"case": case, "n_images": len(images), "area_mean": float(areas.mean()),
                  "area_p10": float(np.quantile(areas, 0.1)), "area_p50": float(np.quantile(areas, 0.5)),
                  "area_p90": float(np.quantile(areas, 0.9)), "box_share": float("nan"), "generators": "n/a",
                  "frames": "n/a", "hole_rim_share": float("nan")}
        if "mask_generator" in images.columns and images["mask_generator"].notna().all():
            generators = images["mask_generator"]
            if generators.isin(["strokes", "boxes"]).all():  # a share of boxes means nothing for mask files
                record["box_share"] = float((generators == "boxes").mean())
            record["generators"] = _counts(generators)
        if "mask_frame" in images.columns and images["mask_frame"].notna().all():
            record["frames"] = _counts(images["mask_frame"])
        if "hole_rim_share" in images.columns:
            rim = images["hole_rim_share"].to_numpy(dtype=np.float64)
            record["hole_rim_share"] = float(np.nanmean(rim)) if np.isfinite(rim).any() else float("nan")
        records.append(record)
    return pd.DataFrame(records, columns=MASK_SUMMARY_COLUMNS)


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{value} {count}" for value, count in values.value_counts(sort=True).items())
