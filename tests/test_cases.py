from __future__ import annotations

import numpy as np
import pytest

from masks.cases import CASES, case_mask, get_case

SHAPES = [(256, 256), (300, 451), (97, 61), (512, 384)]


@pytest.mark.parametrize("case", list(CASES))
def test_area_stays_in_the_guaranteed_range_over_many_seeds(case):
    spec = get_case(case)
    areas = np.array([case_mask(SHAPES[i % len(SHAPES)], f"image-{i}", case, seed=i // 7).mean()
                      for i in range(120)])
    assert areas.min() >= spec.min_area and areas.max() <= spec.max_area


def test_case_averages_are_ordered_and_as_documented():
    means = {case: np.mean([case_mask((256, 320), f"id{i}", case).mean() for i in range(80)]) for case in CASES}
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


def test_area_distribution_does_not_depend_on_image_size():
    small = np.mean([case_mask((128, 128), f"x{i}", "large").mean() for i in range(60)])
    big = np.mean([case_mask((768, 768), f"x{i}", "large").mean() for i in range(60)])
    assert abs(small - big) < 0.02


def test_unknown_case_lists_known_ones():
    with pytest.raises(KeyError, match="small, region, large"):
        get_case("huge")
