from __future__ import annotations

import json
import zlib

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


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (no image data follows)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 10000])
def test_decompression_bomb_mask_is_one_sentence(side, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(side, side))
    assert len(path.read_bytes()) < 70
    with pytest.raises(MaskFileError, match="too many to decode") as error:
        read_mask_png(path)
    assert str(path) in str(error.value)


def test_long_file_names_are_written_atomically(tmp_path):
    # 244 characters: legal, but a temporary name built from it would pass the 255-byte limit.
    path = tmp_path / ("m" * 240 + ".png")
    mask = np.eye(5, dtype=bool)
    write_mask_png(path, mask)
    assert np.array_equal(read_mask_png(path), mask)
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]


def _annotation(**changes):
    annotation = {"imagePath": "photo.png", "imageHeight": 20, "imageWidth": 30,
                  "shapes": [{"shape_type": "polygon", "points": [[1, 1], [8, 1], [8, 6]]}]}
    annotation.update(changes)
    return annotation


def _polygon(*points):
    return [{"shape_type": "polygon", "points": [list(point) for point in points]}]


HOSTILE_LABELME = {
    "image path a number": (_annotation(imagePath=5), "imagePath 5"),
    "shapes a string": (_annotation(shapes="polygon"), "'shapes' of type str"),
    "shape a number": (_annotation(shapes=[5]), "shape 0 is a int"),
    "shape type a number": (_annotation(shapes=[{"shape_type": 3, "points": []}]), "3 shape"),
    "string points": (_annotation(shapes=_polygon(("1", "2"), ("3", "4"), ("5", "1"))), "not [x, y] pairs"),
    "boolean points": (_annotation(shapes=_polygon((True, 2), (3, 4), (5, 1))), "not [x, y] pairs"),
    "points a string": (_annotation(shapes=[{"shape_type": "polygon", "points": "1,2"}]), "not [x, y] pairs"),
    "huge coordinates": (_annotation(shapes=_polygon((1e12, 1e12), (-1e12, 1e12), (0, -1e12))),
                         "point (1e+12, 1e+12), far outside the 30x20 image"),
    "integers beyond float range": (_annotation(shapes=_polygon((10 ** 400, 1), (3, 4), (5, 1))), "(inf, 1)"),
    "huge width": (_annotation(imageWidth=10 ** 400), "imageWidth about 10^400"),
    "non-finite coordinates": (_annotation(shapes=_polygon((float("nan"), 1), (3, 4), (5, 1))), "far outside"),
    "infinite coordinates": (_annotation(shapes=_polygon((float("inf"), 1), (3, 4), (5, 1))), "far outside"),
    "shape outside the image": (_annotation(shapes=_polygon((31.5, 1), (35, 4), (40, 1))), "entirely outside"),
    "negative height": (_annotation(imageHeight=-20), "imageHeight -20"),
    "zero width": (_annotation(imageWidth=0), "imageWidth 0"),
    "height as text": (_annotation(imageHeight="20"), "imageHeight '20'"),
    "fractional height": (_annotation(imageHeight=20.5), "imageHeight 20.5"),
    "huge canvas": (_annotation(imageHeight=10 ** 6, imageWidth=10 ** 6), "more than"),
    "no height": ({"imageWidth": 30, "shapes": []}, "no imageHeight"),
    "a list": ([1, 2, 3], "JSON list"),
    "polygon of two points": (_annotation(shapes=_polygon((1, 1), (5, 5))), "2 points"),
}


@pytest.mark.parametrize("name", list(HOSTILE_LABELME))
def test_hostile_labelme_files_are_one_sentence_naming_the_file(name, tmp_path):
    annotation, expected = HOSTILE_LABELME[name]
    path = tmp_path / "photo.json"
    path.write_text(json.dumps(annotation))  # allow_nan: Python's json writes NaN and Infinity
    with pytest.raises(MaskFileError) as error:
        read_labelme(path)
    message = str(error.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_labelme_canvas_must_match_its_image(tmp_path):
    path = tmp_path / "photo.json"
    path.write_text(json.dumps(_annotation()))
    assert read_labelme(path, image_size=(20, 30))[0].shape == (20, 30)
    with pytest.raises(MaskFileError, match="annotates a 30x20 image but its image is 40x20"):
        read_labelme(path, image_size=(20, 40))


def test_labelme_points_slightly_outside_the_image_are_clipped(tmp_path):
    path = tmp_path / "photo.json"
    path.write_text(json.dumps(_annotation(shapes=_polygon((-3, -2), (10, -2), (10, 5), (-3, 5)))))
    mask, _ = read_labelme(path)
    assert mask[:6, :11].all() and mask.sum() == 66
