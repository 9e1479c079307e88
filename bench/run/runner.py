"""The benchmark runner: jobs = method x case x image, cached, resumable, fault-tolerant.

A job's outputs are its composited prediction ``pred/<method>/<case>/<id>.png`` (unless
``--save-predictions`` leaves it out), its Inception features and a record (wall time, hole fraction,
pixel metrics, LPIPS), appended as one line to the process's job log
``logs/jobs.rank<r>.<attempt>.jsonl`` (`bench.run.joblog`). The files are written atomically and the
record last, so a job is finished exactly when its record is logged: a rerun with the same arguments
skips it, and a run killed at any moment loses nothing that finished. A job that raises is written to
``errors.csv`` and the run goes on.

A record is valid only for the content it was computed from: it stores its job's key
(`bench.run.identity.JobIdentity`), and a job with no logged record of its current key is computed
again. The prepared images and masks written to the run directory are likewise rewritten when their
content changes, and the Inception features cached for a changed image or a recomputed job are
discarded.

Memory does not grow with the number of images: a rank reads each image once to write its prepared
copy and masks into the run directory (`Runner.write_inputs`), keeping only digests and facts, and each
job reads its image and mask back from there (`read_job_inputs`), checked against the digests its key
was computed from, and lets them go when it is done.

Under ``torchrun`` each rank runs the jobs of its shard of the images (`bench.run.distributed`); every
rank reads every job log at start-up, so a job finished by any rank of any earlier attempt is skipped
whatever the number of processes, and rank 0 collects every rank's rows from the logs after the others
finish, so the rows are those of a one-process run.

The runner, not the method, composites ``where(mask, prediction, image)`` so that known pixels are
identical for every method (DESIGN.md, contract 2).
"""

from __future__ import annotations

import errno
import functools
import math
import os
import time
import zlib
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Iterator, Mapping, NoReturn

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.errors import UserError
from bench.metrics.pixel import pixel_metrics
from bench.run.config import RunConfig, package_versions
from bench.run import distributed
from bench.run.data import IMAGE_SUFFIXES, BenchImage, ImageSource, apply_size_policy, image_sources, load_image
from bench.run.distributed import Ranks
from bench.run.identity import ContentDigests, JobIdentity, array_digest
from bench.run.joblog import JobLog, attempt_of, last_attempt, latest_by_job, latest_records
from bench.run.rundir import (PREPARED_IMAGE_PNG, RunDir, read_json, read_rgb_png, sample_path, write_json, write_rgb_png,
                              write_table)
from bench.run.metadata import EXTERNAL_FAMILY, USER_CASE, RunOutcome, config_document, run_metadata
from bench.run.scoring import StreamingScorer, disabled_report, merge_reports, metrics_missing, score_run
from bench.run.workers import run_parallel
from masks import nvidia
from masks.cases import DrawnMask, draw_case_mask, get_case
from masks.io import MaskFileError, read_labelme, read_mask_png, write_mask_png
from methods.base import Inpainter
from methods.checkpoint import CheckpointError
from methods.nets.allocator import retain_freed_memory
from methods.registry import create_method, get_method_class, pick_device, resolve_device

NOTHING_TO_FILL = "nothing to fill"
#: Above this many jobs a run saves only the predictions its figure grids show, unless told otherwise
#: (``--save-predictions all``): at 512 x 512, 50,000 predictions are about 20 GB of PNG.
SAVE_ALL_MAX_JOBS = 50_000
#: Least seconds between two rewrites of the errors table while a run goes on.
ERRORS_REWRITE_INTERVAL_S = 5.0
ALL_HOLE = "mask is all hole: no known pixels"
#: Write errors that every later job would hit too: the run stops at the first one.
_RUN_STOPPING_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@dataclass(frozen=True)
class Job:
    method: str
    case: str
    image_id: str


@dataclass(frozen=True)
class PreparedMask:
    """One case's hole mask of an image, as its jobs need to know it: content digest, how it was made
    (`mask_record`) and whether it has a hole."""

    digest: str
    info: dict[str, str]
    has_hole: bool


@dataclass(frozen=True)
class PreparedImage:
    """One image of a rank's shard after `Runner.write_inputs`: its digest, facts (`image_facts`) and
    masks by case, but not its pixels, which its jobs read from the run directory."""

    image_id: str
    digest: str
    facts: dict
    masks: dict[str, PreparedMask]


@dataclass
class JobSpec:
    """Everything a worker process needs to run one job (paths and digests of its inputs, not the
    pixels: the job reads them, see `read_job_inputs`)."""

    job: Job
    key: str
    weights: str | None
    weights_digest: str | None
    image_path: Path
    image_digest: str
    mask_path: Path
    mask_digest: str
    seed: int
    pred_path: Path
    samples: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    ssim_convention: str = "lama"
    #: How the mask was made (generator, frame, source file), copied into the job record.
    mask_info: dict[str, str] = field(default_factory=dict)
    #: Folder of predictions made elsewhere (``<id>.<image suffix>``), scored instead of running a method.
    predictions: Path | None = None
    #: Whether the composited prediction (and samples) are written to ``pred/`` (``--save-predictions``).
    save_prediction: bool = True


@dataclass
class JobResult:
    """A computed job: its record (not yet written), its composited prediction and extra samples, and
    the original image they were computed from (for the learned metrics)."""

    record: dict
    prediction: np.ndarray
    original: np.ndarray
    samples: list[np.ndarray] = field(default_factory=list)


def read_prepared_image(path: Path, digest: str) -> np.ndarray:
    """A prepared image of the run directory (``images/<id>.png``), checked to hold the content
    ``digest`` (`array_digest`) names.

    Raises
    ------
    ValueError
        The file holds other pixels (it changed after the run wrote it); the message names it.
    """
    image = read_rgb_png(path)
    if array_digest(image) != digest:
        _refuse_changed_input(path)
    return image


def _refuse_changed_input(path: Path) -> NoReturn:
    # The file is removed, so that the rerun the message asks for writes it again (the manifest alone
    # would keep it).
    path.unlink(missing_ok=True)
    raise ValueError(f"{path} changed while the run was going: rerun the same command to rewrite it")


def read_job_inputs(spec: JobSpec) -> tuple[np.ndarray, np.ndarray]:
    """The job's image and hole mask, read from the run directory and checked against the digests its
    key was computed from, so the result is exactly the one the key names."""
    hole_mask = read_mask_png(spec.mask_path)
    if array_digest(hole_mask) != spec.mask_digest:
        _refuse_changed_input(spec.mask_path)
    return read_prepared_image(spec.image_path, spec.image_digest), hole_mask


def job_seed(seed: int, case: str, image_id: str) -> int:
    """Per-job seed for stochastic methods, a pure function of the run seed, case and image."""
    return zlib.crc32(f"{seed}/{case}/{image_id}".encode("utf-8"))


def composite(image: np.ndarray, prediction: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
    """Known pixels from ``image``, hole pixels from ``prediction`` (both uint8 ``(H, W, 3)``)."""
    # OpenCV's masked copy: ~0.05 ms at 512 x 512, where np.where with a broadcast mask takes ~2 ms.
    return cv2.copyTo(prediction, hole_mask.view(np.uint8), image.copy())


def masked_input(image: np.ndarray, hole_mask: np.ndarray) -> np.ndarray:
    """``image`` with its hole pixels set to 0: what a method is given, so that it cannot see the pixels
    it is asked to fill."""
    return cv2.copyTo(image, (~hole_mask).view(np.uint8))


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


def is_finished(spec: JobSpec, records: Mapping[str, dict]) -> bool:
    """Whether the job has a logged record computed from exactly its current inputs (``records``: the
    latest record of each job key, `bench.run.joblog.latest_records`), and its prediction when the run
    saves it."""
    return spec.key in records and (not spec.save_prediction or spec.pred_path.exists())


def stops_run(error: BaseException) -> bool:
    """Whether ``error`` would fail every later job too (disk full, read-only), so the run must stop."""
    return isinstance(error, OSError) and error.errno in _RUN_STOPPING_ERRNOS


def find_prediction(folder: Path, image_id: str) -> Path:
    """The one prediction file of ``image_id`` in ``folder``.

    Raises
    ------
    ValueError
        None or several (``x.png`` and ``x.jpg``) are there; the message names them.
    """
    found = [folder / f"{image_id}{suffix}" for suffix in sorted(IMAGE_SUFFIXES)
             if (folder / f"{image_id}{suffix}").is_file()]
    if not found:
        raise ValueError(f"no prediction for image {image_id!r} in {folder} (expected {image_id}.png)")
    if len(found) > 1:
        raise ValueError(f"several predictions for image {image_id!r}: {', '.join(str(path) for path in found)}; "
                         "keep one")
    return found[0]


def score_prediction(spec: JobSpec) -> JobResult:
    """Score a prediction made elsewhere as `run_job` scores a method's output (and write the
    composited prediction when the spec saves it).

    The prediction must have the image's size. Its known pixels are replaced by the original's, as for
    every method; ``known_pixels_changed`` records whether the method had altered any of them.
    """
    (image, hole_mask), job = read_job_inputs(spec), spec.job
    path = find_prediction(spec.predictions, job.image_id)
    prediction, _ = load_image(path)
    if prediction.shape != image.shape:
        raise ValueError(f"prediction {path} is {prediction.shape[1]}x{prediction.shape[0]} but its image is "
                         f"{image.shape[1]}x{image.shape[0]}: predictions must keep the image's size")
    result = composite(image, prediction, hole_mask)
    record = {
        "method": job.method, "family": EXTERNAL_FAMILY, "case": job.case, "image_id": job.image_id, "sample": 0,
        "height": int(image.shape[0]), "width": int(image.shape[1]), "hole_fraction": float(hole_mask.mean()),
        # Not timed here: the prediction was made elsewhere.
        "wall_time_s": float("nan"),
        "note": "" if hole_mask.any() else NOTHING_TO_FILL, "samples": 1, "job_key": spec.key,
        "known_pixels_changed": bool((prediction != image)[~hole_mask].any()),
        **spec.mask_info,
        **pixel_metrics(image, result, hole_mask, ssim_convention=spec.ssim_convention),
    }
    if spec.save_prediction:
        write_rgb_png(spec.pred_path, result)
    return JobResult(record, result, image)


def run_job(spec: JobSpec) -> JobResult:
    """Run one job, write its prediction (when the spec saves predictions) and return the result; the
    caller logs the record, which marks the job finished.

    With ``spec.samples > 1`` a method that can sample draws that many completions: the first is the
    scored prediction, the others are kept beside it for the diversity score.

    Exceptions propagate to the caller, which records them in ``errors.csv``.
    """
    # A job's metrics allocate and free ~100 MB of float64 temporaries; glibc would hand them back to
    # the system and fault them in again every job (~5,000 page faults, a third of the pixel metrics'
    # time at 512 x 512). Kept for reuse instead; peak memory is unchanged.
    retain_freed_memory()
    if spec.predictions is not None:
        return score_prediction(spec)
    (image, hole_mask), job = read_job_inputs(spec), spec.job
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
        method_input = masked_input(image, hole_mask)
        if spec.samples > 1 and method.can_sample:
            extra_samples = method.sample(method_input, hole_mask, spec.samples, spec.seed)
            prediction = extra_samples.pop(0)
        else:
            prediction = method.inpaint(method_input, hole_mask, seed=spec.seed)
        for candidate in (prediction, *extra_samples):
            if candidate.shape != image.shape or candidate.dtype != np.uint8:
                raise ValueError(f"{job.method} returned {candidate.dtype} {candidate.shape}, "
                                 f"expected uint8 {image.shape}")
    wall_time = time.perf_counter() - start
    samples = [composite(image, extra, hole_mask) for extra in extra_samples]
    if spec.save_prediction:
        for index, sample in enumerate(samples, start=1):
            write_rgb_png(sample_path(spec.pred_path, index), sample)
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
    if spec.save_prediction:
        write_rgb_png(spec.pred_path, result)
    return JobResult(record, result, image, samples)


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
    ranks : Ranks
        This process's place in a ``torchrun`` job (default: the only process).
    """

    def __init__(self, config: RunConfig, *, progress: bool = True, command: str = "relama-bench run",
                 ranks: Ranks = Ranks()) -> None:
        self.config = config
        self.progress = progress and ranks.is_main
        self.ranks = ranks
        self.command = command
        self.run_dir = config.run_dir()
        self.paths = RunDir(self.run_dir)

    def prepare_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # One probe per process: the ranks of a torchrun job probe the same folder at once.
            probe = self.run_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"output directory {self.run_dir} cannot be written ({error.strerror or error}): "
                "pass --runs-dir pointing to a writable folder"
            ) from None

    def image_sources(self) -> list[ImageSource]:
        """Every image of the run, in run order, not yet read."""
        config = self.config
        if config.limit is not None and config.limit < 1:
            raise UserError(f"--limit {config.limit} selects no image: pass a positive number or leave it out")
        return image_sources(config.data, size=config.size, limit=config.limit, max_side=config.max_side)

    def write_inputs(self, sources: list[ImageSource]) -> list[PreparedImage]:
        """Read each image of ``sources`` once, write its prepared copy and its masks into the run
        directory, and keep only what its jobs need to know (`PreparedImage`), not its pixels.

        The prepared images go to ``images/<id>.png`` (the jobs read them back, and a report can be
        re-rendered from the run directory alone) and the masks to ``masks/<case>/<id>.png``; each is
        rewritten when its content differs from what ``inputs.json`` says the file holds, and a changed
        image's cached Inception features are discarded.
        """
        # Under torchrun each rank keeps the manifest of the files it wrote; all are read, since a resumed
        # run may deal the images out differently. An entry that is stale only causes a rewrite.
        manifest_path = (self.paths.inputs_manifest if not self.ranks.distributed
                         else self.paths.rank_inputs_manifest(self.ranks.rank))
        manifest: dict = {}
        for path in self.paths.inputs_manifests():
            try:
                loaded = read_json(path)
            except (OSError, ValueError):
                continue
            manifest.update(loaded if isinstance(loaded, dict) else {})
        written = dict(manifest)

        def write_if_changed(path: Path, digest: str, write: Callable[[Path], None]) -> None:
            relative = self.paths.relative(path)
            if written.get(relative) != digest or not path.exists():
                write(path)
                written[relative] = digest

        prepared = []
        for source in sources:
            bench_image = source.load()
            image_id = bench_image.image_id
            digest = array_digest(bench_image.image)

            def write_image(path: Path, bench_image: BenchImage = bench_image) -> None:
                # Features of the old content must go before the new content is recorded.
                self.paths.original_features(bench_image.image_id).unlink(missing_ok=True)
                write_rgb_png(path, bench_image.image, PREPARED_IMAGE_PNG)

            write_if_changed(self.paths.image(image_id), digest, write_image)
            masks = {}
            for case in self.config.cases:
                drawn = self._draw_mask(case, bench_image)
                mask_digest = array_digest(drawn.mask)
                write_if_changed(self.paths.mask(case, image_id), mask_digest,
                                 lambda path, mask=drawn.mask: write_mask_png(path, mask))
                masks[case] = PreparedMask(mask_digest, mask_record(drawn), bool(drawn.mask.any()))
            prepared.append(PreparedImage(image_id, digest, image_facts(bench_image), masks))
        if written != manifest:
            write_json(manifest_path, written)
        return prepared

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
        if self.config.predictions:
            return list(self.config.predictions), {}
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
            if name in self.config.predictions:
                # Predictions made elsewhere: no method to build; each job's identity has its file's digest.
                weights_digests[name] = None
                continue
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

    def save_policy(self, jobs: int) -> str:
        """``all``, ``grids`` or ``none``: which predictions are written to ``pred/`` (``auto``: all up to
        `SAVE_ALL_MAX_JOBS` jobs, else grids)."""
        if self.config.save_predictions != "auto":
            return self.config.save_predictions
        return "all" if jobs <= SAVE_ALL_MAX_JOBS else "grids"

    def _specs(self, methods: list[str], images: list[PreparedImage], weights_digests: dict[str, str | None],
               digests: ContentDigests, saved: set[str] | None = None) -> Iterator[JobSpec]:
        """Jobs of ``images``; ``saved`` is the set of image ids whose predictions are written (all when
        ``None``)."""
        software = dict(software_versions())
        for method in methods:
            external = Path(self.config.predictions[method]) if method in self.config.predictions else None
            device = "external" if external is not None else device_kind(method, self.config.device)
            options = self.config.options.get(method, {})
            for case in self.config.cases:
                for image in images:
                    image_id, mask = image.image_id, image.masks[case]
                    job = Job(method, case, image_id)
                    seed = job_seed(self.config.seed, case, image_id)
                    identity = JobIdentity(
                        method=method, case=case, image_id=image_id, image=image.digest, mask=mask.digest,
                        weights=(weights_digests[method] if external is None
                                 else _prediction_digest(digests, external, image_id)),
                        device=device, seed=seed, samples=self.config.samples, options=options, software=software,
                        ssim=self.config.ssim,
                    )
                    yield JobSpec(
                        job=job,
                        key=identity.key(),
                        weights=self.config.weights.get(method),
                        weights_digest=weights_digests[method],
                        image_path=self.paths.image(image_id),
                        image_digest=image.digest,
                        mask_path=self.paths.mask(case, image_id),
                        mask_digest=mask.digest,
                        seed=seed,
                        pred_path=self.paths.prediction(method, case, image_id),
                        samples=self.config.samples,
                        options=options,
                        ssim_convention=self.config.ssim,
                        mask_info=mask.info,
                        device=self.config.device,
                        predictions=external,
                        save_prediction=saved is None or image_id in saved,
                    )

    def _check_holes(self, images: list[PreparedImage]) -> None:
        # Under torchrun a rank's shard may hold only hole-free masks while others do not.
        has_hole = any(mask.has_hole for image in images for mask in image.masks.values())
        if self.ranks.all_max(int(has_hole)):
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
        ranks = self.ranks
        shared = self._run_dir_shared()
        if ranks.is_main:
            self.paths.write_config(config_document(self.config))
        sources = self.image_sources()
        images = self.write_inputs(distributed.shard(sources, ranks))
        self._check_holes(images)
        methods, skipped = self.resolve_methods()
        digests = ContentDigests(self.paths.digests_path, write_json)
        built, weights_digests, not_loaded = self.load_methods(methods, digests)
        skipped.update(not_loaded)
        methods = [name for name in methods if name in built or name in self.config.predictions]
        save_policy = self.save_policy(len(sources) * len(self.config.cases) * len(methods))
        # The figure grids show the first images of the run: "grids" keeps their predictions only.
        saved = (None if save_policy == "all" else
                 {source.image_id for source in sources[:self.config.figure_rows]} if save_policy == "grids" else set())
        specs = list(self._specs(methods, images, weights_digests, digests, saved))
        if ranks.is_main:
            digests.save()
        # Every rank reads every job log (a resumed run may deal the images out differently), keeping
        # the records of its own jobs only; then each appends to a log of its own for this attempt.
        logged = latest_records(self.paths.job_logs(), {spec.key for spec in specs})
        log = JobLog(self.paths.job_log(ranks.rank, ranks.all_max(last_attempt(self.paths.logs_dir)) + 1))
        scorer = (StreamingScorer(self.run_dir, log, device=pick_device(self.config.device, ("cpu", "cuda"),
                                                                        "LPIPS and Inception"))
                  if self.config.learned_metrics else None)
        pending = [spec for spec in specs if not self._finished(spec, logged, scorer)]
        for spec in pending:
            # A recomputed prediction's cached Inception features belong to the old one.
            self.paths.features(spec.job.method, spec.job.case, spec.job.image_id).unlink(missing_ok=True)
        errors: list[dict[str, str]] = []
        errors_written_at = -math.inf
        # Each rank keeps its own failures while it runs; rank 0 writes errors.csv from all of them.
        errors_path = self.paths.errors_path if not ranks.distributed else self.paths.rank_errors_path(ranks.rank)
        bar = tqdm(total=len(pending), desc="inpainting", unit="job", disable=not self.progress)

        def record_error(spec: JobSpec, error: BaseException) -> None:
            nonlocal errors_written_at
            if stops_run(error):
                raise error
            errors.append({"method": spec.job.method, "case": spec.job.case, "image_id": spec.job.image_id,
                           "error": f"{type(error).__name__}: {_first_line(error)}"})
            # Rewritten now and then, not per failure: a method failing on every one of 10^5 jobs would
            # make the rewrites quadratic. The end of the run writes the complete table.
            if time.monotonic() - errors_written_at >= ERRORS_REWRITE_INTERVAL_S:
                write_table(errors_path, pd.DataFrame(errors, columns=ERROR_COLUMNS))
                errors_written_at = time.monotonic()

        originals = PreparedImages(self.paths, images)
        # Originals whose Inception features are not cached, each read when it is scored. They are scored
        # one per finished job, while the workers compute, instead of before the workers start (loading
        # the Inception and one pass per original kept every worker waiting ~3 s in a default run).
        unscored_originals = deque(image.image_id for image in images
                                   if scorer is not None and scorer.report.fid_unavailable is None
                                   and not self.paths.original_features(image.image_id).exists())

        def score_an_original() -> None:
            if scorer is not None and unscored_originals:
                image_id = unscored_originals.popleft()
                try:
                    original = originals[image_id]
                except ValueError:
                    # Changed since the run wrote it (and now removed): its jobs fail naming the file, and
                    # the rerun they ask for rewrites and scores it.
                    return
                scorer.add_original(image_id, original)

        def finish(spec: JobSpec, result: JobResult) -> None:
            if scorer is None:
                log.append(result.record)
            else:
                scorer.add_job(result.record, result.prediction, result.original, result.samples)

        def finished(spec: JobSpec, future: Future) -> None:
            score_an_original()
            error = future.exception()
            if error is None:
                try:
                    finish(spec, future.result())
                except Exception as scoring_error:  # one failed job must not stop the run
                    error = scoring_error
            if error is not None:
                record_error(spec, error)
            bar.update()

        # The machine's cores are split between the ranks that share it.
        workers = max(1, self.config.workers // ranks.local_world_size)
        parallel, serial = [], []
        for spec in pending:
            in_parallel = workers > 1 and (spec.predictions is not None or _is_cpu_method(spec.job.method))
            (parallel if in_parallel else serial).append(spec)
        try:
            if parallel:
                run_parallel(run_job, parallel, workers, finished)
            for index, spec in enumerate(serial):
                bar.set_postfix_str(f"{spec.job.method}/{spec.job.case}")
                score_an_original()
                try:
                    finish(spec, run_job(spec))
                except Exception as error:  # one failed job must not stop the run
                    record_error(spec, error)
                bar.update()
                # Jobs come grouped by method: once a method's last job is done its weights are released.
                if index + 1 == len(serial) or serial[index + 1].job.method != spec.job.method:
                    release_method(spec.job.method)
            while unscored_originals:
                score_an_original()
            if scorer is not None:
                scorer.flush()
        finally:
            bar.close()
        write_table(errors_path, pd.DataFrame(errors, columns=ERROR_COLUMNS))
        if scorer is not None:
            # Jobs finished by an earlier attempt without learned metrics, scored from their saved PNGs (the
            # jobs of this attempt were scored as they finished).
            computed_now = {spec.key for spec in pending}
            caught_up = score_run(self.run_dir, [logged[spec.key] for spec in specs
                                                 if spec.save_prediction and spec.key not in computed_now],
                                  originals, log, progress=self.progress, device=scorer.device)
            scoring = merge_reports([scorer.report, caught_up])
        else:
            scoring = disabled_report()
        log.close()
        if not shared:
            distributed.send_files_to_main(self.run_dir, self._shard_files(specs, images, log.path), ranks)
        facts = [image.facts for image in images]
        # What rank 0 needs to collect the rows: the key each job's record must have.
        keys = [(spec.job, spec.key) for spec in specs]
        gathered = ranks.gather((errors, facts, scoring, len(pending) - len(errors), len(specs) - len(pending), keys))
        if gathered is None:
            return RunOutcome(self.run_dir, pd.DataFrame(columns=ROW_COLUMNS),
                              pd.DataFrame(errors, columns=ERROR_COLUMNS), skipped,
                              computed_jobs=len(pending) - len(errors), cached_jobs=len(specs) - len(pending),
                              scoring=scoring, method_details=built, image_facts=facts, is_main=False,
                              run_dir_shared=shared, world_size=ranks.world_size, save_policy=save_policy)
        all_errors = pd.DataFrame([error for part in gathered for error in part[0]], columns=ERROR_COLUMNS)
        order = {source.image_id: index for index, source in enumerate(sources)}
        all_facts = sorted((fact for part in gathered for fact in part[1]), key=lambda fact: order[fact["image_id"]])
        self.paths.write_errors(all_errors)
        all_keys = {job: key for part in gathered for job, key in part[5]}
        # In run order (method, case, image), whichever rank ran a job.
        ordered = [all_keys.get(Job(method, case, source.image_id))
                   for method in methods for case in self.config.cases for source in sources]
        rows = collect_rows(self.run_dir, [key for key in ordered if key is not None])
        self.paths.write_rows(rows)
        outcome = RunOutcome(self.run_dir, rows, all_errors, skipped,
                             computed_jobs=sum(part[3] for part in gathered),
                             cached_jobs=sum(part[4] for part in gathered),
                             scoring=merge_reports([part[2] for part in gathered]), method_details=built,
                             image_facts=all_facts, run_dir_shared=shared, world_size=ranks.world_size,
                             save_policy=save_policy)
        self.paths.write_meta(run_metadata(self.config, outcome, started, self.command))
        return outcome

    def _finished(self, spec: JobSpec, logged: Mapping[str, dict], scorer: StreamingScorer | None) -> bool:
        """Whether a job needs no computing: `is_finished`, and, when its prediction is not saved, its
        learned metrics complete (they cannot be computed later without the prediction)."""
        if not is_finished(spec, logged):
            return False
        return spec.save_prediction or scorer is None or not metrics_missing(
            logged[spec.key], scorer.report, self.run_dir)

    def _run_dir_shared(self) -> bool:
        setting = self.config.run_dir_shared
        if setting == "auto":
            return distributed.run_dir_is_shared(self.paths.rank_token_path, self.ranks)
        return setting == "yes" or not self.ranks.distributed

    def _shard_files(self, specs: list[JobSpec], images: list[PreparedImage], log_path: Path) -> Iterator[str]:
        """Run-directory paths (relative) of every file of this rank's shard: inputs, predictions,
        samples and Inception features, then its job log ``log_path`` and the logs of earlier attempts
        it holds (a rank killed before sending its log sends it with the next attempt's). Other ranks'
        logs of this attempt are not sent: a run directory that is shared after all would let a rank
        send another's log while that one still appends to it."""
        paths = self.paths
        for image in images:
            yield paths.relative(paths.image(image.image_id))
            yield paths.relative(paths.original_features(image.image_id))
            for case in self.config.cases:
                yield paths.relative(paths.mask(case, image.image_id))
        for spec in specs:
            yield paths.relative(spec.pred_path)
            for index in range(1, spec.samples):
                yield paths.relative(sample_path(spec.pred_path, index))
            job = spec.job
            yield paths.relative(paths.features(job.method, job.case, job.image_id))
        # The logs last: on rank 0 a job is finished once its record is logged.
        for earlier in paths.job_logs():
            if attempt_of(earlier) < attempt_of(log_path):
                yield paths.relative(earlier)
        yield paths.relative(log_path)


ERROR_COLUMNS = ["method", "case", "image_id", "error"]


class PreparedImages(Mapping[str, np.ndarray]):
    """A shard's prepared images by id, each read from the run directory (and checked against its
    digest) only when asked for, so the scoring stage never holds more than the images it works on."""

    def __init__(self, paths: RunDir, images: list[PreparedImage]) -> None:
        self._paths = paths
        self._digests = {image.image_id: image.digest for image in images}

    def __getitem__(self, image_id: str) -> np.ndarray:
        return read_prepared_image(self._paths.image(image_id), self._digests[image_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self._digests)

    def __len__(self) -> int:
        return len(self._digests)


def image_facts(image: BenchImage) -> dict:
    """What run.json says about an image: id, source, original and prepared size, conversions."""
    return {"image_id": image.image_id, "source": image.source, "original_size": list(image.original_size),
            "size": list(image.image.shape[:2]), "notes": image.notes}


def _prediction_digest(digests: ContentDigests, folder: Path, image_id: str) -> str | None:
    """Content digest of an image's prediction made elsewhere (part of its job's identity), or None when
    there is none to find (the job then fails, saying why)."""
    try:
        return digests.file(find_prediction(folder, image_id))
    except ValueError:
        return None


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


def collect_rows(run_dir: Path, keys: list[str]) -> pd.DataFrame:
    """The long result table (DESIGN.md, contract 4) from the job logs of ``run_dir``: for each job key
    of ``keys``, in that order, its latest logged record; a job with no record of its key (failed, or
    logged only for other inputs) gives no row."""
    latest = latest_records(RunDir(run_dir).job_logs(), set(keys))
    return _rows([latest[key] for key in keys if key in latest])


def rows_from_records(run_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """The result table rebuilt from the job logs (``logs/jobs.*.jsonl``), for a run whose
    ``rows.parquet`` was lost (a kill between the last record and the table) or damaged.

    Without the run's inputs the records' job keys cannot be checked: the latest record of each
    (method, case, image id) is taken, so a record left by an attempt that was stopped after an input
    changed is taken as it is.

    Returns
    -------
    rows : DataFrame
        As `collect_rows` gives, ordered by method, case and image id.
    unreadable : list of str
        ``log:line`` of each line that could not be parsed (a torn last line of a killed process).
    """
    logs = RunDir(run_dir).job_logs()
    unparsable: list[str] = []
    latest = latest_by_job(logs, unparsable)
    return _rows([latest[job] for job in sorted(latest)]), unparsable


def _rows(records: list[dict]) -> pd.DataFrame:
    for record in records:
        record.pop("job_key", None)
        if record.get("family") == EXTERNAL_FAMILY:
            continue
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
