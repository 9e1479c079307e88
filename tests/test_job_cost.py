from __future__ import annotations

import numpy as np

from bench.run.rundir import read_rgb_png
from bench.studies.job_cost import CASES, measure, prepare_jobs


def test_job_cost_runs_the_default_runs_jobs_and_splits_their_time(tmp_path):
    specs = prepare_jobs(tmp_path, "telea", 32)
    assert {spec.job.case for spec in specs} == set(CASES) and len(specs) % len(CASES) == 0
    milliseconds = measure(specs[:3], repeats=1, stages=True)
    assert set(milliseconds) == {"method", "harness", "read + check inputs", "mask + composite", "pixel metrics",
                                 "PNG write"}
    assert all(len(value) == 2 for value in milliseconds.values())
    # The jobs ran for real: each left its prediction, of the image's size.
    for spec in specs[:3]:
        assert read_rgb_png(spec.pred_path).shape == read_rgb_png(spec.image_path).shape
    assert np.isfinite([value for pair in milliseconds.values() for value in pair]).all()
