"""Compact LaMa and ReLaMa-CBAM trained by this suite (``relama-bench train``), shipped with the package.

Two pairs ship; within a pair the twins share width, depth, seed, initial shared weights (scenes),
data order, masks and steps, and differ only by the attention (model cards: ``methods/data/*.md``).

* ``*-celebahq64``: CelebA-HQ faces at 64x64. They run at their native 64x64 on any input: the image
  and mask are downscaled, the hole is filled at 64x64, the filled result is upscaled, and only the
  hole pixels are taken from it. Outside faces their output is not meaningful, so they join the
  default run only on data declared as faces.
* ``*-scenes``: natural-scene photographs (``scenes/train``, random 128x128 crops at random scales).
  Fourier convolutions make them usable at any size; their rule (``working_side``, chosen by
  measurement on ``scenes/test``, see the model cards) is stated on the classes below. Trained for
  500 steps on two CPU cores, they still lose to Telea, so they run only when named.

In every case known pixels keep their full resolution (only hole pixels come from the network).
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


#: Shorter side the scene models work at by default (0 would be the image's own size): 128 beat the
#: image's own size on scenes/test (methods/data/lama_scenes.md).
SCENES_WORKING_SIDE = 128


class _ShippedFourierInpainter(FourierInpainter):
    """A compact generator trained by this suite whose weights ship in ``methods/data``."""

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

    def _fill_at_size(self, images: list[np.ndarray], masks: list[np.ndarray],
                      working: tuple[int, int]) -> list[np.ndarray]:
        """Fill the holes at ``working`` (width, height; cv2 order), upscale the fill (bicubic) and take
        only its hole pixels, so known pixels keep their full resolution."""
        height, width = images[0].shape[:2]
        if (width, height) == working:
            return FourierInpainter._run(self, images, masks)
        small = FourierInpainter._run(self, [resize_image(image, working) for image in images],
                                      [resize_mask(mask, working) for mask in masks])
        return [np.where(mask[..., None], cv2.resize(filled, (width, height), interpolation=cv2.INTER_CUBIC), image)
                for image, mask, filled in zip(images, masks, small)]

    def describe(self) -> dict[str, str]:
        facts = super().describe()
        facts["training domain"] = self.training_domain
        return facts


class _FaceModel(_ShippedFourierInpainter):
    """A face model run at its native size with full-resolution compositing."""

    native_size: ClassVar[int] = 64
    training_domain = "CelebA-HQ faces 64x64"
    data_domain = "faces"
    resolution = Resolution("native", 64)

    def _run(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        return self._fill_at_size(images, masks, (self.native_size, self.native_size))

    def describe(self) -> dict[str, str]:
        facts = super().describe()
        facts["native resolution"] = (f"{self.native_size}x{self.native_size} (inputs are downscaled, the filled "
                                      "hole upscaled and composited)")
        return facts


@register_method
class LaMaCelebAHQ64(_FaceModel):
    name = "lama-celebahq64"
    summary = "compact LaMa trained by relama-bench on CelebA-HQ faces at 64x64 (ships with the package)"
    generator_kind = "ffc_resnet"
    weights_record = shipped_record("lama_celebahq64.safetensors", 3500828,
                                    "1936a784415bd63c70288cd3fdb294d5eecc1fbc4fc4883a1cb0381ce2fe6f49")


@register_method
class ReLaMaCBAMCelebAHQ64(_FaceModel):
    name = "relama-cbam-celebahq64"
    summary = "compact ReLaMa-CBAM trained by relama-bench on CelebA-HQ faces at 64x64 (ships with the package)"
    generator_kind = "ffc_resnet_cbam"
    weights_record = shipped_record("relama_cbam_celebahq64.safetensors", 3637764,
                                    "934bb9089824a24fd3e52b0778aa7492ad7d9fa93b2121ea574c0bea4938578e")


class _SceneModel(_ShippedFourierInpainter):
    """A natural-scene model: at most ``working_side`` pixels on the shorter side, any aspect ratio.

    An image whose shorter side exceeds ``working_side`` is downscaled (aspect ratio kept) so that its
    shorter side is ``working_side``, filled there, and the filled result is upscaled (bicubic); only
    its hole pixels are kept. Smaller images, and ``working_side = 0``, run at the image's own size
    (padded to a multiple of 8).
    """

    training_domain = "natural-scene photographs (scenes/train, 128x128 random crops)"
    resolution = Resolution("modulo", 8)
    # 500 CPU training steps leave them behind Telea with implausible large fills (model cards): a user's
    # first picture of deep inpainting must not be that, so they run only when named.
    in_default_run = False
    default_run_exclusion = "a research baseline from 500 CPU training steps that still loses to Telea"
    #: Shorter side the network works at by default (see the model card for the measurement).
    default_working_side: ClassVar[int] = SCENES_WORKING_SIDE
    options = {
        **_ShippedFourierInpainter.options,
        "working_side": Option(int, "largest shorter side the network works at (0: the image's own size)",
                               minimum=0),
    }

    def __init__(self, weights: Path | str | None = None, *, device: str | torch.device | None = None,
                 optimize: bool = True, batch_size: int = 16, precision: str = "fp32",
                 working_side: int | None = None) -> None:
        """
        Parameters
        ----------
        weights, device, optimize, batch_size, precision
            As for the face models.
        working_side : int, optional
            Largest shorter side the network works at; 0 = the image's own size. Default:
            `default_working_side`.
        """
        side = self.default_working_side if working_side is None else working_side
        if side and side < 32:
            raise ValueError(f"working_side must be 0 or at least 32, got {side}")
        super().__init__(weights, device=device, optimize=optimize, batch_size=batch_size, precision=precision)
        self.working_side = side

    def _run(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        height, width = images[0].shape[:2]
        if not self.working_side or min(height, width) <= self.working_side:
            return super()._run(images, masks)
        scale = self.working_side / min(height, width)
        return self._fill_at_size(images, masks, (max(1, round(width * scale)), max(1, round(height * scale))))

    def describe(self) -> dict[str, str]:
        facts = super().describe()
        facts["working resolution"] = (f"shorter side at most {self.working_side} px (larger inputs are downscaled, "
                                       "the filled hole upscaled and composited)" if self.working_side
                                       else "the image's own size")
        return facts


@register_method
class LaMaScenes(_SceneModel):
    name = "lama-scenes"
    summary = "compact LaMa trained by relama-bench on natural-scene photographs (ships with the package)"
    generator_kind = "ffc_resnet"
    weights_record = shipped_record("lama_scenes.safetensors", 10857396,
                                    "60d82bf4fa752e777ffb0c1c75a857b85adf519ff3100c41be3e56f81a3c3fdd")


@register_method
class ReLaMaCBAMScenes(_SceneModel):
    name = "relama-cbam-scenes"
    summary = "compact ReLaMa-CBAM trained by relama-bench on natural-scene photographs (ships with the package)"
    generator_kind = "ffc_resnet_cbam"
    weights_record = shipped_record("relama_cbam_scenes.safetensors", 11310124,
                                    "7d62168b81dc8bf67869cfdb5c62d8d33ee3f5898081ac233255fc2a2365ea22")
