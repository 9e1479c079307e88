"""The run directory: every path of its layout (`RunDir`) and every write, each atomic (temporary file
+ rename), so a reader or a run killed midway never sees a partial file. The job logs are the exception:
they are appended one record per line (`bench.run.joblog`), and their readers skip a torn line.

Layout (DESIGN.md, "Run directory")::

    config.toml                      the configuration, written when the run starts
    run.json                         what ran, skipped, took how long; written when the run ends
    images/<id>.png                  the prepared images
    masks/<case>/<id>.png            the hole masks
    pred/<method>/<case>/<id>.png    predictions (composited), .sK.png extra samples
    features/<method>/<case>/<id>.npy, features/_originals/<id>.npy   Inception features
    logs/jobs.rank<r>.<attempt>.jsonl  finished jobs: one record per line, appended by each rank and
                                     attempt (`bench.run.joblog`; the source of truth of the rows)
    logs/errors.rank<r>.csv, logs/inputs.rank<r>.json   under torchrun: each rank's failures and inputs
    rows.parquet, errors.csv         the result rows (built from the job logs) and the failed jobs
    inputs.json, digests.json        what the cached inputs and weights were computed from
    tables/, figures/, report.md, report.html   the report
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import tomli_w

from bench.run.joblog import log_name, log_paths
from masks.io import atomic_write_bytes

#: Folder of the originals' features beside the methods' (no method may be called this).
ORIGINALS = "_originals"


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=True))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


#: Predictions and samples: Huffman-only deflate encodes a 512 x 512 photograph in ~5.5 instead of
#: ~6.7 ms (OpenCV's default strategy) for ~2 % more bytes. Stored PNG would encode in ~0.6 ms but take
#: ~1.85x the disk, and predictions are most of a run's bytes.
PREDICTION_PNG = (cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY)
#: Prepared images: stored (uncompressed, unfiltered), as every job of an image decodes it again (~0.5
#: instead of ~3.3 ms at 512 x 512), and there is one per image, not one per job. IMWRITE_PNG_FILTER
#: needs OpenCV 4.11.
PREPARED_IMAGE_PNG = (cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE)


def write_rgb_png(path: Path, image: np.ndarray, parameters: tuple[int, ...] = PREDICTION_PNG) -> None:
    """Write a uint8 RGB image as PNG (lossless), encoded with OpenCV's ``parameters``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded_ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(parameters))
    if not encoded_ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, encoded.tobytes())


def read_rgb_png(path: Path) -> np.ndarray:
    """Read a PNG written by `write_rgb_png` back as uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_path(pred_path: Path, index: int) -> Path:
    """Where sample ``index`` (1, 2, ...) of a prediction is kept; sample 0 is ``pred_path`` itself."""
    return pred_path.with_name(f"{pred_path.stem}.s{index}.png")


def write_table(path: Path, table: pd.DataFrame) -> None:
    """Write a table as parquet or CSV, chosen by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        atomic_write_bytes(path, table.to_parquet(index=False))
    else:
        write_text(path, table.to_csv(index=False))


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory; the only code that names the files of the layout.

    Parameters
    ----------
    root : Path
        The run directory, ``<runs-dir>/<run-id>``.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def meta_path(self) -> Path:
        return self.root / "run.json"

    @property
    def inputs_manifest(self) -> Path:
        """``inputs.json``: the content digest each prepared image and mask file holds."""
        return self.root / "inputs.json"

    @property
    def digests_path(self) -> Path:
        """``digests.json``: content digests of the weights files, cached by size and mtime."""
        return self.root / "digests.json"

    def rank_inputs_manifest(self, rank: int) -> Path:
        """Under torchrun, rank ``rank``'s `inputs_manifest` (the files it wrote)."""
        return self.root / "logs" / f"inputs.rank{rank}.json"

    def inputs_manifests(self) -> list[Path]:
        """`inputs_manifest` and every rank's, in a fixed order."""
        return [self.inputs_manifest, *sorted((self.root / "logs").glob("inputs.rank*.json"))]

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def job_log(self, rank: int, attempt: int) -> Path:
        """The job log rank ``rank`` appends to in attempt ``attempt`` (`bench.run.joblog`)."""
        return self.logs_dir / log_name(rank, attempt)

    def job_logs(self) -> list[Path]:
        """Every job log of the run directory, oldest attempt first."""
        return log_paths(self.logs_dir)

    def rank_errors_path(self, rank: int) -> Path:
        """Under torchrun, the jobs rank ``rank`` saw fail (rank 0 merges them into `errors_path`)."""
        return self.root / "logs" / f"errors.rank{rank}.csv"

    @property
    def rank_token_path(self) -> Path:
        """The token rank 0 writes at start-up to find out whether every rank sees the run directory."""
        return self.root / ".rank0-token"

    @property
    def rows_path(self) -> Path:
        return self.root / "rows.parquet"

    @property
    def errors_path(self) -> Path:
        return self.root / "errors.csv"

    @property
    def markdown_report(self) -> Path:
        return self.root / "report.md"

    @property
    def html_report(self) -> Path:
        return self.root / "report.html"

    def table(self, name: str) -> Path:
        """``tables/<name>`` (``summary.csv``, ``summary_<case>.md``...)."""
        return self.root / "tables" / name

    def figure(self, name: str) -> str:
        """``figures/<name>`` relative to the run directory, as reports link it (see `path`)."""
        return f"figures/{name}"

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, with ``/`` separators (how manifests name files)."""
        return path.relative_to(self.root).as_posix()

    def path(self, relative: str) -> Path:
        """A path relative to the run directory, as the report links figures."""
        return self.root / relative

    def image(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.png"

    def mask(self, case: str, image_id: str) -> Path:
        return self.root / "masks" / case / f"{image_id}.png"

    def prediction(self, method: str, case: str, image_id: str) -> Path:
        return self.root / "pred" / method / case / f"{image_id}.png"

    def features(self, method: str, case: str, image_id: str) -> Path:
        return self.root / "features" / method / case / f"{image_id}.npy"

    def original_features(self, image_id: str) -> Path:
        return self.root / "features" / ORIGINALS / f"{image_id}.npy"

    def write_config(self, document: dict[str, Any]) -> None:
        write_text(self.config_path, tomli_w.dumps(document))

    def read_config(self) -> dict[str, Any]:
        return tomllib.loads(self.config_path.read_text(encoding="utf-8"))

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_json(self.meta_path, meta)

    def read_meta(self) -> dict[str, Any]:
        return read_json(self.meta_path)

    def write_rows(self, rows: pd.DataFrame) -> None:
        write_table(self.rows_path, rows)

    def read_rows(self) -> pd.DataFrame:
        return pd.read_parquet(self.rows_path)

    def write_errors(self, errors: pd.DataFrame) -> None:
        write_table(self.errors_path, errors)

    def read_errors(self) -> pd.DataFrame:
        """The failed jobs; empty when none failed (or the file is empty)."""
        if self.errors_path.exists() and self.errors_path.stat().st_size:
            return pd.read_csv(self.errors_path)
        return pd.DataFrame()
