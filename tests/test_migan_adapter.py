"""The MI-GAN adapter: weights, both modes, the crop rule at borders and for large holes, runs and perf.

The released-format checkpoint is the replica in ``../shared/golden/migan/replica`` (resolution 64).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.studies.perf import RANDOM_WEIGHTS_LABEL, build_for_perf
from conftest import shared_path, write_photos
from methods.base import Family, MethodUnavailable
from methods.checkpoint import CheckpointError
from methods.migan import MIGAN, crop_square, load_migan, network_input
from methods.registry import available_methods, create_method, get_method_class

SIDE = 64


@pytest.fixture(scope="module")
def replica():
    return shared_path("golden", "migan", "replica", "replica_migan_small.pt")


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(shared_path("golden", "migan", "golden_small.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def crop_adapter(replica) -> MIGAN:
    return MIGAN(replica, context=16)


def _case(height: int, width: int, rows: slice, cols: slice, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return image, mask


def _completion(replica, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Network plus float blend on an R x R image, rounded to uint8 (what the crop mode pastes)."""
    generator = load_migan(replica)
    x = network_input(image, (~mask).astype(np.float32))
    with torch.no_grad():
        output = generator(x)
    known = x[:, :1] + 0.5
    composed = x[:, 1:] + (1 - known) * output
    pixels = (composed * 127.5 + 127.5).clamp(0, 255)[0].permute(1, 2, 0).numpy()
    return np.rint(pixels).astype(np.uint8)


def test_registered_with_the_declared_contract():
    cls = get_method_class("migan")
    assert cls is MIGAN and cls.family is Family.CNN
    assert not cls.stochastic and not cls.can_sample
    assert "256x256 or 512x512" in cls.resolution.describe()


def test_weights_record_names_the_released_files_their_source_and_licence():
    record = MIGAN.weights_record
    assert record.takes == "file" and not record.shipped
    assert all(name in record.what for name in ("migan_256_places2.pt", "migan_512_places2.pt", "migan_256_ffhq.pt"))
    (file,) = record.files
    assert "github.com/Picsart-AI-Research/MI-GAN" in file.source
    assert "drive.google.com/drive/folders/1xNtvN2lto0p5yFKOEEg9RioMjGrYM74w" in file.source
    assert file.licence.startswith("MIT") and "LICENSE-WEIGHTS" in file.licence
    assert "strict load" in record.verification and "weights_only=True" in record.verification
    (released,) = record.release.files
    assert (released.scheme, released.url) == ("gdrive-folder", "1xNtvN2lto0p5yFKOEEg9RioMjGrYM74w")
    assert released.folder_member == released.name == record.release.weights == "migan_512_places2.pt"


def test_unavailable_without_weights_and_never_random(tmp_path):
    reason = MIGAN.unavailable_reason(None)
    assert reason.startswith("weights missing: pass --weights migan=PATH")
    assert "migan_512_places2.pt" in reason
    with pytest.raises(MethodUnavailable, match="weights missing"):
        create_method("migan")
    info = {entry.name: entry for entry in available_methods()}["migan"]
    assert not info.available
    assert "not found" in MIGAN.unavailable_reason(tmp_path / "migan_256_places2.pt")


def test_list_and_weights_show_migan_with_its_weights_record(capsys, tmp_path):
    assert main(["list"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("migan"))
    assert "cnn" in line and "a file" in line and "256x256 or 512x512" in line
    assert main(["weights", "migan", "--weights-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "migan: --weights migan=FILE, migan_256_places2.pt, migan_512_places2.pt or migan_256_ffhq.pt: a released" in shown
    assert "drive.google.com/drive/folders/" in shown and "licence MIT" in shown
    assert "checked: read with weights_only=True" in shown


def test_resolution_comes_from_the_file_and_the_option_only_checks_it(replica):
    adapter = create_method("migan", replica, resolution=SIDE)
    assert adapter.side == SIDE
    facts = adapter.describe()
    assert facts["resolution"] == "64x64" and facts["weights"] == "replica_migan_small.pt"
    with pytest.raises(CheckpointError, match="holds a 64x64 MI-GAN but resolution=512"):
        MIGAN(replica, resolution=512)


def test_options_are_declared_and_validated(replica):
    with pytest.raises(ValueError, match="mode='squash' is not one of crop, reference"):
        create_method("migan", replica, mode="squash")
    with pytest.raises(ValueError, match="context=-1 must be at least 0"):
        create_method("migan", replica, context=-1)
    with pytest.raises(ValueError, match="resolution=300 is not one of"):
        create_method("migan", replica, resolution=300)
    adapter = create_method("migan", replica, mode="reference", context=0, resolution=None)
    assert (adapter.mode, adapter.context, adapter.side) == ("reference", 0, SIDE)
    # Direct construction (no registry) checks the same ranges.
    with pytest.raises(ValueError, match="mode must be one of crop, reference"):
        MIGAN(replica, mode="squash")
    with pytest.raises(ValueError, match="context"):
        MIGAN(replica, context=-1)


def test_a_file_that_is_not_migan_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model.1.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an MI-GAN generator"):
        load_migan(path)
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="plain state dict"):
        load_migan(path)
    torch.save({"encoder.b64.fromrgb.weight": torch.zeros(8, 4, 1, 1),
                "encoder.b4.conv1.conv1.weight": torch.zeros(100_000, 1, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="at most 4096"):
        load_migan(path)


@pytest.mark.parametrize("case", ["main", "batch"])
def test_reference_mode_reproduces_the_evaluation_export(replica, golden, case):
    adapter = MIGAN(replica, mode="reference")
    stored = golden[case]
    for index in range(stored["image_uint8"].shape[0]):
        image = stored["image_uint8"][index].permute(1, 2, 0).numpy().copy()
        hole = stored["mask_uint8"][index, 0].numpy() < 255
        np.testing.assert_array_equal(adapter.inpaint(image, hole), stored["export_uint8"][index].numpy())


def test_reference_mode_squashes_other_sizes_and_returns_the_input_size(replica):
    adapter = MIGAN(replica, mode="reference")
    image, mask = _case(40, 90, slice(10, 25), slice(30, 70))
    result = adapter.inpaint(image, mask)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert "squashed to 64x64" in adapter.describe()["mode"]


def test_crop_rule_centres_on_the_hole_with_context():
    hole = np.zeros((300, 400), dtype=bool)
    hole[140:161, 190:221] = True
    # Extent 30 (columns 190..220) + 2 * 16 = 62 < 64, so the side is R; centre (150, 205).
    assert crop_square(hole, 64, 16) == (150 - 32, 205 - 32, 64)
    # A larger context: extent 30 + 2 * 50 = 130.
    assert crop_square(hole, 64, 50) == (150 - 65, 205 - 65, 130)


def test_crop_rule_at_borders_and_for_holes_larger_than_r():
    corner = np.zeros((300, 400), dtype=bool)
    corner[:10, -12:] = True
    top, left, side = crop_square(corner, 64, 16)
    assert (top, left, side) == (0, 400 - 64, 64)
    large = np.zeros((300, 400), dtype=bool)
    large[20:250, 5:395] = True
    # extent 389 + 32 > the longer image side, so the square is the longer side; taller than the image,
    # it is centred vertically (and mirrored there).
    assert crop_square(large, 64, 16) == (-50, 0, 400)
    tiny = np.zeros((30, 50), dtype=bool)
    tiny[3:7, 40:50] = True
    assert crop_square(tiny, 64, 16) == (-10, 0, 50)


@pytest.mark.parametrize("where", ["corner", "left edge", "larger than R", "whole width"])
def test_crop_mode_fills_only_the_hole(crop_adapter, where):
    regions = {"corner": (slice(0, 9), slice(-13, None)), "left edge": (slice(40, 70), slice(0, 6)),
               "larger than R": (slice(10, 110), slice(20, 150)), "whole width": (slice(50, 60), slice(None))}
    image, mask = _case(120, 160, *regions[where])
    result = crop_adapter.inpaint(image, mask)
    assert result.shape == image.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[~mask], image[~mask])
    assert not np.array_equal(result[mask], image[mask])


def test_crop_mode_on_an_r_by_r_image_is_the_network_on_the_whole_image(replica, crop_adapter):
    image, mask = _case(SIDE, SIDE, slice(20, 40), slice(5, 30), seed=3)
    expected = image.copy()
    expected[mask] = _completion(replica, image, mask)[mask]
    np.testing.assert_array_equal(crop_adapter.inpaint(image, mask), expected)


def test_crop_mode_runs_the_network_on_the_square_only(replica, crop_adapter):
    # The hole's square is exactly R x R and inside the image: no resizing, so the result is the
    # network's completion of that window, pasted at the hole.
    image, mask = _case(200, 300, slice(100, 120), slice(150, 180), seed=4)
    top, left, side = crop_square(mask, SIDE, 16)
    assert side == SIDE and top >= 0 and left >= 0
    window = (slice(top, top + side), slice(left, left + side))
    expected = image.copy()
    expected[window][mask[window]] = _completion(replica, image[window], mask[window])[mask[window]]
    np.testing.assert_array_equal(crop_adapter.inpaint(image, mask), expected)


def test_channels_last_completion_matches_the_plain_layout_within_the_golden_tolerance(replica, crop_adapter):
    """The adapter runs the network channels-last (faster on the CPU); the floats it blends stay within
    the golden tests' 1e-5 of the network in the default layout."""
    for seed in range(3):
        image, mask = _case(SIDE, SIDE, slice(10, 50), slice(5, 40), seed=seed)
        known = (~mask).astype(np.float32)
        x = network_input(image, known)
        with torch.no_grad():
            plain = x[:, 1:] + (1 - (x[:, :1] + 0.5)) * load_migan(replica)(x)
        fast = crop_adapter._complete(image, known)
        assert fast.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_no_hole_returns_the_image(crop_adapter):
    image, mask = _case(50, 60, slice(0, 0), slice(0, 0))
    np.testing.assert_array_equal(crop_adapter.inpaint(image, mask), image)


def test_runs_every_case_through_the_cli_with_a_released_format_file(tmp_path, replica):
    data = write_photos(tmp_path / "data", 1, (48, 72), prefix="m")
    runs = tmp_path / "runs"
    assert main(["run", "--data", str(data), "--methods", "migan", "--cases", "small,region,large",
                 "--weights", f"migan={replica}", "--runs-dir", str(runs), "--no-progress",
                 "--no-learned-metrics"]) == 0
    run_dir = (runs / "latest").resolve()
    errors = pd.read_csv(run_dir / "errors.csv")
    assert errors.empty, errors.to_dict("records")
    rows = pd.read_parquet(run_dir / "rows.parquet")
    assert list(rows["method"]) == ["migan"] * 3
    assert "Skipped methods" not in (run_dir / "report.md").read_text()


def test_perf_times_it_with_labelled_random_weights():
    method, label = build_for_perf("migan", {}, random_weights=True)
    assert label == RANDOM_WEIGHTS_LABEL and method.weights is None and method.side == 512
    assert method.describe()["weights"] == "random (timing only)"
    small = MIGAN.with_random_weights(resolution=SIDE)
    image, mask = _case(80, 100, slice(30, 50), slice(40, 60))
    assert small.inpaint(image, mask).shape == image.shape
