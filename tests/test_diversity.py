"""Sampling methods in a run: k completions per image, their diversity score and sample grids.

Uses the small Pluralistic replica checkpoints from ``../shared/golden/pluralistic/replica``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.run.config import RunConfig
from bench.run.rundir import read_rgb_png, sample_path
from bench.report.build import build_report
from bench.run.runner import Runner
from bench.metrics.backbones import resolve
from conftest import pluralistic_replica_folder


@pytest.fixture
def pluralistic_weights(tmp_path):
    return pluralistic_replica_folder(tmp_path / "pluralistic")


def _photos(folder):
    folder.mkdir()
    rng = np.random.default_rng(3)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"d{index}.png")
    return folder


def test_samples_are_kept_and_distinct(tmp_path, pluralistic_weights):
    config = RunConfig(methods=["pluralistic", "telea"], cases=["region"], data=str(_photos(tmp_path / "data")),
                       weights={"pluralistic": str(pluralistic_weights)}, samples=3,
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    outcome = Runner(config, progress=False).run()
    rows = outcome.rows.set_index(["method", "image_id"])
    assert rows.loc[("pluralistic", "d0"), "samples"] == 3 and rows.loc[("telea", "d0"), "samples"] == 1
    prediction = outcome.run_dir / "pred" / "pluralistic" / "region" / "d0.png"
    completions = [read_rgb_png(prediction)] + [read_rgb_png(sample_path(prediction, k)) for k in (1, 2)]
    assert not np.array_equal(completions[0], completions[1]) and not np.array_equal(completions[1], completions[2])
    assert not sample_path(outcome.run_dir / "pred" / "telea" / "region" / "d0.png", 1).exists()


@pytest.mark.skipif(resolve("lpips-alex") is None, reason="weights not fetched: run `relama-bench weights fetch`")
def test_diversity_is_scored_and_reported(tmp_path, pluralistic_weights):
    config = RunConfig(methods=["pluralistic"], cases=["large"], data=str(_photos(tmp_path / "data")),
                       weights={"pluralistic": str(pluralistic_weights)}, samples=3,
                       runs_root=str(tmp_path / "runs"))
    outcome = Runner(config, progress=False).run()
    assert (outcome.rows["diversity_lpips"] > 0).all()
    data = build_report(outcome.run_dir)
    assert list(data.diversity["metric"]) == ["diversity_lpips"] and data.diversity["n"].iloc[0] == 2
    report = (outcome.run_dir / "report.md").read_text()
    assert "## Diversity" in report and "figures/samples_pluralistic_large.png" in report
    assert (outcome.run_dir / "figures" / "samples_pluralistic_large.png").exists()
