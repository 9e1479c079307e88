"""What a run produced (`RunOutcome`) and the two documents of its directory: ``config.toml`` (what
was asked, written when the run starts) and ``run.json`` (what happened, written when it ends)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from bench.run.config import RunConfig, machine_description, package_versions
from bench.run.data import DEFAULT_DATA_NAME
from bench.run.scoring import ScoringReport
from masks import nvidia
from masks.cases import get_case
from methods.registry import get_method_class

#: Name of the case of user-supplied masks (``--masks``), which has no generator parameters.
USER_CASE = "user"
#: Family of the rows of predictions made elsewhere (`relama-bench score`).
EXTERNAL_FAMILY = "external"
#: run.json detail of a set of predictions made elsewhere: how many had their known pixels changed.
KNOWN_PIXELS_CHANGED = "known pixels changed by the method"
#: A ``max_side`` at least this large means images are never resized (``relama-bench score``).
NO_SIDE_CAP = 2 ** 30


@dataclass
class RunOutcome:
    """What a run produced: its rows, its errors and the methods it skipped (with reasons)."""

    run_dir: Path
    rows: pd.DataFrame
    errors: pd.DataFrame
    skipped: dict[str, str]
    computed_jobs: int
    cached_jobs: int
    scoring: ScoringReport | None = None
    #: ``describe()`` of each method this run loaded, taken before the method was released.
    method_details: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Facts of every image of the run (id, source, sizes, notes), in run order, for rank 0 and for a
    #: one-process run; other ranks hold only their shard's.
    image_facts: list[dict] = field(default_factory=list)
    #: Whether this process writes the run-wide files (rank 0, or the only process).
    is_main: bool = True
    #: Whether every rank wrote into one shared run directory (always true for one process).
    run_dir_shared: bool = True
    world_size: int = 1
    #: Which predictions were written to ``pred/``: ``all``, ``grids`` or ``none``.
    save_policy: str = "all"


def size_policy_text(config: RunConfig) -> str:
    if config.max_side >= NO_SIDE_CAP:
        return "original size (no resizing)"
    if config.size is not None:
        return f"shorter side resized to {config.size}, centre {config.size}x{config.size} crop"
    return f"original size, long side capped at {config.max_side} (area downscaling, no upscaling)"


def config_document(config: RunConfig) -> dict[str, Any]:
    """``config.toml``: the exact configuration, mask-case parameters, package versions and machine."""
    cases = {case: nvidia.parameters(case) if case in nvidia.CASES else get_case(case).parameters()
             for case in config.cases if case != USER_CASE}
    return {
        "run": {key: value for key, value in asdict(config).items() if value is not None and key != "weights"},
        "weights": config.weights,
        "cases": cases,
        "versions": package_versions(),
        "machine": machine_description(),
    }


def run_metadata(config: RunConfig, outcome: RunOutcome, started: float, command: str) -> dict[str, Any]:
    """``run.json``: what ran and was skipped, the images, timings, scoring facts and the command;
    a method's details are its ``describe()`` from ``outcome.method_details`` (empty when that failed)."""
    methods_run = [name for name in config.methods if name not in outcome.skipped]
    method_facts = []
    for name in methods_run:
        if name in config.predictions:
            method_facts.append(external_method_facts(name, config.predictions[name], outcome.rows))
            continue
        cls = get_method_class(name)
        method_facts.append({"name": name, "family": cls.family.value, "resolution": cls.resolution.describe(),
                             "details": outcome.method_details.get(name, {})})
    return {
        "run_id": outcome.run_dir.name,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "duration_s": time.time() - started,
        "computed_jobs": outcome.computed_jobs,
        "cached_jobs": outcome.cached_jobs,
        "skipped": outcome.skipped,
        "methods_run": methods_run,
        "methods": method_facts,
        "data_description": config.data or DEFAULT_DATA_NAME,
        "size_policy": size_policy_text(config),
        "images": outcome.image_facts,
        "processes": {"world_size": outcome.world_size, "run_dir_shared": outcome.run_dir_shared},
        "saved_predictions": outcome.save_policy,
        "command": command,
        "scoring": outcome.scoring.as_dict() if outcome.scoring else {},
    }


def external_method_facts(name: str, folder: str, rows: pd.DataFrame) -> dict[str, Any]:
    """run.json's entry for predictions made elsewhere: where they came from and how many changed known
    pixels (which the suite then restored from the original)."""
    own = rows[rows["method"] == name] if not rows.empty else rows
    changed = int(own["known_pixels_changed"].sum()) if "known_pixels_changed" in own else 0
    return {"name": name, "family": EXTERNAL_FAMILY, "resolution": "predictions made elsewhere, scored at the image's size",
            "details": {"predictions": folder, KNOWN_PIXELS_CHANGED: f"{changed} of {len(own)} predictions"}}
