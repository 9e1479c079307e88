"""The process pool of the parallel phase, made to stop when the run stops.

Worker processes ignore Ctrl-C: the parent alone decides, and on an interrupt (or any error that
ends the run) it cancels the queued jobs and terminates the workers, so a run stops within moments
and keeps every job that finished. Workers also die with their parent when it is killed outright
(``kill -9``): on Linux through ``PR_SET_PDEATHSIG``, elsewhere through a thread that watches the
parent's process id.
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

Item = TypeVar("Item")

#: ``prctl`` option asking the kernel to signal this process when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: Seconds a terminated worker gets before it is killed.
_TERMINATE_GRACE_S = 2.0
_WATCH_INTERVAL_S = 0.5
#: Jobs submitted ahead per worker: enough to keep every worker busy, few enough to bound memory.
_IN_FLIGHT_PER_WORKER = 4


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            # The parent may have died before the request took effect.
            if os.getppid() != parent_pid:
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_WATCH_INTERVAL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Terminated(SystemExit):
    """Raised in a worker by SIGTERM, so that atomic writes in progress remove their temporary files.

    A `SystemExit`, so that a worker terminated while idle exits quietly.
    """


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(128 + signum)


def initialise_worker(parent_pid: int) -> None:
    """Pool initializer: ignore Ctrl-C (the parent stops the pool) and die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_terminated)
    _die_with_parent(parent_pid)


def _call(function: Callable[[Item], object], item: Item) -> object:
    try:
        return function(item)
    except _Terminated:
        # The pool would report the exception and take the next job; a terminated worker must exit.
        os._exit(128 + signal.SIGTERM)


def _stop(pool: ProcessPoolExecutor, workers: Iterable[multiprocessing.process.BaseProcess]) -> None:
    workers = list(workers)
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()
    # With its workers dead the pool's manager thread fails the queued jobs and ends. It reaps the
    # workers too, so only waiting for it (a blocking shutdown) guarantees none is left half-reaped.
    pool.shutdown(wait=True, cancel_futures=True)


def run_parallel(function: Callable[[Item], object], items: list[Item], workers: int,
                 on_done: Callable[[Item, Future], None]) -> None:
    """Run ``function`` over ``items`` in ``workers`` processes, calling ``on_done`` in the parent as
    each finishes.

    ``on_done(item, future)`` may raise to end the run early (it sees failed jobs through
    ``future.exception()``). Whatever ends the run early (Ctrl-C, an exception from ``on_done``)
    cancels the queued jobs and terminates the workers before it propagates.
    """
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=workers, initializer=initialise_worker, initargs=(os.getpid(),))
    queued = iter(items)
    # A bounded window of submitted jobs, each dropped once handled: a finished future keeps its result
    # (a prediction), so holding every future would hold every prediction of the run.
    in_flight: dict[Future, Item] = {}
    try:
        while True:
            for item in itertools.islice(queued, _IN_FLIGHT_PER_WORKER * workers - len(in_flight)):
                in_flight[pool.submit(_call, function, item)] = item
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                on_done(in_flight.pop(future), future)
    except BaseException:
        _stop(pool, set(multiprocessing.active_children()) - before)
        raise
    pool.shutdown(wait=True)
