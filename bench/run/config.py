"""The configuration of one benchmark run, its run id, and the run directory layout."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.errors import UserError

#: Fields that do not change inference results, left out of the run id so a rerun with another
#: worker count, device, process layout or figure size, or with learned metrics turned on, resumes the same run.
_NOT_IN_RUN_ID = {"workers", "figure_rows", "runs_root", "run_id", "learned_metrics", "device", "run_dir_shared",
                  "save_predictions"}
#: The link to the newest run inside the runs folder; no run may take its name.
LATEST_LINK = "latest"
RUN_ID_MAX_CHARS = 100


def check_run_id(run_id: str) -> None:
    """Raise `UserError` unless ``run_id`` names one folder directly inside the runs folder."""
    plain = (0 < len(run_id) <= RUN_ID_MAX_CHARS and not run_id.startswith(".") and run_id.isprintable()
             and "/" not in run_id and "\\" not in run_id and run_id != LATEST_LINK)
    if not plain:
        raise UserError(f"--run-id {run_id!r} is not a plain folder name: use at most {RUN_ID_MAX_CHARS} printable "
                        f"characters without '/' or '\\', not starting with '.', and not {LATEST_LINK!r}")


@dataclass
class RunConfig:
    """Everything that determines a run's results.

    ``methods`` and ``cases`` are lists of names; ``data`` is a folder or ``None`` for the embedded
    default images; ``masks`` a folder of user masks or ``None`` for the generated cases;
    ``samples`` is how many completions methods that can sample draw per image (for diversity);
    ``options`` maps a method name to keyword options of its adapter (e.g. Telea's ``radius``);
    ``device`` is ``--device`` (auto, cpu, cuda[:N]) for deep methods and metric backbones; like the
    worker count it is left out of the run id (devices agree to float rounding).
    ``ssim`` names the SSIM convention (`bench.metrics.pixel.SSIM_CONVENTIONS`); ``mask_protocols``
    maps a file-based mask protocol (``nvidia``) to the folder holding its masks.
    """

    methods: list[str]
    cases: list[str]
    data: str | None = None
    masks: str | None = None
    mask_invert: bool = False
    mask_threshold: int = 0
    limit: int | None = None
    size: int | None = None
    max_side: int = 512
    seed: int = 0
    weights: dict[str, str] = field(default_factory=dict)
    learned_metrics: bool = True
    samples: int = 1
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    ssim: str = "lama"
    mask_protocols: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    figure_rows: int = 8
    runs_root: str = "runs"
    run_id: str | None = None
    device: str = "auto"
    #: ``relama-bench score``: method name to a folder of its predictions made elsewhere.
    predictions: dict[str, str] = field(default_factory=dict)
    #: Which predictions are written to ``pred/``: ``all``, ``grids`` (those the figures show), ``none``,
    #: or ``auto`` (all for small runs, see `bench.run.runner.SAVE_ALL_MAX_JOBS`).
    save_predictions: str = "auto"
    #: Under torchrun: ``auto`` (find out), ``yes`` (one filesystem) or ``no`` (send files to rank 0).
    run_dir_shared: str = "auto"

    def fingerprint(self) -> str:
        """Hash of the result-determining fields."""
        relevant = {key: value for key, value in asdict(self).items() if key not in _NOT_IN_RUN_ID}
        text = json.dumps(relevant, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]

    def resolved_run_id(self) -> str:
        return self.run_id or f"run-{self.fingerprint()}"

    def run_dir(self) -> Path:
        """``<runs_root>/<run id>``; a user-chosen run id must be a plain folder name (`check_run_id`)."""
        if self.run_id is not None:
            check_run_id(self.run_id)
        return Path(self.runs_root) / self.resolved_run_id()


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour affects results."""
    versions = {"python": sys.version.split()[0]}
    for name in ("relama-bench", "numpy", "torch", "torchvision", "opencv-contrib-python-headless",
                 "scikit-image", "pillow", "scipy", "pandas", "lpips", "torchmetrics"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_description() -> dict[str, str]:
    """Platform facts printed in reports next to timings."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
    }
