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


#: zlib level of the figures' PNG: Pillow's default (6) spent ~0.45 of a comparison grid's ~0.65 CPU-s
#: compressing it; level 3 takes ~0.25 s less per grid for ~14 % more bytes (same pixels).
PNG_COMPRESS_LEVEL = 3


def save_figure(figure: Figure, path: Path, *, dpi: int = FIGURE_DPI) -> None:
    """Write ``figure`` as PNG atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight",
                   pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    write_bytes(path, buffer.getvalue())


#: White space between the panels of a grid, in pixels.
PANEL_GAP_PIXELS = 8
#: Colour of the grid's background and of a failed panel.
BACKGROUND = 255


def slot_panel(panel: np.ndarray, side: int = SLOT_PIXELS) -> np.ndarray:
    """A grid panel as uint8 RGB scaled so that its longer side is ``side`` pixels.

    Images shrink by area averaging and grow by Lanczos interpolation; masks (bool) are drawn in grey
    levels (white = hole) and grow by nearest neighbour, so their pixels stay visible.
    """
    is_mask = panel.dtype == np.bool_
    height, width = panel.shape[:2]
    if max(height, width) > side:
        panel = fit_to_slot(panel, side)
    elif max(height, width) < side:
        size = (max(1, round(width * side / max(height, width))), max(1, round(height * side / max(height, width))))
        source = panel.astype(np.uint8) if is_mask else panel
        panel = cv2.resize(source, size, interpolation=cv2.INTER_NEAREST if is_mask else cv2.INTER_LANCZOS4)
    if is_mask:
        grey = np.clip(np.rint(panel.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        panel = np.repeat(grey[:, :, None], 3, axis=2)
    return panel


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

    The panels are scaled to their slot and laid out as one mosaic shown pixel for pixel in a single
    axes, with the labels as text around it: a figure of one image instead of one axes per panel
    draws about ten times faster and looks the same.
    """
    columns = ["original", "mask", "masked input", *predictions]
    n_rows, n_cols = len(image_ids), len(columns)
    cell = SLOT_PIXELS + PANEL_GAP_PIXELS
    mosaic = np.full((n_rows * cell - PANEL_GAP_PIXELS, n_cols * cell - PANEL_GAP_PIXELS, 3), BACKGROUND, np.uint8)
    figure = Figure(figsize=(mosaic.shape[1] / FIGURE_DPI, mosaic.shape[0] / FIGURE_DPI), dpi=FIGURE_DPI)
    axis = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axis.set_axis_off()
    centre = SLOT_PIXELS / 2
    for row, (image_id, original, hole_mask) in enumerate(zip(image_ids, originals, hole_masks)):
        masked = np.where(hole_mask[:, :, None], HOLE_COLOUR, original)
        panels: list[np.ndarray | None] = [original, hole_mask, masked]
        panels += [predictions[method][row] for method in predictions]
        for col, panel in enumerate(panels):
            if panel is None:
                axis.text(col * cell + centre, row * cell + centre, "failed", ha="center", va="center")
                continue
            shown = slot_panel(panel)
            top = row * cell + (SLOT_PIXELS - shown.shape[0]) // 2
            left = col * cell + (SLOT_PIXELS - shown.shape[1]) // 2
            mosaic[top:top + shown.shape[0], left:left + shown.shape[1]] = shown
        axis.text(-PANEL_GAP_PIXELS, row * cell + centre, f"{image_id}\n{hole_mask.mean() * 100:.1f}% hole",
                  fontsize=9, rotation=90, ha="right", va="center", multialignment="center", parse_math=False)
    for col, name in enumerate(columns):
        axis.text(col * cell + centre, -PANEL_GAP_PIXELS, name, fontsize=10, ha="center", va="bottom",
                  parse_math=False)
    if title:
        axis.text(mosaic.shape[1] / 2, -PANEL_GAP_PIXELS - 30, title, fontsize=12, ha="center", va="bottom",
                  parse_math=False)
    axis.imshow(mosaic, interpolation="none")
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
