"""Learned metrics of a run: LPIPS per row, Inception features for FID/KID per image.

`StreamingScorer` scores each job right after inference, on the same device, from the prediction in
memory (no prediction is read back from PNG, and predictions need not be saved; originals are read
from the run directory as each is needed); `score_run` catches up afterwards on finished jobs that
lack a metric (e.g. run earlier with learned metrics off). Everything it computes is cached in the
run directory (``lpips`` in each job record of the job logs, pool3 features in ``features/``), so a
rerun scores only what is new, and a report can compute FID/KID from the cached features without
loading the Inception. When a backbone is not
provisioned the metric is reported unavailable with the command that fixes it; nothing is ever
computed with substitute weights.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bench.metrics.backbones import ensure_entries
from bench.metrics.catalogue import CATALOGUE
from bench.metrics.learned import (
    FID_INDICATIVE_REASON,
    FID_MIN_N,
    KID_SUBSETS,
    INCEPTION_ENTRY,
    LPIPS_BACKBONES,
    FeatureSet,
    InceptionFeatures,
    LPIPSMetric,
    fid_unavailable_reason,
    frechet_distance,
    frechet_distance_of,
    lpips_unavailable_reason,
    set_metrics_of,
)
from bench.run.joblog import JobLog
from bench.run.rundir import RunDir, read_rgb_png, sample_path, write_bytes

LPIPS_NET = "alex"
#: AlexNet's pooling stack needs at least this many pixels per side; smaller images get NaN LPIPS.
LPIPS_MIN_SIDE = CATALOGUE["lpips"].minimum_side
#: Images per Inception pass when caching features. Every pass has exactly this many images (see
#: `InceptionFeatures.extract`), so a larger value pads: images of different sizes, and predictions
#: streamed one job at a time, made batch 8 compute up to 8 passes per image (measured 1.01 s vs
#: 0.14 s per 512x384 image). One image per pass costs within 6 % of full batches of 8 on the CPU.
FEATURE_BATCH = 1


@dataclass
class ScoringReport:
    """What the scoring stage did: availability of each learned metric and its cost per image.

    Loading the backbones is counted apart (``setup_seconds``): once per process, it is no per-image
    cost, and spread over a small run it made the Inception look several times slower than it is.
    """

    lpips_unavailable: str | None
    fid_unavailable: str | None
    lpips_scored: int = 0
    features_extracted: int = 0
    lpips_seconds: float = 0.0
    feature_seconds: float = 0.0
    setup_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "lpips_net": LPIPS_NET,
            "lpips_unavailable": self.lpips_unavailable,
            "fid_unavailable": self.fid_unavailable,
            "lpips_scored": self.lpips_scored,
            "features_extracted": self.features_extracted,
            "lpips_seconds_per_image": self.lpips_seconds / self.lpips_scored if self.lpips_scored else None,
            "features_seconds_per_image": (self.feature_seconds / self.features_extracted
                                           if self.features_extracted else None),
            "backbone_setup_seconds": self.setup_seconds,
        }


def _save_features(path: Path, features: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, features.astype(np.float32))
    write_bytes(path, buffer.getvalue())


def provision_learned_metrics(*, offline: bool, find_links: Path | None = None, progress: bool = True,
                              log: Callable[[str], None] = print) -> dict[str, str]:
    """Fetch the LPIPS and Inception weights a run needs, unless ``offline``, before the run starts.

    Returns
    -------
    dict
        For each group of columns that stays unavailable (``"LPIPS"``, ``"FID and KID"``), one
        sentence saying why and the command that fixes it; empty when every column can be computed.
    """
    needed = {"LPIPS": LPIPS_BACKBONES[LPIPS_NET], "FID and KID": INCEPTION_ENTRY}
    reasons = ensure_entries(needed.values(), offline=offline, find_links=find_links, progress=progress, log=log)
    return {columns: reasons[entry] for columns, entry in needed.items() if entry in reasons}


def disabled_report() -> ScoringReport:
    """The report of a run whose user turned learned metrics off."""
    reason = "not computed: the run was started with --no-learned-metrics"
    return ScoringReport(reason, reason)


def metrics_missing(record: dict, report: ScoringReport, run_dir: Path) -> bool:
    """Whether a finished job's record lacks a learned metric that is available (LPIPS, diversity or
    its Inception features)."""
    needs_lpips = report.lpips_unavailable is None and (
        "lpips" not in record or (record.get("samples", 1) > 1 and "diversity_lpips" not in record))
    needs_features = (report.fid_unavailable is None and
                      not RunDir(run_dir).features(record["method"], record["case"], record["image_id"]).exists())
    return needs_lpips or needs_features


class StreamingScorer:
    """LPIPS and Inception features of each job, computed right after inference from the prediction in
    memory, and the job's record written once they are.

    Features are extracted in passes of `FEATURE_BATCH` images, so a job's record is logged when the
    pass that holds its prediction is done: a run killed in between recomputes at most that many jobs.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    log : JobLog
        This process's job log, where each scored job's record is appended.
    device : str
        Torch device of LPIPS and the Inception (a resolved one: ``cpu``, ``cuda[:N]``).
    """

    def __init__(self, run_dir: Path, log: JobLog, *, device: str = "cpu") -> None:
        self.paths = RunDir(run_dir)
        self.log = log
        self.device = device
        self.report = ScoringReport(lpips_unavailable_reason(LPIPS_NET), fid_unavailable_reason())
        self._lpips: LPIPSMetric | None = None
        self._extractor: InceptionFeatures | None = None
        # Images waiting for an Inception pass: (feature file, image, job record or None for an original).
        self._pending: list[tuple[Path, np.ndarray, dict | None]] = []

    def add_original(self, image_id: str, image: np.ndarray) -> None:
        """Queue the features of an original unless they are cached."""
        target = self.paths.original_features(image_id)
        if self.report.fid_unavailable is None and not target.exists():
            self._queue(target, image, None)

    def add_job(self, record: dict, prediction: np.ndarray, original: np.ndarray,
                samples: Sequence[np.ndarray] = ()) -> None:
        """Score one computed job: LPIPS (and diversity) now, features in the next pass, then log the record."""
        if self.report.lpips_unavailable is None:
            if self._lpips is None:
                start = time.perf_counter()
                self._lpips = LPIPSMetric(LPIPS_NET, device=self.device)
                self.report.setup_seconds += time.perf_counter() - start
            start = time.perf_counter()
            with torch.inference_mode():
                record["lpips"] = (float("nan") if min(prediction.shape[:2]) < LPIPS_MIN_SIDE
                                   else float(self._lpips(prediction, original)[0]))
                if samples:
                    record["diversity_lpips"] = diversity_of(self._lpips, [prediction, *samples])
            self.report.lpips_seconds += time.perf_counter() - start
            self.report.lpips_scored += 1
        if self.report.fid_unavailable is None:
            target = self.paths.features(record["method"], record["case"], record["image_id"])
            self._queue(target, prediction, record)
        else:
            self.log.append(record)

    def _queue(self, target: Path, image: np.ndarray, record: dict | None) -> None:
        self._pending.append((target, image, record))
        if len(self._pending) >= FEATURE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Extract the queued features, save them, then log the records that waited for them."""
        if not self._pending:
            return
        if self._extractor is None:
            start = time.perf_counter()
            self._extractor = InceptionFeatures(device=self.device, batch_size=FEATURE_BATCH)
            self.report.setup_seconds += time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            features = self._extractor.extract([image for _, image, _ in self._pending]).numpy()
        for (target, _, record), vector in zip(self._pending, features):
            _save_features(target, vector[None])
            if record is not None:
                self.log.append(record)
        self.report.feature_seconds += time.perf_counter() - start
        self.report.features_extracted += len(self._pending)
        self._pending = []


def merge_reports(reports: Sequence[ScoringReport]) -> ScoringReport:
    """One report for the scoring stages of several ranks: counts and seconds add up."""
    first = reports[0]
    return ScoringReport(first.lpips_unavailable, first.fid_unavailable,
                         lpips_scored=sum(report.lpips_scored for report in reports),
                         features_extracted=sum(report.features_extracted for report in reports),
                         lpips_seconds=sum(report.lpips_seconds for report in reports),
                         feature_seconds=sum(report.feature_seconds for report in reports),
                         setup_seconds=sum(report.setup_seconds for report in reports))


def score_run(run_dir: Path, records: Sequence[dict], originals: Mapping[str, np.ndarray], log: JobLog, *,
              progress: bool = True, device: str = "cpu") -> ScoringReport:
    """Add LPIPS to finished jobs' records and cache Inception features of every image, reading the
    predictions from their PNGs.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    records : sequence of dict
        Records of finished jobs whose predictions are saved (`bench.run.joblog`); a record given a
        metric is appended to ``log`` again (the later line wins).
    originals : mapping
        Image id to the uint8 RGB original (read when first needed, so a lazy mapping keeps memory flat).
    log : JobLog
        This process's job log.
    progress : bool
        Show a progress bar.
    device : str
        Torch device of the LPIPS and Inception backbones (a resolved one: ``cpu``, ``cuda[:N]``).
    """
    paths = RunDir(run_dir)
    report = ScoringReport(lpips_unavailable_reason(LPIPS_NET), fid_unavailable_reason())
    todo = []
    for record in records:
        needs_lpips = report.lpips_unavailable is None and (
            "lpips" not in record or (record.get("samples", 1) > 1 and "diversity_lpips" not in record))
        needs_features = (report.fid_unavailable is None and
                          not paths.features(record["method"], record["case"], record["image_id"]).exists())
        if needs_lpips or needs_features:
            todo.append((paths.prediction(record["method"], record["case"], record["image_id"]), dict(record),
                         needs_lpips, needs_features))
    missing_originals = [image_id for image_id in originals
                         if report.fid_unavailable is None and not paths.original_features(image_id).exists()]
    if not todo and not missing_originals:
        return report
    start = time.perf_counter()
    lpips_metric = LPIPSMetric(LPIPS_NET, device=device) if any(item[2] for item in todo) else None
    extractor = InceptionFeatures(device=device, batch_size=FEATURE_BATCH) if (missing_originals or any(item[3] for item in todo)) else None
    report.setup_seconds += time.perf_counter() - start
    feature_jobs = [(paths.original_features(image_id), lambda image_id=image_id: originals[image_id])
                    for image_id in missing_originals]
    with torch.inference_mode():
        for prediction_path, record, needs_lpips, needs_features in tqdm(
                todo, desc="LPIPS", unit="image", disable=not progress or lpips_metric is None):
            if needs_features:
                target = paths.features(record["method"], record["case"], record["image_id"])
                feature_jobs.append((target, lambda source=prediction_path: read_rgb_png(source)))
            if not needs_lpips:
                continue
            start = time.perf_counter()
            prediction = read_rgb_png(prediction_path)
            if min(prediction.shape[:2]) < LPIPS_MIN_SIDE:
                record["lpips"] = float("nan")
            else:
                record["lpips"] = float(lpips_metric(prediction, originals[record["image_id"]])[0])
            if record.get("samples", 1) > 1:
                record["diversity_lpips"] = diversity(lpips_metric, prediction_path, record["samples"])
            report.lpips_seconds += time.perf_counter() - start
            report.lpips_scored += 1
            log.append(record)
        bar = tqdm(total=len(feature_jobs), desc="Inception features", unit="image",
                   disable=not progress or not feature_jobs)
        # Batched: one Inception pass over many images costs far less per image than one pass each.
        for first in range(0, len(feature_jobs), FEATURE_BATCH):
            batch = feature_jobs[first:first + FEATURE_BATCH]
            start = time.perf_counter()
            features = extractor.extract([load() for _, load in batch]).numpy()
            for (target, _), vector in zip(batch, features):
                _save_features(target, vector[None])
            report.feature_seconds += time.perf_counter() - start
            report.features_extracted += len(batch)
            bar.update(len(batch))
        bar.close()
    return report


def diversity(lpips_metric: LPIPSMetric, pred_path: Path, samples: int) -> float:
    """`diversity_of` the ``samples`` completions saved for one input."""
    images = [read_rgb_png(pred_path)] + [read_rgb_png(sample_path(pred_path, index)) for index in range(1, samples)]
    return diversity_of(lpips_metric, images)


def diversity_of(lpips_metric: LPIPSMetric, images: Sequence[np.ndarray]) -> float:
    """Mean pairwise LPIPS between the completions of one input (the diversity score of the
    Pluralistic and ICT papers); NaN for images too small for LPIPS."""
    samples = len(images)
    if min(images[0].shape[:2]) < LPIPS_MIN_SIDE:
        return float("nan")
    pairs = [(first, second) for first in range(samples) for second in range(first + 1, samples)]
    distances = lpips_metric([images[a] for a, _ in pairs], [images[b] for _, b in pairs])
    return float(np.mean(distances))


SET_COLUMNS = ["method", "case", "fid", "kid_mean", "kid_std", "kid_subset_size", "kid_subsets", "n", "indicative",
               "note", "fid_trace_form"]
FID_DIFFERENCE_COLUMNS = ["method", "reference", "case", "fid_diff", "ci_low", "ci_high", "n", "resamples", "note"]
#: Bootstrap of FID differences: resamples, and the largest N it runs at (each resample costs two
#: N x N singular-value decompositions: about 0.5 s each at N = 500 on 2 CPU cores).
FID_DIFFERENCE_RESAMPLES = 100
FID_DIFFERENCE_MAX_N = 500


def _feature_groups(rows: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """(method, case, image ids) of the scored rows (masks with a hole), in the rows' order."""
    scored = rows[rows["hole_fraction"] > 0]
    return [(method, case, list(dict.fromkeys(group["image_id"])))
            for (method, case), group in scored.groupby(["method", "case"], sort=False)]


def _spool(feature_paths: list[Path], target: Path) -> FeatureSet:
    """Copy the ``1 x D`` float32 feature files ``feature_paths`` into one file of rows at ``target``, one
    file at a time, and read it back by row (`FeatureSet`): KID's subsets and FID's moments then need a
    few rows in memory, not the set."""
    dimension = 0
    with open(target, "wb") as spooled:
        for path in feature_paths:
            vector = np.load(path)
            if vector.dtype != np.float32 or vector.ndim != 2 or len(vector) != 1 or (
                    dimension and vector.shape[1] != dimension):
                raise ValueError(f"{path} is not one float32 feature vector like the others ({vector.dtype} "
                                 f"{vector.shape}): delete it and rerun to recompute it")
            dimension = vector.shape[1]
            spooled.write(vector.tobytes())
    return FeatureSet(len(feature_paths), dimension, functools.partial(_read_rows, target, dimension))


def _read_rows(path: Path, dimension: int, indices: np.ndarray) -> torch.Tensor:
    row_bytes = dimension * 4
    rows = np.empty((len(indices), dimension), np.float32)
    with open(path, "rb") as spooled:
        if len(indices) and indices[-1] - indices[0] + 1 == len(indices) and np.all(np.diff(indices) == 1):
            spooled.seek(int(indices[0]) * row_bytes)
            if spooled.readinto(memoryview(rows).cast("B")) != rows.nbytes:
                raise OSError(f"{path} ended before row {indices[-1]}")
        else:
            for position, index in enumerate(indices):
                rows[position] = np.frombuffer(os.pread(spooled.fileno(), row_bytes, int(index) * row_bytes),
                                               np.float32)
    return torch.from_numpy(rows)


def _common_ids(paths: RunDir, image_ids: list[str], methods: list[str], case: str) -> list[str]:
    """The ids of ``image_ids`` whose features exist for the original and each method of ``methods``."""
    return [image_id for image_id in image_ids if paths.original_features(image_id).exists()
            and all(paths.features(method, case, image_id).exists() for method in methods)]


def set_metrics(run_dir: Path, rows: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """FID and KID per method and case from the cached features of the scored rows.

    Only images whose mask had a hole and whose features exist on both sides enter; ``n`` says how
    many. ``kid_subsets`` is 1 when a KID subset is the whole set (fewer than 1,000 images), so
    ``kid_std`` is 0 by construction, not a measured spread. Returns an empty table when no features
    were cached (FID unavailable).

    Memory does not grow with the number of images: one (method, case) at a time, its features are
    copied into a temporary file of rows in the run directory and read back as FID's streamed moments
    and KID's subsets need them (`FeatureSet`); FID uses the cross-Gram form only up to
    `GRAM_FORM_MAX_N` images.
    """
    records = []
    paths = RunDir(run_dir)
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".set-metrics-") as scratch:
        for method, case, image_ids in _feature_groups(rows):
            ids = _common_ids(paths, image_ids, [method], case)
            if len(ids) < 2:
                continue
            real = _spool([paths.original_features(image_id) for image_id in ids], Path(scratch) / "real.f32")
            fake = _spool([paths.features(method, case, image_id) for image_id in ids], Path(scratch) / "fake.f32")
            result = set_metrics_of(real, fake, seed=seed)
            n = result.n
            records.append({
                "method": method, "case": case, "fid": result.fid, "kid_mean": result.kid_mean,
                "kid_std": result.kid_std, "kid_subset_size": result.kid_subset_size,
                "kid_subsets": 1 if result.kid_subset_size >= n else KID_SUBSETS, "n": n,
                "indicative": result.indicative, "note": FID_INDICATIVE_REASON if result.indicative else "",
                "fid_trace_form": result.fid_trace_form,
            })
    return pd.DataFrame(records, columns=SET_COLUMNS)


def fid_difference_interval(real: np.ndarray, fake: np.ndarray, fake_reference: np.ndarray, *,
                            resamples: int = FID_DIFFERENCE_RESAMPLES, seed: int = 0,
                            confidence: float = 0.95) -> tuple[float, float, float]:
    """FID(real, fake) - FID(real, fake_reference) with a percentile-bootstrap interval over images.

    Row ``i`` of the three ``N x D`` matrices is image ``i`` (its original and the two methods'
    predictions); each resample draws images with replacement and keeps the three sets aligned, so
    the shared real set and the per-image pairing enter the uncertainty.

    Returns
    -------
    (difference, low, high) : floats
    """
    def difference(indices: np.ndarray) -> float:
        real_set = torch.from_numpy(real[indices])
        return (frechet_distance(real_set, torch.from_numpy(fake[indices]))
                - frechet_distance(real_set, torch.from_numpy(fake_reference[indices])))

    n = len(real)
    rng = np.random.default_rng(seed)
    draws = [difference(rng.integers(0, n, n)) for _ in range(resamples)]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return difference(np.arange(n)), float(low), float(high)


def fid_differences(run_dir: Path, rows: pd.DataFrame, reference: str, *, seed: int = 0) -> pd.DataFrame:
    """Each method's FID minus the reference's, per case, on the images both have features for, with a
    bootstrap interval when `FID_MIN_N` <= N <= `FID_DIFFERENCE_MAX_N` (``note`` says why not otherwise).

    As in `set_metrics`, the features are read from temporary files of rows, one method and case at a
    time, so memory does not grow with N."""
    paths = RunDir(run_dir)
    groups = _feature_groups(rows)
    reference_ids = {case: image_ids for method, case, image_ids in groups if method == reference}
    records = []
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".fid-differences-") as scratch:
        for method, case, image_ids in groups:
            if method == reference or case not in reference_ids:
                continue
            # Both methods need at least two images with features of their own, as for their FIDs.
            if (len(_common_ids(paths, image_ids, [method], case)) < 2
                    or len(_common_ids(paths, reference_ids[case], [reference], case)) < 2):
                continue
            in_reference = set(reference_ids[case])
            ids = _common_ids(paths, [image_id for image_id in image_ids if image_id in in_reference],
                              [method, reference], case)
            n = len(ids)
            record = {"method": method, "reference": reference, "case": case, "fid_diff": float("nan"),
                      "ci_low": float("nan"), "ci_high": float("nan"), "n": n, "resamples": 0, "note": ""}
            if n < FID_MIN_N:
                record["note"] = f"N < {FID_MIN_N}: FID is mostly small-sample bias"
                records.append(record)
                continue
            real, fake, fake_reference = (
                _spool([paths.original_features(image_id) for image_id in ids], Path(scratch) / "real.f32"),
                _spool([paths.features(method, case, image_id) for image_id in ids], Path(scratch) / "fake.f32"),
                _spool([paths.features(reference, case, image_id) for image_id in ids],
                       Path(scratch) / "reference.f32"))
            if n > FID_DIFFERENCE_MAX_N:
                # Without an interval N may be in the tens of thousands: the cheaper exact form for N.
                record["fid_diff"] = frechet_distance_of(real, fake)[0] - frechet_distance_of(real, fake_reference)[0]
                record["note"] = (f"no interval: N > {FID_DIFFERENCE_MAX_N}, where the bootstrap's "
                                  f"{FID_DIFFERENCE_RESAMPLES} x 2 FIDs cost too much")
            else:
                record["fid_diff"], record["ci_low"], record["ci_high"] = fid_difference_interval(
                    real.all().numpy(), fake.all().numpy(), fake_reference.all().numpy(), seed=seed)
                record["resamples"] = FID_DIFFERENCE_RESAMPLES
            records.append(record)
    return pd.DataFrame(records, columns=FID_DIFFERENCE_COLUMNS)
