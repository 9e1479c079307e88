"""``relama-bench erf``: effective receptive field maps of deep generators (see `bench.studies.erf`)."""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from pathlib import Path

import numpy as np

from bench.studies import erf
from bench.errors import UserError
from bench.report.document import Section, write_reports
from bench.run.rundir import write_bytes, write_table
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
    parser.add_argument("--cases", default=",".join(CASES),
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
    layers = parse_layers(args.layer)
    location = parse_location(args.location)
    weights = parse_weights_options(args.weights)
    stray = [name for name in weights if name not in methods]
    if stray:
        raise UserError(f"--weights names {stray[0]!r}, which is not in --methods: add it to --methods or drop it")
    subjects = [subject for name in methods
                for subject in erf.method_subjects(name, weights.get(name), random_init=args.random_init,
                                                   seed=args.seed, device=args.device)]
    out_name = args.out or f"erf-{arguments_hash(args)}"
    out_dir = Path(args.runs_dir) / out_name
    cases = list(dict.fromkeys(_split(args.cases)))
    sets = erf.input_sets(args.size, args.images, cases, seed=args.seed, data=args.data)
    started = time.perf_counter()
    results = []
    for subject in subjects:
        for layer in layers:
            print(f"erf: {subject.method} ({subject.weights}) at {erf.layer_name(layer)}", flush=True)
            results.append(erf.measure(subject, sets, layer, location=location, batch_size=args.batch_size))
    duration = time.perf_counter() - started
    table = erf.results_table(results)
    write_table(out_dir / "erf.csv", table)
    maps = io.BytesIO()
    np.savez_compressed(maps, **{
        f"{r.subject.method}|{r.subject.weights}|{erf.layer_name(r.layer)}|{name}": erf_map
        for r in results for name, erf_map in r.maps.items()})
    write_bytes(out_dir / "erf_maps.npz", maps.getvalue())
    sections = erf_sections(results, table, out_dir, args, location, duration)
    markdown_path, html_path = write_reports(out_dir, "relama-bench: effective receptive fields",
                                             intro_lines(args, subjects, sets, location), sections)
    print(f"erf: wrote {markdown_path} and {html_path}")
    return 0


def intro_lines(args: argparse.Namespace, subjects: list[erf.ERFSubject], sets: dict, location) -> list[str]:
    data = str(args.data) if args.data else "the embedded scikit-image photographs"
    n = next(iter(sets.values()))[0].shape[0]
    lines = [
        "Effective receptive field (Luo et al., NeurIPS 2016): |d y(p) / d x| for the output (or layer) "
        f"location p at row/column fractions {location[0]:g}/{location[1]:g}, summed over output channels, "
        "its absolute value averaged over the input channels (masked RGB and mask) and over inputs.",
        f"Inputs: {n} images from {data}, {args.size}x{args.size} centre crops, with the holes of the cases "
        f"{', '.join(name for name in sets if name != erf.RANDOM_INPUTS)} (seed {args.seed}); and {n} uniform-noise "
        "images without a hole ('random'). 'pooled' averages the per-set maps after scaling each to unit mass.",
        "Networks: " + "; ".join(f"{s.method}: {s.weights} ({s.detail})" for s in subjects) + ".",
    ]
    return lines


def erf_sections(results: list[erf.ERFResult], table, out_dir: Path, args: argparse.Namespace,
                 location: tuple[float, float], duration: float) -> list[Section]:
    reference = erf.uniform_reference(args.size, location)
    explain = (
        "r50/r90: radius of the smallest disc around p that holds 50 %/90 % of the gradient mass, in pixels "
        "and as a fraction of the image side; '>1% peak': share of the image whose gradient exceeds 1 % of "
        f"the map's peak. For reference, a map spread evenly over the image gives r50 {reference['r50_px']:.0f} px "
        f"({reference['r50_side']:.2f} of the side), r90 {reference['r90_px']:.0f} px "
        f"({reference['r90_side']:.2f}) and 100 % above 1 % of the peak."
    )
    fresh_note = ("Rows labelled 'freshly initialised weights' measure an untrained network of the same "
                  "architecture: they show what the architecture alone does, not what training makes of it.")
    pooled = table[table["inputs"] == erf.POOLED].drop(columns=["inputs"])
    section = Section("Effective receptive field", [explain, fresh_note, f"Measured in {duration:.0f} s."])
    section.tables.append(("Pooled over all inputs", _rounded(pooled)))
    section.tables.append(("By input set", _rounded(table)))
    comparison = "figures/erf_comparison.png"
    erf.comparison_figure(results, out_dir / comparison)
    section.figures.append(("All networks side by side at the same colour scale (log10 of |gradient| over its "
                            "own peak; solid circle r50, dashed r90), pooled inputs.", comparison))
    layers = {result.layer for result in results}
    if len([layer for layer in layers if layer is not None]) > 1:
        depth = "figures/erf_depth.png"
        erf.depth_figure(table, out_dir / depth)
        section.figures.append(("ERF size against depth inside the generator, pooled inputs.", depth))
    for method in dict.fromkeys(result.subject.method for result in results):
        relative = f"figures/erf_{method}.png"
        erf.heatmap_figure([result for result in results if result.subject.method == method], out_dir / relative)
        section.figures.append((f"{method}: maps per input set and weights.", relative))
    return [section]


def _rounded(table):
    shown = table.copy()
    for column in ("r50_px", "r90_px"):
        shown[column] = shown[column].map(lambda value: f"{value:.1f}")
    for column in ("r50_side", "r90_side"):
        shown[column] = shown[column].map(lambda value: f"{value:.3f}")
    shown["frac_above_1pct"] = shown["frac_above_1pct"].map(lambda value: f"{value * 100:.1f} %")
    return shown.rename(columns={"frac_above_1pct": ">1% peak"})
