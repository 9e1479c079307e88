"""The `Inpainter` contract (DESIGN.md, contract 2) and the image/mask contract (contract 1).

Inside the suite an image is ``np.uint8`` ``H x W x 3`` RGB and a mask is ``np.bool_`` ``H x W`` with
``True`` marking a missing pixel. Adapters convert to whatever their network wants and back.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np


class Family(str, enum.Enum):
    """Broad kind of method, used to group rows in reports."""

    TRADITIONAL = "traditional"
    CNN = "cnn"
    TRANSFORMER = "transformer"
    FOURIER = "fourier"


@dataclass(frozen=True)
class Resolution:
    """How a method handles image size.

    Parameters
    ----------
    kind : {"any", "modulo", "native"}
        ``any``: works at the input size. ``modulo``: pads each side up to a multiple of ``value`` and
        crops back. ``native``: runs at a fixed ``value x value`` working size and resizes.
    value : int
        The modulus or the native side; 0 for ``any``.
    """

    kind: str = "any"
    value: int = 0

    def describe(self) -> str:
        if self.kind == "modulo":
            return f"pads to a multiple of {self.value}"
        if self.kind == "native":
            return f"runs at {self.value}x{self.value}, resizes"
        return "any size"


class MethodUnavailable(RuntimeError):
    """A method cannot run here (weights missing, optional dependency absent); the message says why."""


class Inpainter(abc.ABC):
    """Base class of every method adapter.

    Subclasses set the class attributes, implement `inpaint`, and are registered with
    `methods.registry.register_method`. The constructor takes ``weights`` (a path, or ``None`` for
    methods that need none) plus method-specific keyword options.

    The returned image has the input's size; the runner composites it with the known pixels, so an
    adapter does not need to (but may) keep known pixels intact.
    """

    name: ClassVar[str]
    family: ClassVar[Family]
    resolution: ClassVar[Resolution] = Resolution()
    #: Human-readable description of the weights the method needs; empty when it needs none.
    weights_needed: ClassVar[str] = ""
    #: True when `sample` draws several different completions.
    can_sample: ClassVar[bool] = False
    #: True when the method is stochastic and its output depends on ``seed``.
    stochastic: ClassVar[bool] = False
    #: One line shown in `relama-bench list`.
    summary: ClassVar[str] = ""
    #: False for methods too slow for the default run; they run when named in ``--methods``.
    in_default_run: ClassVar[bool] = True

    @classmethod
    def unavailable_reason(cls, weights: Path | None) -> str | None:
        """Why the method cannot run with these weights, or ``None`` when it can.

        The default demands a weights path when `weights_needed` is set, and checks that it exists.
        """
        if not cls.weights_needed:
            return None
        if weights is None:
            return f"weights missing: pass --weights {cls.name}=PATH ({cls.weights_needed})"
        if not Path(weights).exists():
            return f"weights not found at {weights}: pass --weights {cls.name}=PATH to an existing file"
        return None

    @classmethod
    def weights_source(cls, weights: Path | None) -> Path | None:
        """The file or folder the method loads its weights from when built with ``weights``.

        Its content is part of every cached result's identity; ``None`` when the method loads none.
        """
        return weights if cls.weights_needed else None

    @abc.abstractmethod
    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        """Fill the holes of one image.

        Parameters
        ----------
        image : (H, W, 3) uint8 ndarray
            RGB image; values under the mask are unspecified and must not be used.
        mask : (H, W) bool ndarray
            ``True`` where pixels are missing.
        seed : int, optional
            Seed for stochastic methods; deterministic methods ignore it.

        Returns
        -------
        (H, W, 3) uint8 ndarray
            The prediction, RGB.
        """

    def inpaint_batch(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, seed: int | None = None
    ) -> list[np.ndarray]:
        """Fill several images; the default loops over `inpaint`."""
        return [self.inpaint(image, mask, seed=seed) for image, mask in zip(images, masks)]

    def sample(self, image: np.ndarray, mask: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
        """Draw ``n`` completions; only methods with ``can_sample`` implement it."""
        raise NotImplementedError(f"{self.name} draws a single completion; it has no sample()")

    def describe(self) -> dict[str, str]:
        """Facts a report prints next to this method's rows (mode, domain, weights file...)."""
        return {}


def check_image_mask(image: np.ndarray, mask: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image``/``mask`` follow the suite's image and mask contract."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 HxWx3 RGB array, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
        raise ValueError(f"mask must be a bool HxW array, got {getattr(mask, 'dtype', type(mask))} "
                         f"{getattr(mask, 'shape', '')}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
                         f"{image.shape[1]}x{image.shape[0]}")
