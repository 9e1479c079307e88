"""Reading and writing masks: PNG files and labelme JSON annotations.

On disk a mask PNG is 8-bit greyscale, white (255) = hole. When reading, a pixel is a hole when its
grey value is above ``threshold`` (default 0: any non-zero grey is a hole, LaMa's rule);
``invert=True`` swaps hole and known.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


class MaskFileError(ValueError):
    """A mask file cannot be used; the message names the file and the fix."""


#: Largest mask read, in pixels: Pillow's own decompression-bomb limit, applied to labelme canvases too.
MAX_MASK_PIXELS = 89_478_485
#: labelme points may lie outside the image (labelme lets a vertex be dragged past the edge), but not by
#: more than this many image sizes: beyond it a coordinate is a corrupted value, not an annotation.
LABELME_MARGIN = 1.0
#: Shape kinds that describe a hole, with the number of points each needs (None: at least 3).
LABELME_SHAPES = {"polygon": None, "rectangle": 2, "circle": 2}


def read_mask_png(path: Path | str, *, threshold: int = 0, invert: bool = False) -> np.ndarray:
    """Read a mask image as a bool ``H x W`` array (``True`` = hole).

    Parameters
    ----------
    path : path-like
        Any image Pillow reads; colour masks are converted to greyscale (ITU-R 601 luma) and 16-bit
        masks are scaled to 8 bits.
    threshold : int, default 0
        Grey values above it (0-255) are holes.
    invert : bool, default False
        Treat dark pixels as holes instead.

    Raises
    ------
    MaskFileError
        The file is missing, unreadable, or declares more than `MAX_MASK_PIXELS` pixels.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_MASK_PIXELS and twice that; both are refused here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                grey = _to_grey8(image)
    except FileNotFoundError:
        raise MaskFileError(f"mask {path} does not exist: check --masks") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MaskFileError(f"mask {path} declares more than {MAX_MASK_PIXELS} pixels, too many to decode safely: "
                            "make the mask the size of its image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise MaskFileError(f"mask {path} is not a readable image ({error}): replace it with a PNG") from None
    hole = grey > threshold
    return ~hole if invert else hole


def _to_grey8(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(values / peak * 255.0), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def write_mask_png(path: Path | str, mask: np.ndarray) -> None:
    """Write ``mask`` as a 0/255 greyscale PNG, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded_ok, encoded = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not encoded_ok:
        raise OSError(f"could not encode mask for {path}")
    atomic_write_bytes(path, encoded.tobytes())


#: Characters of the final name kept in a temporary file's name (for people reading a folder mid-write).
TEMPORARY_NAME_CHARS = 24


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader (or a run killed midway) never sees a partial file.

    The temporary file is created exclusively with mode 0666, which the process umask narrows exactly
    as for a plain ``open()``, so the result has ordinary permissions without reading the umask.
    """
    # A short prefix keeps the temporary name legal however long the final name is (255 bytes at most).
    temporary = path.parent / f".{path.name[:TEMPORARY_NAME_CHARS]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_labelme(
    path: Path | str,
    *,
    data_root: Path | str | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, str | None]:
    """Rasterise a labelme annotation into a hole mask.

    Every ``polygon``, ``rectangle`` and ``circle`` shape becomes hole, whatever its label. The file is
    validated before anything is allocated: sizes must be positive integers (and match
    ``image_size`` when given, else stay under `MAX_MASK_PIXELS`), ``shapes`` a list of shapes whose
    points are finite numbers within `LABELME_MARGIN` image sizes of the image, each covering at
    least one pixel.

    Parameters
    ----------
    path : path-like
        The labelme ``.json`` file.
    data_root : path-like, optional
        Folder the annotated images live in; an ``imagePath`` that resolves outside it is refused,
        so an annotation cannot point the suite at arbitrary files.
    image_size : (int, int), optional
        ``(height, width)`` of the image the annotation belongs to.

    Returns
    -------
    mask : (H, W) bool ndarray
    image_path : str or None
        The annotation's ``imagePath``, resolved against the JSON file's folder.

    Raises
    ------
    MaskFileError
        One sentence naming the file, what is wrong in it and the fix.
    """
    path = Path(path)
    try:
        annotation = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MaskFileError(f"labelme file {path} does not exist: check --masks") from None
    except IsADirectoryError:
        raise MaskFileError(f"labelme file {path} is a folder: remove it from --masks") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise MaskFileError(f"labelme file {path} is not valid JSON ({error}): save it again from labelme") from None
    if not isinstance(annotation, dict):
        raise MaskFileError(f"labelme file {path} holds a JSON {type(annotation).__name__}, not a labelme "
                            "annotation object: save it again from labelme")
    height, width = (_dimension(annotation, key, path) for key in ("imageHeight", "imageWidth"))
    if image_size is not None and (height, width) != tuple(image_size):
        raise MaskFileError(f"labelme file {path} annotates a {width}x{height} image but its image is "
                            f"{image_size[1]}x{image_size[0]}: annotate the image itself")
    if height * width > MAX_MASK_PIXELS:
        raise MaskFileError(f"labelme file {path} declares a {width}x{height} image, more than {MAX_MASK_PIXELS} "
                            "pixels: fix imageHeight and imageWidth")
    resolved = _image_path(annotation, path, data_root)
    shapes = annotation.get("shapes", [])
    if not isinstance(shapes, list):
        raise MaskFileError(f"labelme file {path} has 'shapes' of type {type(shapes).__name__}, not a list of "
                            "shapes: save it again from labelme")
    outlines = [_outline(shape, index, path, height, width) for index, shape in enumerate(shapes)]
    canvas = np.zeros((height, width), np.uint8)
    for kind, points in outlines:
        if kind == "polygon":
            cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1)
        elif kind == "rectangle":
            (x0, y0), (x1, y1) = np.rint(points).astype(int)
            cv2.rectangle(canvas, (min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)), 1, thickness=-1)
        else:
            centre, rim = points
            radius = int(round(float(np.hypot(*(rim - centre)))))
            cv2.circle(canvas, tuple(int(value) for value in np.rint(centre)), radius, 1, thickness=-1)
    if outlines and not canvas.any():
        raise MaskFileError(f"labelme file {path} has {len(outlines)} shape(s) but they cover no pixel of the "
                            f"{width}x{height} image: fix the annotation")
    return canvas.astype(bool), resolved


def _dimension(annotation: dict, key: str, path: Path) -> int:
    value = annotation.get(key)
    if value is None:
        raise MaskFileError(f"labelme file {path} has no {key}: a labelme annotation needs imageHeight, "
                            "imageWidth and shapes")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MaskFileError(f"labelme file {path} has {key} {value!r}, not a positive whole number of pixels: "
                            "fix it to the image's size")
    if value > MAX_MASK_PIXELS:
        shown = value if value < 10 ** 12 else f"about 10^{len(str(value)) - 1}"
        raise MaskFileError(f"labelme file {path} has {key} {shown}, more than the {MAX_MASK_PIXELS} pixels of the "
                            "largest mask read: fix it to the image's size")
    return value


def _image_path(annotation: dict, path: Path, data_root: Path | str | None) -> str | None:
    image_path = annotation.get("imagePath")
    if image_path is None or image_path == "":
        return None
    if not isinstance(image_path, str):
        raise MaskFileError(f"labelme file {path} has imagePath {image_path!r}, not a file name: fix it to name "
                            "the annotated image")
    resolved_path = (path.parent / image_path).resolve()
    if data_root is not None and not resolved_path.is_relative_to(Path(data_root).resolve()):
        raise MaskFileError(
            f"labelme file {path} has imagePath {image_path!r}, which points outside the data folder "
            f"{data_root}: fix imagePath to name an image inside it"
        )
    return str(resolved_path)


def _outline(shape: Any, index: int, path: Path, height: int, width: int) -> tuple[str, np.ndarray]:
    """The kind and the ``N x 2`` float64 points of shape number ``index``, validated."""
    where = f"labelme file {path}, shape {index}"
    if not isinstance(shape, dict):
        raise MaskFileError(f"{where} is a {type(shape).__name__}, not a shape object: save the file again from "
                            "labelme")
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points", [])
    if not isinstance(kind, str) or kind not in LABELME_SHAPES:
        raise MaskFileError(f"{where} is a {kind!r} shape; only polygons, rectangles and circles describe holes: "
                            "redraw it as one of those")
    if not isinstance(points, list) or not all(
            isinstance(point, list) and len(point) == 2
            and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in point)
            for point in points):
        raise MaskFileError(f"{where} has points that are not [x, y] pairs of numbers: fix the annotation")
    needed = LABELME_SHAPES[kind]
    if (needed is None and len(points) < 3) or (needed is not None and len(points) != needed):
        raise MaskFileError(f"{where} is a {kind!r} shape with {len(points)} points; a polygon needs at least 3, a "
                            "rectangle and a circle 2: redraw it")
    array = np.array([[_as_float(value) for value in point] for point in points], dtype=np.float64)
    limits = np.array([width, height], np.float64)
    far = ~np.isfinite(array) | (array < -LABELME_MARGIN * limits) | (array > (1 + LABELME_MARGIN) * limits)
    if far.any():
        x, y = array[int(np.argmax(far.any(axis=1)))]
        raise MaskFileError(f"{where} has the point ({x:g}, {y:g}), far outside the {width}x{height} image: fix or "
                            "delete the shape")
    if kind == "circle":
        radius = float(np.hypot(*(array[1] - array[0])))
        low, high = array[0] - radius, array[0] + radius
    else:
        low, high = array.min(axis=0), array.max(axis=0)
    if high[0] < -1 or high[1] < -1 or low[0] > width or low[1] > height:
        raise MaskFileError(f"{where} lies entirely outside the {width}x{height} image, so it marks no hole: fix "
                            "or delete the shape")
    return kind, array


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond float range
        return float("inf") if value > 0 else float("-inf")
