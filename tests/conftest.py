"""Shared fixtures: the read-only ``../shared`` folder (golden tensors, datasets, calibration)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("RELAMA_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


def pytest_configure(config: pytest.Config) -> None:
    # Tests run many small forward passes; on a busy two-core machine a second torch thread makes them
    # up to a hundred times slower, and subprocess tests would oversubscribe the cores.
    torch.set_num_threads(1)
    # No test reaches the network: `relama-bench run` fetches nothing unless a test unsets this itself.
    os.environ["RELAMA_BENCH_OFFLINE"] = "1"


def write_photos(folder: Path, count: int = 2, size: tuple[int, int] = (40, 56), seed: int = 0,
                 prefix: str = "p") -> Path:
    """Write ``count`` random RGB PNGs named ``<prefix><i>.png`` into ``folder`` and return it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{prefix}{index}.png")
    return folder


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips the calling test when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (tests that read ../shared need it beside the checkout)")
    return path


def pluralistic_replica_folder(folder: Path) -> Path:
    """``folder`` laid out like Pluralistic's checkpoint folder, holding the small replicas."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("E", "G"):
        (folder / f"latest_net_{part}.pth").symlink_to(
            shared_path("golden", "pluralistic", "replica", f"replica_latest_net_{part}_small.pth"))
    return folder


def ict_replica_folder(folder: Path) -> Path:
    """``folder`` laid out like ICT's released ``ckpts_ICT``, the replicas as the Places2_Nature variant."""
    (folder / "Transformer").mkdir(parents=True, exist_ok=True)
    (folder / "Upsample" / "Places2_Nature").mkdir(parents=True, exist_ok=True)
    (folder / "Transformer" / "Places2_Nature.pth").symlink_to(
        shared_path("golden", "ict", "replica", "replica_transformer_small.pth"))
    (folder / "Upsample" / "Places2_Nature" / "InpaintingModel_gen.pth").symlink_to(
        shared_path("golden", "ict", "replica", "replica_InpaintingModel_gen_small.pth"))
    return folder


@pytest.fixture
def golden_dir():
    """Return a function mapping a method folder name to ``../shared/golden/<name>``."""
    return lambda name: shared_path("golden", name)


def logged_jobs(run_dir: Path) -> dict[str, int]:
    """``method/case/image_id`` of each job with a record in the run's job logs, with how many lines it has
    (a job computed again, or given a metric later, has one more)."""
    from bench.run.joblog import read_records
    from bench.run.rundir import RunDir

    counts: dict[str, int] = {}
    for record in read_records(RunDir(run_dir).job_logs()):
        name = f"{record['method']}/{record['case']}/{record['image_id']}"
        counts[name] = counts.get(name, 0) + 1
    return counts
