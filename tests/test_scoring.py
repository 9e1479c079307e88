from __future__ import annotations

import numpy as np
import pytest

from conftest import write_photos
from bench.run.config import RunConfig
from bench.report.build import build_report
from bench.run.runner import Runner
from bench.metrics.backbones import resolve

WEIGHTS_PRESENT = all(resolve(name) is not None for name in ("lpips-alex", "fid-inception"))




def test_without_weights_learned_metrics_are_unavailable_not_substituted(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAMA_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("RELAMA_WEIGHTS_DIR", str(tmp_path / "empty-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    data = write_photos(tmp_path / "data", 3, (48, 64), prefix="q")
    config = RunConfig(methods=["telea"], cases=["small"], data=str(data),
                       runs_root=str(tmp_path / "runs"))
    outcome = Runner(config, progress=False).run()
    assert "lpips" not in outcome.rows.columns
    assert not (outcome.run_dir / "features").exists()
    assert "relama-bench weights fetch" in outcome.scoring.lpips_unavailable
    assert "relama-bench weights fetch" in outcome.scoring.fid_unavailable


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_lpips_and_fid_are_scored_cached_and_reported(tmp_path):
    
    data = write_photos(tmp_path / "data", 3, (48, 64), prefix="q")
    config = RunConfig(methods=["telea", "ns"], cases=["region"], data=str(data),
                       runs_root=str(tmp_path / "runs"))
    outcome = Runner(config, progress=False).run()
    assert outcome.rows["lpips"].between(0, 1).all()
    assert outcome.scoring.lpips_scored == 6 and outcome.scoring.features_extracted == 9
    again = Runner(config, progress=False).run()
    assert again.scoring.lpips_scored == 0 and again.scoring.features_extracted == 0
    np.testing.assert_array_equal(outcome.rows["lpips"], again.rows["lpips"])
    data = build_report(outcome.run_dir)
    sets = data.set_metrics.set_index("method")
    assert set(sets.index) == {"telea", "ns"} and (sets["n"] == 3).all() and sets["indicative"].all()
    assert np.isfinite(sets["fid"]).all()
    table = data.case_tables["region"]
    assert "FID ↓" in table.columns and table["FID ↓"].str.contains(r"\*").all()
    report = (outcome.run_dir / "report.md").read_text()
    assert "LPIPS: v0.1, alex backbone" in report and "indicative only" in report


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_images_too_small_for_lpips_get_nan(tmp_path):
    data = write_photos(tmp_path / "data", 2, (24, 40), prefix="q")
    config = RunConfig(methods=["telea"], cases=["small"], data=str(data),
                       runs_root=str(tmp_path / "runs"))
    rows = Runner(config, progress=False).run().rows
    assert rows["lpips"].isna().all()
