"""Time one benchmark job's own work (everything `run_job` does besides the method's call) against the
method's call, per image, at a square size.

The jobs are the default run's: the embedded sample photographs at ``--size`` x ``--size``, the
``small``, ``region`` and ``large`` masks of seed 0, one method (default ``telea``). Inputs are written
into a temporary run-like folder as the runner writes them, and each job runs through `run_job` with
its prediction saved, so the harness part is what a run pays per job: reading and checking the inputs,
masking, compositing, pixel metrics and the PNG. Writing the record (the caller appends it to the job
log) and the learned metrics (the scorer's) are not part of it.

Process CPU time with one OpenCV thread (``--opencv-threads``), so that the numbers are the work done
whatever else the machine runs; jobs called in turn for ``--repeats`` rounds; per job the median of
its rounds, then the median over jobs, and the sums over jobs of those medians. ``--stages`` also
times the harness's parts alone.

Usage: ``python -m bench.studies.job_cost [--size 512] [--repeats 15] [--method telea] [--stages]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2

from bench.metrics.pixel import pixel_metrics
from bench.run.data import default_images
from bench.run.identity import array_digest
from bench.run.rundir import PREPARED_IMAGE_PNG, read_rgb_png, write_rgb_png
from bench.run.runner import (Job, JobSpec, composite, masked_input, method_instance, read_job_inputs,
                               release_method, run_job)
from masks.cases import draw_case_mask
from masks.io import write_mask_png

CASES = ("small", "region", "large")


def prepare_jobs(folder: Path, method: str, size: int) -> list[JobSpec]:
    """One `JobSpec` per (case, image) of the default run at ``size``, its inputs written into ``folder``."""
    specs = []
    for bench_image in default_images(size):
        image_id, image = bench_image.image_id, bench_image.image
        image_path = folder / "images" / f"{image_id}.png"
        write_rgb_png(image_path, image, PREPARED_IMAGE_PNG)
        for case in CASES:
            hole_mask = draw_case_mask(image.shape[:2], image_id, case).mask
            mask_path = folder / "masks" / case / f"{image_id}.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            write_mask_png(mask_path, hole_mask)
            pred_path = folder / "pred" / method / case / f"{image_id}.png"
            specs.append(JobSpec(
                job=Job(method, case, image_id), key=f"{method}/{case}/{image_id}", weights=None,
                weights_digest=None, image_path=image_path, image_digest=array_digest(read_rgb_png(image_path)),
                mask_path=mask_path, mask_digest=array_digest(hole_mask), seed=0, pred_path=pred_path))
    return specs


def _timed_method_calls(spec: JobSpec) -> list[float]:
    """Make the loaded method of ``spec`` append the CPU seconds of each of its calls to the list returned."""
    method = method_instance(spec.job.method, spec.weights, spec.options, spec.weights_digest, spec.device)
    calls: list[float] = []
    inpaint = type(method).inpaint

    def timed_inpaint(*args, **kwargs):
        start = time.process_time()
        try:
            return inpaint(method, *args, **kwargs)
        finally:
            calls.append(time.process_time() - start)

    method.inpaint = timed_inpaint  # type: ignore[method-assign]
    return calls


def _stage_functions(spec: JobSpec) -> dict[str, Callable[[], object]]:
    """The harness's parts alone, on the job's own inputs and prediction."""
    image, hole_mask = read_job_inputs(spec)
    result = run_job(spec).prediction
    return {
        "read + check inputs": lambda: read_job_inputs(spec),
        "mask + composite": lambda: composite(image, masked_input(image, hole_mask), hole_mask),
        "pixel metrics": lambda: pixel_metrics(image, result, hole_mask),
        "PNG write": lambda: write_rgb_png(spec.pred_path, result),
    }


def measure(specs: list[JobSpec], repeats: int, stages: bool) -> dict[str, tuple[float, float]]:
    """CPU milliseconds of the method's call, the rest of `run_job`, and with ``stages`` each part of
    that rest: (median over jobs, sum over jobs) of each job's median over the rounds."""
    calls = _timed_method_calls(specs[0])
    try:
        for spec in specs:  # warm-up: first-call costs of the method and of the libraries
            run_job(spec)
        per_job: dict[str, list[list[float]]] = {name: [[] for _ in specs] for name in ("method", "harness")}
        stage_functions = [_stage_functions(spec) for spec in specs] if stages else []
        for name in (stage_functions[0] if stages else {}):
            per_job[name] = [[] for _ in specs]
        for _ in range(repeats):
            for index, spec in enumerate(specs):
                calls.clear()
                start = time.process_time()
                run_job(spec)
                total = time.process_time() - start
                per_job["method"][index].append(sum(calls))
                per_job["harness"][index].append(total - sum(calls))
                for name, function in (stage_functions[index].items() if stages else ()):
                    start = time.process_time()
                    function()
                    per_job[name][index].append(time.process_time() - start)
    finally:
        release_method(specs[0].job.method)  # the timed instance stays out of later uses
    medians = {name: [1000 * statistics.median(job) for job in jobs] for name, jobs in per_job.items()}
    return {name: (statistics.median(values), sum(values)) for name, values in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--method", default="telea")
    parser.add_argument("--stages", action="store_true", help="also time the harness's parts alone")
    parser.add_argument("--opencv-threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.opencv_threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        specs = prepare_jobs(Path(folder), args.method, args.size)
        milliseconds = measure(specs, args.repeats, args.stages)
    print(f"{args.method} at {args.size}x{args.size}, {len(specs)} jobs ({', '.join(CASES)}), "
          f"{args.repeats} rounds, {args.opencv_threads} OpenCV thread(s), process CPU ms (each job's median "
          f"over the rounds); load average {load_start:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"  {'':<20} {'median job':>10} {'all jobs':>10}")
    for name, (median, total) in milliseconds.items():
        print(f"  {name:<20} {median:10.2f} {total:10.1f}")
    ratios = [milliseconds["harness"][index] / milliseconds["method"][index] for index in range(2)]
    print(f"  {'harness / method':<20} {ratios[0]:9.2f}x {ratios[1]:9.2f}x")


if __name__ == "__main__":
    main()
