"""Training configuration: every setting of a run, saved as ``config.json`` in the run directory."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from masks.io import atomic_write_bytes

#: Generator kinds by ``--arch``.
ARCH_KINDS = {"lama": "ffc_resnet", "relama-cbam": "ffc_resnet_cbam"}
#: Perceptual losses by config name.
PERCEPTUAL_LOSSES = ("resnet_pl", "vgg16", "none")
#: How a training sample is cut from its image: ``centre`` resizes the shorter side to ``size`` and
#: takes the centre square; ``random`` resizes the shorter side to a random length between ``size``
#: and the image's own (never upscaling) and takes a random square, LaMa-style scale and crop jitter.
CROP_MODES = ("centre", "random")


@dataclass
class TrainConfig:
    """Settings of one training run; defaults are a compact LaMa with big-lama's losses and optimisers.

    Loss weights, learning rates and betas are big-lama's (``configs/training/big-lama.yaml``, Adam
    with PyTorch's default betas). ``perceptual`` is ``resnet_pl`` (LaMa's segmentation-ResNet loss,
    weight 30; ``perceptual_weights`` = ``encoder_epoch_20.pth``), ``vgg16`` (the stand-in when those
    weights are not at hand; torchvision VGG16 weights) or ``none``.
    """

    arch: str = "lama"
    data: str = ""
    size: int = 64
    crop: str = "centre"
    steps: int = 1000
    batch_size: int = 8
    micro_batches: int = 1
    seed: int = 0
    ngf: int = 32
    n_downsampling: int = 2
    n_blocks: int = 4
    ndf: int = 32
    discriminator_layers: int = 4
    lr_generator: float = 1e-3
    lr_discriminator: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    l1_weight_known: float = 10.0
    l1_weight_missing: float = 0.0
    adversarial_weight: float = 10.0
    gp_coef: float = 0.001
    feature_matching_weight: float = 100.0
    perceptual: str = "vgg16"
    perceptual_weight: float = 30.0
    perceptual_weights: str = ""
    validation_count: int = 256
    validation_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 10
    ema_decay: float = 0.0
    init_from_lama: str = ""
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCH_KINDS:
            raise ValueError(f"unknown architecture {self.arch!r}; use one of {', '.join(ARCH_KINDS)}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop mode {self.crop!r}; use one of {', '.join(CROP_MODES)}")
        if self.perceptual not in PERCEPTUAL_LOSSES:
            raise ValueError(f"unknown perceptual loss {self.perceptual!r}; use one of {', '.join(PERCEPTUAL_LOSSES)}")
        if self.size % (2 ** self.n_downsampling) or self.size < 2 * 2 ** self.n_downsampling:
            raise ValueError(f"size {self.size} must be a multiple of 2**n_downsampling = {2 ** self.n_downsampling} "
                             "and at least twice that")
        if self.batch_size < 1 or self.micro_batches < 1 or self.batch_size % self.micro_batches:
            raise ValueError(f"batch size {self.batch_size} must be a positive multiple of micro_batches "
                             f"{self.micro_batches}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.init_from_lama and self.arch != "relama-cbam":
            raise ValueError("init_from_lama starts ReLaMa-CBAM from LaMa weights; use it with arch 'relama-cbam'")

    def generator_config(self, arch: str | None = None) -> dict[str, Any]:
        """Reference-style generator section (``methods.nets.configs.build_generator`` input).

        ``arch`` overrides the run's architecture (same widths and depth), e.g. ``"lama"`` for the
        attention-free twin whose weights every ReLaMa-CBAM run starts from.
        """
        flat = {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False}
        return {
            "kind": ARCH_KINDS[arch or self.arch],
            "input_nc": 4,
            "output_nc": 3,
            "ngf": self.ngf,
            "n_downsampling": self.n_downsampling,
            "n_blocks": self.n_blocks,
            "add_out_act": "sigmoid",
            "init_conv_kwargs": dict(flat),
            "downsample_conv_kwargs": dict(flat),
            "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
        }

    def discriminator_config(self) -> dict[str, Any]:
        """``NLayerDiscriminator`` kwargs."""
        return {"input_nc": 3, "ndf": self.ndf, "n_layers": self.discriminator_layers}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path | str) -> None:
        """Write the configuration as JSON, atomically."""
        atomic_write_bytes(Path(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**dict(values))


def read_config_file(path: Path | str) -> dict[str, Any]:
    """Settings from a ``.toml`` file (top-level keys) or a saved ``config.json``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training config {path} does not exist; pass a .toml or config.json file")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"training config {path} is not valid {path.suffix[1:].upper()}: {error}") from None
