from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.statistics import (
    area_bins,
    bootstrap_ci,
    choose_reference,
    mask_summary,
    mean_intervals,
    paired_comparison,
    summarise,
)


def _rows():
    rng = np.random.default_rng(0)
    records = []
    for index in range(30):
        area = 0.05 + 0.3 * index / 30
        base = 25 + rng.normal(0, 2)
        for method, shift in (("telea", 0.0), ("better", 1.0)):
            records.append({"method": method, "case": "small", "image_id": f"i{index}", "sample": 0,
                            "hole_fraction": area, "wall_time_s": 0.1, "psnr": base + shift,
                            "l1": 0.1 - shift / 100, "mask_generator": "boxes" if index % 3 == 0 else "strokes",
                            "mask_frame": "256x256", "hole_rim_share": 0.5})
    records.append({"method": "telea", "case": "small", "image_id": "empty", "sample": 0, "hole_fraction": 0.0,
                    "wall_time_s": 0.0, "psnr": 100.0, "l1": 0.0, "mask_generator": "strokes",
                    "mask_frame": "256x256", "hole_rim_share": np.nan})
    return pd.DataFrame(records)


def test_bootstrap_ci_covers_the_mean_and_handles_degenerate_samples():
    values = np.random.default_rng(1).normal(10, 1, 200)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.5
    assert bootstrap_ci(np.array([3.0, 3.0, 3.0])) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_ci(np.array([1.0]))))
    low, high = bootstrap_ci(np.array([1.0, 2.0]))  # two values: the t interval (df 1) still gives a width
    assert low < 1.0 and high > 2.0


def _coverage(samples: np.ndarray, true_mean: float) -> float:
    covered = []
    for start in range(0, len(samples), 250):  # chunks keep the resample array small
        low, high = mean_intervals(samples[start:start + 250], seed=start)
        covered.append((low <= true_mean) & (true_mean <= high))
    return float(np.concatenate(covered).mean())


def _percentile_coverage(samples: np.ndarray, true_mean: float) -> float:
    rng = np.random.default_rng(1)
    indices = rng.integers(0, samples.shape[1], size=(2000, samples.shape[1]))
    means = samples[:, indices].mean(axis=-1)
    low, high = np.quantile(means, [0.025, 0.975], axis=1)
    return float(np.mean((low <= true_mean) & (true_mean <= high)))


@pytest.mark.parametrize("n", [8, 20])
@pytest.mark.parametrize("distribution", ["normal", "lognormal"])
def test_nominal_95_percent_intervals_cover_at_small_n(distribution, n):
    """Coverage over 1,000 simulated samples (standard error of a coverage estimate: 0.007).

    Stated bands: normal data 0.93-0.98 at n = 8 and 20; lognormal(0, 1) data, whose skew no interval
    of the mean fully corrects at this size, at least 0.88 at n = 8 and 0.91 at n = 20. The
    percentile bootstrap the suite used before measures 0.88/0.92 (normal) and 0.78/0.87 (lognormal).
    """
    rng = np.random.default_rng(2026 + n)
    if distribution == "normal":
        samples, true_mean = rng.normal(0.0, 1.0, (1000, n)), 0.0
        band = (0.93, 0.98)
    else:
        samples, true_mean = rng.lognormal(0.0, 1.0, (1000, n)), float(np.exp(0.5))
        band = (0.88 if n == 8 else 0.91, 0.98)
    coverage = _coverage(samples, true_mean)
    assert band[0] <= coverage <= band[1]
    assert coverage > _percentile_coverage(samples, true_mean) + 0.02


def test_summary_leaves_out_images_without_hole_and_counts_missing_values():
    rows = _rows()
    rows.loc[rows.index[0], "l1"] = np.nan
    summary = summarise(rows, ["psnr", "l1"])
    telea = summary[(summary["method"] == "telea")].set_index("metric")
    assert telea.loc["psnr", "n"] == 30 and telea.loc["psnr", "n_missing"] == 0
    assert telea.loc["psnr", "ci_low"] < telea.loc["psnr", "mean"] < telea.loc["psnr", "ci_high"]
    assert telea.loc["l1", "n"] == 29 and telea.loc["l1", "n_missing"] == 1


def test_infinite_psnr_of_older_runs_counts_at_the_cap():
    rows = _rows()
    rows.loc[rows.index[0], "psnr"] = np.inf
    summary = summarise(rows, ["psnr"]).set_index("method")
    assert summary.loc["telea", "n"] == 30 and np.isfinite(summary.loc["telea", "mean"])
    assert summary.loc["telea", "ci_high"] > 30


def test_paired_comparison_detects_a_consistent_improvement():
    paired = paired_comparison(_rows(), "telea", ["psnr", "l1"]).set_index("metric")
    assert paired.loc["psnr", "mean_diff"] == pytest.approx(1.0)
    assert paired.loc["psnr", "win_rate"] == 1.0 and paired.loc["l1", "win_rate"] == 1.0
    assert paired.loc["psnr", "p_wilcoxon"] < 1e-5
    assert paired.loc["psnr", "n"] == 30


def test_area_bins_only_where_there_is_data():
    bins = area_bins(_rows(), ["psnr"])
    assert set(bins["bin"]) == {"0-10%", "10-20%", "20-30%", "30-40%"}
    assert bins.groupby("method")["n"].sum().to_dict() == {"better": 30, "telea": 30}


def test_mask_summary_counts_each_image_once():
    summary = mask_summary(_rows()).set_index("case").loc["small"]
    assert summary["n_images"] == 31
    assert summary["box_share"] == pytest.approx(10 / 31)
    assert summary["generators"] == "strokes 21, boxes 10" and summary["frames"] == "256x256 31"
    assert summary["hole_rim_share"] == pytest.approx(0.5)
    assert summary["area_p10"] <= summary["area_p50"] <= summary["area_p90"]
    files = _rows().assign(mask_generator="nvidia")
    assert np.isnan(mask_summary(files).loc[0, "box_share"])


def test_reference_choice():
    assert choose_reference(["telea", "lama"]) == "lama"
    assert choose_reference(["ns", "telea"]) == "telea"
    assert choose_reference(["ns", "telea"], "ns") == "ns"


def test_intervals_stay_inside_what_the_metric_can_take():
    rows = pd.DataFrame([{"method": "m", "case": "c", "image_id": f"i{i}", "sample": 0, "hole_fraction": 0.2,
                          "ssim": value, "lpips": 0.01 * (i + 1)} for i, value in enumerate([0.99, 0.80])])
    summary = summarise(rows, ["ssim", "lpips"]).set_index("metric")
    assert summary.loc["ssim", "ci_high"] == 1.0 and summary.loc["lpips", "ci_low"] == 0.0
