"""Run-directory file I/O: every write is atomic (temporary file + rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from masks.io import atomic_write_bytes


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=True))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_rgb_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 RGB image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded_ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
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
