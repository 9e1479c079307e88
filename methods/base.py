"""The `Inpainter` contract (DESIGN.md, contract 2) and the image/mask contract (contract 1).

Inside the suite an image is ``np.uint8`` ``H x W x 3`` RGB and a mask is ``np.bool_`` ``H x W`` with
``True`` marking a missing pixel. Adapters convert to whatever their network wants and back.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from methods.weights_record import WeightsRecord

if TYPE_CHECKING:
    import torch


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


#: What a user can declare their data to be (``--data-domain``); ``photos`` is any natural photograph.
DATA_DOMAINS = ("photos", "faces")


class MethodUnavailable(RuntimeError):
    """A method cannot run here (weights missing, optional dependency absent); the message says why."""


@dataclass(frozen=True)
class Option:
    """One keyword option of a method's constructor, as ``--option METHOD.KEY=VALUE`` sets it.

    Parameters
    ----------
    kind : {int, float, bool, str}
        Type of the value; an int is accepted where a float is declared.
    help : str
        What the option does, one line.
    choices : tuple
        The allowed values, when the option is a choice.
    minimum, maximum : float, optional
        Inclusive bounds of a number.
    allows_none : bool
        ``none`` is a valid value (meaning the documented default behaviour).
    """

    kind: type
    help: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    allows_none: bool = False

    def kind_words(self) -> str:
        """What the option takes, in words: ``a number``, ``true or false``, ``one of a, b``, ``... or none``."""
        if self.choices:
            words = "one of " + ", ".join(map(str, self.choices))
        else:
            words = {bool: "true or false", int: "a whole number", float: "a number"}.get(self.kind, "text")
        return words + (" or none" if self.allows_none else "")

    def check(self, value: Any) -> Any:
        """``value`` as the declared type (an int where a float is declared becomes a float).

        Raises
        ------
        ValueError
            With a phrase to follow the option's name: ``is not a number: pass a number``,
            ``must be at least 16``.
        """
        words = self.kind_words()
        if value is None:
            if self.allows_none:
                return None
            raise ValueError(f"is not {words}: pass {words}")
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise ValueError(f"is not {words}: pass {words}")
        if self.choices and value not in self.choices:
            raise ValueError(f"is not {words}: pass {words}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}")
        return value


class Inpainter(abc.ABC):
    """Base class of every method adapter.

    Subclasses set the class attributes, implement `inpaint`, and are registered with
    `methods.registry.register_method`. The constructor takes ``weights`` (when `weights_record` is
    set), ``device`` (when `devices` is not empty) and the keyword options declared in `options`.
    Capabilities are declared here, never probed: callers read these attributes.

    The returned image has the input's size; the runner composites it with the known pixels, so an
    adapter does not need to (but may) keep known pixels intact.
    """

    name: ClassVar[str]
    family: ClassVar[Family]
    resolution: ClassVar[Resolution] = Resolution()
    #: The weights the method loads (files, sources, licence, verification); None when it needs none.
    weights_record: ClassVar[WeightsRecord | None] = None
    #: Torch device types its ``device`` keyword accepts; empty for methods that take no device (CPU code).
    devices: ClassVar[tuple[str, ...]] = ()
    #: Keyword options of the constructor (``--option METHOD.KEY=VALUE``), besides weights and device.
    options: ClassVar[Mapping[str, Option]] = {}
    #: True when `with_random_weights` builds the released architecture with fresh weights (timing only).
    can_use_random_weights: ClassVar[bool] = False
    #: True when `erf_network` exposes the network for effective-receptive-field analysis.
    has_erf_network: ClassVar[bool] = False
    #: True when the ``optimize`` option set to false runs the network as the reference code does (no
    #: inference rewrites), so a timing study can measure both paths in one run.
    has_reference_path: ClassVar[bool] = False
    #: The data the weights were trained on, when outputs outside it are not meaningful; empty otherwise.
    training_domain: ClassVar[str] = ""
    #: True when `sample` draws several different completions.
    can_sample: ClassVar[bool] = False
    #: True when the method is stochastic and its output depends on ``seed``.
    stochastic: ClassVar[bool] = False
    #: One line shown in `relama-bench list`.
    summary: ClassVar[str] = ""
    #: False for methods left out of the default run (`default_run_exclusion` says why); they run when
    #: named in ``--methods``.
    in_default_run: ClassVar[bool] = True
    #: Why the method is not in the default run, when `in_default_run` is False.
    default_run_exclusion: ClassVar[str] = "too slow for the default run"
    #: The kind of data (one of `DATA_DOMAINS`) whose default run includes the method; empty: any data.
    #: A face model is meaningless on landscapes, so it joins the default run only on declared faces.
    data_domain: ClassVar[str] = ""

    @classmethod
    def default_run_reason(cls, domain: str) -> str | None:
        """Why the method is left out of the default run on data of ``domain``, or ``None`` when it is in."""
        if not cls.in_default_run:
            return f"{cls.default_run_exclusion}; runs when named in --methods"
        if cls.data_domain and cls.data_domain != domain:
            return (f"a {cls.data_domain} model; runs when named in --methods or with "
                    f"--data-domain {cls.data_domain}")
        return None

    @classmethod
    def unavailable_reason(cls, weights: Path | None) -> str | None:
        """Why the method cannot run with these weights, or ``None`` when it can (see `weights_record`)."""
        if cls.weights_record is None:
            if weights is not None:
                return f"{cls.name} uses no weights: remove --weights {cls.name}=..."
            return None
        return cls.weights_record.unavailable_reason(cls.name, weights)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against `options` and typed; ``ValueError`` names the first bad one."""
        checked = {}
        for key, value in options.items():
            if key not in cls.options:
                known = ", ".join(cls.options) or "none"
                raise ValueError(f"method {cls.name!r} has no option {key!r}; its options: {known}")
            try:
                checked[key] = cls.options[key].check(value)
            except ValueError as error:
                raise ValueError(f"{cls.name} option {key}={value!r} {error}") from None
        return checked

    @classmethod
    def with_random_weights(cls, *, seed: int = 0, device: "str | torch.device | None" = None,
                            **options: Any) -> "Inpainter":
        """The released architecture with fresh weights, for timing only (`can_use_random_weights`)."""
        raise MethodUnavailable(f"{cls.name}: weights missing and it has no random-weights mode; "
                                f"pass --weights {cls.name}=PATH")

    def erf_network(self) -> "tuple[torch.nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]":
        """The network and the function building its input from ``N x 3 x H x W`` images in [0, 1] and
        ``N x 1 x H x W`` hole masks, for methods with `has_erf_network`."""
        raise NotImplementedError(f"{self.name} exposes no network for ERF analysis")

    @classmethod
    def weights_source(cls, weights: Path | None) -> Path | None:
        """The file or folder the method loads its weights from when built with ``weights``.

        Its content is part of every cached result's identity; ``None`` when the method loads none.
        """
        if cls.weights_record is None:
            return None
        return Path(weights) if weights is not None else cls.weights_record.default_path()

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
