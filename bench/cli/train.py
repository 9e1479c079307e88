"""``relama-bench train``: train a compact LaMa or ReLaMa-CBAM with LaMa's recipe on an image folder.

Settings come from the defaults of `methods.training.config.TrainConfig`, then ``--config`` (TOML
with top-level keys named like the config fields, or a saved ``config.json``), then the flags. The run
directory receives ``config.json``, ``checkpoint.safetensors`` (everything needed to resume),
``losses.csv``, ``validation.csv``, ``curves.png``, ``generator.safetensors`` (inference weights
for the ``lama`` / ``relama-cbam`` methods) and ``summary.json``. Several processes: launch the
same command with ``torchrun --nproc_per_node K -m bench.cli.train ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.errors import UserError
from bench.run.rundir import write_text
from methods.checkpoint import CheckpointError, read_checkpoint
from methods.training.config import PERCEPTUAL_LOSSES, TrainConfig, read_config_file
from methods.training.trainer import CHECKPOINT_NAME, Trainer

#: Flags that map one-to-one onto config fields (flag dest -> field).
_FLAG_FIELDS = ("arch", "data", "size", "steps", "batch_size", "seed", "device", "threads", "ema_decay",
                "perceptual", "perceptual_weights", "validation_count", "validation_every", "checkpoint_every")
#: Fields a resumed run may change: where and how fast it runs, and how far.
_RESUMABLE_FIELDS = {"steps", "device", "threads", "validation_every", "checkpoint_every"}
VGG16_WEIGHTS = "lpips-vgg16"
#: What the run summary says about the perceptual loss that ran.
PERCEPTUAL_DESCRIPTIONS = {
    "resnet_pl": "resnet_pl (LaMa's ADE20k segmentation ResNet loss)",
    "vgg16": "VGG16 (stand-in for LaMa's segmentation ResNet loss)",
    "none": "none",
}


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a compact LaMa or ReLaMa-CBAM (LaMa's recipe)",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=("lama", "relama-cbam"), help="generator (default lama)")
    parser.add_argument("--data", help="folder of training images (a validation subset is held out of it)")
    parser.add_argument("--size", type=int, help="training side in pixels (default 64)")
    parser.add_argument("--config", type=Path, help="TOML (or config.json) with any TrainConfig fields")
    parser.add_argument("--init-from", metavar="lama=PATH",
                        help="start ReLaMa-CBAM from LaMa generator weights with fresh attention")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run bit for bit")
    parser.add_argument("--steps", type=int, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, help="global batch (all processes together)")
    parser.add_argument("--seed", type=int, help="seed of weights, data order, masks and flips")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--ema-decay", type=float, help="keep an EMA of the generator (e.g. 0.999); 0 = off")
    parser.add_argument("--perceptual", choices=PERCEPTUAL_LOSSES,
                        help="resnet_pl (LaMa's; needs --perceptual-weights encoder_epoch_20.pth), vgg16 (default) "
                             "or none")
    parser.add_argument("--perceptual-weights",
                        help="resnet_pl: ade20k-resnet50dilated-ppm/encoder_epoch_20.pth; vgg16: torchvision "
                             "VGG16 weights (default: the weights registry)")
    parser.add_argument("--validation-count", type=int, help="images held out of --data for validation")
    parser.add_argument("--validation-every", type=int, help="steps between validations")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--validation-lpips", action="store_true", help="add LPIPS (VGG) to the validation log")
    parser.add_argument("--out", type=Path, help="run directory (default runs/train/<arch>_<data>_<size>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _FLAG_FIELDS if getattr(args, name) is not None}


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Path, bool]:
    """The run's config, its directory, and whether it resumes.

    Raises
    ------
    UserError
        Missing ``--data``, a bad config file, a run directory that already holds a checkpoint, or
        settings a resumed run may not change.
    """
    flags = _flag_values(args)
    if args.resume is not None:
        saved = args.resume / "config.json"
        if not (args.resume / CHECKPOINT_NAME).is_file() or not saved.is_file():
            raise UserError(f"cannot resume {args.resume}: it has no {CHECKPOINT_NAME} and config.json; "
                            "pass a run directory written by relama-bench train")
        values = json.loads(saved.read_text())
        changed = sorted(name for name, value in flags.items()
                         if name not in _RESUMABLE_FIELDS and value != values.get(name))
        if changed or args.config or args.init_from:
            raise UserError(f"--resume continues {args.resume} with its saved settings; drop "
                            f"{', '.join(['--' + n.replace('_', '-') for n in changed] + (['--config'] if args.config else []) + (['--init-from'] if args.init_from else []))}")
        values.update(flags)
        return _build(values), args.resume, True
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            values.update(read_config_file(args.config))
        except ValueError as error:
            raise UserError(str(error)) from None
    values.update(flags)
    if args.init_from:
        name, _, path = args.init_from.partition("=")
        if name != "lama" or not path:
            raise UserError(f"--init-from expects lama=PATH, got {args.init_from!r}")
        values["init_from_lama"] = path
    if not values.get("data"):
        raise UserError("no training data: pass --data FOLDER (or data = '...' in --config)")
    config = _build(values)
    run_dir = args.out or Path("runs") / "train" / f"{config.arch.replace('-', '_')}_{Path(config.data).name}_{config.size}"
    if (run_dir / CHECKPOINT_NAME).is_file():
        raise UserError(f"{run_dir} already holds a training run; continue it with --resume {run_dir} "
                        "or choose another --out")
    return config, run_dir, False


def _build(values: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.from_mapping(values)
    except (TypeError, ValueError) as error:
        raise UserError(f"bad training settings: {error}") from None


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


def run(args: argparse.Namespace) -> int:
    from methods.lama import save_generator

    config, run_dir, resuming = resolve_config(args)
    try:
        trainer = Trainer(config, run_dir, perceptual_state=perceptual_state(config),
                          initial_generator_state=None if resuming else initial_generator(config),
                          lpips=lpips_function(str(config.device if config.device != "auto" else "cpu"))
                          if args.validation_lpips else None,
                          resume=resuming, progress=not args.no_progress)
    except ValueError as error:
        raise UserError(str(error)) from None
    if resuming and trainer.rank == 0:
        config.save(run_dir / "config.json")
    scores = trainer.run()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if trainer.rank != 0:
        return 0
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
    scores_text = ", ".join(f"{name} {value:.4f}" for name, value in scores.items())
    print(f"trained {config.arch} for {trainer.step} steps in {trainer.wall_s:.0f} s; validation: {scores_text}; "
          f"perceptual loss: {summary['perceptual_loss']}; run directory: {run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m bench.cli.train`` (and torchrun)."""
    parser = argparse.ArgumentParser(prog="relama-bench train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"relama-bench train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
