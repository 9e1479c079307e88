"""Bad inputs through the command line: one sentence naming the culprit, exit 2, no traceback, earlier
work kept; and inputs that are odd but valid (tiny images, long names) are scored as far as they can be."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from conftest import logged_jobs, write_photos


def _run(data: Path, runs: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(data), "--methods", "telea", "--cases", "region", "--runs-dir", str(runs),
            "--run-id", "r", "--workers", "1", "--no-progress", "--no-learned-metrics", *extra]


def _one_sentence(capfd) -> str:
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
    message = captured.err.strip()
    assert message.startswith("relama-bench: error: ") and "\n" not in message
    return message


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("content, expected", [
    (_png_claiming(20000, 20000), "too many to decode safely"),
    (b"\x89PNG\r\n\x1a\n garbage", "cannot be read"),
])
def test_a_bad_image_added_to_a_finished_run_is_named_and_the_run_is_kept(content, expected, tmp_path, capfd):
    data, runs = write_photos(tmp_path / "data", 2, (24, 24)), tmp_path / "runs"
    assert main(_run(data, runs)) == 0
    rows_before = pd.read_parquet(runs / "r" / "rows.parquet")
    capfd.readouterr()
    (data / "zz_bad.png").write_bytes(content)
    assert main(_run(data, runs)) == 2
    message = _one_sentence(capfd)
    assert str(data / "zz_bad.png") in message and expected in message
    pd.testing.assert_frame_equal(pd.read_parquet(runs / "r" / "rows.parquet"), rows_before)


def test_images_too_small_for_ssim_are_scored_for_the_rest(tmp_path, capfd):
    data = tmp_path / "data"
    write_photos(data, 1, (1, 1), prefix="tiny1x1_")
    write_photos(data, 1, (3, 3), prefix="tiny3x3_")
    write_photos(data, 1, (24, 24), prefix="normal")
    runs = tmp_path / "runs"
    assert main(_run(data, runs)) == 0
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    rows = pd.read_parquet(runs / "r" / "rows.parquet").set_index("image_id")
    assert sorted(rows.index) == ["normal0", "tiny1x1_0", "tiny3x3_0"]
    assert pd.read_csv(runs / "r" / "errors.csv").empty
    assert rows.loc[["tiny1x1_0", "tiny3x3_0"], "ssim"].isna().all()
    assert np.isfinite(rows.loc["normal0", "ssim"]) and rows["l1"].notna().all()
    sentence = ("SSIM and SSIM hole need images of at least 11x11 pixels and are missing for 2 image(s): "
                "tiny1x1_0 (1x1), tiny3x3_0 (3x3)")
    assert sentence in captured.out
    report = (runs / "r" / "report.md").read_text()
    assert sentence.replace("_", "\\_") in report


def test_a_244_character_file_name_runs(tmp_path, capfd):
    data = tmp_path / "data"
    data.mkdir()
    name = "n" * 240
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(data / f"{name}.png")
    assert main(_run(data, tmp_path / "runs")) == 0
    assert "Traceback" not in capfd.readouterr().err
    assert logged_jobs(tmp_path / "runs" / "r") == {f"telea/region/{name}": 1}


@pytest.mark.parametrize("annotation, expected", [
    ({"imagePath": 5, "imageHeight": 24, "imageWidth": 24, "shapes": []}, "imagePath 5"),
    ({"imageHeight": 24, "imageWidth": 24, "shapes": "oops"}, "'shapes' of type str"),
    ({"imageHeight": 10 ** 6, "imageWidth": 10 ** 6, "shapes": []}, "annotates a 1000000x1000000 image"),
    ({"imageHeight": -24, "imageWidth": 24, "shapes": []}, "imageHeight -24"),
    ({"imageHeight": 24, "imageWidth": 24,
      "shapes": [{"shape_type": "polygon", "points": [[1e12, 1e12], [-1e12, 1e12], [0, -1e12]]}]}, "far outside"),
    ({"imageHeight": 24, "imageWidth": 24,
      "shapes": [{"shape_type": "polygon", "points": [["1", "2"], ["3", "4"], ["5", "1"]]}]}, "not [x, y] pairs"),
])
def test_hostile_labelme_masks_are_one_sentence(annotation, expected, tmp_path, capfd):
    data, masks = write_photos(tmp_path / "data", 1, (24, 24)), tmp_path / "masks"
    masks.mkdir()
    (masks / "p0.json").write_text(json.dumps(annotation))
    argv = ["run", "--data", str(data), "--masks", str(masks), "--methods", "telea", "--runs-dir",
            str(tmp_path / "runs"), "--workers", "1", "--no-progress", "--no-learned-metrics"]
    assert main(argv) == 2
    message = _one_sentence(capfd)
    assert str(masks / "p0.json") in message and expected in message


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from tiny_run import build_tiny_run

    root = tmp_path_factory.mktemp("report_inputs")
    build_tiny_run(root)
    return root


def _sorted_summary(run_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "tables" / "summary.csv")
    return table.sort_values(["method", "case", "metric"]).reset_index(drop=True)


DAMAGE = {
    "run.json missing": lambda run: (run / "run.json").unlink(),
    "run.json corrupt": lambda run: (run / "run.json").write_text('{"run_id": '),
    "rows.parquet corrupt": lambda run: (run / "rows.parquet").write_bytes(b"PAR1 not really"),
    "rows.parquet and run.json missing": lambda run: [(run / name).unlink() for name in ("rows.parquet", "run.json")],
    "config.toml corrupt": lambda run: (run / "config.toml").write_text("[run\ncases = "),
    "errors.csv binary": lambda run: (run / "errors.csv").write_bytes(bytes(range(256))),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_report_rebuilds_a_damaged_run_from_its_job_records(damage, tiny_root, tmp_path, capfd):
    import shutil

    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_root / "runs" / "tiny", run_dir)
    expected = _sorted_summary(run_dir)
    DAMAGE[damage](run_dir)
    assert main(["report", str(run_dir)]) == 0
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
    culprit = str(run_dir / damage.split()[0])
    assert f"note: {culprit}" in captured.out
    pd.testing.assert_frame_equal(_sorted_summary(run_dir), expected)
    report = (run_dir / "report.md").read_text()
    assert "- **Rebuilt:** " + culprit.replace("_", "\\_") in report
    assert "Rebuilt: " + culprit in (run_dir / "report.html").read_text()
    assert len(pd.read_parquet(run_dir / "rows.parquet")) == 4


def test_report_on_a_folder_without_results_is_one_sentence(tmp_path, capfd):
    (tmp_path / "empty_run").mkdir()
    assert main(["report", str(tmp_path / "empty_run")]) == 2
    message = _one_sentence(capfd)
    assert str(tmp_path / "empty_run") in message and "no job records" in message


@pytest.mark.parametrize("content, expected", [
    (_png_claiming(20000, 20000), "too many to decode safely"),
    (b"\x89PNG\r\n\x1a\n garbage", "not a readable image"),
])
def test_bad_mask_pngs_are_one_sentence(content, expected, tmp_path, capfd):
    data, masks = write_photos(tmp_path / "data", 1, (24, 24)), tmp_path / "masks"
    masks.mkdir()
    (masks / "p0.png").write_bytes(content)
    argv = ["run", "--data", str(data), "--masks", str(masks), "--methods", "telea", "--runs-dir",
            str(tmp_path / "runs"), "--workers", "1", "--no-progress", "--no-learned-metrics"]
    assert main(argv) == 2
    message = _one_sentence(capfd)
    assert str(masks / "p0.png") in message and expected in message


@pytest.mark.parametrize("invert", [False, True])
def test_a_run_whose_masks_have_no_hole_is_one_sentence(invert, tmp_path, capfd):
    data, masks = write_photos(tmp_path / "data", 2, (24, 24)), tmp_path / "masks"
    masks.mkdir()
    for index in range(2):
        # All black (no hole), or all white, which --mask-invert turns into no hole.
        Image.fromarray(np.full((24, 24), 255 if invert else 0, np.uint8)).save(masks / f"p{index}.png")
    argv = ["run", "--data", str(data), "--masks", str(masks), "--methods", "telea", "--runs-dir",
            str(tmp_path / "runs"), "--workers", "1", "--no-progress", "--no-learned-metrics"]
    assert main(argv + (["--mask-invert"] if invert else [])) == 2
    message = _one_sentence(capfd)
    assert str(masks) in message and "no mask" in message and "has a hole" in message


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _bad_weights(kind: str, path: Path) -> None:
    import torch

    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("weights\n")
    elif kind == "truncated":
        torch.save({"model.1.weight": torch.zeros(64, 64)}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "pickled code":
        torch.save({"state_dict": _Payload()}, path)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind, expected", [
    ("folder", "is a folder"), ("empty", "is empty"), ("text", "not a torch.save file"),
    ("truncated", "truncated or damaged"), ("pickled code", "GLOBAL print was not an allowed global"),
])
def test_bad_weights_stop_the_named_method_in_one_sentence_and_keep_the_rest(kind, expected, tmp_path, capfd):
    data, weights = write_photos(tmp_path / "data", 1, (24, 24)), tmp_path / "lama.ckpt"
    _bad_weights(kind, weights)
    runs = tmp_path / "runs"
    argv = _run(data, runs)
    argv[argv.index("--methods") + 1] = "telea,lama"
    assert main([*argv, "--weights", f"lama={weights}"]) == 1
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out and "this must never run" not in captured.out
    message = captured.err.strip()
    assert "\n" not in message and str(weights) in message and expected in message
    assert "weights_only" not in message
    assert list(pd.read_parquet(runs / "r" / "rows.parquet")["method"]) == ["telea"]
