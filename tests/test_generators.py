from __future__ import annotations

import numpy as np

from masks.generators import BoxParams, StrokeParams, irregular_strokes, random_boxes


def test_boxes_respect_margin_and_side_range():
    params = BoxParams(min_side=10, max_side=20, min_boxes=1, max_boxes=1, margin=5)
    for seed in range(50):
        mask = random_boxes((64, 80), params, np.random.default_rng(seed))
        rows, cols = np.nonzero(mask)
        assert rows.min() >= 5 and cols.min() >= 5 and rows.max() < 59 and cols.max() < 75
        assert 10 <= rows.max() - rows.min() + 1 <= 20 and 10 <= cols.max() - cols.min() + 1 <= 20


def test_box_side_is_capped_by_the_image():
    params = BoxParams(min_side=30, max_side=150, min_boxes=2, max_boxes=2, margin=10)
    mask = random_boxes((40, 40), params, np.random.default_rng(0))
    assert mask[:10].sum() == 0 and mask[30:].sum() == 0


def test_strokes_are_thicker_with_wider_brushes():
    thin = StrokeParams(min_strokes=5, max_strokes=5, max_len=40, max_width=2)
    thick = StrokeParams(min_strokes=5, max_strokes=5, max_len=40, max_width=60)
    thin_area = np.mean([irregular_strokes((128, 128), thin, np.random.default_rng(s)).mean() for s in range(20)])
    thick_area = np.mean([irregular_strokes((128, 128), thick, np.random.default_rng(s)).mean() for s in range(20)])
    assert 0 < thin_area < thick_area


def test_strokes_are_reproducible_from_the_generator():
    params = StrokeParams(min_strokes=4, max_strokes=10, max_len=40, max_width=10)
    first = irregular_strokes((50, 70), params, np.random.default_rng(7))
    assert np.array_equal(first, irregular_strokes((50, 70), params, np.random.default_rng(7)))
    assert first.shape == (50, 70) and first.any()
