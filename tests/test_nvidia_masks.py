from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masks.io import MaskFileError, write_mask_png
from masks.nvidia import AREA_BINS, CASES, MASKS_PER_BIN, check_folder, draw_mask, mask_index, parameters

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "nvidia_irregular_masks_test"


def _fake_set(folder: Path, *, count: int = len(AREA_BINS) * MASKS_PER_BIN) -> None:
    """Only the files a test touches need content; the others just exist for the folder check."""
    folder.mkdir()
    for index in range(count):
        (folder / f"{index:05d}.png").touch()


def _write_block_mask(folder: Path, index: int, fraction: float) -> None:
    mask = np.zeros((512, 512), bool)
    mask[: round(512 * fraction)] = True
    write_mask_png(folder / f"{index:05d}.png", mask)


def test_cases_are_the_six_published_area_blocks():
    assert list(CASES) == ["nvidia_0_10", "nvidia_10_20", "nvidia_20_30", "nvidia_30_40", "nvidia_40_50",
                           "nvidia_50_60"]
    assert "04000.png-05999.png" in parameters("nvidia_20_30")["area_rule"]


def test_mask_choice_is_deterministic_in_its_block_and_depends_on_each_key():
    indices = [mask_index(f"img{i}", "nvidia_30_40", 0) for i in range(200)]
    assert all(6000 <= index < 8000 for index in indices) and len(set(indices)) > 150
    assert indices[0] == mask_index("img0", "nvidia_30_40", 0)
    assert indices[0] != mask_index("img0", "nvidia_30_40", 1)


def test_masks_are_read_white_is_hole_and_checked_against_their_block(tmp_path):
    folder = tmp_path / "set"
    _fake_set(folder)
    index = mask_index("face", "nvidia_10_20", 0)
    _write_block_mask(folder, index, 0.15)
    drawn = draw_mask((64, 80), "face", "nvidia_10_20", 0, folder)
    assert drawn.mask.shape == (64, 80) and drawn.source == f"{index:05d}.png"
    assert drawn.mask.mean() == pytest.approx(0.15, abs=0.02)
    _write_block_mask(folder, index, 0.85)
    with pytest.raises(MaskFileError, match="inverted"):
        draw_mask((64, 80), "face", "nvidia_10_20", 0, folder)


def test_a_folder_that_is_not_the_set_is_refused(tmp_path):
    with pytest.raises(MaskFileError, match="does not exist"):
        check_folder(tmp_path / "absent")
    folder = tmp_path / "short"
    _fake_set(folder, count=100)
    with pytest.raises(MaskFileError, match="12,000"):
        check_folder(folder)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the NVIDIA test masks are not provisioned here")
def test_the_published_set_passes_its_own_checks():
    check_folder(SHARED)
    for case, block in CASES.items():
        low, high = AREA_BINS[block]
        drawn = draw_mask((512, 512), "x", case, 0, SHARED)
        assert low <= drawn.mask.mean() <= high + 0.005
