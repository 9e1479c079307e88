"""The regression check: a run passes against its own baseline; a worse prediction, a better one, a
changed N or a missing entry fails it with a readable message; tolerance edges."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench.analysis.regression import (
    BASELINE_META,
    BASELINE_TABLE,
    TOLERANCES,
    check_run,
    compare_tables,
    format_result,
    read_summary,
    update_baseline,
)
from bench.cli.check import add_command
from bench.cli import main as cli_main
from bench.errors import UserError
from bench.run.joblog import read_records
from bench.run.rundir import RunDir, read_json, read_rgb_png, write_rgb_png
from bench.metrics.pixel import pixel_metrics
from masks.io import read_mask_png
from tiny_run import CASE, IMAGE_IDS, build_tiny_run, run_arguments


def check_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    build_tiny_run(root)
    return root


@pytest.fixture
def run_copy(tiny_root, tmp_path):
    """A private copy of the tiny run (data and runs folders) that a test may alter."""
    shutil.copytree(tiny_root / "data", tmp_path / "data")
    shutil.copytree(tiny_root / "runs", tmp_path / "runs", symlinks=True)
    return tmp_path


def summary_row(method="telea", case="small", metric="psnr", mean=30.0, n=4):
    return {"method": method, "case": case, "metric": metric, "mean": mean, "std": 1.0, "ci_low": mean - 1,
            "ci_high": mean + 1, "n": n}


def compare(baseline_rows, run_rows):
    return compare_tables(pd.DataFrame(baseline_rows), pd.DataFrame(run_rows))


def test_run_passes_against_its_own_baseline(run_copy, capsys):
    run_dir, baseline = run_copy / "runs" / "tiny", run_copy / "baseline"
    assert check_cli(str(run_dir), "--baseline", str(baseline), "--update") == 0
    assert check_cli(str(run_dir), "--baseline", str(baseline)) == 0
    output = capsys.readouterr().out
    assert "PASSED" in output and "12 entries compared" in output
    note = json.loads((baseline / BASELINE_META).read_text())
    assert note["command"] == read_json(run_dir / "run.json")["command"] and note["entries"] == 12
    assert read_summary(baseline / BASELINE_TABLE).equals(read_summary(run_dir / "tables" / "summary.csv"))


def test_update_of_an_unchanged_run_rewrites_identical_files(run_copy):
    run_dir, baseline = run_copy / "runs" / "tiny", run_copy / "baseline"
    update_baseline(run_dir, baseline)
    first = {path.name: path.read_bytes() for path in baseline.iterdir()}
    update_baseline(run_dir, baseline)
    assert {path.name: path.read_bytes() for path in baseline.iterdir()} == first


def test_a_worse_prediction_trips_the_check(run_copy, capsys):
    """Degrade one Navier-Stokes prediction on disk, resume the run, and check against the old baseline."""
    data_dir, runs_dir = run_copy / "data", run_copy / "runs"
    run_dir, baseline = runs_dir / "tiny", run_copy / "baseline"
    update_baseline(run_dir, baseline)
    image_id = IMAGE_IDS[0]
    prediction_path = run_dir / "pred" / "ns" / CASE / f"{image_id}.png"
    original = read_rgb_png(run_dir / "images" / f"{image_id}.png")
    hole = read_mask_png(run_dir / "masks" / CASE / f"{image_id}.png")
    degraded = read_rgb_png(prediction_path)
    degraded[hole] = 255 - degraded[hole]
    write_rgb_png(prediction_path, degraded)
    # A line appended for the same job key wins over the earlier one.
    logs = RunDir(run_dir).job_logs()
    record = next(record for record in read_records(logs)
                  if (record["method"], record["case"], record["image_id"]) == ("ns", CASE, image_id))
    with open(logs[-1], "a", encoding="utf-8") as log:
        log.write(json.dumps({**record, **pixel_metrics(original, degraded, hole)}) + "\n")
    assert cli_main(run_arguments(data_dir, runs_dir)) == 0  # resumes: rows and tables from the job logs
    capsys.readouterr()
    assert check_cli(str(run_dir), "--baseline", str(baseline)) == 1
    output = capsys.readouterr().out
    assert "REGRESSIONS (worse than the baseline beyond tolerance)" in output
    assert f"ns / {CASE} / psnr_hole: mean " in output
    assert "telea /" not in output  # the untouched method is unaffected
    assert "FAILED:" in output and "--update" in output


def test_tolerance_edges_follow_each_metrics_direction():
    tolerance = TOLERANCES["psnr"].value
    assert not compare([summary_row(mean=30.0)], [summary_row(mean=30.0 + tolerance)]).findings
    assert not compare([summary_row(mean=30.0)], [summary_row(mean=30.0 - tolerance)]).findings
    [better] = compare([summary_row(mean=30.0)], [summary_row(mean=30.0 + 1.01 * tolerance)]).findings
    [worse] = compare([summary_row(mean=30.0)], [summary_row(mean=30.0 - 1.01 * tolerance)]).findings
    assert (better.kind, worse.kind) == ("improvement", "regression")
    l1 = TOLERANCES["l1"].value
    [higher_l1] = compare([summary_row(metric="l1", mean=0.01)], [summary_row(metric="l1", mean=0.01 + 1.1 * l1)]).findings
    assert higher_l1.kind == "regression"
    assert not compare([summary_row(metric="l1", mean=0.01)], [summary_row(metric="l1", mean=0.01 + 0.9 * l1)]).findings


def test_relative_tolerance_scales_with_the_baseline():
    allowed = TOLERANCES["fid"].value * 50.0
    assert not compare([summary_row(metric="fid", mean=50.0)], [summary_row(metric="fid", mean=50.0 + allowed)]).findings
    [finding] = compare([summary_row(metric="fid", mean=50.0)],
                        [summary_row(metric="fid", mean=50.0 + 1.05 * allowed)]).findings
    assert finding.kind == "regression"


def test_nan_n_and_unknown_metrics_are_changes():
    assert not compare([summary_row(mean=np.nan)], [summary_row(mean=np.nan)]).findings
    [became_nan] = compare([summary_row()], [summary_row(mean=np.nan)]).findings
    assert became_nan.kind == "changed" and "-> nan" in became_nan.message
    [fewer] = compare([summary_row(n=4)], [summary_row(n=3)]).findings
    assert fewer.kind == "changed" and "n 4 -> 3" in fewer.message
    [unknown] = compare([summary_row(metric="sharpness", mean=1.0)], [summary_row(metric="sharpness", mean=1.02)]).findings
    assert unknown.kind == "changed"


def test_missing_and_new_entries_are_listed_by_method_and_case(tmp_path):
    baseline = [summary_row(), summary_row(metric="ssim", mean=0.9), summary_row(method="ns")]
    run = [summary_row(), summary_row(method="lama", metric="ssim", mean=0.9)]
    result = compare(baseline, run)
    assert sorted(f.kind for f in result.findings) == ["missing", "missing", "new"]
    text = format_result(result, run_dir=tmp_path / "run", baseline_dir=tmp_path / "baseline")
    assert "MISSING FROM THE RUN (in the baseline only): 2\n  telea / small: ssim\n  ns / small: psnr" in text
    assert "NEW IN THE RUN (not in the baseline): 1\n  lama / small: ssim" in text
    assert "FAILED: 2 missing, 1 new." in text


def test_improvements_fail_unless_allowed(tmp_path):
    result = compare([summary_row(mean=30.0)], [summary_row(mean=31.0)])
    assert result.failed() and not result.failed(allow_improvements=True)
    text = format_result(result, run_dir=tmp_path, baseline_dir=tmp_path, allow_improvements=True)
    assert "PASSED" in text and "telea / small / psnr: mean 30.0000 -> 31.0000 (+1 dB; tolerance 0.05 dB)" in text


def test_user_errors_name_the_fix(run_copy, tmp_path):
    with pytest.raises(UserError, match="--update"):
        check_run(run_copy / "runs" / "tiny", tmp_path / "no-baseline")
    with pytest.raises(UserError, match="relama-bench run"):
        check_run(tmp_path / "not-a-run", tmp_path)
    duplicated = tmp_path / "duplicated.csv"
    pd.DataFrame([summary_row(), summary_row()]).to_csv(duplicated, index=False)
    with pytest.raises(UserError, match="twice"):
        read_summary(duplicated)


def _bad_baseline(kind: str, path) -> None:
    good = pd.DataFrame([summary_row()])
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "corrupt":
        path.write_text('method,case,metric,mean,n\n"telea,small,psnr\n"unclosed,"quote,1\n')
    elif kind == "non-numeric mean":
        good.assign(mean="thirty").to_csv(path, index=False)
    elif kind == "fractional n":
        good.assign(n=2.5).to_csv(path, index=False)
    elif kind == "text n":
        good.assign(n="four").to_csv(path, index=False)
    elif kind == "a folder":
        path.mkdir()
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind, expected", [
    ("empty", "is empty"), ("binary", "not a readable CSV table"), ("corrupt", "not a readable CSV table"),
    ("non-numeric mean", "mean thirty for telea"), ("fractional n", "n 2.5 for"), ("text n", "n four for"),
    ("a folder", "is a folder"),
])
def test_bad_baseline_tables_are_one_sentence(kind, expected, run_copy, tmp_path, capfd):
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    _bad_baseline(kind, baseline / BASELINE_TABLE)
    code = cli_main(["check", str(run_copy / "runs" / "tiny"), "--baseline", str(baseline)])
    captured = capfd.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    message = captured.err.strip()
    assert message.startswith("relama-bench: error: ") and "\n" not in message
    assert str(baseline / BASELINE_TABLE) in message and expected in message
