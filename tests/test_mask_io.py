from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from masks.io import MaskFileError, read_labelme, read_mask_png, write_mask_png


def test_png_round_trip(tmp_path):
    mask = np.zeros((9, 13), bool)
    mask[2:5, 3:9] = True
    write_mask_png(tmp_path / "m.png", mask)
    assert np.array_equal(read_mask_png(tmp_path / "m.png"), mask)
    assert np.array_equal(read_mask_png(tmp_path / "m.png", invert=True), ~mask)


def test_threshold_and_grey_levels(tmp_path):
    grey = np.array([[0, 1, 64, 128, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert read_mask_png(tmp_path / "g.png").tolist() == [[False, True, True, True, True]]
    assert read_mask_png(tmp_path / "g.png", threshold=127).tolist() == [[False, False, False, True, True]]


def test_colour_and_16_bit_masks(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 1] = (255, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert read_mask_png(tmp_path / "c.png").sum() == 1
    deep = np.zeros((4, 4), np.uint16)
    deep[0, :2] = 65535
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert read_mask_png(tmp_path / "d.png", threshold=127).sum() == 2


def test_unreadable_and_missing_masks_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_text("not a png")
    with pytest.raises(MaskFileError, match="bad.png"):
        read_mask_png(tmp_path / "bad.png")
    with pytest.raises(MaskFileError, match="does not exist"):
        read_mask_png(tmp_path / "absent.png")


def _labelme(tmp_path, shapes, image_path="photo.png"):
    path = tmp_path / "photo.json"
    path.write_text(json.dumps({"imagePath": image_path, "imageHeight": 20, "imageWidth": 30, "shapes": shapes}))
    return path


def test_labelme_polygon_rectangle_circle(tmp_path):
    path = _labelme(tmp_path, [
        {"label": "scratch", "shape_type": "polygon", "points": [[1, 1], [8, 1], [8, 6], [1, 6]]},
        {"label": "box", "shape_type": "rectangle", "points": [[25, 15], [20, 10]]},
        {"label": "spot", "shape_type": "circle", "points": [[15, 15], [17, 15]]},
    ])
    mask, image_path = read_labelme(path, data_root=tmp_path)
    assert mask.shape == (20, 30)
    assert mask[3, 4] and mask[12, 22] and mask[15, 15] and not mask[0, 29]
    assert image_path == str((tmp_path / "photo.png").resolve())


def test_labelme_image_path_outside_data_folder_is_refused(tmp_path):
    path = _labelme(tmp_path, [], image_path="../../etc/passwd")
    with pytest.raises(MaskFileError, match="outside the data folder"):
        read_labelme(path, data_root=tmp_path)


def test_labelme_bad_files(tmp_path):
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(MaskFileError, match="broken.json"):
        read_labelme(tmp_path / "broken.json")
    path = _labelme(tmp_path, [{"shape_type": "line", "points": [[0, 0], [5, 5]]}])
    with pytest.raises(MaskFileError, match="'line' shape"):
        read_labelme(path)


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path):
    import os

    from masks.io import atomic_write_bytes

    previous = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "file.bin", b"data")
        (tmp_path / "plain.bin").write_bytes(b"data")
    finally:
        os.umask(previous)
    assert (tmp_path / "file.bin").read_bytes() == b"data"
    assert (tmp_path / "file.bin").stat().st_mode & 0o777 == (tmp_path / "plain.bin").stat().st_mode & 0o777 == 0o640
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
