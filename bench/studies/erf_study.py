"""The ERF study: measure the effective receptive fields of methods' networks and write its document.

`erf_study` builds the networks (`bench.studies.erf.method_subjects`), measures every requested
layer on every input set, writes ``erf.csv``, ``erf_maps.npz`` and the figures into the output folder,
and renders ``report.md`` / ``report.html`` there (`bench.report.document`).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bench.report.document import Section, write_reports
from bench.run.rundir import write_bytes, write_table
from bench.studies import erf


@dataclass(frozen=True)
class ERFRequest:
    """What to measure: the networks, the depths, the inputs and where on the output.

    ``layers`` holds generator layer indices, None for the output; ``location`` is (row, column) as
    fractions of the image; ``data`` a folder of images or None for the embedded set.
    """

    methods: list[str]
    layers: list[int | None]
    cases: list[str]
    location: tuple[float, float] = (0.5, 0.5)
    weights: dict[str, Path] = field(default_factory=dict)
    random_init: bool = False
    images: int = 8
    size: int = 256
    data: Path | None = None
    seed: int = 0
    batch_size: int = 4
    device: str = "auto"


def erf_study(request: ERFRequest, out_dir: Path, *, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Run the study of ``request`` into ``out_dir``; returns the paths of ``report.md`` and ``report.html``."""
    subjects = [subject for name in request.methods
                for subject in erf.method_subjects(name, request.weights.get(name), random_init=request.random_init,
                                                   seed=request.seed, device=request.device)]
    sets = erf.input_sets(request.size, request.images, request.cases, seed=request.seed, data=request.data)
    started = time.perf_counter()
    results = []
    for subject in subjects:
        for layer in request.layers:
            log(f"erf: {subject.method} ({subject.weights}) at {erf.layer_name(layer)}")
            results.append(erf.measure(subject, sets, layer, location=request.location,
                                       batch_size=request.batch_size))
    duration = time.perf_counter() - started
    table = erf.results_table(results)
    write_table(out_dir / "erf.csv", table)
    maps = io.BytesIO()
    np.savez_compressed(maps, **{
        f"{r.subject.method}|{r.subject.weights}|{erf.layer_name(r.layer)}|{name}": erf_map
        for r in results for name, erf_map in r.maps.items()})
    write_bytes(out_dir / "erf_maps.npz", maps.getvalue())
    sections = erf_sections(results, table, out_dir, request, duration)
    return write_reports(out_dir, "relama-bench: effective receptive fields", intro_lines(request, subjects, sets),
                         sections)


def intro_lines(request: ERFRequest, subjects: list[erf.ERFSubject], sets: dict) -> list[str]:
    location = request.location
    data = str(request.data) if request.data else "the embedded scikit-image photographs"
    n = next(iter(sets.values()))[0].shape[0]
    lines = [
        "Effective receptive field (Luo et al., NeurIPS 2016): |d y(p) / d x| for the output (or layer) "
        f"location p at row/column fractions {location[0]:g}/{location[1]:g}, summed over output channels, "
        "its absolute value averaged over the input channels (masked RGB and mask) and over inputs.",
        f"Inputs: {n} images from {data}, {request.size}x{request.size} centre crops, with the holes of the cases "
        f"{', '.join(name for name in sets if name != erf.RANDOM_INPUTS)} (seed {request.seed}); and {n} uniform-noise "
        "images without a hole ('random'). 'pooled' averages the per-set maps after scaling each to unit mass.",
        "Networks: " + "; ".join(f"{s.method}: {s.weights} ({s.detail})" for s in subjects) + ".",
    ]
    return lines


def erf_sections(results: list[erf.ERFResult], table: pd.DataFrame, out_dir: Path, request: ERFRequest,
                 duration: float) -> list[Section]:
    reference = erf.uniform_reference(request.size, request.location)
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


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column in ("r50_px", "r90_px"):
        shown[column] = shown[column].map(lambda value: f"{value:.1f}")
    for column in ("r50_side", "r90_side"):
        shown[column] = shown[column].map(lambda value: f"{value:.3f}")
    shown["frac_above_1pct"] = shown["frac_above_1pct"].map(lambda value: f"{value * 100:.1f} %")
    return shown.rename(columns={"frac_above_1pct": ">1% peak"})
