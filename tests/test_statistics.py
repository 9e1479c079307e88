from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.statistics import area_bins, bootstrap_ci, choose_reference, paired_comparison, summarise


def _rows():
    rng = np.random.default_rng(0)
    records = []
    for index in range(30):
        area = 0.05 + 0.3 * index / 30
        base = 25 + rng.normal(0, 2)
        for method, shift in (("telea", 0.0), ("better", 1.0)):
            records.append({"method": method, "case": "small", "image_id": f"i{index}", "sample": 0,
                            "hole_fraction": area, "wall_time_s": 0.1, "psnr": base + shift,
                            "l1": 0.1 - shift / 100})
    records.append({"method": "telea", "case": "small", "image_id": "empty", "sample": 0, "hole_fraction": 0.0,
                    "wall_time_s": 0.0, "psnr": np.inf, "l1": 0.0})
    return pd.DataFrame(records)


def test_bootstrap_ci_covers_the_mean_and_handles_degenerate_samples():
    values = np.random.default_rng(1).normal(10, 1, 200)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.5
    assert bootstrap_ci(np.array([3.0, 3.0, 3.0])) == (3.0, 3.0)
    assert all(np.isnan(bootstrap_ci(np.array([1.0]))))


def test_summary_leaves_out_images_without_hole():
    summary = summarise(_rows(), ["psnr", "l1"])
    telea = summary[(summary["method"] == "telea") & (summary["metric"] == "psnr")].iloc[0]
    assert telea["n"] == 30 and np.isfinite(telea["mean"]) and telea["ci_low"] < telea["mean"] < telea["ci_high"]


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


def test_reference_choice():
    assert choose_reference(["telea", "lama"]) == "lama"
    assert choose_reference(["ns", "telea"]) == "telea"
    assert choose_reference(["ns", "telea"], "ns") == "ns"
