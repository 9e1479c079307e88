"""Shared fixtures: the read-only ``../shared`` folder (golden tensors, datasets, calibration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("RELAMA_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips the calling test when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (tests that read ../shared need it beside the checkout)")
    return path


@pytest.fixture
def golden_dir():
    """Return a function mapping a method folder name to ``../shared/golden/<name>``."""
    return lambda name: shared_path("golden", name)
