"""Runs under torchrun (gloo, CPU) equal a one-process run; a killed rank resumes; `score` re-scores.

The torchrun tests start real process groups: ``python -m torch.distributed.run --standalone`` (a free
port, so parallel test sessions do not collide) running ``-m bench.cli`` from this checkout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bench.cli import main as cli_main
from bench.metrics.backbones import resolve
from bench.run.distributed import Ranks, ranks_from_environment, shard
from bench.run.rundir import read_json
from conftest import REPO_ROOT, logged_jobs, write_photos

WEIGHTS_PRESENT = all(resolve(name) is not None for name in ("lpips-alex", "fid-inception"))
#: Two classical methods and a shipped model, as the issue asks.
METHODS = "telea,ns,lama-celebahq64"
CASE = "region"
#: Tables that hold timings, which differ between any two runs.
TIMED_TABLES = {"timing.csv"}


def test_shards_are_disjoint_cover_everything_and_follow_the_order():
    items = [f"image{index}" for index in range(11)]
    for world_size in (1, 2, 3, 8, 16):
        shards = [shard(items, Ranks(rank, world_size)) for rank in range(world_size)]
        assert sorted(item for part in shards for item in part) == sorted(items)
        assert sum(len(part) for part in shards) == len(items)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert all(part == sorted(part, key=items.index) for part in shards)


def test_ranks_come_from_torchrun_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert ranks_from_environment() == Ranks(0, 1, 0, 1)
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    ranks = ranks_from_environment()
    assert ranks == Ranks(5, 8, 1, 4) and not ranks.is_main and ranks.distributed
    assert ranks.device in ("cpu", "cuda:1")


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    environment["OMP_NUM_THREADS"] = "1"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    return environment


def _run_arguments(data: Path, runs: Path, run_id: str) -> list[str]:
    return ["run", "--data", str(data), "--methods", METHODS, "--cases", CASE, "--runs-dir", str(runs),
            "--run-id", run_id, "--workers", "1", "--no-progress"]


def _one_process(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *arguments], cwd=REPO_ROOT, env=_environment(),
                          capture_output=True, text=True, timeout=600)


def _torchrun(processes: int, arguments: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", str(processes), "-m", "bench.cli", *arguments],
                            cwd=REPO_ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def assert_same_results(first: Path, second: Path) -> None:
    """Rows (timings aside), every table but the timings, and FID/KID are equal."""
    rows_first = pd.read_parquet(first / "rows.parquet").drop(columns=["wall_time_s"])
    rows_second = pd.read_parquet(second / "rows.parquet").drop(columns=["wall_time_s"])
    pd.testing.assert_frame_equal(rows_first, rows_second, check_exact=True)
    tables = sorted(path.name for path in (first / "tables").glob("*.csv"))
    assert tables == sorted(path.name for path in (second / "tables").glob("*.csv"))
    assert "set_metrics.csv" in tables
    for name in tables:
        if name not in TIMED_TABLES:
            pd.testing.assert_frame_equal(pd.read_csv(first / "tables" / name), pd.read_csv(second / "tables" / name),
                                          check_exact=True, obj=name)
    sets = pd.read_csv(first / "tables" / "set_metrics.csv")
    assert len(sets) == len(METHODS.split(",")) and sets["fid"].notna().all() and sets["kid_mean"].notna().all()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The data folder and a one-process run of it."""
    root = tmp_path_factory.mktemp("distributed")
    data = write_photos(root / "data", 5, (64, 64), prefix="d")
    finished = _one_process(_run_arguments(data, root / "runs", "one"))
    assert finished.returncode == 0, finished.stderr
    return data, root / "runs" / "one"


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_two_processes_without_a_shared_run_directory_equal_one_process(reference, tmp_path):
    data, one = reference
    # On one machine the run directory is shared; 'no' makes the ranks send their files to rank 0.
    launched = _torchrun(2, [*_run_arguments(data, tmp_path / "runs", "two"), "--run-dir-shared", "no"])
    output, _ = launched.communicate(timeout=600)
    assert launched.returncode == 0, output
    two = tmp_path / "runs" / "two"
    assert_same_results(one, two)
    meta = read_json(two / "run.json")
    assert meta["processes"] == {"world_size": 2, "run_dir_shared": False}
    # Rank 1's job log came to rank 0 with its files.
    assert sorted(path.name for path in (two / "logs").glob("jobs.*")) == ["jobs.rank0.1.jsonl", "jobs.rank1.1.jsonl"]
    assert [image["image_id"] for image in meta["images"]] == [f"d{index}" for index in range(5)]


def _worker_pids(launcher_pid: int) -> dict[int, int]:
    """Local rank to process id of the workers torchrun started."""
    workers = {}
    for task in Path(f"/proc/{launcher_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environment = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            for entry in environment:
                if entry.startswith(b"LOCAL_RANK="):
                    workers[int(entry.split(b"=", 1)[1])] = int(child)
    return workers


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc")
def test_a_killed_rank_resumes_with_one_process_to_the_same_results(reference, tmp_path):
    data, one = reference
    arguments = _run_arguments(data, tmp_path / "runs", "killed")
    run_dir = tmp_path / "runs" / "killed"
    launched = _torchrun(2, arguments)
    deadline = time.monotonic() + 300
    # Kill rank 1 as soon as the first job of the run has finished.
    while not logged_jobs(run_dir) and launched.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _worker_pids(launched.pid)
    assert 1 in workers, "torchrun's rank 1 was not found"
    os.kill(workers[1], signal.SIGKILL)
    output, _ = launched.communicate(timeout=300)
    assert launched.returncode != 0, output
    assert not (run_dir / "rows.parquet").exists()
    finished_before = len(logged_jobs(run_dir))
    assert 0 < finished_before < 3 * 5, "the kill came after every job had finished: nothing to resume"
    resumed = _one_process(arguments)
    assert resumed.returncode == 0, resumed.stderr
    meta = read_json(run_dir / "run.json")
    assert meta["cached_jobs"] == finished_before and meta["computed_jobs"] == 3 * 5 - finished_before
    assert_same_results(one, run_dir)
    assert set(logged_jobs(run_dir).values()) == {1}, "a job was logged twice"
    # Back to two processes: each finds the jobs the single process (or either rank before) finished.
    rerun = _torchrun(2, arguments)
    output, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, output
    assert read_json(run_dir / "run.json")["computed_jobs"] == 0
    assert not list((run_dir / "logs").glob("jobs.*.3.jsonl")), "the third attempt computed nothing to log"
    assert_same_results(one, run_dir)


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_score_of_a_runs_predictions_gives_its_rows(reference, tmp_path):
    _, one = reference
    predictions = [f"--predictions={method}=" + str(one / "pred" / method / CASE) for method in METHODS.split(",")]
    code = cli_main(["score", "--data", str(one / "images"), "--masks", str(one / "masks" / CASE), *predictions,
                     "--runs-dir", str(tmp_path / "runs"), "--run-id", "scored", "--workers", "1", "--no-progress"])
    assert code == 0
    scored = pd.read_parquet(tmp_path / "runs" / "scored" / "rows.parquet")
    assert not scored["known_pixels_changed"].any()
    assert (scored["family"] == "external").all() and scored["wall_time_s"].isna().all()
    original = pd.read_parquet(one / "rows.parquet")
    same = ["method", "image_id", "sample", "samples", "height", "width", "hole_fraction", "note", "psnr", "ssim",
            "l1", "psnr_hole", "ssim_hole", "l1_hole", "hole_rim_share", "lpips"]
    pd.testing.assert_frame_equal(scored[same], original[same], check_exact=True)
    sets = pd.read_csv(tmp_path / "runs" / "scored" / "tables" / "set_metrics.csv")
    original_sets = pd.read_csv(one / "tables" / "set_metrics.csv")
    pd.testing.assert_frame_equal(sets.drop(columns=["case"]), original_sets.drop(columns=["case"]), check_exact=True)


def test_score_composites_known_pixels_and_counts_predictions_that_changed_them(tmp_path):
    data = write_photos(tmp_path / "data", 2, (32, 40), prefix="s")
    masks, predictions = tmp_path / "masks", tmp_path / "predictions"
    masks.mkdir()
    predictions.mkdir()
    hole = np.zeros((32, 40), dtype=np.uint8)
    hole[8:20, 10:30] = 255
    for index in range(2):
        Image.fromarray(hole).save(masks / f"s{index}.png")
        prediction = np.asarray(Image.open(data / f"s{index}.png")).copy()
        prediction[8:20, 10:30] = 128
        if index == 1:
            prediction[0, 0] = 255 - prediction[0, 0]
        Image.fromarray(prediction).save(predictions / f"s{index}.png")
    code = cli_main(["score", "--data", str(data), "--masks", str(masks), "--predictions", f"mine={predictions}",
                     "--runs-dir", str(tmp_path / "runs"), "--run-id", "s", "--workers", "1", "--no-progress",
                     "--no-learned-metrics"])
    assert code == 0
    run_dir = tmp_path / "runs" / "s"
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert rows["known_pixels_changed"].tolist() == [False, True]
    composited = np.asarray(Image.open(run_dir / "pred" / "mine" / "user" / "s1.png"))
    assert (composited[0, 0] == np.asarray(Image.open(data / "s1.png"))[0, 0]).all()
    assert "known pixels the method had changed: mine 1 of 2" in (run_dir / "report.md").read_text()


def test_score_refuses_a_repeated_name_and_a_missing_folder(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (32, 32))
    base = ["score", "--data", str(data), "--masks", str(data), "--runs-dir", str(tmp_path / "runs")]
    assert cli_main([*base, "--predictions", f"a={data}", "--predictions", f"a={data}"]) == 2
    assert "names 'a' twice" in capsys.readouterr().err
    assert cli_main([*base, "--predictions", f"a={tmp_path / 'nowhere'}"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_inception_features_do_not_depend_on_how_images_are_grouped():
    from bench.metrics.learned import InceptionFeatures

    images = list(np.random.default_rng(3).integers(0, 256, (17, 48, 48, 3), dtype=np.uint8))
    extractor = InceptionFeatures(batch_size=16)
    together = extractor.extract(images)
    alone = torch.cat([extractor.extract(image) for image in images[:2]] + [extractor.extract(images[2:])])
    assert torch.equal(together, alone)


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_predictions_kept_for_the_grids_only_are_still_scored_and_resume(tmp_path):
    data = write_photos(tmp_path / "data", 3, (40, 40), prefix="g")
    arguments = ["run", "--data", str(data), "--methods", "telea", "--cases", CASE, "--runs-dir", str(tmp_path),
                 "--run-id", "g", "--workers", "1", "--no-progress", "--save-predictions", "grids",
                 "--figure-rows", "1"]
    assert cli_main(arguments) == 0
    run_dir = tmp_path / "g"
    assert sorted(path.name for path in (run_dir / "pred" / "telea" / CASE).glob("*.png")) == ["g0.png"]
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert len(rows) == 3 and rows["lpips"].notna().all()
    assert len(list((run_dir / "features" / "telea" / CASE).glob("*.npy"))) == 3
    assert read_json(run_dir / "run.json")["saved_predictions"] == "grids"
    assert cli_main(arguments) == 0
    assert read_json(run_dir / "run.json")["computed_jobs"] == 0


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_streaming_scoring_keeps_the_runs_ssim_convention_and_mask_fields(tmp_path):
    from bench.metrics.pixel import pixel_metrics
    from bench.run.rundir import read_rgb_png
    from masks.io import read_mask_png

    data = write_photos(tmp_path / "data", 2, (48, 48), prefix="c")
    assert cli_main(["run", "--data", str(data), "--methods", "telea", "--cases", "thin", "--ssim", "skimage",
                     "--runs-dir", str(tmp_path), "--run-id", "c", "--workers", "1", "--no-progress"]) == 0
    run_dir = tmp_path / "c"
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert rows["lpips"].notna().all() and (rows["mask_frame"] == "256x256").all()
    for _, row in rows.iterrows():
        original = read_rgb_png(run_dir / "images" / f"{row['image_id']}.png")
        prediction = read_rgb_png(run_dir / "pred" / "telea" / "thin" / f"{row['image_id']}.png")
        hole = read_mask_png(run_dir / "masks" / "thin" / f"{row['image_id']}.png")
        expected = pixel_metrics(original, prediction, hole, ssim_convention="skimage")
        assert expected["ssim"] != pixel_metrics(original, prediction, hole, ssim_convention="lama")["ssim"]
        for name in ("ssim", "ssim_hole", "hole_rim_share"):
            assert row[name] == pytest.approx(expected[name], nan_ok=True)
