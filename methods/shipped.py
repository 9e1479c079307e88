"""Compact LaMa and ReLaMa-CBAM trained by this suite (``relama-bench train``), shipped with the package.

Both were trained on CelebA-HQ faces at 64x64 with the same width, depth, seed, data order, masks and
steps; they differ only by the attention (model cards: ``methods/data/*.md``). They run at their
native 64x64 on any input: the image and mask are downscaled, the hole is filled at 64x64, the filled
result is upscaled, and only the hole pixels are taken from it, so known pixels keep their full
resolution. Outside faces (their training domain) their output is not meaningful.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch

from methods.base import Option, Resolution
from methods.lama import PRECISION_OPTION, FourierInpainter, resize_image, resize_mask
from methods.registry import register_method
from methods.weights_record import WeightsFile, WeightsRecord


def shipped_record(file_name: str, size_bytes: int, sha256: str) -> WeightsRecord:
    """The weights record of a checkpoint that ships in ``methods/data`` (with a model card beside it)."""
    card = file_name.replace(".safetensors", ".md")
    return WeightsRecord(
        takes="file",
        what=f"ships with relama-bench (methods/data/{file_name}; model card methods/data/{card}); "
             "--weights replaces it with another checkpoint of the same architecture",
        files=(WeightsFile(path="", source=f"trained by `relama-bench train` (recipe and results: methods/data/{card})",
                           licence="MIT (relama-bench)", size=f"{size_bytes} bytes", sha256=sha256),),
        verification="safetensors; strict load (every key and shape); the sha256 above is checked by the test suite",
        shipped=file_name,
    )


class _ShippedFourierInpainter(FourierInpainter):
    """A shipped compact generator run at its native size with full-resolution compositing."""

    native_size: ClassVar[int] = 64
    training_domain = "CelebA-HQ faces 64x64"
    resolution = Resolution("native", 64)
    in_default_run = True
    # The compact configuration is read from the shipped file; there is no released one to randomise.
    can_use_random_weights = False
    options = {
        "optimize": Option(bool, "fold BatchNorm and run under torch.inference_mode"),
        "batch_size": Option(int, "most images per forward pass", minimum=1),
        "precision": PRECISION_OPTION,
    }

    def __init__(self, weights: Path | str | None = None, *, device: str | torch.device | None = None,
                 optimize: bool = True, batch_size: int = 16, precision: str = "fp32") -> None:
        """
        Parameters
        ----------
        weights : path-like, optional
            Another checkpoint of the same architecture (default: the shipped file).
        device : str or torch.device, optional
            Default: CUDA when available, else the CPU.
        optimize : bool
            Fold BatchNorm and run under ``torch.inference_mode``.
        batch_size : int
            Most images per forward pass.
        precision : {"fp32", "bf16", "fp16"}
            See `methods.lama.LaMa`; ``fp32`` is exact.
        """
        super().__init__(weights if weights is not None else self.weights_record.default_path(), device=device,
                         optimize=optimize, batch_size=batch_size, precision=precision)

    def _run(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        height, width = images[0].shape[:2]
        native = (self.native_size, self.native_size)
        if (height, width) == native:
            return super()._run(images, masks)
        small = super()._run([resize_image(image, native) for image in images],
                             [resize_mask(mask, native) for mask in masks])
        results = []
        for image, mask, filled in zip(images, masks, small):
            upscaled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_CUBIC)
            results.append(np.where(mask[..., None], upscaled, image))
        return results

    def describe(self) -> dict[str, str]:
        facts = super().describe()
        facts["training domain"] = self.training_domain
        facts["native resolution"] = (f"{self.native_size}x{self.native_size} (inputs are downscaled, the filled "
                                      "hole upscaled and composited)")
        return facts


@register_method
class LaMaCelebAHQ64(_ShippedFourierInpainter):
    name = "lama-celebahq64"
    summary = "compact LaMa trained by relama-bench on CelebA-HQ faces at 64x64 (ships with the package)"
    generator_kind = "ffc_resnet"
    weights_record = shipped_record("lama_celebahq64.safetensors", 3500828,
                                    "1936a784415bd63c70288cd3fdb294d5eecc1fbc4fc4883a1cb0381ce2fe6f49")


@register_method
class ReLaMaCBAMCelebAHQ64(_ShippedFourierInpainter):
    name = "relama-cbam-celebahq64"
    summary = "compact ReLaMa-CBAM trained by relama-bench on CelebA-HQ faces at 64x64 (ships with the package)"
    generator_kind = "ffc_resnet_cbam"
    weights_record = shipped_record("relama_cbam_celebahq64.safetensors", 3637764,
                                    "934bb9089824a24fd3e52b0778aa7492ad7d9fa93b2121ea574c0bea4938578e")
