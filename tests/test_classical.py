from __future__ import annotations

import numpy as np
import pytest

from methods.registry import create_method

CLASSICAL = ["telea", "ns", "fsr-fast", "fsr-best", "shiftmap", "biharmonic"]


def _smooth_image(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    red = 200 + 40 * np.sin(cols / 9.0)
    green = 40 + 20 * np.cos(rows / 7.0)
    blue = np.full_like(red, 30.0)
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", CLASSICAL)
def test_fills_holes_keeping_colour_order_at_odd_sizes(name):
    image = _smooth_image(37, 53)
    mask = np.zeros(image.shape[:2], bool)
    mask[10:18, 20:31] = True
    mask[30, 2:40] = True
    masked = np.where(mask[:, :, None], 0, image).astype(np.uint8)
    result = create_method(name).inpaint(masked, mask)
    assert result.shape == image.shape and result.dtype == np.uint8
    filled = result[mask].astype(np.int64)
    # A red image filled as BGR would come back blue; any faithful fill stays red-dominant.
    assert filled[:, 0].mean() > 120 and filled[:, 2].mean() < 90
    assert np.abs(filled - image[mask].astype(np.int64)).mean() < 40


def test_opencv_radius_is_validated_and_reported():
    with pytest.raises(ValueError, match="radius"):
        create_method("telea", radius=0)
    assert create_method("ns", radius=5).describe() == {"radius": "5"}


def test_bad_input_contract_is_refused():
    method = create_method("telea")
    with pytest.raises(ValueError, match="mask size"):
        method.inpaint(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="uint8"):
        method.inpaint(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), bool))
