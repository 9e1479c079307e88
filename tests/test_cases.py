from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from masks.cases import CASES, LAMA, SUITE, case_mask, draw_case_mask, get_case

SHAPES = [(256, 256), (300, 451), (97, 61), (512, 384)]
ASPECT_SHAPES = [(256, 256), (384, 512), (512, 384)]
SUITE_CASES = [name for name, case in CASES.items() if case.family == SUITE]
LAMA_CASES = [name for name, case in CASES.items() if case.family == LAMA]


@pytest.mark.parametrize("case", SUITE_CASES)
def test_suite_area_stays_in_the_generators_range_over_many_seeds(case):
    for i in range(120):
        drawn = draw_case_mask(SHAPES[i % len(SHAPES)], f"image-{i}", case, seed=i // 7)
        component = next(c for c in get_case(case).parameter_sets[256] if c.generator == drawn.generator)
        assert component.min_area <= drawn.mask.mean() <= component.max_area


@pytest.mark.parametrize("case", ["region", "large"])
def test_suite_mixture_and_area_are_what_the_case_states_at_every_aspect_ratio(case):
    """The box share is the stated 23 % (not whatever survives an area filter) at 256x256, 512x384
    and 384x512, and the area distribution barely moves with the aspect ratio."""
    spec = get_case(case)
    box_probability = next(c.probability for c in spec.parameter_sets[256] if c.generator == "boxes")
    n = 400
    means = []
    for shape in ASPECT_SHAPES:
        drawn = [draw_case_mask(shape, f"img{i}", case) for i in range(n)]
        box_share = np.mean([d.generator == "boxes" for d in drawn])
        # 4 binomial standard deviations: fails by chance about once in 16,000 runs.
        assert abs(box_share - box_probability) < 4 * math.sqrt(box_probability * (1 - box_probability) / n)
        areas = np.array([d.mask.mean() for d in drawn])
        means.append(areas.mean())
        for generator in ("strokes", "boxes"):
            component = next(c for c in spec.parameter_sets[256] if c.generator == generator)
            chosen = areas[[d.generator == generator for d in drawn]]
            assert chosen.min() >= component.min_area and chosen.max() <= component.max_area
    assert max(means) - min(means) < 0.03


def test_case_averages_are_ordered_and_as_documented():
    means = {case: np.mean([case_mask((256, 320), f"id{i}", case).mean() for i in range(80)])
             for case in SUITE_CASES}
    assert means["small"] <= 0.12
    assert 0.15 <= means["region"] <= 0.25
    assert means["large"] >= 0.35
    assert means["small"] < means["region"] < means["large"]


def test_masks_are_deterministic_and_depend_on_each_key():
    base = case_mask((128, 160), "astronaut", "region", seed=3)
    assert base.dtype == np.bool_ and base.shape == (128, 160)
    assert np.array_equal(base, case_mask((128, 160), "astronaut", "region", seed=3))
    assert not np.array_equal(base, case_mask((128, 160), "astronaut", "region", seed=4))
    assert not np.array_equal(base, case_mask((128, 160), "coffee", "region", seed=3))
    assert not np.array_equal(case_mask((256, 256), "a", "thin"), case_mask((256, 256), "a", "medium"))


def test_area_distribution_does_not_depend_on_image_size():
    small = np.mean([case_mask((128, 128), f"x{i}", "large").mean() for i in range(60)])
    big = np.mean([case_mask((768, 768), f"x{i}", "large").mean() for i in range(60)])
    assert abs(small - big) < 0.02


def test_unknown_case_lists_known_ones():
    with pytest.raises(KeyError, match="small, region, large, thin, medium, thick"):
        get_case("huge")


# An independent oracle of LaMa's evaluation masks, written from the published parameters
# (configs/data_gen/random_*_256.yaml) and the reference's sampling calls: legacy NumPy RandomState,
# exclusive randint bounds, the +1 that the ramp code adds to max_times and bbox_max_size, five
# candidates per image, candidates above 50 % dropped, one survivor kept at random.
_LAMA_256 = {
    "thin": {"irregular": dict(min_times=4, max_times=50, max_len=40, max_width=10), "box": None},
    "medium": {"irregular": dict(min_times=4, max_times=5, max_len=100, max_width=50),
               "box": dict(margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1, max_times=5)},
    "thick": {"irregular": dict(min_times=1, max_times=5, max_len=200, max_width=100),
              "box": dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=3)},
}


def _oracle_irregular(rs, side, min_times, max_times, max_len, max_width):
    canvas = np.zeros((side, side), np.float32)
    for i in range(rs.randint(min_times, max_times + 2)):
        x, y = rs.randint(side), rs.randint(side)
        for _ in range(1 + rs.randint(5)):
            angle = 0.01 + rs.randint(4)
            angle = 2 * 3.1415926 - angle if i % 2 == 0 else angle
            length, brush = 10 + rs.randint(max_len), 5 + rs.randint(max_width)
            ex = int(np.clip(np.int32(x + length * np.sin(angle)), 0, side))
            ey = int(np.clip(np.int32(y + length * np.cos(angle)), 0, side))
            cv2.line(canvas, (x, y), (ex, ey), 1.0, brush)
            x, y = ex, ey
    return canvas


def _oracle_boxes(rs, side, margin, bbox_min_size, bbox_max_size, min_times, max_times):
    canvas = np.zeros((side, side), np.float32)
    upper = min(bbox_max_size + 1, side - 2 * margin)
    for _ in range(rs.randint(min_times, max_times + 1)):
        w, h = rs.randint(bbox_min_size, upper), rs.randint(bbox_min_size, upper)
        left, top = rs.randint(margin, side - margin - w + 1), rs.randint(margin, side - margin - h + 1)
        canvas[top:top + h, left:left + w] = 1
    return canvas


def _oracle_areas(case, n, side=256):
    rs = np.random.RandomState(1234)
    params = _LAMA_256[case]
    weights = np.array([1.0] + ([0.3] if params["box"] else []))
    areas, boxes = [], []
    while len(areas) < n:
        candidates = []
        for _ in range(5):
            kind = rs.choice(len(weights), p=weights / weights.sum())
            mask = (_oracle_irregular(rs, side, **params["irregular"]) if kind == 0
                    else _oracle_boxes(rs, side, **params["box"]))
            if mask.mean() <= 0.5:
                candidates.append((mask.mean(), kind))
        if candidates:
            area, kind = candidates[rs.randint(len(candidates))]
            areas.append(area)
            boxes.append(kind == 1)
    return np.array(areas), np.array(boxes)


@pytest.mark.parametrize("case, published_mean", [("thin", 0.29), ("medium", 0.23), ("thick", 0.27)])
def test_lama_cases_reproduce_the_reference_area_distribution(case, published_mean):
    n = 500
    drawn = [draw_case_mask((256, 256), f"place{i:05d}", case) for i in range(n)]
    areas = np.array([d.mask.mean() for d in drawn])
    assert all(d.frame == (256, 256) and d.parameter_set == 256 for d in drawn)
    assert areas.max() <= 0.5
    oracle, oracle_boxes = _oracle_areas(case, n)
    assert abs(areas.mean() - published_mean) < 0.02
    assert abs(areas.mean() - oracle.mean()) < 0.02
    for quantile in (0.1, 0.5, 0.9):
        assert abs(np.quantile(areas, quantile) - np.quantile(oracle, quantile)) < 0.04
    box_share = np.mean([d.generator == "boxes" for d in drawn])
    assert abs(box_share - oracle_boxes.mean()) < 4 * math.sqrt(0.25 / n) * math.sqrt(2)


def test_lama_cases_use_a_square_frame_and_the_512_set_from_a_512_shorter_side():
    wide = draw_case_mask((384, 512), "a", "thick")
    assert wide.frame == (256, 256) and wide.parameter_set == 256 and wide.mask.shape == (384, 512)
    large = draw_case_mask((512, 768), "a", "thick")
    assert large.frame == (512, 512) and large.parameter_set == 512 and large.mask.shape == (512, 768)
    tiny = draw_case_mask((64, 64), "a", "thin")
    assert tiny.frame == (256, 256) and tiny.mask.shape == (64, 64)
    # The 512 set draws bigger strokes: its masks are not the 256 set's, scaled.
    thin_512 = np.mean([case_mask((512, 512), f"p{i}", "thin").mean() for i in range(40)])
    thin_256 = np.mean([case_mask((256, 256), f"p{i}", "thin").mean() for i in range(40)])
    assert thin_512 != pytest.approx(thin_256, abs=1e-3)


def test_parameters_state_frame_rule_and_every_component():
    params = get_case("medium").parameters()
    assert params["family"] == LAMA and "square" in params["frame"] and "50%" in params["area_rule"]
    assert [c["generator"] for c in params["parameter_sets"]["512"]] == ["strokes", "boxes"]
    assert params["parameter_sets"]["256"][1]["max_side"] == 50
    assert get_case("region").parameters()["parameter_sets"]["256"][1]["probability"] == pytest.approx(0.2308)
