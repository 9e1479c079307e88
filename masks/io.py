"""Reading and writing masks: PNG files and labelme JSON annotations.

On disk a mask PNG is 8-bit greyscale, white (255) = hole. When reading, a pixel is a hole when its
grey value is above ``threshold`` (default 0: any non-zero grey is a hole, LaMa's rule);
``invert=True`` swaps hole and known.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


class MaskFileError(ValueError):
    """A mask file cannot be used; the message names the file and the fix."""


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
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            grey = _to_grey8(image)
    except FileNotFoundError:
        raise MaskFileError(f"mask {path} does not exist: check --masks") from None
    except (UnidentifiedImageError, OSError) as error:
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader (or a run killed midway) never sees a partial file.

    The temporary file is created exclusively with mode 0666, which the process umask narrows exactly
    as for a plain ``open()``, so the result has ordinary permissions without reading the umask.
    """
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_labelme(path: Path | str, *, data_root: Path | str | None = None) -> tuple[np.ndarray, str | None]:
    """Rasterise a labelme annotation into a hole mask.

    Every ``polygon``, ``rectangle`` and ``circle`` shape becomes hole, whatever its label.

    Parameters
    ----------
    path : path-like
        The labelme ``.json`` file.
    data_root : path-like, optional
        Folder the annotated images live in; an ``imagePath`` that resolves outside it is refused,
        so an annotation cannot point the suite at arbitrary files.

    Returns
    -------
    mask : (H, W) bool ndarray
    image_path : str or None
        The annotation's ``imagePath``, resolved against the JSON file's folder.
    """
    path = Path(path)
    try:
        annotation = json.loads(path.read_text(encoding="utf-8"))
        height, width = int(annotation["imageHeight"]), int(annotation["imageWidth"])
        shapes = annotation.get("shapes", [])
    except FileNotFoundError:
        raise MaskFileError(f"labelme file {path} does not exist: check --masks") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as error:
        raise MaskFileError(
            f"labelme file {path} is not a labelme annotation ({error}); it needs imageHeight, imageWidth "
            "and shapes"
        ) from None
    image_path = annotation.get("imagePath")
    resolved = None
    if image_path:
        resolved_path = (path.parent / image_path).resolve()
        if data_root is not None and not resolved_path.is_relative_to(Path(data_root).resolve()):
            raise MaskFileError(
                f"labelme file {path} has imagePath {image_path!r}, which points outside the data folder "
                f"{data_root}: fix imagePath to name an image inside it"
            )
        resolved = str(resolved_path)
    canvas = np.zeros((height, width), np.uint8)
    for shape in shapes:
        kind = shape.get("shape_type", "polygon")
        points = np.asarray(shape.get("points", []), dtype=np.float64)
        if kind == "polygon" and len(points) >= 3:
            cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1)
        elif kind == "rectangle" and len(points) == 2:
            (x0, y0), (x1, y1) = np.rint(points).astype(int)
            cv2.rectangle(canvas, (min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)), 1, thickness=-1)
        elif kind == "circle" and len(points) == 2:
            centre, rim = points
            radius = int(round(float(np.hypot(*(rim - centre)))))
            cv2.circle(canvas, tuple(np.rint(centre).astype(int)), radius, 1, thickness=-1)
        else:
            raise MaskFileError(
                f"labelme file {path} has a {kind!r} shape with {len(points)} points; only polygons, "
                "rectangles and circles describe holes: redraw it as one of those"
            )
    return canvas.astype(bool), resolved
