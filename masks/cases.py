"""The three benchmark mask cases: ``small``, ``region`` and ``large``.

Each case follows one of LaMa's evaluation generators (``random_thin_256``, ``random_medium_256``,
``random_thick_256``). Masks are drawn on a reference frame whose shorter side is 256 pixels (the
frame LaMa's parameters are given for) and resized to the image with nearest-neighbour sampling, so
the hole-area distribution does not depend on image size. Like LaMa's mask dataset, which drops masks
covering more than half the image, each case keeps only masks whose hole fraction lies in its stated
range; this is what makes the ranges guarantees.

A mask is a pure function of ``(image_id, case, seed)``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from masks.generators import BoxParams, StrokeParams, irregular_strokes, random_boxes

#: Shorter side of the frame on which masks are drawn.
REFERENCE_SIDE = 256
#: Draws tried before falling back to the candidate closest to the case's area range.
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class MaskCase:
    """One benchmark mask case.

    Parameters
    ----------
    name : str
        Case name used on the command line.
    description : str
        One line for reports.
    strokes : StrokeParams
        Stroke generator parameters on the reference frame.
    boxes : BoxParams or None
        Box generator parameters, or ``None`` for strokes only.
    stroke_probability : float
        Probability that a mask is drawn with strokes rather than boxes.
    min_area, max_area : float
        Guaranteed range of the hole fraction.
    """

    name: str
    description: str
    strokes: StrokeParams
    boxes: BoxParams | None
    stroke_probability: float
    min_area: float
    max_area: float

    def parameters(self) -> dict[str, object]:
        """Parameters as plain values, for the run configuration and the report."""
        params: dict[str, object] = {
            "reference_side": REFERENCE_SIDE,
            "strokes": vars(self.strokes).copy(),
            "stroke_probability": self.stroke_probability,
            "area_range": [self.min_area, self.max_area],
        }
        if self.boxes is not None:
            params["boxes"] = vars(self.boxes).copy()
        return params


CASES: dict[str, MaskCase] = {
    case.name: case
    for case in (
        MaskCase(
            name="small",
            description="thin scratches (LaMa thin strokes, fewer of them)",
            # LaMa thin_256 draws 4-51 strokes (about 30 % of the image on average); a scratch case
            # keeps its stroke shape but fewer strokes.
            strokes=StrokeParams(min_strokes=4, max_strokes=15, max_len=40, max_width=10),
            boxes=None,
            stroke_probability=1.0,
            min_area=0.005,
            max_area=0.15,
        ),
        MaskCase(
            name="region",
            description="medium strokes and boxes (LaMa medium_256)",
            strokes=StrokeParams(min_strokes=4, max_strokes=6, max_len=100, max_width=50),
            boxes=BoxParams(min_side=10, max_side=50, min_boxes=1, max_boxes=5, margin=0),
            stroke_probability=0.769,
            min_area=0.10,
            max_area=0.30,
        ),
        MaskCase(
            name="large",
            description="thick strokes and large boxes (LaMa thick_256)",
            strokes=StrokeParams(min_strokes=1, max_strokes=6, max_len=200, max_width=100),
            boxes=BoxParams(min_side=30, max_side=150, min_boxes=1, max_boxes=3, margin=10),
            stroke_probability=0.769,
            min_area=0.30,
            max_area=0.55,
        ),
    )
}


def get_case(name: str) -> MaskCase:
    """The case called ``name``; ``KeyError`` lists the known cases."""
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"unknown mask case {name!r}; known cases: {', '.join(CASES)}") from None


def case_rng(image_id: str, case: str, seed: int) -> np.random.Generator:
    """Random generator determined by ``(image_id, case, seed)`` alone."""
    case_index = list(CASES).index(case)
    image_key = zlib.crc32(image_id.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([seed, case_index, image_key]))


def _reference_frame(shape: tuple[int, int]) -> tuple[int, int]:
    height, width = shape
    scale = REFERENCE_SIDE / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def case_mask(shape: tuple[int, int], image_id: str, case: str, seed: int = 0) -> np.ndarray:
    """The mask of ``case`` for image ``image_id`` of size ``shape`` and run seed ``seed``.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    image_id : str
        Stable identifier of the image (its file stem).
    case : str
        One of `CASES`.
    seed : int
        Run seed.

    Returns
    -------
    (H, W) bool ndarray
        ``True`` = hole. Its hole fraction lies in the case's range, except in the rare event that
        `MAX_ATTEMPTS` draws all miss it, when the closest draw is used.
    """
    spec = get_case(case)
    rng = case_rng(image_id, case, seed)
    frame = _reference_frame(shape)
    best, best_gap = None, np.inf
    for _ in range(MAX_ATTEMPTS):
        if spec.boxes is None or rng.random() < spec.stroke_probability:
            drawn = irregular_strokes(frame, spec.strokes, rng)
        else:
            drawn = random_boxes(frame, spec.boxes, rng)
        resized = cv2.resize(drawn.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        mask = resized.astype(bool)
        area = float(mask.mean())
        gap = max(spec.min_area - area, area - spec.max_area, 0.0)
        if gap == 0.0:
            return mask
        if gap < best_gap:
            best, best_gap = mask, gap
    return best
