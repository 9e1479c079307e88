"""Generated mask cases: the suite's own ``small``, ``region``, ``large`` and LaMa's evaluation
protocol ``thin``, ``medium``, ``thick``.

Two families, two sets of rules:

- **suite** (``small``, ``region``, ``large``): each mask first picks its generator (strokes or boxes)
  with the case's stated probabilities, then redraws with that generator until the hole fraction *of
  the image* lies in that generator's range. Picking first is what makes the stated mixture the
  mixture produced, whatever the image's aspect ratio. Masks are drawn on a frame whose shorter side
  is 256 pixels and the image's aspect ratio, then resized to the image (nearest neighbour).
- **lama** (``thin``, ``medium``, ``thick``): LaMa's ``random_{thin,medium,thick}_{256,512}``
  evaluation masks as ``bin/gen_mask_dataset.py`` makes them: drawn on a square frame of side 256, or
  512 when the image's shorter side is at least 512 (with that side's parameter set); generator and
  mask are drawn together and masks covering more than half of the frame are dropped (the reference
  draws five candidates, drops those, and keeps one at random: the same distribution as redrawing
  until one survives). The square mask is resized to the image (nearest neighbour), so on a
  non-square image the holes are stretched along the longer side.

A mask is a pure function of ``(image_id, case, seed)``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from masks.generators import BoxParams, StrokeParams, irregular_strokes, random_boxes

#: Shorter side of the frame on which the suite's cases are drawn.
REFERENCE_SIDE = 256
#: Draws tried before falling back to the candidate closest to the area range.
MAX_ATTEMPTS = 200
#: The two families of generated cases.
SUITE, LAMA = "suite", "lama"
#: LaMa's mixture weights (``irregular_proba`` 1, ``box_proba`` 0.3), normalised as the reference does.
LAMA_STROKE_PROBABILITY = 1.0 / 1.3
LAMA_BOX_PROBABILITY = 0.3 / 1.3
#: LaMa's ``max_tamper_area``: masks covering more of the frame are dropped.
LAMA_MAX_AREA = 0.5
#: Images whose shorter side is at least this use LaMa's 512 parameter set.
LAMA_LARGE_SIDE = 512


@dataclass(frozen=True)
class Component:
    """One generator of a case's mixture.

    Parameters
    ----------
    generator : str
        ``"strokes"`` or ``"boxes"``.
    params : StrokeParams or BoxParams
        Its parameters in pixels of the frame.
    probability : float
        Share of masks drawn with it.
    min_area, max_area : float
        Hole fractions it may produce (suite cases: of the image; LaMa cases: of the frame).
    """

    generator: str
    params: StrokeParams | BoxParams
    probability: float
    min_area: float
    max_area: float

    def draw(self, frame: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        if self.generator == "strokes":
            return irregular_strokes(frame, self.params, rng)
        return random_boxes(frame, self.params, rng)

    def describe(self) -> dict[str, object]:
        """Plain values for the run configuration and the report."""
        return {"generator": self.generator, "probability": round(self.probability, 4),
                "area_range": [self.min_area, self.max_area], **vars(self.params)}


@dataclass(frozen=True)
class MaskCase:
    """One generated mask case.

    Parameters
    ----------
    name : str
        Case name used on the command line.
    family : str
        `SUITE` or `LAMA` (see the module docstring for what each implies).
    description : str
        One line for reports.
    parameter_sets : dict
        Frame side (256, or 512 for LaMa's large set) to the mixture's components.
    """

    name: str
    family: str
    description: str
    parameter_sets: dict[int, tuple[Component, ...]]

    def frame_side(self, shape: tuple[int, int]) -> int:
        """The parameter set (frame side) used for an image of ``shape``."""
        if self.family == LAMA and min(shape) >= LAMA_LARGE_SIDE and LAMA_LARGE_SIDE in self.parameter_sets:
            return LAMA_LARGE_SIDE
        return REFERENCE_SIDE

    def frame(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Height and width of the frame the masks of an image of ``shape`` are drawn on."""
        side = self.frame_side(shape)
        if self.family == LAMA:
            return side, side
        height, width = shape
        scale = side / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def parameters(self) -> dict[str, object]:
        """Parameters as plain values, for the run configuration and the report."""
        frame = ("square, side 256 (512 when the image's shorter side is at least 512), resized to the image"
                 if self.family == LAMA else
                 f"shorter side {REFERENCE_SIDE}, image's aspect ratio, resized to the image")
        area_rule = (f"generator and mask redrawn until the hole covers at most {LAMA_MAX_AREA:.0%} of the frame "
                     "(LaMa's max_tamper_area)" if self.family == LAMA else
                     "generator picked first, then redrawn until the image's hole fraction is in its range")
        return {
            "family": self.family,
            "description": self.description,
            "frame": frame,
            "area_rule": area_rule,
            "parameter_sets": {str(side): [component.describe() for component in components]
                               for side, components in self.parameter_sets.items()},
        }


@dataclass(frozen=True)
class DrawnMask:
    """A case's mask and how it was made: ``generator`` is ``"strokes"``, ``"boxes"`` or the name of a
    file-based protocol; ``parameter_set`` is the frame side whose parameters were used."""

    mask: np.ndarray
    generator: str
    frame: tuple[int, int]
    parameter_set: int
    #: The file the mask was read from, for file-based protocols.
    source: str | None = None


def _strokes(probability: float, min_area: float, max_area: float, **params: int) -> Component:
    return Component("strokes", StrokeParams(**params), probability, min_area, max_area)


def _boxes(probability: float, min_area: float, max_area: float, **params: int) -> Component:
    return Component("boxes", BoxParams(**params), probability, min_area, max_area)


def _lama_mixture(strokes: dict[str, int], boxes: dict[str, int]) -> tuple[Component, ...]:
    return (_strokes(LAMA_STROKE_PROBABILITY, 0.0, LAMA_MAX_AREA, **strokes),
            _boxes(LAMA_BOX_PROBABILITY, 0.0, LAMA_MAX_AREA, **boxes))


CASES: dict[str, MaskCase] = {
    case.name: case
    for case in (
        MaskCase(
            name="small", family=SUITE,
            description="thin scratches, the suite's own (LaMa's thin strokes, fewer of them: ~10 % hole)",
            # LaMa's thin_256 draws 4-51 strokes (about 30 % of the image); a scratch case draws fewer.
            parameter_sets={REFERENCE_SIDE: (
                _strokes(1.0, 0.005, 0.15, min_strokes=4, max_strokes=15, max_len=40, max_width=10),)},
        ),
        MaskCase(
            name="region", family=SUITE,
            description="the suite's medium holes: LaMa medium_256 strokes (77 %) or thick_256 boxes (23 %), "
                        "10-30 % hole",
            # medium_256's own boxes (side 10-50) almost never reach 10 % of the image, so the box
            # share would silently drop to zero; thick_256's boxes cover the range.
            parameter_sets={REFERENCE_SIDE: (
                _strokes(LAMA_STROKE_PROBABILITY, 0.10, 0.30, min_strokes=4, max_strokes=6, max_len=100,
                         max_width=50),
                _boxes(LAMA_BOX_PROBABILITY, 0.10, 0.30, min_side=30, max_side=150, min_boxes=1, max_boxes=3,
                       margin=10),
            )},
        ),
        MaskCase(
            name="large", family=SUITE,
            description="the suite's large holes: LaMa thick_256 strokes (77 %) or large boxes (23 %), "
                        "30-55 % hole",
            parameter_sets={REFERENCE_SIDE: (
                _strokes(LAMA_STROKE_PROBABILITY, 0.30, 0.55, min_strokes=1, max_strokes=6, max_len=200,
                         max_width=100),
                # Boxes of side 100-220 reach the 30-55 % range at every aspect ratio about half the time.
                _boxes(LAMA_BOX_PROBABILITY, 0.30, 0.55, min_side=100, max_side=220, min_boxes=1, max_boxes=3,
                       margin=10),
            )},
        ),
        # LaMa's evaluation protocol. Stroke counts are the effective ranges (the reference's
        # max_times + 1), see ../shared/golden/lama/README.md, "Mask generators".
        MaskCase(
            name="thin", family=LAMA, description="LaMa's random_thin_256 / random_thin_512 evaluation masks",
            parameter_sets={
                256: (_strokes(1.0, 0.0, LAMA_MAX_AREA, min_strokes=4, max_strokes=51, max_len=40, max_width=10),),
                512: (_strokes(1.0, 0.0, LAMA_MAX_AREA, min_strokes=4, max_strokes=71, max_len=100, max_width=20),),
            },
        ),
        MaskCase(
            name="medium", family=LAMA,
            description="LaMa's random_medium_256 / random_medium_512 evaluation masks",
            parameter_sets={
                256: _lama_mixture(dict(min_strokes=4, max_strokes=6, max_len=100, max_width=50),
                                   dict(min_side=10, max_side=50, min_boxes=1, max_boxes=5, margin=0)),
                512: _lama_mixture(dict(min_strokes=4, max_strokes=11, max_len=200, max_width=100),
                                   dict(min_side=30, max_side=150, min_boxes=1, max_boxes=5, margin=0)),
            },
        ),
        MaskCase(
            name="thick", family=LAMA,
            description="LaMa's random_thick_256 / random_thick_512 evaluation masks",
            parameter_sets={
                256: _lama_mixture(dict(min_strokes=1, max_strokes=6, max_len=200, max_width=100),
                                   dict(min_side=30, max_side=150, min_boxes=1, max_boxes=3, margin=10)),
                512: _lama_mixture(dict(min_strokes=1, max_strokes=6, max_len=450, max_width=250),
                                   dict(min_side=30, max_side=300, min_boxes=1, max_boxes=4, margin=10)),
            },
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


def _pick(components: tuple[Component, ...], rng: np.random.Generator) -> Component:
    if len(components) == 1:
        return components[0]
    return components[0] if rng.random() < components[0].probability else components[1]


def _resized(frame_mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if frame_mask.shape == tuple(shape):
        return frame_mask
    resized = cv2.resize(frame_mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool)


def draw_case_mask(shape: tuple[int, int], image_id: str, case: str, seed: int = 0) -> DrawnMask:
    """The mask of ``case`` for image ``image_id`` of size ``shape`` and run seed ``seed``, with the
    generator, frame and parameter set that made it.

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
    DrawnMask
        ``mask`` is ``(H, W)`` bool, ``True`` = hole. Its hole fraction lies in the generator's range,
        except in the rare event that `MAX_ATTEMPTS` draws all miss it, when the closest draw is used.
    """
    spec = get_case(case)
    rng = case_rng(image_id, case, seed)
    side = spec.frame_side(shape)
    frame = spec.frame(shape)
    components = spec.parameter_sets[side]
    component = _pick(components, rng)
    best, best_gap = None, np.inf
    for _ in range(MAX_ATTEMPTS):
        if spec.family == LAMA:
            # The reference draws the generator anew for every candidate and filters afterwards.
            component = _pick(components, rng)
        drawn = component.draw(frame, rng)
        mask = _resized(drawn, shape)
        area = float((drawn if spec.family == LAMA else mask).mean())
        gap = max(component.min_area - area, area - component.max_area, 0.0)
        if gap < best_gap:
            best, best_gap = DrawnMask(mask, component.generator, frame, side), gap
        if gap == 0.0:
            break
    return best


def case_mask(shape: tuple[int, int], image_id: str, case: str, seed: int = 0) -> np.ndarray:
    """The ``(H, W)`` bool mask of `draw_case_mask` (``True`` = hole)."""
    return draw_case_mask(shape, image_id, case, seed).mask
