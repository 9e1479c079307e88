"""The benchmark runner: jobs = method x case x image, cached, resumable, fault-tolerant.

A job's outputs are its composited prediction ``pred/<method>/<case>/<id>.png`` and a record
``pred/<method>/<case>/<id>.json`` (wall time, hole fraction, pixel metrics). Both are written
atomically and the record last, so a job is finished exactly when its record exists: a rerun with
the same arguments skips it, and a run killed at any moment loses nothing that finished. A job that
raises is written to ``errors.csv`` and the run goes on.

The runner, not the method, composites ``where(mask, prediction, image)`` so that known pixels are
identical for every method (DESIGN.md, contract 2).
"""

from __future__ import annotations

import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.run.config import RunConfig
from bench.run.data import BenchImage, apply_size_policy, default_images, folder_images
from bench.errors import UserError
from bench.run.rundir import read_json, sample_path, write_json, write_rgb_png, write_table
from bench.metrics.pixel import pixel_metrics
from bench.run.scoring import ScoringReport, disabled_report, score_run
from masks.cases import case_mask, get_case
from masks.io import MaskFileError, read_labelme, read_mask_png, write_mask_png
from methods.base import Inpainter
from methods.registry import create_method, get_method_class

USER_CASE = "user"
NOTHING_TO_FILL = "nothing to fill"
ALL_HOLE = "mask is all hole: no known pixels"


@dataclass(frozen=True)
class Job:
    method: str
    case: str
    image_id: str


@dataclass
class JobSpec:
    """Everything a worker process needs to run one job."""

    job: Job
    weights: str | None
    image: np.ndarray
    hole_mask: np.ndarray
    seed: int
    pred_path: Path
    record_path: Path
    samples: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """What a run produced: its rows, its errors and the methods it skipped (with reasons)."""

    run_dir: Path
    rows: pd.DataFrame
    errors: pd.DataFrame
    skipped: dict[str, str]
    computed_jobs: int
    cached_jobs: int
    images: list[BenchImage] = field(default_factory=list)
    scoring: ScoringReport | None = None


def job_seed(seed: int, case: str, image_id: str) -> int:
    """Per-job seed for stochastic methods, a pure function of the run seed, case and image."""
    return zlib.crc32(f"{seed}/{case}/{image_id}".encode("utf-8"))


def composite(image: np.ndarray, prediction: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
    """Known pixels from ``image``, hole pixels from ``prediction``."""
    return np.where(hole_mask[:, :, None], prediction, image).astype(np.uint8)


_METHOD_CACHE: dict[tuple[str, str | None, str], Inpainter] = {}


def method_instance(name: str, weights: str | None, options: dict[str, Any]) -> Inpainter:
    """The method built once per process for these weights and options (loading weights is costly)."""
    key = (name, weights, repr(sorted(options.items())))
    if key not in _METHOD_CACHE:
        _METHOD_CACHE[key] = create_method(name, weights=weights, **options)
    return _METHOD_CACHE[key]


def execute_job(spec: JobSpec) -> dict:
    """Run one job, write its prediction and record, and return the record.

    With ``spec.samples > 1`` a method that can sample draws that many completions: the first is the
    scored prediction, the others are kept beside it for the diversity score.

    Exceptions propagate to the caller, which records them in ``errors.csv``.
    """
    image, hole_mask, job = spec.image, spec.hole_mask, spec.job
    hole_fraction = float(hole_mask.mean())
    note = ""
    extra_samples: list[np.ndarray] = []
    # Loading the method (weights, first use) is not part of the per-image time.
    method = method_instance(job.method, spec.weights, spec.options) if hole_mask.any() else None
    start = time.perf_counter()
    if method is None:
        note = NOTHING_TO_FILL
        prediction = image
    else:
        if hole_mask.all():
            note = ALL_HOLE
        # The method must not see the pixels it is asked to fill.
        masked_input = np.where(hole_mask[:, :, None], 0, image).astype(np.uint8)
        if spec.samples > 1 and method.can_sample:
            extra_samples = method.sample(masked_input, hole_mask, spec.samples, spec.seed)
            prediction = extra_samples.pop(0)
        else:
            prediction = method.inpaint(masked_input, hole_mask, seed=spec.seed)
        for candidate in (prediction, *extra_samples):
            if candidate.shape != image.shape or candidate.dtype != np.uint8:
                raise ValueError(f"{job.method} returned {candidate.dtype} {candidate.shape}, "
                                 f"expected uint8 {image.shape}")
    wall_time = time.perf_counter() - start
    for index, extra in enumerate(extra_samples, start=1):
        write_rgb_png(sample_path(spec.pred_path, index), composite(image, extra, hole_mask))
    result = composite(image, prediction, hole_mask)
    record = {
        "method": job.method,
        "case": job.case,
        "image_id": job.image_id,
        "sample": 0,
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "hole_fraction": hole_fraction,
        "wall_time_s": wall_time,
        "note": note,
        "samples": 1 + len(extra_samples),
        **pixel_metrics(image, result, hole_mask),
    }
    write_rgb_png(spec.pred_path, result)
    write_json(spec.record_path, record)
    return record


class Runner:
    """Runs a `RunConfig` into its run directory.

    Parameters
    ----------
    config : RunConfig
        What to run.
    progress : bool
        Show a tqdm progress bar.
    """

    def __init__(self, config: RunConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.run_dir = config.run_dir()

    def prepare_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"output directory {self.run_dir} cannot be written ({error.strerror or error}): "
                "pass --runs-dir pointing to a writable folder"
            ) from None

    def load_images(self) -> list[BenchImage]:
        config = self.config
        if config.limit is not None and config.limit < 1:
            raise UserError(f"--limit {config.limit} selects no image: pass a positive number or leave it out")
        if config.data is None:
            return default_images(size=config.size, limit=config.limit)
        return folder_images(config.data, size=config.size, limit=config.limit)

    def write_inputs(self, images: list[BenchImage]) -> dict[str, dict[str, np.ndarray]]:
        """Hole masks by case and image id, written to ``masks/<case>/<id>.png``.

        The prepared images are written to ``images/<id>.png`` beside them, so that a report can be
        re-rendered from the run directory alone.
        """
        for bench_image in images:
            path = self.run_dir / "images" / f"{bench_image.image_id}.png"
            if not path.exists():
                write_rgb_png(path, bench_image.image)
        masks: dict[str, dict[str, np.ndarray]] = {}
        for case in self.config.cases:
            masks[case] = {}
            for bench_image in images:
                if case == USER_CASE:
                    mask = self._user_mask(bench_image)
                else:
                    mask = case_mask(bench_image.image.shape[:2], bench_image.image_id, case, self.config.seed)
                masks[case][bench_image.image_id] = mask
                path = self.run_dir / "masks" / case / f"{bench_image.image_id}.png"
                if not path.exists():
                    write_mask_png(path, mask)
        return masks

    def _user_mask(self, bench_image: BenchImage) -> np.ndarray:
        folder = Path(self.config.masks)
        png, labelme = folder / f"{bench_image.image_id}.png", folder / f"{bench_image.image_id}.json"
        try:
            if png.exists():
                mask = read_mask_png(png, threshold=self.config.mask_threshold, invert=self.config.mask_invert)
                source = png
            elif labelme.exists():
                data_root = self.config.data if self.config.data is not None else folder
                mask, _ = read_labelme(labelme, data_root=data_root)
                source = labelme
            else:
                raise UserError(
                    f"no mask for image {bench_image.source}: add {png} (white = hole) or {labelme} (labelme)"
                )
        except MaskFileError as error:
            raise UserError(str(error)) from None
        if mask.shape != tuple(bench_image.original_size):
            raise UserError(
                f"mask {source} is {mask.shape[1]}x{mask.shape[0]} but image {bench_image.source} is "
                f"{bench_image.original_size[1]}x{bench_image.original_size[0]}: make the mask the image's size"
            )
        return apply_size_policy(mask, self.config.size, max_side=self.config.max_side, interpolation_mask=True)

    def resolve_methods(self) -> tuple[list[str], dict[str, str]]:
        """Methods that will run, and those skipped with the reason."""
        runnable, skipped = [], {}
        for name in self.config.methods:
            weights = self.config.weights.get(name)
            reason = get_method_class(name).unavailable_reason(Path(weights) if weights else None)
            if reason is None:
                runnable.append(name)
            else:
                skipped[name] = reason
        return runnable, skipped

    def _specs(self, methods: list[str], images: list[BenchImage],
               masks: dict[str, dict[str, np.ndarray]]) -> Iterator[JobSpec]:
        for method in methods:
            for case in self.config.cases:
                for bench_image in images:
                    job = Job(method, case, bench_image.image_id)
                    folder = self.run_dir / "pred" / method / case
                    yield JobSpec(
                        job=job,
                        weights=self.config.weights.get(method),
                        image=bench_image.image,
                        hole_mask=masks[case][bench_image.image_id],
                        seed=job_seed(self.config.seed, case, bench_image.image_id),
                        pred_path=folder / f"{bench_image.image_id}.png",
                        record_path=folder / f"{bench_image.image_id}.json",
                        samples=self.config.samples,
                        options=self.config.options.get(method, {}),
                    )

    def run(self) -> RunOutcome:
        """Run every unfinished job and collect the rows of all finished ones."""
        for case in self.config.cases:
            if case != USER_CASE:
                try:
                    get_case(case)
                except KeyError as error:
                    raise UserError(str(error.args[0])) from None
        self.prepare_run_dir()
        images = self.load_images()
        masks = self.write_inputs(images)
        methods, skipped = self.resolve_methods()
        specs = list(self._specs(methods, images, masks))
        pending = [spec for spec in specs if not spec.record_path.exists()]
        errors: list[dict[str, str]] = []
        errors_path = self.run_dir / "errors.csv"

        def record_error(spec: JobSpec, error: BaseException) -> None:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            errors.append({"method": spec.job.method, "case": spec.job.case, "image_id": spec.job.image_id,
                           "error": f"{type(error).__name__}: {message}"})
            write_table(errors_path, pd.DataFrame(errors))

        bar = tqdm(total=len(pending), desc="inpainting", unit="job", disable=not self.progress)
        parallel = [s for s in pending if self.config.workers > 1 and _is_cpu_method(s.job.method)]
        serial = [s for s in pending if s not in parallel]
        if parallel:
            with ProcessPoolExecutor(max_workers=self.config.workers) as pool:
                futures = {pool.submit(execute_job, spec): spec for spec in parallel}
                for future in as_completed(futures):
                    try:
                        future.result()
                    except Exception as error:  # one failed job must not stop the run
                        record_error(futures[future], error)
                    bar.update()
        for spec in serial:
            bar.set_postfix_str(f"{spec.job.method}/{spec.job.case}")
            try:
                execute_job(spec)
            except Exception as error:  # one failed job must not stop the run
                record_error(spec, error)
            bar.update()
        bar.close()
        write_table(errors_path, pd.DataFrame(errors, columns=["method", "case", "image_id", "error"]))
        if self.config.learned_metrics:
            scoring = score_run(self.run_dir, [spec.record_path for spec in specs],
                                {image.image_id: image.image for image in images}, progress=self.progress)
        else:
            scoring = disabled_report()
        rows = collect_rows(self.run_dir, specs)
        write_table(self.run_dir / "rows.parquet", rows)
        return RunOutcome(self.run_dir, rows, pd.DataFrame(errors, columns=["method", "case", "image_id", "error"]),
                          skipped, computed_jobs=len(pending) - len(errors), cached_jobs=len(specs) - len(pending),
                          images=images, scoring=scoring)


def _is_cpu_method(name: str) -> bool:
    from methods.base import Family

    return get_method_class(name).family is Family.TRADITIONAL


ROW_COLUMNS = ["method", "family", "case", "image_id", "sample", "samples", "height", "width", "hole_fraction",
               "wall_time_s", "note", "psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole"]


def collect_rows(run_dir: Path, specs: list[JobSpec]) -> pd.DataFrame:
    """The long result table (DESIGN.md, contract 4) from the records of finished jobs."""
    records = []
    for spec in specs:
        if spec.record_path.exists():
            record = read_json(spec.record_path)
            record["family"] = get_method_class(record["method"]).family.value
            records.append(record)
    rows = pd.DataFrame(records)
    if rows.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    extra = [column for column in rows.columns if column not in ROW_COLUMNS]
    return rows[ROW_COLUMNS + sorted(extra)].reset_index(drop=True)


def default_worker_count() -> int:
    return max(1, min(4, os.cpu_count() or 1))
