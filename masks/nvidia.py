"""The NVIDIA irregular-mask protocol (Liu et al., ECCV 2018, "Image Inpainting for Irregular Holes
Using Partial Convolutions"): 12,000 test masks, ``00000.png`` ... ``11999.png``, 512 x 512, in six
blocks of 2,000 ordered by hole area (0-10 %, 10-20 %, ..., 50-60 %). The suite does not ship the
set (licence CC BY-NC-SA 4.0); the user points at it.

Each area block is a case, ``nvidia_0_10`` ... ``nvidia_50_60``. An image gets one mask of the block,
chosen from ``(image_id, case, seed)`` alone, read as white (> 127) = hole, and resized to the image
with nearest-neighbour sampling. Every mask read is checked against its block's area range, so a
folder with the opposite polarity (black = hole) or another ordering is refused, not silently used.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np

from masks.cases import DrawnMask
from masks.io import MaskFileError, read_mask_png

#: Hole-area range of each block of masks, in file order.
AREA_BINS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))
MASKS_PER_BIN = 2000
MASK_SIDE = 512
#: Slack on the block's area range when checking a mask (the published set's ranges are inclusive).
AREA_SLACK = 0.005
PROTOCOL = "nvidia"
CASES: dict[str, int] = {f"nvidia_{round(low * 100)}_{round(high * 100)}": index
                         for index, (low, high) in enumerate(AREA_BINS)}


def check_folder(folder: Path | str) -> None:
    """Refuse a folder that is not the 12,000-mask test set (by file names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskFileError(f"NVIDIA mask folder {folder} does not exist: pass --masks-protocol nvidia=DIR with "
                            "the folder holding 00000.png ... 11999.png")
    expected = len(AREA_BINS) * MASKS_PER_BIN
    missing = [name for name in (mask_name(0), mask_name(expected - 1)) if not (folder / name).is_file()]
    if missing or (folder / mask_name(expected)).exists():
        raise MaskFileError(f"NVIDIA mask folder {folder} is not the {expected:,}-mask test set ({mask_name(0)} "
                            f"... {mask_name(expected - 1)}): point --masks-protocol nvidia= at that folder")


def mask_name(index: int) -> str:
    return f"{index:05d}.png"


def mask_index(image_id: str, case: str, seed: int) -> int:
    """Index of the mask file an image gets in ``case``: a pure function of its arguments."""
    block = CASES[case]
    image_key = zlib.crc32(image_id.encode("utf-8"))
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(case.encode("utf-8")), image_key]))
    return block * MASKS_PER_BIN + int(rng.integers(MASKS_PER_BIN))


def draw_mask(shape: tuple[int, int], image_id: str, case: str, seed: int, folder: Path | str) -> DrawnMask:
    """The NVIDIA mask of ``case`` for an image of ``shape``, resized to it.

    Raises
    ------
    MaskFileError
        When the file is unreadable or its hole fraction is outside the block's range (wrong
        polarity or not the published set).
    """
    index = mask_index(image_id, case, seed)
    path = Path(folder) / mask_name(index)
    full = read_mask_png(path, threshold=127)
    low, high = AREA_BINS[CASES[case]]
    area = float(full.mean())
    if not low - AREA_SLACK <= area <= high + AREA_SLACK:
        hint = (" (its complement would fit: the folder looks inverted, black = hole; the published set "
                "is white = hole)" if low - AREA_SLACK <= 1 - area <= high + AREA_SLACK else "")
        raise MaskFileError(f"NVIDIA mask {path} has {area:.1%} hole but belongs to the {low:.0%}-{high:.0%} "
                            f"block{hint}: point --masks-protocol nvidia= at the published test set")
    mask = full
    if full.shape != tuple(shape):
        mask = cv2.resize(full.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return DrawnMask(mask, PROTOCOL, full.shape, MASK_SIDE, source=path.name)


def parameters(case: str) -> dict[str, object]:
    """What the case is, for the run configuration and the report."""
    low, high = AREA_BINS[CASES[case]]
    first = CASES[case] * MASKS_PER_BIN
    return {
        "family": PROTOCOL,
        "description": f"NVIDIA irregular masks (Liu et al. 2018), {low:.0%}-{high:.0%} hole block",
        "frame": f"{MASK_SIDE}x{MASK_SIDE} mask files, resized to the image (nearest neighbour)",
        "area_rule": f"the published block {mask_name(first)}-{mask_name(first + MASKS_PER_BIN - 1)}; one mask "
                     "per image, chosen from the seed and image id; white = hole",
    }
