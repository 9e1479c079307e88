"""Named configurations of the LaMa-family networks and builders shared by inference, training and analysis.

``build_generator("big-lama")`` gives the released big-lama architecture,
``build_generator("big-relama-cbam")`` the same with FFC-CBAM attention; a dict is a reference-style
``generator`` section (``kind`` optional: ``ffc_resnet`` or ``ffc_resnet_cbam``).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Mapping

import torch

from methods.nets.cbam import ReLaMaCBAMGenerator
from methods.nets.ffc import FFCResNetGenerator
from methods.nets.pix2pixhd import NLayerDiscriminator

#: Generator classes by the reference's ``kind`` (``ffc_resnet_cbam`` is this project's).
GENERATOR_KINDS: dict[str, type[FFCResNetGenerator]] = {
    "ffc_resnet": FFCResNetGenerator,
    "ffc_resnet_cbam": ReLaMaCBAMGenerator,
}

_BIG_LAMA: dict[str, Any] = {
    "input_nc": 4,
    "output_nc": 3,
    "ngf": 64,
    "n_downsampling": 3,
    "n_blocks": 18,
    "add_out_act": "sigmoid",
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}

#: Named generator configurations (``configs/training/big-lama.yaml``, section ``generator``).
GENERATOR_CONFIGS: dict[str, dict[str, Any]] = {
    "big-lama": {"kind": "ffc_resnet", **_BIG_LAMA},
    "big-relama-cbam": {"kind": "ffc_resnet_cbam", **_BIG_LAMA},
}

#: Named discriminator configurations (``configs/training/discriminator/pix2pixhd_nlayer.yaml``).
DISCRIMINATOR_CONFIGS: dict[str, dict[str, Any]] = {
    "pix2pixhd_nlayer": {"input_nc": 3, "ndf": 64, "n_layers": 4},
}


def generator_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The input every LaMa-family generator takes: ``cat(image * (1 - mask), mask)`` for ``N x 3 x H x W``
    images in [0, 1] and ``N x 1 x H x W`` masks (1 = hole); inference, training and analysis all use it."""
    return torch.cat([image * (1 - mask), mask], dim=1)


def generator_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """The full generator configuration (with ``kind``) for a name or a mapping.

    Raises
    ------
    ValueError
        Unknown name or kind.
    """
    if isinstance(config, str):
        if config not in GENERATOR_CONFIGS:
            raise ValueError(f"unknown generator configuration {config!r}; known: {', '.join(GENERATOR_CONFIGS)}")
        return copy.deepcopy(GENERATOR_CONFIGS[config])
    resolved = copy.deepcopy(dict(config))
    resolved.setdefault("kind", "ffc_resnet")
    if resolved["kind"] not in GENERATOR_KINDS:
        raise ValueError(f"unknown generator kind {resolved['kind']!r}; known: {', '.join(GENERATOR_KINDS)}")
    return resolved


def build_generator(config: str | Mapping[str, Any], *, device: torch.device | str | None = None) -> FFCResNetGenerator:
    """Build a LaMa-family generator with fresh (PyTorch default) weights.

    Parameters
    ----------
    config : str or mapping
        ``"big-lama"``, ``"big-relama-cbam"``, or a reference-style generator section.
    device : torch.device or str, optional
        Where to allocate; ``"meta"`` builds the structure without memory.

    Returns
    -------
    FFCResNetGenerator
        The generator in training mode.
    """
    kwargs = generator_config(config)
    cls = GENERATOR_KINDS[kwargs.pop("kind")]
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return cls(**kwargs)


def build_discriminator(config: str | Mapping[str, Any] = "pix2pixhd_nlayer", *,
                        device: torch.device | str | None = None) -> NLayerDiscriminator:
    """Build LaMa's patch discriminator (``"pix2pixhd_nlayer"`` or ``NLayerDiscriminator`` kwargs)."""
    if isinstance(config, str):
        if config not in DISCRIMINATOR_CONFIGS:
            raise ValueError(f"unknown discriminator configuration {config!r}; "
                             f"known: {', '.join(DISCRIMINATOR_CONFIGS)}")
        config = DISCRIMINATOR_CONFIGS[config]
    kwargs = {key: value for key, value in config.items() if key != "kind"}
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return NLayerDiscriminator(**kwargs)
