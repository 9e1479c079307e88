"""Tiny image folders and configurations for the training tests (CI-sized: 16x16 images, ~10k-parameter nets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from methods.training.config import TrainConfig


def make_image_folder(folder: Path, count: int = 12, size: int = 16) -> Path:
    """Smooth colour gradients with a random offset per image, saved as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    ramp = np.linspace(0, 1, size)
    for index in range(count):
        base = rng.uniform(0.2, 0.8, 3)
        horizontal = np.broadcast_to(ramp[None, :], (size, size))
        vertical = np.broadcast_to(ramp[:, None], (size, size))
        image = np.stack([base[0] + 0.2 * horizontal, base[1] + 0.2 * vertical, np.full((size, size), base[2])],
                         axis=-1)
        cv2.imwrite(str(folder / f"{index:03d}.png"),
                    cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return folder


def tiny_config(data: Path, **overrides: Any) -> TrainConfig:
    """A configuration that trains in milliseconds per step."""
    values: dict[str, Any] = dict(arch="lama", data=str(data), size=16, steps=4, batch_size=4, ngf=4,
                                  n_downsampling=1, n_blocks=1, ndf=4, discriminator_layers=2, perceptual="none",
                                  validation_count=2, validation_every=1000, checkpoint_every=1000, log_every=1,
                                  threads=1, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)
