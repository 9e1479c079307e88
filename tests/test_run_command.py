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
from conftest import logged_jobs, write_photos

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
    for text in ("## Results by case", "### small", "Paired comparison against `telea`", "SSIM (lama): LaMa's evaluation convention",
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
    (["--cases", "small,huge"], "unknown mask case 'huge'; known cases: small, region, large, thin, medium, thick"),
    (["--cases", "nvidia_10_20"], "case 'nvidia_10_20' reads the NVIDIA mask set: add --masks-protocol nvidia=DIR"),
    (["--masks-protocol", "places=/tmp"], "is not nvidia=DIR"),
    (["--masks-protocol", "nvidia=/nonexistent/nv"], "NVIDIA mask folder /nonexistent/nv does not exist"),
    (["--limit", "0"], "--limit 0 selects no image"),
    (["--weights", "lama"], "is not METHOD=PATH"),
    (["--data", "/nonexistent/photos"], "data folder /nonexistent/photos does not exist"),
    (["--masks", "/nonexistent/masks"], "mask folder /nonexistent/masks does not exist"),
])
def test_bad_arguments_end_in_one_sentence(tmp_path, capsys, argv, expected):
    message = _error_of(capsys, ["run", "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--no-learned-metrics",
                                 *argv])
    assert expected in message


def test_masks_and_cases_together_are_refused(tmp_path, capsys):
    (tmp_path / "masks").mkdir()
    message = _error_of(capsys, ["run", "--masks", str(tmp_path / "masks"), "--cases", "thin",
                                 "--runs-dir", str(tmp_path / "runs")])
    assert "--cases does not apply with --masks" in message


def test_lama_protocol_cases_run_on_any_data_and_the_report_describes_their_masks(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 3, (40, 56), prefix="p")
    runs = tmp_path / "runs"
    assert main(["run", "--data", str(data), "--methods", "telea", "--cases", "thin,medium,thick", "--ssim", "skimage",
                 "--runs-dir", str(runs), "--no-progress", "--no-learned-metrics"]) == 0
    run_dir = (runs / "latest").resolve()
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert set(rows["case"]) == {"thin", "medium", "thick"} and (rows["mask_frame"] == "256x256").all()
    assert set(rows["mask_generator"]) <= {"strokes", "boxes"}
    report = (run_dir / "report.md").read_text()
    assert "SSIM (skimage): scikit-image's" in report
    assert "| thin " in report and "square, side 256" in report and r"max\_tamper\_area" in report
    assert "area mean [p10, p50, p90]" in report and "box share" in report
    assert (run_dir / "tables" / "masks.csv").exists()


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
    while time.time() < deadline and victim.poll() is None:
        if len(logged_jobs(next(runs.glob("run-*"), runs))) >= 2:
            break
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    run_dir = next(runs.glob("run-*"))
    finished_before = logged_jobs(run_dir)
    stamps = {job: (run_dir / "pred" / f"{job}.png").stat().st_mtime_ns for job in finished_before}
    assert 2 <= len(finished_before) < 12, "the run should have been killed part-way"
    assert not list(runs.glob("*/rows.parquet"))
    # What a kill in the middle of a write leaves: a torn last line, which the rerun must skip.
    with open(run_dir / "logs" / "jobs.rank0.1.jsonl", "a") as log:
        log.write('{"case": "large", "image_id": "p1", "job_key": "')

    resumed = _run_cli([*common, "--runs-dir", str(runs)])
    assert resumed.wait(timeout=300) == 0
    # The rerun appended to a log of its own, once per job it computed, and recomputed no finished job.
    assert sorted(path.name for path in (run_dir / "logs").glob("jobs.*")) == ["jobs.rank0.1.jsonl",
                                                                             "jobs.rank0.2.jsonl"]
    assert logged_jobs(run_dir) == {job: 1 for job in logged_jobs(run_dir)} and len(logged_jobs(run_dir)) == 12
    for job, stamp in stamps.items():
        assert (run_dir / "pred" / f"{job}.png").stat().st_mtime_ns == stamp, f"{job} was recomputed"
    straight_rows = pd.read_parquet(next((tmp_path / "straight").glob("run-*/rows.parquet")))
    resumed_rows = pd.read_parquet(next(runs.glob("run-*/rows.parquet")))
    columns = [column for column in straight_rows.columns if column != "wall_time_s"]
    pd.testing.assert_frame_equal(straight_rows[columns], resumed_rows[columns])
    assert not list(runs.rglob("*.tmp")), "no partial files may remain"


def test_domain_models_leave_the_default_run_and_show_their_domain_when_named(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (40, 56), prefix="p")
    assert main(["run", "--data", str(data), "--cases", "region", "--runs-dir", str(tmp_path / "runs"),
                 "--no-progress", "--no-learned-metrics"]) == 0
    rows = pd.read_parquet(tmp_path / "runs" / "latest" / "rows.parquet")
    assert "telea" in set(rows["method"])
    assert not {"lama-celebahq64", "relama-cbam-celebahq64", "lama-scenes"} & set(rows["method"])
    assert main(["run", "--data", str(data), "--cases", "region", "--runs-dir", str(tmp_path / "runs"),
                 "--methods", "lama-scenes", "--no-progress", "--no-learned-metrics"]) == 0
    report = (tmp_path / "runs" / "latest" / "report.md").read_text()
    assert "| lama-scenes (trained on natural-scene photographs" in report


def _tiny_run(tmp_path, *argv, images=1):
    data = tmp_path / "data"
    if not data.exists():
        write_photos(data, images, (40, 56), prefix="p")
    return ["run", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--no-progress",
            "--no-learned-metrics", *argv]


@pytest.mark.parametrize("argv, expected", [
    (["--methods", ","], "--methods ',' names no method"),
    (["--mask-threshold", "300"], "--mask-threshold 300 is out of range: pass a grey level"),
    (["--seed", "-1"], "--seed -1 is out of range"),
    (["--figure-rows", "0"], "--figure-rows 0 is out of range"),
    (["--size", "99999"], "--size 99999 is out of range: pass a side in pixels from 16 to 4096"),
    (["--size", "8000"], "--size 8000 is out of range"),
    (["--max-side", "0"], "--max-side 0 is out of range"),
    (["--samples", "100000"], "--samples 100000 is out of range"),
    (["--workers", "0"], "--workers 0 is out of range"),
    (["--run-id", "."], "--run-id '.' is not a plain folder name"),
    (["--run-id", ".."], "--run-id '..' is not a plain folder name"),
    (["--run-id", "/tmp/relama-escape"], "--run-id '/tmp/relama-escape' is not a plain folder name"),
    (["--run-id", "latest"], "--run-id 'latest' is not a plain folder name"),
    (["--reference", "foo"], "--reference 'foo' is not a method of this run: pass one of telea"),
    (["--option", "telea.radius=abc"], "--option telea.radius=abc is not a number: pass a number"),
    (["--option", "telea.radius=3", "--option", "telea.radius=4"], "--option telea.radius is given twice"),
    (["--option", "telea.radius=-3"], "--option telea.radius=-3 is refused by method 'telea' (inpaint radius "
                                      "must be positive, got -3.0)"),
    (["--weights", "lama=a.ckpt", "--weights", "lama=b.ckpt"], "--weights gives lama two files (a.ckpt and b.ckpt)"),
])
def test_bad_run_options_end_in_one_sentence_naming_the_option(tmp_path, capsys, argv, expected):
    message = _error_of(capsys, _tiny_run(tmp_path, "--methods", "telea", "--cases", "small", *argv))
    assert expected in message
    assert not list((tmp_path / "runs").glob("*/logs/jobs.*")), "no job may run with a bad option"
    assert not Path("/tmp/relama-escape").exists()


def test_duplicates_in_lists_are_dropped_with_a_note(tmp_path, capsys):
    argv = _tiny_run(tmp_path, "--methods", "telea,ns,telea", "--cases", "large,small,large", images=2)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "--methods lists 'telea' 2 times; it is used once" in err
    assert "--cases lists 'large' 2 times; it is used once" in err
    rows = pd.read_parquet(tmp_path / "runs" / "latest" / "rows.parquet")
    assert len(rows) == 2 * 2 * 2 and not rows.duplicated(["method", "case", "image_id"]).any()
    assert list(dict.fromkeys(rows["method"])) == ["telea", "ns"]


def test_max_side_applies_to_images_and_user_masks_alike(tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    hole = np.zeros((40, 56), np.uint8)
    hole[10:30, 10:30] = 255
    Image.fromarray(hole).save(masks / "p0.png")
    assert main(_tiny_run(tmp_path, "--methods", "telea", "--masks", str(masks), "--max-side", "28")) == 0
    run_dir = (tmp_path / "runs" / "latest").resolve()
    assert np.asarray(Image.open(run_dir / "images" / "p0.png")).shape == (20, 28, 3)
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert len(rows) == 1 and rows.loc[0, "width"] == 28
    assert "long side capped at 28" in (run_dir / "report.md").read_text()


def test_a_run_where_no_mask_has_a_hole_is_refused(tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((40, 56), 100, np.uint8)).save(masks / "p0.png")
    message = _error_of(capsys, _tiny_run(tmp_path, "--methods", "telea", "--masks", str(masks),
                                          "--mask-threshold", "200"))
    assert f"no mask in {masks} has a hole (grey values above 200)" in message


def test_an_existing_latest_folder_is_refused_before_the_run(tmp_path, capsys):
    (tmp_path / "runs" / "latest").mkdir(parents=True)
    message = _error_of(capsys, _tiny_run(tmp_path, "--methods", "telea", "--cases", "small"))
    assert f"{tmp_path / 'runs' / 'latest'} is a folder, not the link" in message
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["latest"]


def _bad_weights(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "missing":
        return folder / "nothing.safetensors"
    if kind == "folder":
        return folder
    path = folder / ("w.pt" if kind == "random bytes" else "w.safetensors")
    path.write_bytes(os.urandom(300) if kind == "random bytes" else b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    return path


@pytest.mark.parametrize("kind", ["missing", "folder", "random bytes", "truncated safetensors"])
def test_bad_weights_skip_their_method_and_fail_a_run_that_named_it(tmp_path, capsys, kind):
    weights = _bad_weights(kind, tmp_path / "weights")
    argv = _tiny_run(tmp_path, "--methods", "telea,lama-celebahq64", "--cases", "small",
                     "--weights", f"lama-celebahq64={weights}", images=2)
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    [line] = captured.err.strip().splitlines()
    assert line.startswith("relama-bench: error: method lama-celebahq64 could not run: ") and str(weights) in line
    rows = pd.read_parquet(tmp_path / "runs" / "latest" / "rows.parquet")
    assert set(rows["method"]) == {"telea"} and len(rows) == 2, "the other method's work is kept"
    assert pd.read_csv(tmp_path / "runs" / "latest" / "errors.csv").empty, "the method's jobs are skipped, not failed"


class _CountedLoadFailure:
    loads = 0


def test_a_method_that_fails_to_load_is_loaded_once(tmp_path, capsys, monkeypatch):
    from methods import registry
    from methods.base import Family, Inpainter
    from methods.checkpoint import CheckpointError

    class Unloadable(Inpainter):
        name = "test-unloadable"
        family = Family.CNN

        def __init__(self) -> None:
            _CountedLoadFailure.loads += 1
            raise CheckpointError("checkpoint x.pt cannot be read safely (bad magic)")

        def inpaint(self, image, mask, *, seed=None):
            raise AssertionError("never called")

    monkeypatch.setitem(registry._REGISTRY, Unloadable.name, Unloadable)
    _CountedLoadFailure.loads = 0
    assert main(_tiny_run(tmp_path, "--methods", "telea,test-unloadable", "--cases", "small,large", images=3)) == 1
    assert _CountedLoadFailure.loads == 1
    assert "test-unloadable could not run: could not be loaded (checkpoint x.pt cannot be read safely (bad magic))" \
        in capsys.readouterr().err


def test_a_method_whose_every_job_fails_fails_the_run(tmp_path, capsys, monkeypatch):
    from methods import registry
    from methods.base import Family, Inpainter

    class Broken(Inpainter):
        name = "test-broken"
        family = Family.CNN

        def inpaint(self, image, mask, *, seed=None):
            raise RuntimeError("kaput")

    monkeypatch.setitem(registry._REGISTRY, Broken.name, Broken)
    assert main(_tiny_run(tmp_path, "--methods", "telea,test-broken", "--cases", "small", images=2)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("relama-bench: error: every job of method test-broken failed (first: RuntimeError: kaput)")
    assert len(pd.read_parquet(tmp_path / "runs" / "latest" / "rows.parquet")) == 2


def test_a_full_disk_stops_the_run_at_the_first_failed_write_keeping_finished_jobs(tmp_path, capsys, monkeypatch):
    import errno

    from bench.run import runner

    real_run, calls = runner.run_job, []

    def run_until_the_disk_fills(spec):
        calls.append(spec.job)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(spec.pred_path))
        return real_run(spec)

    monkeypatch.setattr(runner, "run_job", run_until_the_disk_fills)
    message = _error_of(capsys, _tiny_run(tmp_path, "--methods", "telea,ns", "--cases", "small", "--workers", "1",
                                          images=3))
    assert "No space left on device: free disk space or pass --runs-dir on another disk" in message
    assert "telea/small/p2.png" in message.replace(os.sep, "/")
    assert len(calls) == 3, "the run stops at the first full-disk error"
    assert len(logged_jobs(next((tmp_path / "runs").glob("run-*")))) == 2

    monkeypatch.setattr(runner, "run_job", real_run)
    assert main(_tiny_run(tmp_path, "--methods", "telea,ns", "--cases", "small", "--workers", "1")) == 0
    assert len(pd.read_parquet(tmp_path / "runs" / "latest" / "rows.parquet")) == 6


@pytest.mark.parametrize("error, expected", [
    (OSError(28, "No space left on device", "/runs/r/x.png"), "/runs/r/x.png: No space left on device: free disk"),
    (OSError(36, "File name too long", "/runs/r/" + "n" * 300), "File name too long: use a shorter file or folder"),
    (OSError(30, "Read-only file system", "/runs/r"), "/runs/r: Read-only file system: pass --runs-dir"),
    (IsADirectoryError(21, "Is a directory", "/runs/r/rows.parquet"), "/runs/r/rows.parquet: Is a directory"),
    (Image.DecompressionBombError("Image size (400000000 pixels) exceeds limit"), "too large to decode safely"),
    (MemoryError(), "out of memory: pass a smaller --size"),
])
def test_system_errors_end_in_one_sentence(tmp_path, capsys, monkeypatch, error, expected):
    from bench.cli import run as run_cli

    def fail(self):
        raise error

    monkeypatch.setattr(run_cli.Runner, "run", fail)
    message = _error_of(capsys, _tiny_run(tmp_path, "--methods", "telea", "--cases", "small"))
    assert expected in message


def test_weights_integrity_error_ends_in_one_sentence(tmp_path, capsys, monkeypatch):
    from bench.cli import run as run_cli
    from bench.metrics.backbones import WeightsIntegrityError

    def fail(self):
        raise WeightsIntegrityError("big-lama.ckpt has sha256 0123, expected 4567: download it again")

    monkeypatch.setattr(run_cli.Runner, "run", fail)
    message = _error_of(capsys, _tiny_run(tmp_path, "--methods", "telea", "--cases", "small"))
    assert "big-lama.ckpt has sha256 0123" in message


def test_report_with_an_unknown_reference_is_one_sentence(tmp_path, capsys):
    assert main(_tiny_run(tmp_path, "--methods", "telea,ns", "--cases", "small")) == 0
    capsys.readouterr()
    message = _error_of(capsys, ["report", str(tmp_path / "runs" / "latest"), "--reference", "foo"])
    assert "--reference 'foo' has no results in this run: pass one of telea, ns" in message


def test_comma_lists_of_every_command_drop_repeats_in_order(capsys):
    from bench.cli.options import comma_list

    assert comma_list(" b,a, b,,c,a ", "--methods") == ["b", "a", "c"]
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["relama-bench: note: --methods lists 'b' 2 times; it is used once",
                     "relama-bench: note: --methods lists 'a' 2 times; it is used once"]
