"""``relama-bench perf``: one fresh worker per method and size, interleaved rounds, time limit, Ctrl-C, tables."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli.app import main
from bench.studies.perf import (NO_PRECISION, RANDOM_WEIGHTS_LABEL, REFERENCE_SUFFIX, PerfEntry, PerfRow,
                                build_for_perf, measure_peak_memory, perf_entries, perf_study, synthetic_pair)
from methods.base import MethodUnavailable
from perf_methods import ALLOCATION_MB, CALL_LOG, STARTED_MARKER, Allocating, Failing, Quiet, Sleeping, Unloadable

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
HWM_RESETTABLE = os.access("/proc/self/clear_refs", os.W_OK)


def _study(*classes: type, time_limit_s: float = 60.0, repeats: int = 2) -> dict[str, PerfRow]:
    entries = [PerfEntry(cls, cls.name, {}, NO_PRECISION) for cls in classes]
    study = perf_study(entries, {}, [32], repeats=repeats, warmup=0, random_weights=False, threads=1,
                       time_limit_s=time_limit_s)
    assert not study.skipped
    return {row.method: row for row in study.rows}


def test_synthetic_pair_is_deterministic_with_a_quarter_hole() -> None:
    image, mask = synthetic_pair(64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert mask.dtype == np.bool_ and mask.mean() == 0.25
    assert np.array_equal(image, synthetic_pair(64)[0])


def test_peak_memory_sees_a_large_allocation() -> None:
    peak, extra, method = measure_peak_memory(lambda: np.ones(160 * 2**20 // 8).sum(), "cpu")
    assert peak > 0 and method
    if "VmHWM" in method:
        assert extra >= 80


def test_rows_of_a_tiny_method_set_are_interleaved_rounds_with_threads_and_precision() -> None:
    rows = _study(Quiet, Failing, repeats=3)
    quiet = rows["test-perf-quiet"]
    assert (quiet.size, quiet.rounds, quiet.threads, quiet.precision, quiet.note) == (32, 3, 1, NO_PRECISION, "")
    assert 0 <= quiet.min_ms <= quiet.median_ms and quiet.weights == "none needed" and quiet.device == "cpu"
    failing = rows["test-perf-failing"]
    assert failing.note == "RuntimeError: out of patience" and failing.rounds == 0


def test_a_method_that_fails_to_load_is_skipped_with_why() -> None:
    entries = [PerfEntry(Unloadable, Unloadable.name, {}, NO_PRECISION)]
    study = perf_study(entries, {}, [32], repeats=1, warmup=0, random_weights=False, threads=1)
    assert study.rows == []
    assert study.skipped == ["test-perf-unloadable at 32x32: RuntimeError: broken install"]


def test_timing_rounds_take_turns_and_the_first_of_a_round_rotates(tmp_path, monkeypatch) -> None:
    log = tmp_path / "calls"
    monkeypatch.setenv(CALL_LOG, str(log))
    _study(Quiet, Allocating, repeats=3)
    quiet, allocating = Quiet.name, Allocating.name
    # The first call of each worker measures memory; then rounds 0, 1 (rotated) and 2.
    assert log.read_text().split() == [quiet, allocating, quiet, allocating, allocating, quiet, quiet, allocating]


@pytest.mark.skipif(not HWM_RESETTABLE, reason="needs Linux /proc/self/clear_refs to reset the peak")
def test_memory_of_each_method_comes_from_its_own_process_whatever_ran_before() -> None:
    # Allocating keeps its first buffer, as a cache would; in a shared process whatever ran after it
    # would carry those MiB. Quiet touches next to nothing.
    for order in [(Allocating, Quiet), (Quiet, Allocating)]:
        rows = _study(*order)
        allocating, quiet = rows["test-perf-allocating"], rows["test-perf-quiet"]
        assert allocating.forward_mb >= 0.9 * ALLOCATION_MB, order
        assert quiet.forward_mb < 0.25 * ALLOCATION_MB, order
        assert quiet.peak_mb < allocating.peak_mb - 0.75 * ALLOCATION_MB, order
        assert quiet.loaded_mb < allocating.peak_mb - 0.75 * ALLOCATION_MB, order


def test_a_method_over_the_time_limit_is_reported_and_its_worker_stopped() -> None:
    rows = _study(Sleeping, Quiet, time_limit_s=1.0)
    sleeping = rows["test-perf-sleeping"]
    assert sleeping.note == "stopped: a call took longer than the 1 s limit"
    assert sleeping.rounds == 0 and sleeping.median_ms != sleeping.median_ms
    assert rows["test-perf-quiet"].rounds == 2, "the other methods are still timed"
    assert not [child for child in multiprocessing.active_children() if child.name.startswith("perf ")]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
def test_ctrl_c_stops_promptly_and_kills_the_workers(tmp_path: Path) -> None:
    script = (f"import sys\nsys.path.insert(0, {str(TESTS_DIR)!r})\n"
              "from methods.registry import register_method\nimport perf_methods\n"
              "register_method(perf_methods.Sleeping)\nfrom bench.cli.app import main\nsys.exit(main(sys.argv[1:]))\n")
    marker = tmp_path / "started"
    arguments = ["perf", "--methods", "test-perf-sleeping", "--sizes", "32", "--out", str(tmp_path / "perf")]
    process = subprocess.Popen([sys.executable, "-c", script, *arguments], cwd=REPO_ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, STARTED_MARKER: str(marker)})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the sleeping method never started"
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        stdout, stderr = process.communicate(timeout=15)
        assert process.returncode == 130
        assert "Traceback" not in stdout + stderr
        assert "a rerun measures every size again" in stderr, "perf keeps no cache a rerun could resume from"
        deadline = time.monotonic() + 10
        while _group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_members(process.pid), "a worker outlived the interrupted perf"
    finally:
        for pid in _group_members(process.pid):
            os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()


def _group_members(group: int) -> list[int]:
    """Live processes of ``group`` (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_deep_methods_need_weights_or_the_random_flag() -> None:
    with pytest.raises(MethodUnavailable, match="weights missing"):
        build_for_perf("lama", {}, random_weights=False)
    method, label = build_for_perf("telea", {}, random_weights=False)
    assert label == "none needed"


def test_entries_add_the_reference_path_and_the_precision_where_declared() -> None:
    entries, notes = perf_entries(["telea", "pluralistic", "lama"], "bf16", reference_path=True)
    assert [(entry.label, entry.options, entry.precision) for entry in entries] == [
        ("telea", {}, NO_PRECISION), ("pluralistic", {}, "fp32"), ("lama", {"precision": "bf16"}, "bf16"),
        ("lama" + REFERENCE_SUFFIX, {"optimize": False}, "fp32")]
    assert notes == ["pluralistic has no bf16 mode; it is timed in fp32"]


def test_perf_command_writes_tables_and_says_what_it_skipped(tmp_path, capsys) -> None:
    assert main(["perf", "--methods", "telea,lama", "--sizes", "32", "--repeats", "1", "--warmup", "0",
                 "--threads", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "skipped lama: weights missing" in printed
    rows = list(csv.DictReader(open(tmp_path / "perf.csv")))
    assert [(row["method"], row["size"], row["threads"], row["rounds"]) for row in rows] == [("telea", "32", "1", "1")]
    assert float(rows[0]["median_ms"]) >= 0
    assert "| telea" in (tmp_path / "perf.md").read_text()


def test_the_reference_path_runs_in_fp32_beside_the_optimised_bf16_path(tmp_path, capsys) -> None:
    assert main(["perf", "--methods", "lama-celebahq64", "--sizes", "32", "--repeats", "1", "--warmup", "0",
                 "--threads", "1", "--precision", "bf16", "--reference-path", "--out", str(tmp_path)]) == 0
    rows = {row["method"]: row for row in csv.DictReader(open(tmp_path / "perf.csv"))}
    assert list(rows) == ["lama-celebahq64", "lama-celebahq64" + REFERENCE_SUFFIX]
    assert [rows[label]["precision"] for label in rows] == ["bf16", "fp32"]
    for row in rows.values():
        assert row["weights"] == "lama_celebahq64.safetensors" and row["rounds"] == "1" and not row["note"]
        assert float(row["peak_mb"]) >= float(row["forward_mb"]) > 0


@pytest.mark.parametrize(("arguments", "phrase"), [
    (["--sizes", "abc"], "--sizes 'abc' must be comma-separated integers"),
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--methods", "telea", "--threads", "0"], "--threads 0 must be at least 1"),
    (["--methods", "telea", "--time-limit", "0"], "--time-limit 0 must be a positive number of seconds"),
    (["--methods", "telea", "--repeats", "0"], "--repeats must be at least 1"),
    (["--methods", "telea,ns", "--precision", "bf16"], "--precision bf16: none of the methods (telea, ns) runs in"),
    (["--methods", "telea", "--reference-path"], "--reference-path: none of the methods has a reference path"),
])
def test_bad_options_get_one_sentence(tmp_path, capsys, arguments, phrase) -> None:
    assert main(["perf", *arguments, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "perf.csv").exists()
    assert captured.err.count("\n") == 1 and phrase in captured.err


def test_pluralistic_has_a_random_weights_mode_for_timing() -> None:
    method, label = build_for_perf("pluralistic", {}, random_weights=True)
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    assert method.inpaint(image, mask, seed=0).shape == image.shape
    assert label == RANDOM_WEIGHTS_LABEL and method.weights is None
