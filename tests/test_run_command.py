from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from conftest import write_photos

REPO_ROOT = Path(__file__).resolve().parents[1]




def _error_of(capsys, argv):
    assert main(argv) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("relama-bench: error: ") and "\n" not in message
    return message


def test_run_end_to_end_writes_the_run_directory(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 2, (40, 56), prefix="p")
    runs = tmp_path / "runs"
    assert main(["run", "--data", str(data), "--methods", "telea,ns", "--cases", "small,large",
                 "--runs-dir", str(runs), "--no-progress"]) == 0
    output = capsys.readouterr().out
    assert "report: " in output and "case small" in output
    run_dir = (runs / "latest").resolve()
    for name in ("config.toml", "rows.parquet", "errors.csv", "report.md", "run.json",
                 "figures/grid_small.png", "figures/grid_large.png", "masks/small/p0.png",
                 "pred/ns/large/p1.png", "tables/summary.csv"):
        assert (run_dir / name).exists(), name
    report = (run_dir / "report.md").read_text()
    for text in ("## Results by case", "### small", "Paired comparison against `telea`", "SSIM convention",
                 "95 %", "size policy", "seed 0", "numpy"):
        assert text in report, text
    assert main(["report", str(runs / "latest")]) == 0


def test_methods_missing_weights_are_skipped_with_reason(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (40, 56), prefix="p")
    # Named in --methods, so the run that could not run it fails, after finishing the others.
    assert main(["run", "--data", str(data), "--methods", "telea,pluralistic", "--cases", "small",
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-learned-metrics"]) == 1
    captured = capsys.readouterr()
    assert "skipped pluralistic: weights missing: pass --weights pluralistic=PATH" in captured.out
    assert captured.err.strip() == ("relama-bench: error: method pluralistic could not run: weights missing: pass "
                                    "--weights pluralistic=PATH (folder with the released latest_net_E.pth and "
                                    "latest_net_G.pth)")
    report = (tmp_path / "runs" / "latest" / "report.md").read_text()
    assert "## Skipped methods" in report and "- pluralistic: weights missing" in report


@pytest.mark.parametrize("argv, expected", [
    (["--methods", "telea,unknown"], "unknown method 'unknown'; known methods: telea, ns"),
    (["--cases", "small,huge"], "unknown mask case 'huge'; known cases: small, region, large"),
    (["--limit", "0"], "--limit 0 selects no image"),
    (["--weights", "lama"], "is not METHOD=PATH"),
    (["--data", "/nonexistent/photos"], "data folder /nonexistent/photos does not exist"),
    (["--masks", "/nonexistent/masks"], "mask folder /nonexistent/masks does not exist"),
])
def test_bad_arguments_end_in_one_sentence(tmp_path, capsys, argv, expected):
    message = _error_of(capsys, ["run", "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-learned-metrics",
                                 *argv])
    assert expected in message


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = _error_of(capsys, ["run", "--runs-dir", str(blocker / "runs"), "--limit", "1", "--methods", "telea",
                                 "--no-progress"])
    assert "cannot be written" in message and "--runs-dir" in message


def test_labelme_naming_another_image_is_refused(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (40, 56), prefix="p")
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "p0.json").write_text(json.dumps({"imagePath": "../../secret.png", "imageHeight": 40,
                                               "imageWidth": 56, "shapes": []}))
    message = _error_of(capsys, ["run", "--data", str(data), "--masks", str(masks), "--methods", "telea",
                                 "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-learned-metrics"])
    assert "p0.json annotates 'secret.png' (its imagePath), not the image" in message


def test_mask_of_wrong_size(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (40, 56), prefix="p")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "p0.png")
    message = _error_of(capsys, ["run", "--data", str(data), "--masks", str(masks), "--methods", "telea",
                                 "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-learned-metrics"])
    assert "p0.png is 10x10" in message and "make the mask the image's size" in message


def _run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)


def test_killed_run_resumes_to_the_same_rows_without_recomputing(tmp_path):
    data = write_photos(tmp_path / "data", 6, (160, 200), prefix="p")
    common = ["run", "--data", str(data), "--methods", "biharmonic,telea", "--cases", "large", "--workers", "1",
              "--no-progress", "--no-learned-metrics"]
    reference = _run_cli([*common, "--runs-dir", str(tmp_path / "straight")])
    assert reference.wait(timeout=300) == 0

    runs = tmp_path / "killed"
    victim = _run_cli([*common, "--runs-dir", str(runs)], start_new_session=True)
    deadline = time.time() + 120
    records: list[Path] = []
    while time.time() < deadline and victim.poll() is None:
        records = list(runs.glob("*/pred/*/*/*.json"))
        if len(records) >= 2:
            break
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    # A prediction's PNG is written once, by inference; the record beside it may gain learned metrics later.
    finished_before = {path.with_suffix(".png"): path.with_suffix(".png").stat().st_mtime_ns
                       for path in runs.glob("*/pred/*/*/*.json")}
    assert 2 <= len(finished_before) < 12, "the run should have been killed part-way"
    assert not list(runs.glob("*/rows.parquet"))

    resumed = _run_cli([*common, "--runs-dir", str(runs)])
    assert resumed.wait(timeout=300) == 0
    for path, stamp in finished_before.items():
        assert path.stat().st_mtime_ns == stamp, f"{path} was recomputed"
    straight_rows = pd.read_parquet(next((tmp_path / "straight").glob("run-*/rows.parquet")))
    resumed_rows = pd.read_parquet(next(runs.glob("run-*/rows.parquet")))
    columns = [column for column in straight_rows.columns if column != "wall_time_s"]
    pd.testing.assert_frame_equal(straight_rows[columns], resumed_rows[columns])
    assert not list(runs.rglob("*.tmp")), "no partial files may remain"


def test_shipped_models_run_by_default_with_their_domain_next_to_their_rows(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (40, 56), prefix="p")
    assert main(["run", "--data", str(data), "--cases", "region", "--runs-dir", str(tmp_path / "runs"),
                 "--no-progress", "--no-learned-metrics"]) == 0
    rows = pd.read_parquet(tmp_path / "runs" / "latest" / "rows.parquet")
    assert {"lama-celebahq64", "relama-cbam-celebahq64", "telea"} <= set(rows["method"])
    report = (tmp_path / "runs" / "latest" / "report.md").read_text()
    assert "| lama-celebahq64 (trained on CelebA-HQ faces 64x64)" in report
