"""Summary statistics of result rows: means with bootstrap confidence intervals, paired
comparisons against a reference method, and breakdowns by hole-area bin.

All functions take the long result table (one row per method, case, image, sample) and return
tidy pandas tables. Rows whose mask had no hole are left out of every statistic (their scores are
trivially perfect); rows with a missing value for a metric are left out of that metric only.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from bench.errors import UserError
from bench.metrics.catalogue import CATALOGUE, PER_IMAGE_METRICS

CONFIDENCE = 0.95
N_RESAMPLES = 2000
#: LaMa's evaluation groups images by hole fraction into ten bins of width 10 %.
AREA_BIN_EDGES = np.linspace(0.0, 1.0, 11)


def bootstrap_ci(values: np.ndarray, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Returns ``(nan, nan)`` for fewer than two finite values; a constant sample gives a zero-width
    interval.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, values.size, size=(n_resamples, values.size))
    means = values[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def scored_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that enter statistics: those whose mask had a hole."""
    return rows[rows["hole_fraction"] > 0]


def metric_columns(rows: pd.DataFrame) -> list[str]:
    """The metric columns present in ``rows``, in report order."""
    return [name for name in PER_IMAGE_METRICS if name in rows.columns]


def summarise(rows: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation, 95 % bootstrap CI and N per method, case and metric.

    Returns
    -------
    DataFrame
        Columns ``method, case, metric, mean, std, ci_low, ci_high, n``.
    """
    metrics = metrics or metric_columns(rows)
    records = []
    for (method, case), group in scored_rows(rows).groupby(["method", "case"], sort=False):
        for metric in metrics:
            values = group[metric].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            low, high = bootstrap_ci(values)
            records.append({
                "method": method, "case": case, "metric": metric,
                "mean": float(values.mean()) if values.size else float("nan"),
                "std": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
                "ci_low": low, "ci_high": high, "n": int(values.size),
            })
    return pd.DataFrame(records, columns=["method", "case", "metric", "mean", "std", "ci_low", "ci_high", "n"])


def timing_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Median and mean wall time per image, per method and case."""
    timed = scored_rows(rows)
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
            pair = joined[[metric, f"{metric}_ref"]].replace([np.inf, -np.inf], np.nan).dropna()
            difference = (pair[metric] - pair[f"{metric}_ref"]).to_numpy()
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
            values = group[metric].replace([np.inf, -np.inf], np.nan).dropna()
            records.append({"method": method, "bin": f"{low * 100:.0f}-{high * 100:.0f}%", "bin_low": low,
                            "bin_high": high, "metric": metric,
                            "mean": float(values.mean()) if len(values) else float("nan"), "n": int(len(values))})
    return pd.DataFrame(records, columns=["method", "bin", "bin_low", "bin_high", "metric", "mean", "n"])
