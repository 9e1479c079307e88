"""Training orchestration for ``relama-bench train``: the perceptual network, the starting weights,
validation LPIPS, the `methods.training.trainer.Trainer` run, and the run directory's results
(``generator.safetensors`` for the ``lama`` / ``relama-cbam`` methods and ``summary.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import UserError
from bench.run.rundir import write_text
from methods.checkpoint import CheckpointError, read_checkpoint
from methods.training.config import TrainConfig
from methods.training.trainer import Trainer

VGG16_WEIGHTS = "lpips-vgg16"
#: What the run summary says about the perceptual loss that ran.
PERCEPTUAL_DESCRIPTIONS = {
    "resnet_pl": "resnet_pl (LaMa's ADE20k segmentation ResNet loss)",
    "vgg16": "VGG16 (stand-in for LaMa's segmentation ResNet loss)",
    "none": "none",
}


def train_study(config: TrainConfig, run_dir: Path, *, resuming: bool, validation_lpips: bool,
                progress: bool) -> dict[str, Any] | None:
    """Train (or resume) into ``run_dir``; the summary written to ``summary.json``, or None on ranks
    other than 0 of a multi-process run.

    Raises
    ------
    UserError
        Settings the trainer refuses, or a perceptual or starting checkpoint that cannot be used.
    """
    from methods.lama import save_generator

    try:
        trainer = Trainer(config, run_dir, perceptual_state=perceptual_state(config),
                          initial_generator_state=None if resuming else initial_generator(config),
                          lpips=lpips_function(str(config.device if config.device != "auto" else "cpu"))
                          if validation_lpips else None,
                          resume=resuming, progress=progress)
    except ValueError as error:
        raise UserError(str(error)) from None
    if resuming and trainer.rank == 0:
        config.save(run_dir / "config.json")
    scores = trainer.run()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if trainer.rank != 0:
        return None
    save_generator(trainer.inference_generator(), run_dir / "generator.safetensors", config.generator_config())
    summary = {
        "arch": config.arch,
        "steps": trainer.step,
        "wall_s": round(trainer.wall_s, 1),
        "steps_per_s": round(trainer.step / trainer.wall_s, 4) if trainer.wall_s else None,
        "processes": trainer.world_size,
        "device": str(trainer.device),
        "perceptual_loss": PERCEPTUAL_DESCRIPTIONS[config.perceptual],
        "generator_parameters": sum(p.numel() for p in trainer.generator.parameters()),
        "validation": scores,
    }
    write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def perceptual_state(config: TrainConfig) -> dict[str, torch.Tensor] | None:
    """Weights of the perceptual network (records the VGG16 path in ``config`` when taken from the registry)."""
    if config.perceptual == "none":
        return None
    if config.perceptual == "resnet_pl":
        if not config.perceptual_weights:
            raise UserError("the resnet_pl perceptual loss needs LaMa's segmentation encoder: pass "
                            "--perceptual-weights ade20k-resnet50dilated-ppm/encoder_epoch_20.pth (or --perceptual vgg16)")
        from methods.training.resnet_pl import read_encoder_state

        try:
            return read_encoder_state(config.perceptual_weights)
        except (CheckpointError, ValueError) as error:
            raise UserError(str(error)) from None
    if config.perceptual_weights:
        path = Path(config.perceptual_weights)
        try:
            state = read_checkpoint(path)
        except CheckpointError as error:
            raise UserError(str(error)) from None
        if not isinstance(state, dict) or not any(key.startswith("features.") for key in state):
            raise UserError(f"{path} is not a torchvision VGG16 state dict (no features.* keys); "
                            "pass vgg16 weights or --perceptual none")
        return state
    from bench.metrics import backbones as weights

    path = weights.resolve(VGG16_WEIGHTS)
    if path is None:
        raise UserError(f"the VGG16 perceptual loss needs weights '{VGG16_WEIGHTS}': run "
                        f"`{weights.FETCH_COMMAND}`, pass --perceptual-weights PATH, or use --perceptual none")
    config.perceptual_weights = str(path)
    return weights.load_state(VGG16_WEIGHTS)


def lpips_function(device: str) -> Any:
    """``lpips(predicted, target)`` on [0, 1] tensors through the suite's LPIPS (VGG), per image."""
    from bench.metrics.learned import LPIPSMetric

    metric = LPIPSMetric("vgg", device=device)

    def distances(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        def as_uint8(batch: torch.Tensor) -> np.ndarray:
            return (batch.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

        return torch.from_numpy(metric(as_uint8(predicted), as_uint8(target)))

    return distances


def initial_generator(config: TrainConfig) -> dict[str, torch.Tensor] | None:
    """LaMa weights with fresh attention for ReLaMa-CBAM (``--init-from lama=PATH``), else ``None``."""
    if not config.init_from_lama:
        return None
    from methods.lama import load_generator

    generator = load_generator(config.init_from_lama, kind="ffc_resnet_cbam", config=config.generator_config(),
                               init_attention=True, seed=config.seed)
    return generator.state_dict()
