from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from bench.run.data import apply_size_policy, default_images, folder_images, load_image
from bench.errors import UserError


def test_default_images_need_no_download_and_are_capped():
    images = default_images()
    assert len(images) == 8
    for record in images:
        assert record.image.dtype == np.uint8 and record.image.ndim == 3 and record.image.shape[2] == 3
        assert max(record.image.shape[:2]) <= 512
    assert len(default_images(limit=3)) == 3


def test_size_policy():
    image = np.zeros((300, 800, 3), np.uint8)
    assert apply_size_policy(image, None).shape == (192, 512, 3)
    assert apply_size_policy(np.zeros((100, 50, 3), np.uint8), None).shape == (100, 50, 3)
    assert apply_size_policy(image, 256).shape == (256, 256, 3)
    mask = np.zeros((300, 800), bool)
    mask[:, 400:] = True
    cropped = apply_size_policy(mask, 128, interpolation_mask=True)
    assert cropped.dtype == np.bool_ and cropped.shape == (128, 128)
    assert cropped[:, :64].sum() == 0 and cropped[:, 66:].all()


def test_conversions_are_made_and_stated(tmp_path):
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.full((8, 8, 4), 50, np.uint8)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).convert("P").save(tmp_path / "palette.png")
    expected = {"grey": "greyscale", "rgba": "alpha", "deep": "16-bit", "palette": "palette"}
    for stem, word in expected.items():
        image, notes = load_image(tmp_path / f"{stem}.png")
        assert image.dtype == np.uint8 and image.shape == (8, 8, 3), stem
        assert any(word in note for note in notes), (stem, notes)
    assert load_image(tmp_path / "deep.png")[0].max() == 255


def test_exif_rotated_jpeg_is_oriented(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded, notes = load_image(tmp_path / "rotated.jpg")
    assert loaded.shape == (20, 10, 3)
    assert "EXIF orientation applied" in notes


def test_folder_skips_non_images_and_names_unreadable_ones(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="notes.txt"):
        records = folder_images(tmp_path)
    assert [record.image_id for record in records] == ["a"]
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="b.png cannot be read"):
        folder_images(tmp_path)


def test_missing_folder_and_missing_file():
    with pytest.raises(UserError, match="does not exist"):
        folder_images("/nonexistent/folder")
    with pytest.raises(UserError, match="does not exist"):
        load_image("/nonexistent/image.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG of under 70 bytes whose header claims ``width x height`` pixels."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _truncated_png(path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize("damage, expected", [
    ("bomb 20000", "too many to decode safely"),
    ("bomb 10000", "too many to decode safely"),
    ("truncated", "cannot be read"),
    ("text", "cannot be read"),
    ("empty", "cannot be read"),
])
def test_bad_image_files_are_one_sentence_naming_the_file(damage, expected, tmp_path):
    path = tmp_path / "photo.png"
    if damage.startswith("bomb"):
        side = int(damage.split()[1])
        path.write_bytes(_png_claiming(side, side))
        assert path.stat().st_size < 70
    elif damage == "truncated":
        _truncated_png(path)
    elif damage == "text":
        path.write_text("not an image\n")
    else:
        path.write_bytes(b"")
    with pytest.raises(UserError, match=expected) as error:
        folder_images(tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_image_ids_must_fit_run_directory_file_names(tmp_path):
    image = Image.fromarray(np.zeros((12, 12, 3), np.uint8))
    image.save(tmp_path / ("a" * 240 + ".png"))  # 244 characters: fits
    assert [len(record.image_id) for record in folder_images(tmp_path)] == [240]
    image.save(tmp_path / ("b" * 250 + ".png"))  # ``<id>.s<k>.png`` etc. would pass 255 bytes
    with pytest.raises(UserError, match="at most 245 bytes fit"):
        folder_images(tmp_path)
