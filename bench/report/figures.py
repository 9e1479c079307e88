"""Figures of a run: comparison grids, metric-vs-hole-area curves, speed-vs-quality scatter.

Figures are `matplotlib.figure.Figure` objects drawn without pyplot, so importing this module
chooses no backend and keeps no global figure state; they are written atomically as PNG.
Text that comes from users (image ids, method and case names, titles) is drawn with mathtext parsing
off, so a ``$`` in a file name is shown as typed instead of being parsed (or crashing the renderer).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.run.rundir import write_bytes


#: Colour shown in the hole of the masked-input column.
HOLE_COLOUR = np.array([255, 255, 255], np.uint8)
PANEL_INCHES = 2.2
FIGURE_DPI = 100
#: Longest side, in pixels, an image panel of a grid can show at `FIGURE_DPI`.
SLOT_PIXELS = int(PANEL_INCHES * FIGURE_DPI)


def fit_to_slot(panel: np.ndarray, side: int = SLOT_PIXELS) -> np.ndarray:
    """Shrink a panel (uint8 RGB, or a bool mask) so its longer side is at most ``side`` pixels.

    Area averaging, as the figure would show it anyway; matplotlib then resamples a slot-sized
    image instead of a full-size one, which halves the time of a grid. Masks come back as float32
    in [0, 1]; smaller panels are returned unchanged.
    """
    height, width = panel.shape[:2]
    longest = max(height, width)
    if longest <= side:
        return panel
    size = (max(1, round(width * side / longest)), max(1, round(height * side / longest)))
    source = panel.astype(np.float32) if panel.dtype == np.bool_ else panel
    return cv2.resize(source, size, interpolation=cv2.INTER_AREA)


def new_figure(rows: int = 1, columns: int = 1, *, figsize: tuple[float, float], **subplots: Any) -> tuple[Figure, Any]:
    """A figure and its axes, like ``pyplot.subplots`` but without pyplot's global state or a backend."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(rows, columns, **subplots)


def save_figure(figure: Figure, path: Path, *, dpi: int = FIGURE_DPI) -> None:
    """Write ``figure`` as PNG atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())


def comparison_grid(
    image_ids: Sequence[str],
    originals: Sequence[np.ndarray],
    hole_masks: Sequence[np.ndarray],
    predictions: dict[str, Sequence[np.ndarray | None]],
    path: Path,
    *,
    title: str = "",
) -> None:
    """One row per image: original | mask | masked input | one column per method.

    ``predictions[method][i]`` may be ``None`` when that job failed; its panel then says so.
    """
    columns = ["original", "mask", "masked input", *predictions]
    n_rows, n_cols = len(image_ids), len(columns)
    figure, axes = new_figure(n_rows, n_cols, figsize=(PANEL_INCHES * n_cols, PANEL_INCHES * n_rows),
                                squeeze=False)
    for row, (image_id, original, hole_mask) in enumerate(zip(image_ids, originals, hole_masks)):
        masked = np.where(hole_mask[:, :, None], HOLE_COLOUR, original)
        panels: list[np.ndarray | None] = [original, hole_mask, masked]
        panels += [predictions[method][row] for method in predictions]
        for col, panel in enumerate(panels):
            panel = fit_to_slot(panel) if panel is not None else None
            axis = axes[row, col]
            axis.set_xticks([])
            axis.set_yticks([])
            if panel is None:
                axis.text(0.5, 0.5, "failed", ha="center", va="center", transform=axis.transAxes)
            elif panel.ndim == 2:
                axis.imshow(panel, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                axis.imshow(panel, interpolation="lanczos")
            if row == 0:
                axis.set_title(columns[col], fontsize=10, parse_math=False)
            if col == 0:
                axis.set_ylabel(f"{image_id}\n{hole_mask.mean() * 100:.1f}% hole", fontsize=9, parse_math=False)
    if title:
        figure.suptitle(title, fontsize=12, parse_math=False)
        # Keep about 0.4 inch above the panels so the title never overlaps the column headers.
        figure.tight_layout(rect=(0, 0, 1, 1 - 0.4 / figure.get_figheight()))
    else:
        figure.tight_layout()
    save_figure(figure, path)


def area_curve(bins: pd.DataFrame, metric: str, path: Path, *, ylabel: str | None = None) -> None:
    """Mean ``metric`` against hole-area bin, one line per method."""
    data = bins[bins["metric"] == metric]
    figure, axis = new_figure(figsize=(6, 4))
    for method, group in data.groupby("method", sort=False):
        centres = (group["bin_low"] + group["bin_high"]) / 2 * 100
        axis.plot(centres, group["mean"], marker="o", label=method)
    axis.set_xlabel("hole area (% of image, bin centre)")
    axis.set_ylabel(ylabel or metric, parse_math=False)
    axis.grid(alpha=0.3)
    for label in axis.legend(fontsize=8).get_texts():
        label.set_parse_math(False)
    save_figure(figure, path)


def speed_quality_scatter(points: pd.DataFrame, metric: str, path: Path) -> None:
    """Median time per image (log scale) against mean ``metric``, one point per method.

    ``points`` has columns ``method``, ``median_s`` and ``metric``.
    """
    figure, axis = new_figure(figsize=(6, 4))
    for _, point in points.iterrows():
        axis.scatter(point["median_s"], point[metric])
        axis.annotate(point["method"], (point["median_s"], point[metric]), fontsize=8,
                      xytext=(4, 4), textcoords="offset points", parse_math=False)
    axis.set_xscale("log")
    axis.set_xlabel("median time per image (s, log scale)")
    axis.set_ylabel(metric, parse_math=False)
    axis.grid(alpha=0.3)
    save_figure(figure, path)
