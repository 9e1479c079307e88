"""``relama-bench perf``: latency and memory of each method at chosen image sizes, each in its own process.

For every image size, each method (and, with the reference path asked for, the unoptimised path of
the methods that declare one) is loaded in a fresh worker process, so no method's memory depends on
what ran before it. Memory comes from the worker's first call at that size: on the CPU the process's
peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` just before the call, so
it includes the loaded weights) and the forward working set (that peak minus the resident set before
the call); on CUDA ``torch.cuda.max_memory_allocated``. Where the reset is impossible, the lifetime
``ru_maxrss`` is used and labelled. Memory that loading freed goes back to the system first (glibc
``malloc_trim``), so it neither counts as loaded nor hides part of the working set. Workers of NumPy/OpenCV methods never import torch, so their
memory is theirs alone.

Timing then runs in interleaved rounds: one call of each method per round, the workers taking turns
(the first of a round rotates), so a change of machine load falls on every method alike. The table
gives the median and minimum wall time per call, the threads and the precision. A call longer than
the time limit stops that method's worker and its row says so; an interrupt kills every worker.
"""

from __future__ import annotations

import csv
import ctypes
import io
import multiprocessing
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tabulate import tabulate

from bench.errors import UserError
from bench.run.plan import NO_PRECISION
from bench.run.rundir import write_text
from bench.run.workers import initialise_worker
from methods.base import Inpainter, MethodUnavailable
from methods.registry import build_method, get_method_class, resolve_device

DEFAULT_SIZES = (256, 512, 1024)
RANDOM_WEIGHTS_LABEL = "random (timing only)"
REFERENCE_SUFFIX = " (reference path)"
#: Default longest single call before a method is stopped (ICT needs ~725 CPU-s per 256x256 image).
DEFAULT_TIME_LIMIT_S = 900.0
#: Loading is not timed, but a worker that never reports its method loaded is given up after this.
LOAD_LIMIT_S = 600.0
#: Seconds a worker gets to exit after the last request before it is killed.
_EXIT_GRACE_S = 5.0


@dataclass
class PerfRow:
    """One (method, size) measurement; times in milliseconds, memory in MiB, NaN where not measured."""

    method: str
    size: int
    weights: str
    precision: str
    threads: int
    median_ms: float
    min_ms: float
    rounds: int
    loaded_mb: float
    peak_mb: float
    forward_mb: float
    memory_method: str
    device: str
    note: str = ""


@dataclass(frozen=True)
class PerfEntry:
    """One thing to measure: an adapter class, the label of its rows, its options and its precision.

    ``precision`` is what the options make the method compute in (`NO_PRECISION` for NumPy/OpenCV
    code); it is stated in the rows, never inferred from timings.
    """

    method: type[Inpainter]
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"


def synthetic_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic ``size x size`` RGB image with a centred square hole of a quarter of its area."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                      rng.uniform(0, 255, (size, size)).astype(np.float32)], axis=-1).astype(np.uint8)
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 4: size // 4 + size // 2, size // 4: size // 4 + size // 2] = True
    return image, mask


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
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


def return_free_heap() -> None:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``; elsewhere nothing happens).

    Building a method frees memory (a checkpoint read, a weight copy folded away) that the allocator
    keeps; left there, it would count as loaded memory and hide part of the first call's working set,
    which would reuse it.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_mb() -> float:
    """This process's resident set in MiB (NaN where ``/proc`` does not say)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def measure_peak_memory(run: Callable[[], object], device: str) -> tuple[float, float, str]:
    """Run ``run`` once and return ``(peak MiB, MiB above the level before the run, how it was measured)``."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return peak / 2**20, (peak - before) / 2**20, "cuda max_memory_allocated"
    # Freed memory the allocator still holds (more of it where a method keeps freed memory for reuse,
    # methods.nets.allocator) would be reused by the call and hide part of its working set.
    return_free_heap()
    before_kb = _status_kb("VmRSS")
    if before_kb is not None and _reset_peak_rss():
        run()
        peak_kb = _status_kb("VmHWM") or 0
        return peak_kb / 1024, (peak_kb - before_kb) / 1024, "peak RSS (VmHWM reset before the first call)"
    run()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kb / 1024, float("nan"), "process lifetime max RSS (ru_maxrss, no reset)"


def unavailable_for_perf(cls: type[Inpainter], weights: Path | None, random_weights: bool) -> str | None:
    """Why ``cls`` cannot be measured with ``weights`` (and the random-weights choice), or None when it can."""
    reason = cls.unavailable_reason(weights)
    if reason is None or (random_weights and weights is None and cls.can_use_random_weights):
        return None
    if random_weights and weights is None:
        return f"weights missing and it has no random-weights mode; pass --weights {cls.name}=PATH"
    return reason


def build_class_for_perf(cls: type[Inpainter], weights: Path | None, random_weights: bool,
                         device: str | None = None, options: dict[str, Any] | None = None) -> tuple[Inpainter, str]:
    """``cls`` built with ``weights`` (None: its default or shipped weights) on ``device``, and a label of the
    weights; without weights, ``random_weights`` builds the released architecture with fresh weights."""
    options = options or {}
    reason = unavailable_for_perf(cls, weights, random_weights)
    if reason is not None:
        raise MethodUnavailable(f"{cls.name}: {reason}")
    if cls.unavailable_reason(weights) is not None:
        method = cls.with_random_weights(device=resolve_device(cls, device), **cls.check_options(options))
        return method, RANDOM_WEIGHTS_LABEL
    record, source = cls.weights_record, cls.weights_source(weights)
    if source is None:
        label = "none needed"
    elif weights is None and record is not None and record.shipped:
        label = record.shipped
    else:
        label = source.name
    return build_method(cls, weights, device=device, **options), label


def build_for_perf(name: str, weights: dict[str, Path], random_weights: bool, device: str | None = None,
                   options: dict[str, Any] | None = None) -> tuple[Inpainter, str]:
    """The registered method ``name`` as `build_class_for_perf` builds it, with ``weights[name]`` when given."""
    return build_class_for_perf(get_method_class(name), weights.get(name), random_weights, device, options)


def _one_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def perf_worker(connection: Connection, entry: PerfEntry, weights: Path | None, random_weights: bool,
                device: str | None, threads: int, size: int, parent_pid: int) -> None:
    """Worker process: load one method, then answer ``"memory"``/``"time"`` requests until ``None``.

    Replies are tuples whose first item says what they are: ``("ready", weights label, device,
    loaded MiB)``, ``("unavailable", reason)``, ``("memory", peak MiB, forward MiB, how)``,
    ``("time", ms)`` or ``("error", message)``.
    """
    initialise_worker(parent_pid)
    import cv2

    cv2.setNumThreads(threads)
    if entry.method.devices:
        import torch

        torch.set_num_threads(threads)
    try:
        method, weights_label = build_class_for_perf(entry.method, weights, random_weights, device, entry.options)
    except (MethodUnavailable, ValueError, OSError) as reason:
        connection.send(("unavailable", str(reason)))
        return
    except Exception as error:  # a method that fails to load is reported as skipped, not raised here
        connection.send(("unavailable", _one_line(error)))
        return
    method_device = str(method.device) if entry.method.devices else "cpu"
    return_free_heap()
    connection.send(("ready", weights_label, method_device, resident_mb()))
    image, mask = synthetic_pair(size)

    def run() -> object:
        return method.inpaint(image, mask, seed=0)

    while (request := connection.recv()) is not None:
        try:
            if request == "memory":
                connection.send(("memory", *measure_peak_memory(run, method_device)))
            else:
                start = time.perf_counter()
                run()
                connection.send(("time", (time.perf_counter() - start) * 1000))
        except Exception as error:  # any failure of the method is reported in its row, not raised here
            connection.send(("error", _one_line(error)))
            return


class _Worker:
    """The parent's handle on one worker process and its pipe."""

    def __init__(self, process: multiprocessing.process.BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection

    def receive(self, limit_s: float) -> tuple | None:
        """The next reply within ``limit_s`` seconds; None when over the limit; an error reply when the worker died."""
        if not self.connection.poll(limit_s):
            return None
        try:
            return self.connection.recv()
        except EOFError:
            self.process.join(_EXIT_GRACE_S)
            return ("error", f"the worker process died (exit code {self.process.exitcode})")

    def ask(self, request: str, limit_s: float) -> tuple | None:
        """Send ``request`` and wait at most ``limit_s`` for the reply (see `receive`)."""
        try:
            self.connection.send(request)
        except (BrokenPipeError, ConnectionResetError):
            return ("error", f"the worker process died (exit code {self.process.exitcode})")
        return self.receive(limit_s)

    def finish(self) -> None:
        """Let an idle worker exit; kill it when it does not."""
        if self.process.is_alive():
            try:
                self.connection.send(None)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.process.join(_EXIT_GRACE_S)
        self.kill()

    def kill(self) -> None:
        """End the worker at once (it holds no files, so nothing is lost)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()


def _start_worker(entry: PerfEntry, weights: Path | None, random_weights: bool, device: str | None,
                  threads: int, size: int) -> _Worker:
    # Spawned, not forked: a fresh interpreter holds nothing of the parent's or another method's memory.
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=perf_worker, name=f"perf {entry.label} {size}",
                              args=(child_end, entry, weights, random_weights, device, threads, size, os.getpid()),
                              daemon=True)
    process.start()
    child_end.close()
    return _Worker(process, parent_end)


def _over_limit(limit_s: float) -> str:
    return f"stopped: a call took longer than the {limit_s:g} s limit"


def measure_size(entries: list[PerfEntry], size: int, *, weights: dict[str, Path], random_weights: bool,
                 device: str | None, threads: int, repeats: int, warmup: int, time_limit_s: float,
                 skipped: list[str]) -> list[PerfRow]:
    """Rows of every entry at ``size``: a fresh worker each, first-call memory, then interleaved timing rounds.

    An entry that cannot load adds a line to ``skipped``; one whose call fails or exceeds
    ``time_limit_s`` keeps its row, with the reason in ``note``. Whatever ends this early
    (Ctrl-C included) kills every worker before it propagates.
    """
    nan = float("nan")
    rows: dict[str, PerfRow] = {}
    times: dict[str, list[float]] = {}
    workers: dict[str, _Worker] = {}
    try:
        for entry in entries:
            path = weights.get(entry.method.name)
            worker = _start_worker(entry, path, random_weights, device, threads, size)
            workers[entry.label] = worker
            load_limit_s = max(time_limit_s, LOAD_LIMIT_S)
            reply = worker.receive(load_limit_s) or ("unavailable", f"did not load within {load_limit_s:g} s")
            if reply[0] != "ready":
                skipped.append(f"{entry.label} at {size}x{size}: {reply[1]}")
                workers.pop(entry.label).kill()
                continue
            _, weights_label, method_device, loaded_mb = reply
            row = PerfRow(method=entry.label, size=size, weights=weights_label, precision=entry.precision,
                          threads=threads, median_ms=nan, min_ms=nan, rounds=0, loaded_mb=loaded_mb, peak_mb=nan,
                          forward_mb=nan, memory_method="", device=method_device)
            rows[entry.label] = row
            times[entry.label] = []
            memory = worker.ask("memory", time_limit_s)
            if memory is None or memory[0] != "memory":
                row.note = _over_limit(time_limit_s) if memory is None else memory[1]
                workers.pop(entry.label).kill()
                continue
            _, row.peak_mb, row.forward_mb, row.memory_method = memory
        for round_index in range(warmup + repeats):
            labels = list(workers)
            start = round_index % len(labels) if labels else 0
            for label in labels[start:] + labels[:start]:
                reply = workers[label].ask("time", time_limit_s)
                if reply is None or reply[0] != "time":
                    rows[label].note = _over_limit(time_limit_s) if reply is None else reply[1]
                    workers.pop(label).kill()
                elif round_index >= warmup:
                    times[label].append(reply[1])
        for label in list(workers):
            workers.pop(label).finish()
    finally:
        for worker in workers.values():
            worker.kill()
    for label, row in rows.items():
        if times[label]:
            row.median_ms, row.min_ms = statistics.median(times[label]), min(times[label])
            row.rounds = len(times[label])
    return list(rows.values())


def precision_choices(cls: type[Inpainter]) -> tuple[str, ...]:
    """The precisions ``cls`` computes in: its declared ``precision`` option's choices, else fp32 for a
    torch method and `NO_PRECISION` for NumPy/OpenCV code."""
    option = cls.options.get("precision")
    if option is not None:
        return tuple(option.choices)
    return ("fp32",) if cls.devices else (NO_PRECISION,)


def perf_entries(names: Iterable[str], precision: str, reference_path: bool) -> tuple[list[PerfEntry], list[str]]:
    """What to measure, and a note for each method that cannot honour ``precision``.

    Each method runs at ``precision`` where it declares it (otherwise in its only precision, and a
    note says so for torch methods; NumPy/OpenCV code has no precision choice). With
    ``reference_path``, methods that declare `Inpainter.has_reference_path` also get an entry for
    their reference-equivalent path, which is fp32 as the reference code is.

    Raises
    ------
    UserError
        No method runs at ``precision``, or ``reference_path`` is asked of methods none of which has one.
    """
    entries: list[PerfEntry] = []
    notes: list[str] = []
    classes = [get_method_class(name) for name in names]
    for cls in classes:
        choices = precision_choices(cls)
        if precision in choices:
            options = {} if precision == "fp32" else {"precision": precision}
            entries.append(PerfEntry(cls, cls.name, options, precision))
        else:
            entries.append(PerfEntry(cls, cls.name, {}, choices[0]))
            if choices[0] != NO_PRECISION:
                notes.append(f"{cls.name} has no {precision} mode; it is timed in {choices[0]}")
        if reference_path and cls.has_reference_path:
            entries.append(PerfEntry(cls, cls.name + REFERENCE_SUFFIX, {"optimize": False}, "fp32"))
    if precision != "fp32" and all(entry.precision != precision for entry in entries):
        raise UserError(f"--precision {precision}: none of the methods ({', '.join(cls.name for cls in classes)}) "
                        f"runs in {precision}; drop the option or add a method that does (e.g. lama)")
    if reference_path and not any(cls.has_reference_path for cls in classes):
        raise UserError("--reference-path: none of the methods has a reference path; add one of the LaMa family "
                        "(e.g. lama, lama-celebahq64)")
    return entries, notes


@dataclass
class PerfStudy:
    """What `perf_study` measured, and what it could not, one line each."""

    rows: list[PerfRow]
    skipped: list[str]


def perf_study(entries: list[PerfEntry], weights: dict[str, Path], sizes: list[int], *, repeats: int, warmup: int,
               random_weights: bool, threads: int, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
               device: str | None = None,
               on_size_done: Callable[[list[PerfRow]], None] | None = None) -> PerfStudy:
    """Measure every entry at every size (see the module docstring).

    An entry that cannot run here at all is skipped before any process starts, with why.
    ``on_size_done`` receives all rows so far after each size, so an interrupted study keeps them.
    """
    if repeats < 1 or warmup < 0:
        raise UserError("--repeats must be at least 1 and --warmup at least 0")
    if threads < 1:
        raise UserError(f"--threads {threads} must be at least 1")
    if not time_limit_s > 0:
        raise UserError(f"--time-limit {time_limit_s:g} must be a positive number of seconds")
    skipped: list[str] = []
    runnable = []
    for entry in entries:
        reason = unavailable_for_perf(entry.method, weights.get(entry.method.name), random_weights)
        if reason is None:
            runnable.append(entry)
        else:
            skipped.append(f"{entry.label}: {reason}")
    rows: list[PerfRow] = []
    for size in sizes:
        rows += measure_size(runnable, size, weights=weights, random_weights=random_weights, device=device,
                             threads=threads, repeats=repeats, warmup=warmup, time_limit_s=time_limit_s,
                             skipped=skipped)
        if on_size_done is not None:
            on_size_done(rows)
    return PerfStudy(rows, skipped)


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


def _number(value: float, digits: int) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def format_table(rows: list[PerfRow], style: str = "simple") -> str:
    """The rows as a text table; a row's note (over the time limit, failure) replaces how memory was measured."""
    body = [[row.method, f"{row.size}x{row.size}", row.weights, row.precision, row.threads, _number(row.median_ms, 1),
             _number(row.min_ms, 1), row.rounds, _number(row.loaded_mb, 0), _number(row.forward_mb, 0),
             _number(row.peak_mb, 0), row.device, row.note or row.memory_method] for row in rows]
    headers = ["method", "size", "weights", "precision", "threads", "median ms", "min ms", "rounds", "loaded MB",
               "forward MB", "peak MB", "device", "memory / note"]
    return tabulate(body, headers=headers, tablefmt=style, disable_numparse=True)
