"""Two sweeps over one image set: image resolution, and hole area.

Resolution robustness
    Each image is resized so that its long side is 256, 512 and 1024 pixels (area interpolation when
    shrinking, bicubic when enlarging). Its mask is drawn once, by the mask case, at the 256 size and
    resized with nearest-neighbour sampling, so every resolution has the same relative hole.

Hole-size curves
    One image set gets masks of growing area from one shape family, seeded per image:
    ``box`` - one axis-aligned box with the image's aspect ratio around a seeded centre, whose area is
    the target fraction; ``strokes`` - LaMa-style medium strokes added one at a time to the same canvas
    until the hole reaches the target, so each level contains the previous one. Hole area therefore
    never decreases along the sweep. Results are grouped in fine (5 %) hole-fraction bins.

Every prediction is composited with the known pixels and scored with `bench.metrics.pixel`.
"""

from __future__ import annotations

import time
import zlib
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd

from bench.run.data import BenchImage
from bench.metrics.pixel import pixel_metrics
from bench.run.runner import composite
from bench.analysis.statistics import area_bins, bootstrap_ci
from bench.metrics.catalogue import PIXEL_METRICS
from masks.cases import REFERENCE_SIDE, case_mask
from masks.generators import StrokeParams, irregular_strokes
from methods.base import Inpainter

RESOLUTIONS = (256, 512, 1024)
SHAPES = ("box", "strokes")
#: Width of the hole-fraction bins of the hole-size curves.
FINE_BIN_WIDTH = 0.05
#: One stroke per draw, with LaMa medium_256 sizes on the reference frame (thick strokes grow the hole
#: in steps too coarse for fine bins).
STROKE = StrokeParams(min_strokes=1, max_strokes=1, max_len=100, max_width=50)
#: Strokes drawn at most while growing a hole towards its target.
MAX_STROKES = 400
#: Pixel metrics over the hole first, then over the whole image.
METRICS = PIXEL_METRICS

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """``image`` resized so that its long side is ``long_side`` (aspect ratio kept)."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if (size[1], size[0]) == (height, width):
        return image.copy()
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``shape`` (height, width)."""
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def score(method: str, predictor: Predictor, image: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """Run ``predictor`` on the masked image, composite, and return time, hole fraction and pixel metrics."""
    masked = np.where(hole[:, :, None], 0, image).astype(np.uint8)
    start = time.perf_counter()
    prediction = predictor(masked, hole)
    wall_time = time.perf_counter() - start
    return {"method": method, "hole_fraction": float(hole.mean()), "wall_time_s": wall_time,
            **pixel_metrics(image, composite(image, prediction, hole), hole)}


def _predictor(method: Inpainter, seed: int) -> Predictor:
    return lambda image, hole: method.inpaint(image, hole, seed=seed)


def resolution_rows(images: Sequence[BenchImage], methods: dict[str, Inpainter], cases: Sequence[str], *,
                    resolutions: Sequence[int] = RESOLUTIONS, seed: int = 0,
                    progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Scores of every method on every image, case and resolution.

    Returns
    -------
    DataFrame
        Columns ``method, case, image_id, resolution, height, width, upscaled, hole_fraction,
        wall_time_s`` and the pixel metrics.
    """
    records = []
    for item in images:
        base = resize_long_side(item.image, min(resolutions))
        for case in cases:
            base_mask = case_mask(base.shape[:2], item.image_id, case, seed)
            for resolution in resolutions:
                image = resize_long_side(item.image, resolution)
                hole = resize_mask(base_mask, image.shape[:2])
                for name, method in methods.items():
                    if progress:
                        progress(f"{name} {case} {item.image_id} {resolution}")
                    record = score(name, _predictor(method, seed), image, hole)
                    records.append({"case": case, "image_id": item.image_id, "resolution": resolution,
                                    "height": image.shape[0], "width": image.shape[1],
                                    "upscaled": resolution > max(item.image.shape[:2]), **record})
    return pd.DataFrame(records)


def _shape_rng(image_id: str, shape: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SHAPES.index(shape), zlib.crc32(image_id.encode())]))


def growing_box_masks(shape: tuple[int, int], fractions: Sequence[float], rng: np.random.Generator) -> list[np.ndarray]:
    """One box per target fraction, with the image's aspect ratio, around one seeded centre, kept inside the image."""
    height, width = shape
    centre_row, centre_col = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    masks = []
    for fraction in fractions:
        box_h = min(height, max(1, round(np.sqrt(fraction) * height)))
        box_w = min(width, max(1, round(np.sqrt(fraction) * width)))
        top = int(np.clip(round(centre_row - box_h / 2), 0, height - box_h))
        left = int(np.clip(round(centre_col - box_w / 2), 0, width - box_w))
        mask = np.zeros(shape, bool)
        mask[top:top + box_h, left:left + box_w] = True
        masks.append(mask)
    return masks


def growing_stroke_masks(shape: tuple[int, int], fractions: Sequence[float],
                         rng: np.random.Generator) -> list[np.ndarray]:
    """Nested stroke masks: strokes are added to one canvas until each (non-decreasing) target is reached.

    Strokes are drawn on the reference frame (shorter side 256) and resized with nearest-neighbour
    sampling, like the benchmark cases. A target the canvas cannot reach within `MAX_STROKES`
    strokes gets the fullest canvas drawn.
    """
    if np.any(np.diff(fractions) < 0):
        raise ValueError("growing_stroke_masks needs non-decreasing target fractions")
    height, width = shape
    scale = REFERENCE_SIDE / min(height, width)
    frame = (max(1, round(height * scale)), max(1, round(width * scale)))
    canvas = np.zeros(frame, bool)
    masks, drawn = [], 0
    for fraction in fractions:
        while canvas.mean() < fraction and drawn < MAX_STROKES:
            canvas |= irregular_strokes(frame, STROKE, rng)
            drawn += 1
        masks.append(resize_mask(canvas, shape))
    return masks


def area_masks(shape: tuple[int, int], family: str, fractions: Sequence[float], image_id: str,
               seed: int) -> list[np.ndarray]:
    """The growing masks of ``family`` (``"box"`` or ``"strokes"``) for one image."""
    if family not in SHAPES:
        raise ValueError(f"unknown mask shape family {family!r}; choose from {', '.join(SHAPES)}")
    rng = _shape_rng(image_id, family, seed)
    if family == "box":
        return growing_box_masks(shape, fractions, rng)
    return growing_stroke_masks(shape, fractions, rng)


def area_rows(images: Sequence[BenchImage], methods: dict[str, Inpainter], fractions: Sequence[float], *,
              shapes: Sequence[str] = SHAPES, seed: int = 0,
              progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Scores of every method on every image, shape family and target hole fraction.

    Returns
    -------
    DataFrame
        Columns ``method, shape, image_id, level, target_fraction, hole_fraction, wall_time_s`` and
        the pixel metrics.
    """
    records = []
    for item in images:
        for family in shapes:
            masks = area_masks(item.image.shape[:2], family, fractions, item.image_id, seed)
            for level, (target, hole) in enumerate(zip(fractions, masks)):
                for name, method in methods.items():
                    if progress:
                        progress(f"{name} {family} {item.image_id} {target:.3f}")
                    record = score(name, _predictor(method, seed), item.image, hole)
                    records.append({"shape": family, "image_id": item.image_id, "level": level,
                                    "target_fraction": float(target), **record})
    return pd.DataFrame(records)


def fine_bins(rows: pd.DataFrame, metrics: Sequence[str] = METRICS, width: float = FINE_BIN_WIDTH) -> pd.DataFrame:
    """`bench.analysis.statistics.area_bins` per shape family with ``width``-wide bins; adds a ``shape`` column."""
    edges = np.round(np.arange(0.0, 1.0 + width / 2, width), 6)
    tables = []
    for family, group in rows.groupby("shape", sort=False):
        binned = area_bins(group, list(metrics), edges=edges)
        binned.insert(0, "shape", family)
        tables.append(binned)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def summarise_by(rows: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean with 95 % bootstrap CI and N of each metric per group of ``keys``.

    Returns
    -------
    DataFrame
        ``keys`` then ``metric, mean, ci_low, ci_high, n``.
    """
    records = []
    for group_keys, group in rows[rows["hole_fraction"] > 0].groupby(list(keys), sort=False):
        group_keys = group_keys if isinstance(group_keys, tuple) else (group_keys,)
        for metric in metrics:
            values = group[metric].replace([np.inf, -np.inf], np.nan).dropna().to_numpy(dtype=np.float64)
            low, high = bootstrap_ci(values)
            records.append({**dict(zip(keys, group_keys)), "metric": metric,
                            "mean": float(values.mean()) if values.size else float("nan"),
                            "ci_low": low, "ci_high": high, "n": int(values.size)})
    return pd.DataFrame(records, columns=[*keys, "metric", "mean", "ci_low", "ci_high", "n"])


def resolution_figure(summary: pd.DataFrame, metric: str, path, *, label: str | None = None) -> None:
    """``metric`` against resolution, one panel per case, one line per method with its 95 % CI."""

    from bench.report.figures import new_figure, save_figure

    data = summary[summary["metric"] == metric]
    cases = list(dict.fromkeys(data["case"]))
    figure, axes = new_figure(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False, sharey=True)
    for axis, case in zip(axes[0], cases):
        for method, group in data[data["case"] == case].groupby("method", sort=False):
            group = group.sort_values("resolution")
            line, = axis.plot(group["resolution"], group["mean"], marker="o", label=method)
            axis.fill_between(group["resolution"], group["ci_low"], group["ci_high"], color=line.get_color(),
                              alpha=0.15)
        resolutions = sorted(set(data["resolution"]))
        axis.set_xscale("log", base=2)
        axis.set_xticks(resolutions, [str(value) for value in resolutions])
        axis.set_xlabel("long side (pixels)")
        axis.set_title(f"case: {case}", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel(label or metric)
    axes[0, -1].legend(fontsize=8)
    figure.suptitle(f"{label or metric} against resolution (same images, same relative holes; band: 95 % CI)",
                    fontsize=10)
    save_figure(figure, path)


def area_figure(bins: pd.DataFrame, metric: str, path, *, label: str | None = None) -> None:
    """``metric`` against hole fraction (fine bins), one panel per shape family, one line per method."""

    from bench.report.figures import new_figure, save_figure

    data = bins[bins["metric"] == metric]
    shapes = list(dict.fromkeys(data["shape"]))
    figure, axes = new_figure(1, len(shapes), figsize=(4.8 * len(shapes), 3.6), squeeze=False, sharey=True)
    for axis, family in zip(axes[0], shapes):
        for method, group in data[data["shape"] == family].groupby("method", sort=False):
            centres = (group["bin_low"] + group["bin_high"]) / 2 * 100
            axis.plot(centres, group["mean"], marker=".", label=method)
        axis.set_xlabel(f"hole area (% of image, {FINE_BIN_WIDTH * 100:.0f} % bins)")
        axis.set_title(f"growing {family}", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel(label or metric)
    axes[0, -1].legend(fontsize=8)
    figure.suptitle(f"{label or metric} against hole size", fontsize=10)
    save_figure(figure, path)
