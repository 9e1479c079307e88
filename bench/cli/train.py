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

from bench.errors import UserError
from bench.studies.train import train_study
from methods.training.config import CROP_MODES, PERCEPTUAL_LOSSES, TrainConfig, read_config_file
from methods.training.trainer import CHECKPOINT_NAME

#: Flags that map one-to-one onto config fields (flag dest -> field).
_FLAG_FIELDS = ("arch", "data", "size", "crop", "steps", "batch_size", "seed", "device", "threads", "ema_decay",
                "perceptual", "perceptual_weights", "validation_count", "validation_every", "checkpoint_every")
#: Fields a resumed run may change: where and how fast it runs, and how far.
_RESUMABLE_FIELDS = {"steps", "device", "threads", "validation_every", "checkpoint_every"}


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a compact LaMa or ReLaMa-CBAM (LaMa's recipe)",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=("lama", "relama-cbam"), help="generator (default lama)")
    parser.add_argument("--data", help="folder of training images (a validation subset is held out of it)")
    parser.add_argument("--size", type=int, help="training side in pixels (default 64)")
    parser.add_argument("--crop", choices=CROP_MODES,
                        help="centre: shorter side resized to --size, centre square (default); random: random "
                             "scale between --size and the image's own, random square")
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


def run(args: argparse.Namespace) -> int:
    config, run_dir, resuming = resolve_config(args)
    summary = train_study(config, run_dir, resuming=resuming, validation_lpips=args.validation_lpips,
                          progress=not args.no_progress)
    if summary is None:
        return 0
    scores_text = ", ".join(f"{name} {value:.4f}" for name, value in summary["validation"].items())
    print(f"trained {config.arch} for {summary['steps']} steps in {summary['wall_s']:.0f} s; validation: "
          f"{scores_text}; perceptual loss: {summary['perceptual_loss']}; run directory: {run_dir}")
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
