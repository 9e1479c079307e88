"""LaMa's mixed training-mask generator, scaled to any square training size.

The reference (``configs/training/data/abl-04-256-mh-dist.yaml``, ``mask_generator_kind: mixed``)
picks its irregular-stroke and box generators 50/50 on 256x256 crops. Masks here are drawn on that
256x256 reference frame with the same parameters and resized to the training size with
nearest-neighbour sampling, so the distribution of hole shapes and areas is the reference's at any N.
"""

from __future__ import annotations

import cv2
import numpy as np

from masks.generators import BoxParams, StrokeParams, irregular_strokes, random_boxes

#: Side of the crops the reference draws its training masks on.
REFERENCE_SIDE = 256
#: Irregular generator of the training mix: min_times 1, max_times 5 (1-6 strokes), max_len 200,
#: max_width 100, max_angle 4.
TRAINING_STROKES = StrokeParams(min_strokes=1, max_strokes=6, max_len=200, max_width=100, max_angle=4)
#: Box generator of the training mix: margin 10, sides 30-150, 1-4 boxes.
TRAINING_BOXES = BoxParams(min_side=30, max_side=150, min_boxes=1, max_boxes=4, margin=10)
#: Probability of the irregular generator (irregular_proba 1 and box_proba 1, normalised).
STROKE_PROBABILITY = 0.5


def training_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """One training mask of the reference mix, at ``size x size``.

    Parameters
    ----------
    size : int
        Side of the training images.
    rng : numpy.random.Generator
        Source of randomness; the mask is a function of its state.

    Returns
    -------
    (size, size) bool ndarray
        ``True`` = hole.
    """
    shape = (REFERENCE_SIDE, REFERENCE_SIDE)
    if rng.random() < STROKE_PROBABILITY:
        mask = irregular_strokes(shape, TRAINING_STROKES, rng)
    else:
        mask = random_boxes(shape, TRAINING_BOXES, rng)
    if size == REFERENCE_SIDE:
        return mask
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


def sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """Generator for one sample: a pure function of ``(seed, stream, index)``.

    ``stream`` separates training (0) from validation (1); ``index`` is the global sample counter
    (training) or the validation image index, so masks do not depend on batching or process count.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, stream, index]))
