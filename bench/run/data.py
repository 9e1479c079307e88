"""Benchmark images: the embedded default set, image folders, and the size policy.

Every image leaves this module as ``np.uint8`` ``H x W x 3`` RGB (DESIGN.md, contract 1). Conversions
made on the way (EXIF orientation, greyscale, alpha, palette, 16-bit) are recorded in
`BenchImage.notes` so the report can state them.

Size policy
-----------
Default: images keep their size, but an image whose long side exceeds `DEFAULT_MAX_SIDE` is
downscaled (area interpolation) so that its long side equals it; nothing is upscaled.
``size=S``: the shorter side is resized to ``S`` (area interpolation when shrinking, bicubic when
enlarging), then the centre ``S x S`` square is cropped, as LaMa's evaluation does.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench.errors import UserError

DEFAULT_MAX_SIDE = 512
#: Bounds of ``size`` and ``max_side``: smaller images defeat the metrics, larger ones exhaust memory.
SMALLEST_SIDE = 16
LARGEST_SIDE = 4096
#: Largest image decoded, in pixels: Pillow's decompression-bomb limit (a 69-byte PNG can claim 20000x20000).
MAX_IMAGE_PIXELS = 89_478_485
#: Longest image id (file name less its suffix), in UTF-8 bytes: run-directory files are named
#: ``<id>.npy``, ``<id>.s<k>.png`` ..., and a file name has at most 255 bytes.
MAX_IMAGE_ID_BYTES = 245
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}


@dataclass
class BenchImage:
    """One benchmark image after loading and the size policy."""

    image_id: str
    image: np.ndarray
    source: str
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def _skimage_photos() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    # Colour photographs whose files ship inside scikit-image's wheel (no download needed).
    return {
        "astronaut": data.astronaut,
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "hubble_deep_field": data.hubble_deep_field,
        "immunohistochemistry": data.immunohistochemistry,
        "motorcycle_left": lambda: data.stereo_motorcycle()[0],
        "retina": data.retina,
        "rocket": data.rocket,
    }


DEFAULT_DATA_NAME = "scikit-image sample photographs"


def load_image(path: Path | str) -> tuple[np.ndarray, list[str]]:
    """Read an image file as uint8 RGB, applying EXIF orientation.

    Returns
    -------
    image : (H, W, 3) uint8 ndarray
    notes : list of str
        Conversions that were made (empty for a plain 8-bit RGB file).

    Raises
    ------
    UserError
        The file is missing or cannot be decoded.
    """
    path = Path(path)
    with _refusing_bad_images(path):
        with Image.open(path) as opened:
            opened.load()
            return _to_rgb8(opened)


@contextlib.contextmanager
def _refusing_bad_images(path: Path) -> Iterator[None]:
    """Turn what reading image ``path`` can raise (missing, a folder, a decompression bomb, undecodable)
    into one `UserError` sentence naming the file."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; both are refused here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise UserError(f"image {path} does not exist: check the path given to --data") from None
    except IsADirectoryError:
        raise UserError(f"image {path} is a folder: move it out of --data") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"image {path} declares more than {MAX_IMAGE_PIXELS} pixels, too many to decode safely: "
                        "downscale it or remove it from --data") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"image {path} cannot be read ({reason}): replace or remove the file") from None


def _to_rgb8(opened: Image.Image) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    oriented = ImageOps.exif_transpose(opened)
    if oriented is not opened and opened.getexif().get(0x0112, 1) != 1:
        notes.append("EXIF orientation applied")
    image = oriented
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        notes.append("16-bit greyscale scaled to 8-bit and converted to RGB")
        grey = np.clip(np.rint(values / 65535.0 * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), notes
    if mode == "P":
        notes.append("palette image converted to RGB")
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA"):
        notes.append("alpha channel dropped")
        image = image.convert("RGBA").convert("RGB") if mode != "LA" else image.convert("L")
        mode = image.mode
    if mode in ("L", "1"):
        notes.append("greyscale converted to RGB")
    elif mode not in ("RGB",):
        notes.append(f"{mode} converted to RGB")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), notes


def apply_size_policy(image: np.ndarray, size: int | None, *, max_side: int = DEFAULT_MAX_SIDE,
                      interpolation_mask: bool = False) -> np.ndarray:
    """Resize (and with ``size``, centre-crop) an image or a mask as the module docstring states.

    Parameters
    ----------
    image : ndarray
        ``H x W x 3`` uint8 image, or ``H x W`` bool mask when ``interpolation_mask`` is set.
    size : int or None
        Square side, or ``None`` for the default policy.
    max_side : int
        Long-side cap of the default policy.
    interpolation_mask : bool
        Use nearest-neighbour sampling (for masks).
    """
    height, width = image.shape[:2]
    as_uint8 = image.astype(np.uint8) if image.dtype == np.bool_ else image
    new_h, new_w, scale = _resized_shape(height, width, size, max_side)
    resized = _resize(as_uint8, new_h, new_w, shrinking=scale < 1, nearest=interpolation_mask)
    if size is not None:
        top, left = (new_h - size) // 2, (new_w - size) // 2
        resized = resized[top:top + size, left:left + size]
    resized = np.ascontiguousarray(resized)
    return resized.astype(bool) if image.dtype == np.bool_ else resized


def _resized_shape(height: int, width: int, size: int | None, max_side: int) -> tuple[int, int, float]:
    """Height, width and scale of the resize step of the size policy (before the crop of ``size``)."""
    if size is None:
        scale = min(1.0, max_side / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale)), scale
    scale = size / min(height, width)
    return max(size, round(height * scale)), max(size, round(width * scale)), scale


def policy_shape(height: int, width: int, size: int | None, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """Height and width of an image of ``height x width`` after the size policy."""
    return (size, size) if size is not None else _resized_shape(height, width, None, max_side)[:2]


def _resize(image: np.ndarray, height: int, width: int, *, shrinking: bool, nearest: bool) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    if nearest:
        method = cv2.INTER_NEAREST
    else:
        method = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=method)


@dataclass(frozen=True)
class ImageSource:
    """One benchmark image before it is read: its id and how to load it (read lazily, once, by the
    rank whose shard holds it)."""

    image_id: str
    source: str
    loader: Callable[[], tuple[np.ndarray, list[str]]]
    size: int | None
    max_side: int = DEFAULT_MAX_SIDE

    def prepared_shape(self) -> tuple[int, int]:
        """Height and width the image will have after the size policy, from the file header alone
        (EXIF orientation included) when the image is a file."""
        path = Path(self.source)
        if path.is_file():
            # The header alone, refused as `load_image` refuses it (a decompression bomb names its file).
            with _refusing_bad_images(path), Image.open(path) as opened:
                width, height = opened.size
                # EXIF orientations 5 to 8 rotate by 90 degrees.
                if opened.getexif().get(0x0112) in (5, 6, 7, 8):
                    width, height = height, width
        else:
            height, width = self.loader()[0].shape[:2]
        return policy_shape(height, width, self.size, self.max_side)

    def load(self) -> BenchImage:
        raw, notes = self.loader()
        return BenchImage(self.image_id, apply_size_policy(raw, self.size, max_side=self.max_side), self.source,
                          raw.shape[:2], notes)


def default_image_sources(size: int | None = None, limit: int | None = None,
                          max_side: int = DEFAULT_MAX_SIDE) -> list[ImageSource]:
    """The embedded default set (colour photographs shipped inside scikit-image), not yet read."""
    sources = []
    for image_id, loader in _skimage_photos().items():
        if limit is not None and len(sources) >= limit:
            break
        read = (lambda loader=loader: (np.ascontiguousarray(loader()[:, :, :3]).astype(np.uint8), []))
        sources.append(ImageSource(image_id, f"skimage.data:{image_id}", read, size, max_side))
    return sources


def default_images(size: int | None = None, limit: int | None = None,
                   max_side: int = DEFAULT_MAX_SIDE) -> list[BenchImage]:
    """The embedded default set: colour photographs shipped inside scikit-image, sized by the size policy."""
    return [source.load() for source in default_image_sources(size, limit, max_side)]


def folder_image_sources(folder: Path | str, size: int | None = None, limit: int | None = None,
                         max_side: int = DEFAULT_MAX_SIDE) -> list[ImageSource]:
    """Images of a folder (not recursive), sorted by file name, not yet read.

    Files whose suffix is not an image suffix are skipped with a warning; two images with one id are
    an error naming both.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"data folder {folder} does not exist or is not a folder: pass --data DIR with images")
    sources: list[ImageSource] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if limit is not None and len(sources) >= limit:
            break
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if path.suffix.lower() != ".json":
                warnings.warn(f"skipping {path}: not an image file", stacklevel=2)
            continue
        if path.stem in seen:
            raise UserError(f"images {seen[path.stem]} and {path} share the id {path.stem!r}: rename one of them")
        seen[path.stem] = path
        if len(path.stem.encode("utf-8")) > MAX_IMAGE_ID_BYTES:
            raise UserError(f"image {path} has a name of {len(path.stem.encode('utf-8'))} bytes; the run directory "
                            f"names files after it, so at most {MAX_IMAGE_ID_BYTES} bytes fit: rename it")
        sources.append(ImageSource(path.stem, str(path), lambda path=path: load_image(path), size, max_side))
    if not sources:
        raise UserError(f"data folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return sources


def folder_images(folder: Path | str, size: int | None = None, limit: int | None = None,
                  max_side: int = DEFAULT_MAX_SIDE) -> list[BenchImage]:
    """Every image of `folder_image_sources`, read and sized by the size policy (an undecodable file is
    an error naming it)."""
    return [source.load() for source in folder_image_sources(folder, size, limit, max_side)]


def load_images(data: Path | str | None, *, size: int | None = None, limit: int | None = None,
                max_side: int = DEFAULT_MAX_SIDE) -> list[BenchImage]:
    """The images of ``data`` (a folder), or the embedded default set when ``data`` is None: the one
    image-source choice of every command."""
    return [source.load() for source in image_sources(data, size=size, limit=limit, max_side=max_side)]


def image_sources(data: Path | str | None, *, size: int | None = None, limit: int | None = None,
                  max_side: int = DEFAULT_MAX_SIDE) -> list[ImageSource]:
    """`load_images`'s images, not yet read."""
    if data is None:
        return default_image_sources(size=size, limit=limit, max_side=max_side)
    return folder_image_sources(data, size=size, limit=limit, max_side=max_side)
