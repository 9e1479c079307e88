from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_photos
from bench.run.config import RunConfig
from bench.report.build import build_report
from bench.run.runner import Runner
from bench.run.joblog import JobLog
from bench.run.rundir import RunDir
from bench.run.scoring import fid_difference_interval, fid_differences
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
    # An original's features are scored even when no job is left to run beside them.
    RunDir(outcome.run_dir).original_features("q1").unlink()
    restored = Runner(config, progress=False).run()
    assert restored.scoring.features_extracted == 1 and RunDir(outcome.run_dir).original_features("q1").exists()
    data = build_report(outcome.run_dir)
    sets = data.set_metrics.set_index("method")
    assert set(sets.index) == {"telea", "ns"} and (sets["n"] == 3).all() and sets["indicative"].all()
    assert np.isfinite(sets["fid"]).all()
    table = data.case_tables["region"]
    assert (table["FID ↓"] == "n/a (N < 50)").all()
    assert not table["KID×1000 ↓"].str.contains("±").any() and (sets["kid_subsets"] == 1).all()
    report = (outcome.run_dir / "report.md").read_text()
    assert "LPIPS: v0.1, alex backbone" in report and "indicative only" in report
    differences = data.fid_differences.set_index("method")
    assert differences.loc["ns", "note"].startswith("N < 50") and np.isnan(differences.loc["ns", "fid_diff"])


def _write_features(run_dir, method, case, features):
    for index, vector in enumerate(features):
        path = RunDir(run_dir).features(method, case, f"i{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vector[None].astype(np.float32))


def test_fid_difference_resamples_images_with_both_sets_together(tmp_path):
    rng = np.random.default_rng(0)
    n, dims = 60, 8
    real = rng.normal(0, 1, (n, dims))
    close = real + rng.normal(0, 0.3, (n, dims))
    far = real + rng.normal(0.5, 0.3, (n, dims))
    for index, vector in enumerate(real):
        path = RunDir(tmp_path).original_features(f"i{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vector[None].astype(np.float32))
    _write_features(tmp_path, "far", "large", far)
    _write_features(tmp_path, "close", "large", close)
    rows = pd.DataFrame([{"method": method, "case": "large", "image_id": f"i{index}", "hole_fraction": 0.3}
                         for method in ("close", "far") for index in range(n)])
    table = fid_differences(tmp_path, rows, "close").set_index("method")
    row = table.loc["far"]
    single = fid_difference_interval(real, far, close, resamples=1)[0]
    assert row["fid_diff"] == pytest.approx(single, rel=1e-5) and row["fid_diff"] > 0
    assert row["ci_low"] < row["fid_diff"] < row["ci_high"] and row["ci_low"] > 0
    assert row["n"] == n and row["resamples"] == 100
    small = fid_differences(tmp_path, rows[rows["image_id"].isin([f"i{index}" for index in range(10)])], "close")
    assert small.loc[0, "note"].startswith("N < 50") and np.isnan(small.loc[0, "ci_low"])


def test_fid_difference_above_the_cross_gram_limit_uses_the_covariance_form(tmp_path, monkeypatch):
    """At tens of thousands of images the N x N cross-Gram form would need N^2 memory and N^3 time."""
    import bench.metrics.learned as learned
    from bench.metrics.learned import frechet_distance_for
    from bench.metrics.moments import GRAM_FORM_MAX_N

    def cross_gram_refused(real, fake):
        raise AssertionError(f"cross-Gram FID over {len(real)} images")

    monkeypatch.setattr(learned, "frechet_distance", cross_gram_refused)
    rng = np.random.default_rng(1)
    n, dims = GRAM_FORM_MAX_N + 10, 4
    real = rng.normal(0, 1, (n, dims))
    for index, vector in enumerate(real):
        path = RunDir(tmp_path).original_features(f"i{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vector[None].astype(np.float32))
    close, far = real + rng.normal(0, 0.3, (n, dims)), real + rng.normal(0.5, 0.3, (n, dims))
    _write_features(tmp_path, "close", "large", close)
    _write_features(tmp_path, "far", "large", far)
    rows = pd.DataFrame([{"method": method, "case": "large", "image_id": f"i{index}", "hole_fraction": 0.3}
                         for method in ("close", "far") for index in range(n)])
    row = fid_differences(tmp_path, rows, "close").set_index("method").loc["far"]
    as_stored = [torch.from_numpy(values.astype(np.float32)) for values in (real, far, close)]
    expected = (frechet_distance_for(as_stored[0], as_stored[1])[0]
                - frechet_distance_for(as_stored[0], as_stored[2])[0])
    assert row["fid_diff"] == pytest.approx(expected, rel=1e-9) and row["n"] == n
    assert row["note"].startswith("no interval")


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_images_too_small_for_lpips_get_nan(tmp_path):
    data = write_photos(tmp_path / "data", 2, (24, 40), prefix="q")
    config = RunConfig(methods=["telea"], cases=["small"], data=str(data),
                       runs_root=str(tmp_path / "runs"))
    rows = Runner(config, progress=False).run().rows
    assert rows["lpips"].isna().all()


def test_backbone_loading_is_not_counted_as_per_image_cost(tmp_path, monkeypatch):
    """Loading LPIPS and the Inception is reported once, apart from the seconds per image."""
    from bench.run import scoring
    from bench.report.model import learned_metric_lines

    clock = {"now": 0.0}
    monkeypatch.setattr(scoring.time, "perf_counter", lambda: clock["now"])

    class SlowToLoad:
        def __init__(self, *args, **kwargs):
            clock["now"] += 10.0

        def __call__(self, predictions, targets):
            clock["now"] += 0.5
            return np.zeros(1)

        def extract(self, images):
            clock["now"] += 0.25 * len(images)
            return scoring.torch.zeros(len(images), 2048)

    monkeypatch.setattr(scoring, "LPIPSMetric", SlowToLoad)
    monkeypatch.setattr(scoring, "InceptionFeatures", SlowToLoad)
    scorer = scoring.StreamingScorer(tmp_path, JobLog(tmp_path / "jobs.rank0.1.jsonl"))
    scorer.report = scoring.ScoringReport(None, None)
    image = np.zeros((64, 64, 3), np.uint8)
    for index in range(4):
        record = {"method": "telea", "case": "small", "image_id": f"i{index}"}
        scorer.add_job(record, image, image)
    scorer.flush()
    summary = scorer.report.as_dict()
    assert summary["lpips_seconds_per_image"] == 0.5 and summary["features_seconds_per_image"] == 0.25
    assert summary["backbone_setup_seconds"] == 20.0
    assert learned_metric_lines({"scoring": summary})[-1] == (
        "- Metric cost on this machine: LPIPS 0.500 s per image, Inception features 0.250 s per image, plus 20.0 s "
        "once to load the backbones.")


def test_a_rerun_with_learned_metrics_scores_the_jobs_an_earlier_run_finished_without_them(tmp_path):
    data = write_photos(tmp_path / "data", 2, (48, 64), prefix="q")
    without = RunConfig(methods=["telea"], cases=["region"], data=str(data), runs_root=str(tmp_path / "runs"),
                        learned_metrics=False)
    Runner(without, progress=False).run()
    with_metrics = RunConfig(**{**vars(without), "learned_metrics": True})
    caught_up = Runner(with_metrics, progress=False).run()
    # Nothing recomputed: the two finished jobs are scored from their saved predictions.
    assert caught_up.computed_jobs == 0 and caught_up.cached_jobs == 2
    assert caught_up.scoring.lpips_scored == 2 and caught_up.scoring.features_extracted == 4
    fresh = Runner(RunConfig(**{**vars(with_metrics), "runs_root": str(tmp_path / "fresh")}), progress=False).run()
    np.testing.assert_allclose(caught_up.rows["lpips"], fresh.rows["lpips"], rtol=0, atol=1e-6)


def _features_on_disk(run_dir, methods, n, dims, seed=0):
    """Random float32 features of ``n`` originals and of each method (case "large"), saved as a run saves them."""
    rng = np.random.default_rng(seed)
    real = rng.normal(0, 1, (n, dims)).astype(np.float32)
    for index, vector in enumerate(real):
        path = RunDir(run_dir).original_features(f"i{index}")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vector[None])
    fakes = {}
    for shift, method in enumerate(methods, start=1):
        fakes[method] = (real + rng.normal(0.1 * shift, 0.5, (n, dims))).astype(np.float32)
        _write_features(run_dir, method, "large", fakes[method])
    rows = pd.DataFrame([{"method": method, "case": "large", "image_id": f"i{index}", "hole_fraction": 0.3}
                         for method in methods for index in range(n)])
    return real, fakes, rows


@pytest.mark.parametrize("gram_limit", [2048, 100])
def test_set_metrics_read_from_disk_equal_the_in_memory_computation_exactly(tmp_path, monkeypatch, gram_limit):
    """Above 1,000 images KID reads 100 subsets row by row, and FID (covariance form past the limit)
    streams its moments: the values are those of all features in memory, and torchmetrics' KID."""
    import warnings

    import bench.metrics.learned as learned
    from bench.metrics.learned import FIDKID
    from bench.run.scoring import set_metrics
    from torchmetrics.image.kid import KernelInceptionDistance

    monkeypatch.setattr(learned, "GRAM_FORM_MAX_N", gram_limit)
    n, dims = 1030, 6
    real, fakes, rows = _features_on_disk(tmp_path, ["far"], n, dims)
    sets = set_metrics(tmp_path, rows, seed=3).set_index("method").loc["far"]
    in_memory = FIDKID()
    in_memory.update_features(torch.from_numpy(real), real=True)
    in_memory.update_features(torch.from_numpy(fakes["far"]), real=False)
    expected = in_memory.compute(seed=3)
    assert sets["fid_trace_form"] == expected.fid_trace_form == ("cross-Gram" if gram_limit > n else "covariance")
    assert (sets["fid"], sets["kid_mean"], sets["kid_std"]) == (expected.fid, expected.kid_mean, expected.kid_std)
    assert sets["kid_subset_size"] == 1000 and sets["kid_subsets"] == 100 and sets["n"] == n

    class PassThrough(torch.nn.Module):
        num_features = dims

        def forward(self, features):
            return features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = KernelInceptionDistance(feature=PassThrough(), subsets=100, subset_size=1000)
    reference.update(torch.from_numpy(real).double(), real=True)
    reference.update(torch.from_numpy(fakes["far"]).double(), real=False)
    torch.manual_seed(3)
    mean, std = reference.compute()
    assert (float(mean), float(std)) == (expected.kid_mean, expected.kid_std)
    assert not list(tmp_path.glob(".set-metrics-*")), "the temporary rows are removed"


def test_spooled_feature_rows_come_back_in_the_order_asked(tmp_path):
    from bench.run.scoring import _spool

    real, _, _ = _features_on_disk(tmp_path, [], 40, 5)
    spooled = _spool([RunDir(tmp_path).original_features(f"i{index}") for index in range(40)], tmp_path / "rows.f32")
    for indices in ([3, 17, 0, 39, 17], list(range(8, 30)), [39]):
        assert np.array_equal(spooled.rows(np.array(indices)).numpy(), real[indices])
    assert np.array_equal(spooled.all().numpy(), real)
    np.save(RunDir(tmp_path).original_features("i7"), np.zeros((1, 4), np.float64))
    with pytest.raises(ValueError, match="i7.npy is not one float32 feature vector"):
        _spool([RunDir(tmp_path).original_features(f"i{index}") for index in range(40)], tmp_path / "rows.f32")


@pytest.mark.skipif(not WEIGHTS_PRESENT, reason="weights not fetched: run `relama-bench weights fetch`")
def test_lpips_added_later_is_appended_to_the_job_logs_and_wins(tmp_path):
    from conftest import logged_jobs

    data = write_photos(tmp_path / "data", 3, (48, 64), prefix="q")
    config = RunConfig(methods=["telea"], cases=["region"], data=str(data), runs_root=str(tmp_path / "runs"),
                       learned_metrics=False, run_id="later")
    first = Runner(config, progress=False).run()
    assert "lpips" not in first.rows.columns and set(logged_jobs(first.run_dir).values()) == {1}
    config.learned_metrics = True
    second = Runner(config, progress=False).run()
    assert second.computed_jobs == 0 and second.scoring.lpips_scored == 3
    assert second.rows["lpips"].between(0, 1).all()
    # One more line per job, in the second attempt's own log; the first attempt's log is untouched.
    assert set(logged_jobs(first.run_dir).values()) == {2}
    assert sorted(path.name for path in RunDir(first.run_dir).job_logs()) == ["jobs.rank0.1.jsonl", "jobs.rank0.2.jsonl"]
    third = Runner(config, progress=False).run()
    assert third.scoring.lpips_scored == 0 and set(logged_jobs(first.run_dir).values()) == {2}
    pd.testing.assert_frame_equal(second.rows, third.rows)
