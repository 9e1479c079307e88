"""Random hole generators following LaMa's evaluation mask generators.

The stroke and box generators reproduce the sampling rules of LaMa's ``RandomIrregularMaskGenerator``
and ``RandomRectangleMaskGenerator`` (see ``masks.cases`` for the parameter sets). Every function
takes an explicit ``numpy.random.Generator`` so that masks are reproducible from a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class StrokeParams:
    """Parameters of the irregular-stroke generator, in pixels at the reference size.

    Stroke count is uniform in ``[min_strokes, max_strokes]``; each stroke has 1-5 segments of length
    ``10 + U[0, max_len)`` and brush width ``5 + U[0, max_width)``; ``max_angle`` bounds the integer part
    of each segment's angle in radians.
    """

    min_strokes: int
    max_strokes: int
    max_len: int
    max_width: int
    max_angle: int = 4


@dataclass(frozen=True)
class BoxParams:
    """Parameters of the box generator: side in ``[min_side, max_side]``, count in
    ``[min_boxes, max_boxes]``, boxes kept ``margin`` pixels from the border."""

    min_side: int
    max_side: int
    min_boxes: int
    max_boxes: int
    margin: int = 0


def irregular_strokes(shape: tuple[int, int], params: StrokeParams, rng: np.random.Generator) -> np.ndarray:
    """Draw LaMa-style brush strokes.

    Parameters
    ----------
    shape : (int, int)
        Mask height and width.
    params : StrokeParams
        Stroke counts and sizes, already scaled to ``shape``.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    (H, W) bool ndarray
        ``True`` on the strokes.
    """
    height, width = shape
    canvas = np.zeros((height, width), np.uint8)
    n_strokes = int(rng.integers(params.min_strokes, params.max_strokes + 1))
    for stroke in range(n_strokes):
        x = int(rng.integers(width))
        y = int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(params.max_angle))
            if stroke % 2 == 0:
                # LaMa mirrors every other stroke so strokes do not all turn the same way.
                angle = 2 * 3.1415926 - angle
            length = 10 + int(rng.integers(params.max_len))
            brush = 5 + int(rng.integers(params.max_width))
            end_x = int(np.clip(x + length * math.sin(angle), 0, width))
            end_y = int(np.clip(y + length * math.cos(angle), 0, height))
            cv2.line(canvas, (x, y), (end_x, end_y), 1, brush)
            x, y = end_x, end_y
    return canvas.astype(bool)


def random_boxes(shape: tuple[int, int], params: BoxParams, rng: np.random.Generator) -> np.ndarray:
    """Draw axis-aligned boxes as LaMa's rectangle generator does.

    Parameters
    ----------
    shape : (int, int)
        Mask height and width.
    params : BoxParams
        Box sizes and counts, already scaled to ``shape``.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    (H, W) bool ndarray
        ``True`` inside the boxes.
    """
    height, width = shape
    mask = np.zeros((height, width), bool)
    n_boxes = int(rng.integers(params.min_boxes, params.max_boxes + 1))
    for _ in range(n_boxes):
        box_w = _box_side(width, params, rng)
        box_h = _box_side(height, params, rng)
        left = int(rng.integers(params.margin, max(params.margin, width - params.margin - box_w) + 1))
        top = int(rng.integers(params.margin, max(params.margin, height - params.margin - box_h) + 1))
        mask[top:top + box_h, left:left + box_w] = True
    return mask


def _box_side(size: int, params: BoxParams, rng: np.random.Generator) -> int:
    upper = max(1, min(params.max_side, size - 2 * params.margin))
    lower = min(params.min_side, upper)
    return int(rng.integers(lower, upper + 1))
