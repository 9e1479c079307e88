"""Unregistered NumPy-only methods for the perf tests: their workers start without torch, in a moment.

Perf workers are spawned, so these classes must live in a module the workers can import by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from methods.base import Family, Inpainter

#: Environment variable naming a file that `Sleeping` creates when a call starts.
STARTED_MARKER = "RELAMA_PERF_TEST_STARTED"
#: Environment variable naming a file to which `Quiet` and `Allocating` append their name on every call.
CALL_LOG = "RELAMA_PERF_TEST_CALL_LOG"
#: MiB that `Allocating` touches on every call.
ALLOCATION_MB = 200
#: Buffers `Allocating` keeps alive after its calls, as a method with a cache would.
_kept: list[np.ndarray] = []


def _log_call(name: str) -> None:
    if CALL_LOG in os.environ:
        with open(os.environ[CALL_LOG], "a") as log:
            log.write(name + "\n")


class Quiet(Inpainter):
    name = "test-perf-quiet"
    family = Family.TRADITIONAL

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        _log_call(self.name)
        return image.copy()


class Allocating(Inpainter):
    name = "test-perf-allocating"
    family = Family.TRADITIONAL

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        buffer = np.ones(ALLOCATION_MB * 2**20 // 8)
        if not _kept:
            _kept.append(buffer)
        _log_call(self.name)
        return image.copy()


class Sleeping(Inpainter):
    name = "test-perf-sleeping"
    family = Family.TRADITIONAL

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        if STARTED_MARKER in os.environ:
            Path(os.environ[STARTED_MARKER]).touch()
        time.sleep(600)
        return image.copy()


class Failing(Inpainter):
    name = "test-perf-failing"
    family = Family.TRADITIONAL

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        raise RuntimeError("out of patience\nsecond line")


class Unloadable(Inpainter):
    name = "test-perf-unloadable"
    family = Family.TRADITIONAL

    def __init__(self) -> None:
        raise RuntimeError("broken install\nsecond line")

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        return image.copy()
