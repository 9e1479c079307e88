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

from methods.base import Resolution
from methods.lama import _FourierInpainter, _resize_image, _resize_mask
from methods.registry import register_method

#: Folder of the shipped weights and model cards.
DATA_DIR = Path(__file__).resolve().parent / "data"


class _ShippedFourierInpainter(_FourierInpainter):
    """A shipped compact generator run at its native size with full-resolution compositing."""

    native_size: ClassVar[int] = 64
    training_domain: ClassVar[str] = "CelebA-HQ faces 64x64"
    resolution = Resolution("native", 64)
    weights_needed = ""
    in_default_run = True
    #: File name under `DATA_DIR`.
    weights_file: ClassVar[str]

    @classmethod
    def weights_path(cls) -> Path:
        """Where the shipped weights live."""
        return DATA_DIR / cls.weights_file

    @classmethod
    def unavailable_reason(cls, weights: Path | None) -> str | None:
        path = Path(weights) if weights is not None else cls.weights_path()
        if not path.is_file():
            return f"weights file {path} is missing; reinstall relama-bench (the package ships it)"
        return None

    @classmethod
    def weights_source(cls, weights: Path | None) -> Path | None:
        return Path(weights) if weights is not None else cls.weights_path()

    def __init__(self, weights: Path | str | None = None, *, device: str | torch.device | None = None,
                 optimize: bool = True, batch_size: int = 16) -> None:
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
        """
        super().__init__(weights if weights is not None else self.weights_path(), device=device, optimize=optimize,
                         batch_size=batch_size)

    def _run(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        height, width = images[0].shape[:2]
        native = (self.native_size, self.native_size)
        if (height, width) == native:
            return super()._run(images, masks)
        small = super()._run([_resize_image(image, native) for image in images],
                             [_resize_mask(mask, native) for mask in masks])
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
    weights_file = "lama_celebahq64.safetensors"


@register_method
class ReLaMaCBAMCelebAHQ64(_ShippedFourierInpainter):
    name = "relama-cbam-celebahq64"
    summary = "compact ReLaMa-CBAM trained by relama-bench on CelebA-HQ faces at 64x64 (ships with the package)"
    generator_kind = "ffc_resnet_cbam"
    weights_file = "relama_cbam_celebahq64.safetensors"
