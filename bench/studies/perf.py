"""``relama-bench perf``: median latency and peak memory of each method at chosen image sizes.

Latency is the median wall time of ``inpaint`` on one square image after warm-up runs. Peak memory
is measured on one extra run: on CUDA with ``torch.cuda.max_memory_allocated`` (reset before the
run); on the CPU as the process's peak resident set size (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` before the run, so it covers that run only and includes the loaded
weights); where that reset is impossible, the process's lifetime ``ru_maxrss``, labelled as such.
"""

from __future__ import annotations

import csv
import io
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tabulate import tabulate

from bench.errors import UserError
from bench.run.rundir import write_text
from methods.base import Inpainter, MethodUnavailable
from methods.registry import create_method, get_method_class, resolve_device

DEFAULT_SIZES = (256, 512, 1024)
RANDOM_WEIGHTS_LABEL = "random (timing only)"


@dataclass
class PerfRow:
    """One (method, size) measurement."""

    method: str
    size: int
    weights: str
    median_ms: float
    min_ms: float
    peak_mb: float
    extra_mb: float
    memory_method: str
    device: str
    note: str = ""


def synthetic_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic ``size x size`` RGB image with a centred square hole of a quarter of its area."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                      rng.uniform(0, 255, (size, size)).astype(np.float32)], axis=-1).astype(np.uint8)
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 4: size // 4 + size // 2, size // 4: size // 4 + size // 2] = True
    return image, mask


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def measure_peak_memory(run: Callable[[], object], device: torch.device) -> tuple[float, float, str]:
    """Run ``run`` once and return ``(peak MB, MB above the level before the run, method used)``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return peak / 2**20, (peak - before) / 2**20, "cuda max_memory_allocated"
    before_kb = _status_kb("VmRSS")
    if before_kb is not None and _reset_peak_rss():
        run()
        peak_kb = _status_kb("VmHWM") or 0
        return peak_kb / 1024, (peak_kb - before_kb) / 1024, "peak RSS (VmHWM reset before the run)"
    run()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kb / 1024, float("nan"), "process lifetime max RSS (ru_maxrss, no reset)"


def time_runs(run: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Wall times in milliseconds of ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _device_of(method: Inpainter) -> torch.device:
    # Methods that declare no torch devices run NumPy/OpenCV code on the CPU.
    return torch.device(method.device) if type(method).devices else torch.device("cpu")


def build_for_perf(name: str, weights: dict[str, Path], random_weights: bool,
                   device: str | None = None) -> tuple[Inpainter, str]:
    """The method ``name`` on ``device`` (``--device`` policy) and a label of its weights; deep methods
    without weights need ``random_weights``."""
    cls = get_method_class(name)
    if name in weights:
        return create_method(name, weights[name], device=device), weights[name].name
    record = cls.weights_record
    if record is None:
        return create_method(name, device=device), "none needed"
    if record.shipped:
        return create_method(name, device=device), record.shipped
    if random_weights and cls.can_use_random_weights:
        return cls.with_random_weights(device=resolve_device(cls, device)), RANDOM_WEIGHTS_LABEL
    if random_weights:
        raise MethodUnavailable(f"{name}: weights missing and it has no random-weights mode; "
                                f"pass --weights {name}=PATH")
    raise MethodUnavailable(cls.unavailable_reason(None) or f"{name}: weights missing")


def measure(method: Inpainter, name: str, weights_label: str, size: int, repeats: int, warmup: int) -> PerfRow:
    """Latency and peak memory of ``method`` on a ``size x size`` image."""
    image, mask = synthetic_pair(size)

    def run() -> object:
        return method.inpaint(image, mask, seed=0)

    times = time_runs(run, repeats, warmup)
    device = _device_of(method)
    peak_mb, extra_mb, memory_method = measure_peak_memory(run, device)
    return PerfRow(method=name, size=size, weights=weights_label, median_ms=statistics.median(times),
                   min_ms=min(times), peak_mb=peak_mb, extra_mb=extra_mb, memory_method=memory_method,
                   device=str(device))


def write_tables(rows: list[PerfRow], out_dir: Path) -> tuple[Path, Path]:
    """Write ``perf.csv`` and ``perf.md`` into ``out_dir`` (atomically); returns their paths."""
    csv_path, md_path = out_dir / "perf.csv", out_dir / "perf.md"
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(PerfRow.__dataclass_fields__))
    writer.writeheader()
    writer.writerows(asdict(row) for row in rows)
    write_text(csv_path, buffer.getvalue())
    write_text(md_path, format_table(rows, "github") + "\n")
    return csv_path, md_path


def format_table(rows: list[PerfRow], style: str = "simple") -> str:
    """The rows as a text table; rows with random weights carry the timing-only label."""
    body = [[row.method, f"{row.size}x{row.size}", row.weights, f"{row.median_ms:.1f}", f"{row.min_ms:.1f}",
             f"{row.peak_mb:.0f}", f"{row.extra_mb:.0f}", row.device, row.note or row.memory_method] for row in rows]
    headers = ["method", "size", "weights", "median ms", "min ms", "peak MB", "run MB", "device", "memory / note"]
    return tabulate(body, headers=headers, tablefmt=style)


@dataclass
class PerfStudy:
    """What `perf_study` measured, and what it could not, one line each."""

    rows: list[PerfRow]
    skipped: list[str]


def perf_study(names: list[str], weights: dict[str, Path], sizes: list[int], *, repeats: int, warmup: int,
               random_weights: bool, device: str | None = None) -> PerfStudy:
    """Measure every method of ``names`` at every size; a method or size that cannot run is skipped, with why."""
    if repeats < 1 or warmup < 0:
        raise UserError("--repeats must be at least 1 and --warmup at least 0")
    rows: list[PerfRow] = []
    skipped: list[str] = []
    for name in names:
        try:
            method, weights_label = build_for_perf(name, weights, random_weights, device)
        except MethodUnavailable as reason:
            skipped.append(f"{name}: {reason}")
            continue
        for size in sizes:
            try:
                rows.append(measure(method, name, weights_label, size, repeats, warmup))
            except (RuntimeError, ValueError, MemoryError) as error:
                skipped.append(f"{name} at {size}x{size}: {type(error).__name__}: {str(error).splitlines()[0]}")
        del method
    return PerfStudy(rows, skipped)
