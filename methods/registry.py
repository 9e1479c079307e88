"""Method registry (DESIGN.md, contract 3).

Built-in adapters register themselves with the `register_method` decorator when their module is
imported; third-party packages add methods through the entry-point group ``relama_bench.methods``
(each entry point names a module or an `Inpainter` subclass; loading it is enough to register).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from methods.base import Family, Inpainter, MethodUnavailable
from methods.weights_record import WeightsRecord

ENTRY_POINT_GROUP = "relama_bench.methods"

#: Modules of the built-in adapters, imported on first use of the registry.
BUILTIN_MODULES: tuple[str, ...] = (
    "methods.classical",
    "methods.context_encoder",
    "methods.pluralistic",
    "methods.ict",
    "methods.migan",
    "methods.lama",
    "methods.relama_cbam",
    "methods.shipped",
)

_REGISTRY: dict[str, type[Inpainter]] = {}
_loaded = False

InpainterT = TypeVar("InpainterT", bound=type[Inpainter])


def register_method(cls: InpainterT) -> InpainterT:
    """Class decorator that adds an `Inpainter` subclass to the registry under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Inpainter)):
        raise TypeError(f"register_method expects an Inpainter subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__qualname__} must set a string class attribute 'name'")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"method name {name!r} is registered twice ({existing.__module__} and {cls.__module__})")
    if not isinstance(cls.family, Family):
        raise TypeError(f"{cls.__qualname__}.family must be a methods.Family")
    _REGISTRY[name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # a broken plug-in must not break the suite
            warnings.warn(f"could not load method plug-in {entry.name!r} ({entry.value}): {error}", stacklevel=2)
    # Modules may have been imported in any order before this point; list built-ins in the order of
    # BUILTIN_MODULES (definition order within a module), then plug-ins.
    rank = {module: index for index, module in enumerate(BUILTIN_MODULES)}
    ordered = sorted(_REGISTRY.items(), key=lambda item: rank.get(item[1].__module__, len(rank)))
    _REGISTRY.clear()
    _REGISTRY.update(ordered)


def list_methods() -> list[str]:
    """Names of every registered method, in registration order."""
    _load_all()
    return list(_REGISTRY)


def get_method_class(name: str) -> type[Inpainter]:
    """The adapter class registered as ``name``; ``KeyError`` lists the known names."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(_REGISTRY)}") from None


@dataclass(frozen=True)
class MethodInfo:
    """What `relama-bench list` shows for one method."""

    name: str
    family: str
    resolution: str
    summary: str
    unavailable_reason: str | None
    weights: WeightsRecord | None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None


def available_methods(weights: dict[str, Path] | None = None) -> list[MethodInfo]:
    """Every registered method with whether it can run given ``weights`` (method name -> path)."""
    weights = weights or {}
    infos = []
    for name in list_methods():
        cls = _REGISTRY[name]
        infos.append(
            MethodInfo(
                name=name,
                family=cls.family.value,
                resolution=cls.resolution.describe(),
                summary=cls.summary,
                unavailable_reason=cls.unavailable_reason(weights.get(name)),
                weights=cls.weights_record,
            )
        )
    return infos


def create_method(name: str, weights: Path | str | None = None, *, device: str | None = None,
                  **options: Any) -> Inpainter:
    """Build the method ``name``, like timm's ``create_model``.

    Parameters
    ----------
    name : str
        Registered name.
    weights : path-like, optional
        What ``--weights`` names (see the class's `weights_record`); None for the shipped default.
    device : str, optional
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (see `resolve_device`); None means ``auto``. Methods
        that declare no `devices` run on the CPU whatever is asked.
    **options
        The method's declared `options`.

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones).
    MethodUnavailable
        The method cannot run here (e.g. its weights are missing); the message says how to fix it.
    ValueError
        An option the method does not declare, or a value outside its declared type or range.
    """
    return build_method(get_method_class(name), weights, device=device, **options)


def build_method(cls: type[Inpainter], weights: Path | str | None = None, *, device: str | None = None,
                 **options: Any) -> Inpainter:
    """Build an instance of the method class ``cls``, registered or not; see `create_method`."""
    weights_path = Path(weights) if weights is not None else None
    reason = cls.unavailable_reason(weights_path)
    if reason is not None:
        raise MethodUnavailable(f"{cls.name}: {reason}")
    arguments = cls.check_options(options)
    if cls.devices:
        arguments["device"] = resolve_device(cls, device)
    if cls.weights_record is not None:
        default = cls.weights_record.default_path()
        arguments["weights"] = weights_path if weights_path is not None else default
    return cls(**arguments)


def pick_device(requested: str | None, supported: tuple[str, ...], user: str) -> str:
    """The torch device for ``--device requested`` (one policy for methods and metric backbones).

    ``auto`` (or None) is CUDA when ``supported`` has it and a GPU is present, else the CPU; ``cpu``
    and ``cuda[:N]`` are taken as asked.

    Raises
    ------
    MethodUnavailable
        CUDA asked for but absent, or a device ``user`` (a method or metric name) does not support.
    """
    import torch

    requested = requested or "auto"
    if requested == "auto":
        return "cuda" if "cuda" in supported and torch.cuda.is_available() else "cpu"
    kind = torch.device(requested).type
    if kind not in supported:
        raise MethodUnavailable(f"{user} runs on {', '.join(supported)}, not on {requested}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise MethodUnavailable(f"{user}: --device {requested} asked for CUDA, but torch sees no GPU here; "
                                "use --device cpu or auto")
    return requested


def resolve_device(cls: type[Inpainter], requested: str | None) -> str:
    """The device method ``cls`` runs on for ``--device requested`` (`pick_device`); methods that
    declare no `devices` run NumPy/OpenCV code on the CPU whatever is asked."""
    return pick_device(requested, cls.devices, cls.name) if cls.devices else "cpu"
