from __future__ import annotations

import pytest

from bench.cli import main as cli_main
from bench.run.config import RunConfig
from bench.run.data import folder_image_sources
from bench.run.plan import FEATURE_FILE_BYTES, plan_run, read_perf_table
from conftest import write_photos


def _perf(tmp_path):
    path = tmp_path / "perf.csv"
    path.write_text("method,size,weights,median_ms\ntelea,64,none needed,2.0\ntelea,256,none needed,40.0\n")
    return path


def test_plan_counts_jobs_scales_perf_by_area_and_bounds_disk(tmp_path):
    data = write_photos(tmp_path / "data", 3, (48, 64))
    write_photos(data, 1, (300, 200), prefix="big")
    config = RunConfig(methods=["telea", "ns"], cases=["small", "large"], data=str(data))
    plan = plan_run(config, ["telea", "ns"], folder_image_sources(data), read_perf_table(_perf(tmp_path)))
    assert plan.jobs == 4 * 2 * 2
    telea, ns = plan.methods
    # Three 48x64 images scale the 64 px time, the 300x200 one the 256 px time (nearest in area).
    expected = 2 * (3 * 0.002 * 48 * 64 / 64 ** 2 + 0.040 * 300 * 200 / 256 ** 2)
    assert telea.predicted_seconds == pytest.approx(expected)
    assert ns.predicted_seconds is None and "no perf" in ns.basis
    pixels = 3 * 48 * 64 + 300 * 200
    assert plan.disk_bytes["predictions"] == 3 * pixels * 2 * 2
    assert plan.disk_bytes["Inception features"] == FEATURE_FILE_BYTES * (16 + 4)


def test_plan_uses_only_timed_rows_of_the_runs_precision(tmp_path):
    """A call stopped at perf's time limit has no time, and a bf16 row does not time an fp32 run."""
    data = write_photos(tmp_path / "data", 2, (64, 64))
    path = tmp_path / "perf.csv"
    path.write_text("method,size,precision,median_ms\n"
                    "telea,64,n/a,2.0\ntelea,512,n/a,\n"
                    "lama,64,fp32,100.0\nlama,64,bf16,50.0\nlama,128,fp32,\n")
    perf = read_perf_table(path)
    sources = folder_image_sources(data)
    config = RunConfig(methods=["telea", "lama"], cases=["large"], data=str(data))
    telea, lama = plan_run(config, ["telea", "lama"], sources, perf).methods
    assert telea.predicted_seconds == pytest.approx(2 * 0.002)
    assert lama.predicted_seconds == pytest.approx(2 * 0.100)
    assert "64 px" in lama.basis and "128" not in lama.basis
    bf16 = RunConfig(methods=["lama"], cases=["large"], data=str(data), options={"lama": {"precision": "bf16"}})
    assert plan_run(bf16, ["lama"], sources, perf).methods[0].predicted_seconds == pytest.approx(2 * 0.050)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 2, (32, 32))
    runs = tmp_path / "runs"
    code = cli_main(["run", "--data", str(data), "--methods", "telea", "--cases", "small", "--runs-dir", str(runs),
                     "--dry-run", "--perf", str(_perf(tmp_path))])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 images x 1 case(s) x 1 method(s) = 2 jobs" in printed and "telea: 2 jobs" in printed
    assert not runs.exists()


def test_a_perf_file_without_the_needed_columns_is_refused(tmp_path, capsys):
    data = write_photos(tmp_path / "data", 1, (32, 32))
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ms\ntelea,1\n")
    assert cli_main(["run", "--data", str(data), "--methods", "telea", "--dry-run", "--perf", str(bad)]) == 2
    assert "lacks the column(s) median_ms, method, size" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["bomb 20000", "bomb 10000", "text"])
def test_dry_run_refuses_a_bad_image_header_in_one_sentence_naming_the_file(damage, tmp_path, capsys):
    from test_datasets import _png_claiming

    data = write_photos(tmp_path / "data", 1, (32, 32))
    bad = data / "zz.png"
    if damage.startswith("bomb"):
        side = int(damage.split()[1])
        bad.write_bytes(_png_claiming(side, side))
    else:
        bad.write_text("not an image\n")
    assert cli_main(["run", "--data", str(data), "--methods", "telea", "--dry-run"]) == 2
    error = capsys.readouterr().err.strip()
    assert str(bad) in error and "\n" not in error and "Traceback" not in error
