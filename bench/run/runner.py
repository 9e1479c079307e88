"""The benchmark runner: jobs = method x case x image, cached, resumable, fault-tolerant.

A job's outputs are its composited prediction ``pred/<method>/<case>/<id>.png`` and a record
``pred/<method>/<case>/<id>.json`` (wall time, hole fraction, pixel metrics). Both are written
atomically and the record last, so a job is finished exactly when its record exists: a rerun with
the same arguments skips it, and a run killed at any moment loses nothing that finished. A job that
raises is written to ``errors.csv`` and the run goes on.

A record is valid only for the content it was computed from: it stores its job's key
(`bench.run.identity.JobIdentity`), and a job whose record has another key is computed again. The
prepared images and masks written to the run directory are likewise rewritten when their content
changes, and the Inception features cached for a changed image or a recomputed job are discarded.

The runner, not the method, composites ``where(mask, prediction, image)`` so that known pixels are
identical for every method (DESIGN.md, contract 2).
"""

from __future__ import annotations

import errno
import functools
import os
import time
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.errors import UserError
from bench.metrics.pixel import pixel_metrics
from bench.run.config import RunConfig, package_versions
from bench.run.data import BenchImage, apply_size_policy, load_images
from bench.run.identity import ContentDigests, JobIdentity, array_digest
from bench.run.rundir import RunDir, read_json, sample_path, write_json, write_rgb_png
from bench.run.metadata import USER_CASE, RunOutcome, config_document, run_metadata
from bench.run.scoring import disabled_report, score_run
from bench.run.workers import run_parallel
from masks import nvidia
from masks.cases import DrawnMask, draw_case_mask, get_case
from masks.io import MaskFileError, read_labelme, read_mask_png, write_mask_png
from methods.base import Inpainter
from methods.checkpoint import CheckpointError
from methods.registry import create_method, get_method_class, pick_device, resolve_device

NOTHING_TO_FILL = "nothing to fill"
ALL_HOLE = "mask is all hole: no known pixels"
#: Write errors that every later job would hit too: the run stops at the first one.
_RUN_STOPPING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@dataclass(frozen=True)
class Job:
    method: str
    case: str
    image_id: str


@dataclass
class JobSpec:
    """Everything a worker process needs to run one job."""

    job: Job
    key: str
    weights: str | None
    weights_digest: str | None
    image: np.ndarray
    hole_mask: np.ndarray
    seed: int
    pred_path: Path
    record_path: Path
    samples: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    ssim_convention: str = "lama"
    #: How the mask was made (generator, frame, source file), copied into the job record.
    mask_info: dict[str, str] = field(default_factory=dict)


def job_seed(seed: int, case: str, image_id: str) -> int:
    """Per-job seed for stochastic methods, a pure function of the run seed, case and image."""
    return zlib.crc32(f"{seed}/{case}/{image_id}".encode("utf-8"))


def composite(image: np.ndarray, prediction: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
    """Known pixels from ``image``, hole pixels from ``prediction``."""
    return np.where(hole_mask[:, :, None], prediction, image).astype(np.uint8)


_METHOD_CACHE: dict[tuple[str, str | None, str | None, str, str], Inpainter] = {}


def method_instance(name: str, weights: str | None, options: dict[str, Any],
                    weights_digest: str | None = None, device: str = "auto") -> Inpainter:
    """The method loaded once for these weights (path and content), options and device, kept until
    `release_method` (the runner releases a method when its jobs are done)."""
    key = (name, weights, weights_digest, repr(sorted(options.items())), device)
    if key not in _METHOD_CACHE:
        _METHOD_CACHE[key] = create_method(name, weights=weights, device=device, **options)
    return _METHOD_CACHE[key]


def release_method(name: str) -> None:
    """Drop every loaded instance of ``name``, freeing its weights and device memory."""
    for key in [key for key in _METHOD_CACHE if key[0] == name]:
        del _METHOD_CACHE[key]


def device_kind(name: str, requested: str) -> str:
    """The kind of device (``cpu``, ``cuda``) method ``name`` computes on for ``--device requested``;
    part of a job's identity."""
    import torch

    return torch.device(resolve_device(get_method_class(name), requested)).type


@functools.cache
def software_versions() -> tuple[tuple[str, str], ...]:
    """Versions of the packages that compute results; part of a job's identity."""
    return tuple(sorted(package_versions().items()))


def is_finished(spec: JobSpec) -> bool:
    """Whether the job has a prediction and a record computed from exactly its current inputs."""
    try:
        return read_json(spec.record_path).get("job_key") == spec.key and spec.pred_path.exists()
    except (OSError, ValueError, AttributeError):
        return False


def stops_run(error: BaseException) -> bool:
    """Whether ``error`` would fail every later job too (disk full, read-only), so the run must stop."""
    return isinstance(error, OSError) and error.errno in _RUN_STOPPING_ERRNOS


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
    method = (method_instance(job.method, spec.weights, spec.options, spec.weights_digest, spec.device)
              if hole_mask.any() else None)
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
        "job_key": spec.key,
        **spec.mask_info,
        **pixel_metrics(image, result, hole_mask, ssim_convention=spec.ssim_convention),
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
    command : str
        The command line that started the run, recorded in ``run.json``.
    """

    def __init__(self, config: RunConfig, *, progress: bool = True, command: str = "relama-bench run") -> None:
        self.config = config
        self.progress = progress
        self.command = command
        self.run_dir = config.run_dir()
        self.paths = RunDir(self.run_dir)

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
        return load_images(config.data, size=config.size, limit=config.limit, max_side=config.max_side)

    def write_inputs(self, images: list[BenchImage]) -> tuple[dict[str, str], dict[str, dict[str, DrawnMask]]]:
        """Content digests of the images, and hole masks by case and image id.

        The prepared images go to ``images/<id>.png`` (so that a report can be re-rendered from the run
        directory alone) and the masks to ``masks/<case>/<id>.png``; each is rewritten when its content
        differs from what ``inputs.json`` says the file holds, and a changed image's cached Inception
        features are discarded.
        """
        manifest_path = self.paths.inputs_manifest
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError):
            manifest = {}
        manifest = manifest if isinstance(manifest, dict) else {}
        written = dict(manifest)

        def write_if_changed(path: Path, digest: str, write: Callable[[Path], None]) -> None:
            relative = self.paths.relative(path)
            if written.get(relative) != digest or not path.exists():
                write(path)
                written[relative] = digest

        image_digests: dict[str, str] = {}
        for bench_image in images:
            image_id = bench_image.image_id
            digest = image_digests[image_id] = array_digest(bench_image.image)

            def write_image(path: Path, bench_image: BenchImage = bench_image) -> None:
                # Features of the old content must go before the new content is recorded.
                self.paths.original_features(bench_image.image_id).unlink(missing_ok=True)
                write_rgb_png(path, bench_image.image)

            write_if_changed(self.paths.image(image_id), digest, write_image)
        masks: dict[str, dict[str, DrawnMask]] = {}
        for case in self.config.cases:
            masks[case] = {}
            for bench_image in images:
                drawn = self._draw_mask(case, bench_image)
                masks[case][bench_image.image_id] = drawn
                write_if_changed(self.paths.mask(case, bench_image.image_id), array_digest(drawn.mask),
                                 lambda path, mask=drawn.mask: write_mask_png(path, mask))
        if written != manifest:
            write_json(manifest_path, written)
        return image_digests, masks

    def _draw_mask(self, case: str, bench_image: BenchImage) -> DrawnMask:
        shape, image_id = bench_image.image.shape[:2], bench_image.image_id
        if case == USER_CASE:
            return DrawnMask(self._user_mask(bench_image), "user file", shape, 0)
        if case in nvidia.CASES:
            folder = self.config.mask_protocols.get(nvidia.PROTOCOL)
            if folder is None:
                raise UserError(f"case {case!r} reads the NVIDIA mask set: pass --masks-protocol nvidia=DIR")
            try:
                return nvidia.draw_mask(shape, image_id, case, self.config.seed, folder)
            except MaskFileError as error:
                raise UserError(str(error)) from None
        return draw_case_mask(shape, image_id, case, self.config.seed)

    def _user_mask(self, bench_image: BenchImage) -> np.ndarray:
        folder = Path(self.config.masks)
        png, labelme = folder / f"{bench_image.image_id}.png", folder / f"{bench_image.image_id}.json"
        # labelme keeps its JSON beside the image: with --masks = --data, STEM.png is the image itself.
        png_is_image = png.exists() and _same_file(png, bench_image.source)
        try:
            if labelme.exists() and (png_is_image or not png.exists()):
                mask = self._labelme_mask(labelme, bench_image)
                source = labelme
            elif png.exists() and labelme.exists():
                raise UserError(
                    f"mask folder {folder} holds both {png.name} and {labelme.name} for image {bench_image.source}: "
                    "remove the one that is not its mask"
                )
            elif png_is_image:
                raise UserError(
                    f"mask {png} is the image itself (--masks names the data folder): add the labelme "
                    f"annotation {labelme.name} beside it or pass a separate mask folder"
                )
            elif png.exists():
                mask = read_mask_png(png, threshold=self.config.mask_threshold, invert=self.config.mask_invert)
                source = png
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

    @staticmethod
    def _labelme_mask(labelme: Path, bench_image: BenchImage) -> np.ndarray:
        # The suite never opens the file imagePath names; it only checks that the annotation is for
        # this image: the same file, resolved as labelme does (relative to the JSON file), or the same
        # file name (annotations kept in a folder of their own).
        mask, image_path = read_labelme(labelme, image_size=bench_image.original_size)
        if image_path is not None and not _same_file(Path(image_path), bench_image.source):
            named = PureWindowsPath(image_path).name
            if named != Path(bench_image.source).name:
                raise UserError(
                    f"labelme file {labelme} annotates {named!r} (its imagePath), not the image "
                    f"{bench_image.source}: fix imagePath or rename the annotation"
                )
        return mask

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

    def load_methods(self, names: list[str], digests: ContentDigests
                     ) -> tuple[dict[str, dict[str, str]], dict[str, str | None], dict[str, str]]:
        """Build each method once before the jobs, to refuse bad options and skip unloadable methods
        up front, and release it again: one model is in memory at a time, and its jobs load it anew.

        Returns each loadable method's ``describe()``, the content digest of each one's weights, and the
        methods that could not be built with the one-line reason (their jobs are skipped, not failed one
        by one).

        Raises
        ------
        UserError
            A method refuses the ``--option`` values it was given.
        """
        built: dict[str, dict[str, str]] = {}
        weights_digests: dict[str, str | None] = {}
        skipped: dict[str, str] = {}
        for name in names:
            weights = self.config.weights.get(name)
            options = self.config.options.get(name, {})
            try:
                source = get_method_class(name).weights_source(Path(weights) if weights else None)
                weights_digests[name] = digests.path(source) if source is not None else None
                method = method_instance(name, weights, options, weights_digests[name], self.config.device)
                built[name] = describe(method)
                release_method(name)
            except Exception as error:  # whatever stops a method from loading skips it, with the reason
                message = _first_line(error)
                if options and isinstance(error, (TypeError, ValueError)) and not isinstance(error, CheckpointError):
                    given = ", ".join(f"--option {name}.{key}={_option_text(value)}" for key, value in options.items())
                    raise UserError(f"{given} is refused by method {name!r} ({message}): fix the value") from None
                skipped[name] = f"could not be loaded ({message})"
        return built, weights_digests, skipped

    def _specs(self, methods: list[str], images: list[BenchImage], image_digests: dict[str, str],
               masks: dict[str, dict[str, DrawnMask]], weights_digests: dict[str, str | None]) -> Iterator[JobSpec]:
        software = dict(software_versions())
        mask_digests = {case: {image_id: array_digest(drawn.mask) for image_id, drawn in case_masks.items()}
                        for case, case_masks in masks.items()}
        for method in methods:
            options = self.config.options.get(method, {})
            for case in self.config.cases:
                for bench_image in images:
                    job = Job(method, case, bench_image.image_id)
                    seed = job_seed(self.config.seed, case, bench_image.image_id)
                    identity = JobIdentity(
                        method=method, case=case, image_id=bench_image.image_id,
                        image=image_digests[bench_image.image_id], mask=mask_digests[case][bench_image.image_id],
                        weights=weights_digests[method], device=device_kind(method, self.config.device), seed=seed,
                        samples=self.config.samples, options=options, software=software, ssim=self.config.ssim,
                    )
                    yield JobSpec(
                        job=job,
                        key=identity.key(),
                        weights=self.config.weights.get(method),
                        weights_digest=weights_digests[method],
                        image=bench_image.image,
                        hole_mask=masks[case][bench_image.image_id].mask,
                        seed=seed,
                        pred_path=self.paths.prediction(method, case, bench_image.image_id),
                        record_path=self.paths.record(method, case, bench_image.image_id),
                        samples=self.config.samples,
                        options=options,
                        ssim_convention=self.config.ssim,
                        mask_info=mask_record(masks[case][bench_image.image_id]),
                        device=self.config.device,
                    )

    def _check_holes(self, masks: dict[str, dict[str, DrawnMask]]) -> None:
        if any(drawn.mask.any() for case_masks in masks.values() for drawn in case_masks.values()):
            return
        if self.config.masks is not None:
            rule = (f"dark pixels (grey <= {self.config.mask_threshold})" if self.config.mask_invert
                    else f"grey values above {self.config.mask_threshold}")
            raise UserError(f"no mask in {self.config.masks} has a hole ({rule}): check the masks, "
                            "--mask-threshold and --mask-invert")
        raise UserError("no mask of this run has a hole: the images are too small for the mask cases; "
                        "pass larger images or --size")

    def run(self) -> RunOutcome:
        """Run every unfinished job and collect the rows of all finished ones.

        Raises
        ------
        OSError
            A write failed for a reason every later job would share (disk full, read-only): the run
            stops there, keeping every finished job.
        """
        for case in self.config.cases:
            if case != USER_CASE and case not in nvidia.CASES:
                try:
                    get_case(case)
                except KeyError as error:
                    raise UserError(str(error.args[0])) from None
        started = time.time()
        self.prepare_run_dir()
        self.paths.write_config(config_document(self.config))
        images = self.load_images()
        image_digests, masks = self.write_inputs(images)
        self._check_holes(masks)
        methods, skipped = self.resolve_methods()
        digests = ContentDigests(self.paths.digests_path, write_json)
        built, weights_digests, not_loaded = self.load_methods(methods, digests)
        digests.save()
        skipped.update(not_loaded)
        methods = [name for name in methods if name in built]
        specs = list(self._specs(methods, images, image_digests, masks, weights_digests))
        pending = [spec for spec in specs if not is_finished(spec)]
        for spec in pending:
            # A recomputed prediction's cached Inception features belong to the old one.
            self.paths.features(spec.job.method, spec.job.case, spec.job.image_id).unlink(missing_ok=True)
        errors: list[dict[str, str]] = []
        columns = ["method", "case", "image_id", "error"]
        bar = tqdm(total=len(pending), desc="inpainting", unit="job", disable=not self.progress)

        def record_error(spec: JobSpec, error: BaseException) -> None:
            if stops_run(error):
                raise error
            errors.append({"method": spec.job.method, "case": spec.job.case, "image_id": spec.job.image_id,
                           "error": f"{type(error).__name__}: {_first_line(error)}"})
            self.paths.write_errors(pd.DataFrame(errors, columns=columns))

        def finished(spec: JobSpec, future: Future) -> None:
            error = future.exception()
            if error is not None:
                record_error(spec, error)
            bar.update()

        parallel = [s for s in pending if self.config.workers > 1 and _is_cpu_method(s.job.method)]
        serial = [s for s in pending if s not in parallel]
        try:
            if parallel:
                run_parallel(execute_job, parallel, self.config.workers, finished)
            for index, spec in enumerate(serial):
                bar.set_postfix_str(f"{spec.job.method}/{spec.job.case}")
                try:
                    execute_job(spec)
                except Exception as error:  # one failed job must not stop the run
                    record_error(spec, error)
                bar.update()
                # Jobs come grouped by method: once a method's last job is done its weights are released.
                if index + 1 == len(serial) or serial[index + 1].job.method != spec.job.method:
                    release_method(spec.job.method)
        finally:
            bar.close()
        self.paths.write_errors(pd.DataFrame(errors, columns=columns))
        if self.config.learned_metrics:
            scoring = score_run(self.run_dir, [spec.record_path for spec in specs if is_finished(spec)],
                                {image.image_id: image.image for image in images}, progress=self.progress,
                                device=pick_device(self.config.device, ("cpu", "cuda"), "LPIPS and Inception"))
        else:
            scoring = disabled_report()
        rows = collect_rows(self.run_dir, specs)
        self.paths.write_rows(rows)
        outcome = RunOutcome(self.run_dir, rows, pd.DataFrame(errors, columns=columns),
                             skipped, computed_jobs=len(pending) - len(errors), cached_jobs=len(specs) - len(pending),
                             images=images, scoring=scoring, method_details=built)
        self.paths.write_meta(run_metadata(self.config, outcome, started, self.command))
        return outcome


def describe(method: Inpainter) -> dict[str, str]:
    """``method.describe()``; describing is best effort (an empty dict when it fails)."""
    try:
        return method.describe()
    except Exception:  # a method that cannot describe itself still ran; run.json says nothing about it
        return {}


def _option_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _same_file(path: Path, source: str) -> bool:
    try:
        return os.path.samefile(path, source)
    except (OSError, ValueError):
        return False


def mask_record(drawn: DrawnMask) -> dict[str, str]:
    """The job-record fields that say how a mask was made."""
    record = {"mask_generator": drawn.generator, "mask_frame": f"{drawn.frame[1]}x{drawn.frame[0]}"}
    if drawn.source is not None:
        record["mask_source"] = drawn.source
    return record


def _is_cpu_method(name: str) -> bool:
    # Methods that take no torch device run NumPy/OpenCV code, which the worker processes parallelise.
    return not get_method_class(name).devices


ROW_COLUMNS = ["method", "family", "case", "image_id", "sample", "samples", "height", "width", "hole_fraction",
               "wall_time_s", "note", "psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole"]


def collect_rows(run_dir: Path, specs: list[JobSpec]) -> pd.DataFrame:
    """The long result table (DESIGN.md, contract 4) from the records of finished jobs."""
    return _rows([read_json(spec.record_path) for spec in specs if is_finished(spec)])


def rows_from_records(run_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The result table rebuilt from every job record under ``pred/``, for a run whose ``rows.parquet``
    was lost (a kill between the last record and the table) or damaged.

    Without the run's inputs the records' job keys cannot be checked, so a record left by an attempt
    that was stopped after an input changed is taken as it is.

    Returns
    -------
    rows : DataFrame
        As `collect_rows` gives, ordered by method, case and image id.
    unreadable : list of Path
        Records that could not be read (left out of ``rows``).
    """
    records, unreadable = [], []
    for path in sorted(Path(run_dir).glob("pred/*/*/*.json")):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            unreadable.append(path)
            continue
        if isinstance(record, dict) and {"method", "case", "image_id"} <= set(record):
            records.append(record)
        else:
            unreadable.append(path)
    return _rows(records), unreadable


def _rows(records: list[dict]) -> pd.DataFrame:
    for record in records:
        record.pop("job_key", None)
        try:
            record["family"] = get_method_class(record["method"]).family.value
        except KeyError:  # a plug-in method that is no longer installed
            record["family"] = "unknown"
    rows = pd.DataFrame(records)
    if rows.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    rows = rows.reindex(columns=list(dict.fromkeys(ROW_COLUMNS + list(rows.columns))))
    extra = [column for column in rows.columns if column not in ROW_COLUMNS]
    return rows[ROW_COLUMNS + sorted(extra)].reset_index(drop=True)


def default_worker_count() -> int:
    return max(1, min(4, os.cpu_count() or 1))
