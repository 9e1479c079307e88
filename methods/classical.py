"""Classical (non-learned) fillers from OpenCV, OpenCV-contrib ``xphoto`` and scikit-image."""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from methods.base import Family, Inpainter, Option, check_image_mask
from methods.registry import register_method


class _OpenCVInpaint(Inpainter):
    """``cv2.inpaint`` with one of its two diffusion algorithms."""

    family = Family.TRADITIONAL
    options = {"radius": Option(float, "radius in pixels of the neighbourhood each filled pixel draws on (positive)")}
    flag: ClassVar[int]

    def __init__(self, radius: float = 3.0) -> None:
        if radius <= 0:
            raise ValueError(f"inpaint radius must be positive, got {radius}")
        self.radius = float(radius)

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        check_image_mask(image, mask)
        # cv2.inpaint treats channels independently, so RGB in gives RGB out; no BGR swap is needed.
        hole = mask.astype(np.uint8) * 255
        return cv2.inpaint(np.ascontiguousarray(image), hole, self.radius, self.flag)

    def describe(self) -> dict[str, str]:
        return {"radius": f"{self.radius:g}"}


@register_method
class Telea(_OpenCVInpaint):
    name = "telea"
    summary = "Telea (2004) fast marching, cv2.inpaint"
    flag = cv2.INPAINT_TELEA


@register_method
class NavierStokes(_OpenCVInpaint):
    name = "ns"
    summary = "Bertalmio et al. (2001) Navier-Stokes, cv2.inpaint"
    flag = cv2.INPAINT_NS


class _XPhotoInpaint(Inpainter):
    """``cv2.xphoto.inpaint``; its mask marks the *known* pixels, the opposite of ours."""

    family = Family.TRADITIONAL
    algorithm: ClassVar[int]

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        return image

    def _finish(self, result: np.ndarray) -> np.ndarray:
        return result

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        check_image_mask(image, mask)
        known = (~mask).astype(np.uint8) * 255
        source = self._prepare(np.ascontiguousarray(image))
        result = np.zeros_like(source)
        cv2.xphoto.inpaint(source, known, result, self.algorithm)
        return self._finish(result)


@register_method
class FSRFast(_XPhotoInpaint):
    name = "fsr-fast"
    summary = "frequency-selective reconstruction (Genser et al. 2018), fast mode, cv2.xphoto"
    algorithm = cv2.xphoto.INPAINT_FSR_FAST


@register_method
class FSRBest(_XPhotoInpaint):
    name = "fsr-best"
    summary = "frequency-selective reconstruction, best (slow) mode, cv2.xphoto"
    # About 15 s per 512x512 image on one core: opt-in with --methods.
    in_default_run = False
    algorithm = cv2.xphoto.INPAINT_FSR_BEST


@register_method
class ShiftMap(_XPhotoInpaint):
    name = "shiftmap"
    summary = "shift-map (He & Sun 2012) patch offsets, cv2.xphoto"
    # 10-30 s per 512x512 image with a medium hole: opt-in with --methods.
    in_default_run = False
    algorithm = cv2.xphoto.INPAINT_SHIFTMAP

    # The shift-map solver expects a CIE Lab image.
    def _prepare(self, image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_RGB2Lab)

    def _finish(self, result: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(result, cv2.COLOR_Lab2RGB)


@register_method
class Biharmonic(Inpainter):
    name = "biharmonic"
    family = Family.TRADITIONAL
    summary = "biharmonic equation (Damelin & Hoang 2018), skimage.restoration.inpaint_biharmonic"

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        from skimage.restoration import inpaint_biharmonic

        check_image_mask(image, mask)
        if mask.all():
            # skimage fails with an obscure reduction error when no pixel is known.
            raise ValueError("biharmonic inpainting needs at least one known pixel; the mask is all hole")
        filled = inpaint_biharmonic(image.astype(np.float64) / 255.0, mask, channel_axis=-1)
        return np.clip(np.rint(filled * 255.0), 0, 255).astype(np.uint8)
