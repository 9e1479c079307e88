"""``relama-bench erf``: effective receptive field maps of deep generators (see `bench.studies.erf`)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from bench.errors import UserError
from bench.studies.erf_study import ERFRequest, erf_study
from bench.cli.options import add_device_argument, comma_list, method_names, parse_weights_options
from masks.cases import CASES


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("erf", help="effective receptive field maps of deep generators (Luo et al. 2016)")
    parser.add_argument("--methods", required=True, help="comma-separated deep methods, e.g. lama,relama-cbam")
    parser.add_argument("--weights", action="append", default=[], metavar="METHOD=PATH",
                        help="weights of a method (repeatable); a method without weights needs --random-init")
    parser.add_argument("--random-init", action="store_true",
                        help="also measure freshly initialised weights: the same architecture as the loaded "
                             "weights, or the method's default architecture when no weights are given")
    parser.add_argument("--layer", default="output",
                        help="comma-separated depths: indices of the generator's model.<i> layers and/or "
                             "'output' (default: output)")
    parser.add_argument("--images", type=int, default=8, help="images per mask case (default 8)")
    parser.add_argument("--size", type=int, default=256, help="square input side in pixels (default 256)")
    parser.add_argument("--cases", default="small,region,large",
                        help=f"comma-separated mask cases giving the holes ({', '.join(CASES)})")
    parser.add_argument("--location", default="0.5,0.5",
                        help="output location as row,column fractions of the image (default: the centre)")
    parser.add_argument("--data", type=Path, default=None, help="folder of images; default: the embedded set")
    parser.add_argument("--seed", type=int, default=0, help="seed of masks, noise and fresh weights (default 0)")
    parser.add_argument("--batch-size", type=int, default=4, help="inputs per backward pass (default 4)")
    add_device_argument(parser)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where output folders go (default runs/)")
    parser.add_argument("--out", default=None, help="output folder name; default: erf-<hash of the arguments>")
    parser.set_defaults(func=erf_command)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def arguments_hash(args: argparse.Namespace) -> str:
    """Short hash of the parsed arguments, naming the default output folder."""
    items = sorted((key, str(value)) for key, value in vars(args).items() if key != "func")
    return hashlib.sha256(repr(items).encode("utf-8")).hexdigest()[:10]


def parse_layers(value: str) -> list[int | None]:
    """``"2,5,output"`` -> ``[2, 5, None]``."""
    layers: list[int | None] = []
    for item in comma_list(value, "--layer"):
        if item == "output":
            layers.append(None)
        elif item.isdigit():
            layers.append(int(item))
        else:
            raise UserError(f"--layer {item!r} is neither a layer index nor 'output': pass e.g. --layer 4,5,output")
    if not layers:
        raise UserError("--layer names no layer: pass e.g. --layer output or --layer 4,5")
    return layers


def parse_location(value: str) -> tuple[float, float]:
    """``"0.5,0.25"`` -> ``(0.5, 0.25)``, both in [0, 1)."""
    parts = _split(value)
    try:
        row, col = (float(part) for part in parts)
    except ValueError:
        raise UserError(f"--location {value!r} is not ROW,COL: pass two fractions in [0, 1), e.g. 0.5,0.5") from None
    if not (0 <= row < 1 and 0 <= col < 1):
        raise UserError(f"--location {value!r} lies outside the image: both fractions must be in [0, 1)")
    return row, col


def validate(args: argparse.Namespace) -> None:
    """One-sentence errors for arguments that cannot work."""
    if args.size < 32 or args.size % 8:
        raise UserError(f"--size {args.size} is not usable: pass a multiple of 8 of at least 32 (e.g. 256)")
    if args.images < 1:
        raise UserError(f"--images {args.images} selects no input: pass a positive number")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} must be positive")
    unknown = [case for case in comma_list(args.cases, "--cases") if case not in CASES]
    if unknown:
        raise UserError(f"unknown mask case {unknown[0]!r}: choose from {', '.join(CASES)}")


def erf_command(args: argparse.Namespace) -> int:
    validate(args)
    methods = method_names(args.methods, [])
    weights = parse_weights_options(args.weights)
    stray = [name for name in weights if name not in methods]
    if stray:
        raise UserError(f"--weights names {stray[0]!r}, which is not in --methods: add it to --methods or drop it")
    request = ERFRequest(
        methods=methods, layers=parse_layers(args.layer), cases=list(dict.fromkeys(_split(args.cases))),
        location=parse_location(args.location), weights=weights, random_init=args.random_init, images=args.images,
        size=args.size, data=args.data, seed=args.seed, batch_size=args.batch_size, device=args.device,
    )
    out_dir = Path(args.runs_dir) / (args.out or f"erf-{arguments_hash(args)}")
    markdown_path, html_path = erf_study(request, out_dir, log=lambda line: print(line, flush=True))
    print(f"erf: wrote {markdown_path} and {html_path}")
    return 0
