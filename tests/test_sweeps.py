"""Resolution and hole-size sweeps: mask geometry, tables, the command and its errors."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pandas as pd
import pytest

from bench.studies import sweeps
from bench.run.data import BenchImage, default_images
from bench.errors import UserError
from bench.cli.sweep import add_command
from methods.registry import create_method

FRACTIONS = np.linspace(0.05, 0.6, 8)


@pytest.fixture(scope="module")
def tiny_images() -> list[BenchImage]:
    return default_images(size=48, limit=2)


def test_growing_boxes_hit_their_area_and_grow() -> None:
    masks = sweeps.growing_box_masks((60, 90), FRACTIONS, np.random.default_rng(0))
    areas = np.array([mask.mean() for mask in masks])
    assert np.all(np.diff(areas) > 0)
    assert np.allclose(areas, FRACTIONS, atol=0.03)


def test_growing_strokes_are_nested_and_reach_each_target() -> None:
    masks = sweeps.area_masks((64, 96), "strokes", FRACTIONS, "chelsea", seed=1)
    for smaller, larger in zip(masks, masks[1:]):
        assert not (smaller & ~larger).any()
    areas = np.array([mask.mean() for mask in masks])
    assert np.all(areas >= FRACTIONS - 0.02)
    again = sweeps.area_masks((64, 96), "strokes", FRACTIONS, "chelsea", seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    with pytest.raises(ValueError, match="non-decreasing"):
        sweeps.growing_stroke_masks((64, 64), [0.3, 0.1], np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown mask shape family"):
        sweeps.area_masks((64, 64), "blob", FRACTIONS, "x", seed=0)


def test_resolution_rows_keep_the_relative_hole(tiny_images: list[BenchImage]) -> None:
    rows = sweeps.resolution_rows(tiny_images, {"telea": create_method("telea")}, ["region"],
                                  resolutions=[32, 64, 128])
    assert set(rows["resolution"]) == {32, 64, 128}
    assert rows.groupby(["image_id", "resolution"])[["height", "width"]].max().max(axis=1).tolist() == [32, 64, 128] * 2
    spread = rows.groupby("image_id")["hole_fraction"].agg(lambda values: values.max() - values.min())
    assert (spread < 0.02).all()
    assert rows["upscaled"].any()
    summary = sweeps.summarise_by(rows, ["method", "case", "resolution"])
    assert list(summary.columns) == ["method", "case", "resolution", "metric", "mean", "ci_low", "ci_high", "n"]


def test_area_rows_grow_monotonically_and_bin_finely(tiny_images: list[BenchImage]) -> None:
    rows = sweeps.area_rows(tiny_images, {"telea": create_method("telea")}, FRACTIONS)
    for _, group in rows.groupby(["image_id", "shape"]):
        assert np.all(np.diff(group.sort_values("level")["hole_fraction"].to_numpy()) >= 0)
    bins = sweeps.fine_bins(rows)
    assert list(bins.columns) == ["shape", "method", "bin", "bin_low", "bin_high", "metric", "mean", "n"]
    assert np.allclose(bins["bin_high"] - bins["bin_low"], sweeps.FINE_BIN_WIDTH)
    assert set(bins["shape"]) == set(sweeps.SHAPES)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_sweep_commands_write_reports(tmp_path) -> None:
    common = ["--methods", "telea,lama", "--images", "1", "--runs-dir", str(tmp_path)]
    assert _run(["sweep", "resolution", "--resolutions", "32,64", "--cases", "small", "--out", "res", *common]) == 0
    assert _run(["sweep", "area", "--size", "32", "--levels", "3", "--shapes", "box", "--out", "area", *common]) == 0
    for name, figure in (("res", "resolution_psnr_hole.png"), ("area", "area_psnr_hole.png")):
        assert (tmp_path / name / "figures" / figure).exists()
        markdown = (tmp_path / name / "report.md").read_text()
        assert "weights missing" in markdown  # lama has no weights here and is reported as skipped
        assert "data:image/png;base64," in (tmp_path / name / "report.html").read_text()
    rows = pd.read_csv(tmp_path / "area" / "rows.csv")
    assert set(rows["method"]) == {"telea"} and rows["level"].nunique() == 3


@pytest.mark.parametrize("argv, message", [
    (["area", "--levels", "1"], "--levels 1"),
    (["area", "--min-area", "0.8", "--max-area", "0.2"], "--min-area"),
    (["area", "--size", "30"], "--size 30"),
    (["area", "--shapes", "blob"], "unknown mask shape family"),
    (["resolution", "--resolutions", "abc"], "--resolutions"),
    (["resolution", "--resolutions", "16"], "at least 32"),
    (["resolution", "--cases", "huge"], "unknown mask case"),
    (["resolution", "--methods", "nope"], "unknown method"),
    (["resolution", "--methods", "lama"], "no method can run"),
])
def test_sweep_errors_are_one_sentence(argv: list[str], message: str, tmp_path) -> None:
    with pytest.raises(UserError, match=message) as error:
        _run(["sweep", *argv, "--runs-dir", str(tmp_path)])
    text = str(error.value)
    assert "\n" not in text and not re.search(r"\.\s+[A-Z]", text)
