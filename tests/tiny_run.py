"""A tiny finished run (two small images, Telea and Navier-Stokes, one mask case) for report tests.

One image id carries markup and an ampersand, so every renderer is exercised with hostile user data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench.cli import main as cli_main

#: An image id (file stem) that is markup if a renderer forgets to escape it.
HOSTILE_ID = "<img src=x onerror=alert(1)>&amp"
IMAGE_IDS = ("plain", HOSTILE_ID)
CASE = "region"
METHODS = ("telea", "ns")
RUN_ID = "tiny"


def write_images(folder: Path) -> None:
    """Two smooth 64 x 64 test pictures with some texture, one per id in `IMAGE_IDS`."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:64, 0:64].astype(np.float64)
    for index, image_id in enumerate(IMAGE_IDS):
        red = 128 + 100 * np.sin(x / (5 + index))
        green = 128 + 100 * np.cos(y / (7 + index))
        blue = (x * 2 + y * (1 + index)) % 256
        image = np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{image_id}.png")


def run_arguments(data_dir: Path, runs_dir: Path) -> list[str]:
    return ["run", "--data", str(data_dir), "--methods", ",".join(METHODS), "--cases", CASE,
            "--runs-dir", str(runs_dir), "--run-id", RUN_ID, "--workers", "1", "--no-progress", "--no-learned-metrics"]


def build_tiny_run(root: Path) -> Path:
    """Run the tiny benchmark under ``root`` and return its run directory."""
    data_dir, runs_dir = root / "data", root / "runs"
    write_images(data_dir)
    assert cli_main(run_arguments(data_dir, runs_dir)) == 0
    return runs_dir / RUN_ID
