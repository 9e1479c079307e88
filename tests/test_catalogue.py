"""The metric catalogue: one spec per metric, one best-marking rule, one interval format."""

from __future__ import annotations

import math

import pandas as pd

from bench.metrics import catalogue
from bench.metrics.catalogue import CATALOGUE, best_labels, format_interval, format_value, label_with_arrow
from bench.metrics.pixel import METRIC_NAMES
from bench.report.model import case_table


def test_every_pixel_metric_computed_has_a_spec_and_nothing_else_claims_to_be_one():
    assert set(catalogue.PIXEL_METRICS) == set(METRIC_NAMES)
    assert catalogue.HOLE_PIXEL_METRICS == ("psnr_hole", "ssim_hole", "l1_hole")
    assert catalogue.PER_IMAGE_METRICS[0] == "lpips" and "fid" not in catalogue.PER_IMAGE_METRICS


def test_values_and_intervals_are_formatted_one_way():
    assert format_value("psnr", 31.234) == "31.23" and format_value("ssim", 0.91234) == "0.9123"
    assert format_value("psnr", math.inf) == "inf" and format_value("l1", math.nan) == "n/a"
    assert format_value("unlisted", 1.0) == "1.0000"
    assert format_interval("psnr_hole", 20.0, 19.5, 20.25) == "20.00 [19.50, 20.25]"
    assert label_with_arrow("lpips") == "LPIPS ↓" and label_with_arrow("psnr") == "PSNR (dB) ↑"


def test_best_marks_every_tied_best_finite_value():
    means = pd.Series({"a": 30.0, "b": 30.0, "c": 29.0, "d": math.inf})
    assert best_labels(means, "psnr") == {"a", "b"}
    assert best_labels(pd.Series({"a": 0.1, "b": 0.2}), "lpips") == {"a"}
    assert best_labels(pd.Series({"a": 0.1}), "lpips") == set()
    assert best_labels(pd.Series({"a": 0.1, "b": 0.2}), "unlisted") == set()
    assert best_labels(pd.Series({"a": math.nan, "b": math.nan}), "psnr") == set()


def test_the_markdown_table_bolds_ties_like_the_html_page():
    summary = pd.DataFrame([
        {"method": method, "case": "small", "metric": "psnr", "mean": mean, "ci_low": mean - 1, "ci_high": mean + 1,
         "n": 3}
        for method, mean in (("telea", 30.0), ("ns", 30.0), ("biharmonic", 28.0))
    ])
    column = case_table(summary, "small", ["psnr"])["PSNR (dB) ↑"].tolist()
    assert column == ["**30.00 [29.00, 31.00]**", "**30.00 [29.00, 31.00]**", "28.00 [27.00, 29.00]"]


def test_the_regression_check_reads_the_catalogue():
    from bench.analysis.regression import DIRECTIONS, TOLERANCES

    assert TOLERANCES == {name: spec.tolerance for name, spec in CATALOGUE.items()}
    assert DIRECTIONS["fid"] is False and DIRECTIONS["psnr"] is True
