"""The parallel phase stops on Ctrl-C within seconds, keeps finished jobs, and its workers die with the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import logged_jobs, write_photos

REPO_ROOT = Path(__file__).resolve().parents[1]
JOBS = 8

# A run of a slow traditional method (one second per image), so the parallel phase is in progress
# when the test strikes.
SLOW_RUN = """
import sys
import time

import numpy as np

from methods.base import Family, Inpainter
from methods.registry import register_method


@register_method
class Slow(Inpainter):
    name = "test-slow"
    family = Family.TRADITIONAL

    def inpaint(self, image, mask, *, seed=None):
        time.sleep(1.0)
        return np.full_like(image, 9)


from bench.cli.app import main

sys.exit(main(sys.argv[1:]))
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")


def _live_members(group: int) -> list[int]:
    """Processes of ``group`` that have not exited (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _wait_until_gone(group: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _live_members(group):
            return True
        time.sleep(0.1)
    return False


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    data = write_photos(tmp_path / "data", JOBS, (24, 24), prefix="p")
    runs = tmp_path / "runs"
    arguments = ["run", "--data", str(data), "--methods", "test-slow", "--cases", "large", "--workers", "2",
                 "--runs-dir", str(runs), "--run-id", "slow", "--no-progress", "--no-learned-metrics"]
    process = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *arguments], cwd=REPO_ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, runs / "slow"


def _wait_for_records(run_dir: Path, process: subprocess.Popen, count: int) -> list[str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        records = logged_jobs(run_dir)
        if len(records) >= count:
            return list(records)
        time.sleep(0.05)
    pytest.fail("the slow run finished or stalled before the test could interrupt it")


@pytest.mark.parametrize("target", ["parent", "process group"])
def test_ctrl_c_stops_the_parallel_phase_and_a_rerun_completes_it(tmp_path, target):
    process, run_dir = _start(tmp_path)
    _wait_for_records(run_dir, process, 2)
    if target == "parent":
        os.kill(process.pid, signal.SIGINT)
    else:
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        stdout, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the run did not stop within 10 s of Ctrl-C")
    assert process.returncode == 130
    assert "Traceback" not in stderr + stdout
    assert stderr.strip() == "relama-bench: interrupted; finished work is kept and a rerun resumes it"
    assert _wait_until_gone(process.pid, 10), "worker processes outlived the interrupted run"
    finished = logged_jobs(run_dir)
    assert 2 <= len(finished) < JOBS
    assert not list(run_dir.rglob("*.tmp")), "no partial files may remain"

    if target != "parent":
        return  # the rerun below is the same for both ways of interrupting
    rerun = subprocess.run([sys.executable, "-c", SLOW_RUN, *process.args[3:]], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    logged = logged_jobs(run_dir)
    assert len(logged) == JOBS
    assert all(logged[job] == count for job, count in finished.items()), "finished jobs were redone"


def test_workers_die_with_a_killed_parent(tmp_path):
    process, run_dir = _start(tmp_path)
    _wait_for_records(run_dir, process, 1)
    assert len(_live_members(process.pid)) >= 2, "the run should have started its workers"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    try:
        assert _wait_until_gone(process.pid, 10), "workers outlived their killed parent"
    finally:
        for pid in _live_members(process.pid):
            os.kill(pid, signal.SIGKILL)


def test_an_error_raised_for_a_finished_job_stops_the_pool_and_its_workers():
    import multiprocessing

    from bench.run.workers import run_parallel

    seen = []

    def stop_at_the_first(item, future):
        seen.append(item)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run_parallel(time.sleep, [0.0, 30.0, 30.0, 30.0, 30.0], 2, stop_at_the_first)
    assert seen == [0.0]
    assert multiprocessing.active_children() == [], "the workers must be gone when the error propagates"


def test_finished_results_are_let_go_as_the_run_goes_on():
    import gc
    import weakref

    from bench.run import workers

    handled = []
    alive = []

    def keep_a_reference(item, future):
        handled.append(weakref.ref(future))
        gc.collect()
        alive.append(sum(ref() is not None for ref in handled))

    workers.run_parallel(bytes, [1000] * 40, 2, keep_a_reference)
    assert len(handled) == 40
    # At most the submitted window is alive at any moment, however many jobs the run has.
    assert max(alive) <= 2 * workers._IN_FLIGHT_PER_WORKER
