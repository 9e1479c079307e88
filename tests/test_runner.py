from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import logged_jobs, write_photos
from bench.run.config import RunConfig
from bench.run.rundir import read_json, read_rgb_png, write_rgb_png
from bench.run.runner import ALL_HOLE, NOTHING_TO_FILL, Runner, composite, masked_input
from methods import registry
from methods.base import Family, Inpainter




class _FailsOnSecondImage(Inpainter):
    name = "test-flaky"
    family = Family.CNN

    def inpaint(self, image, mask, *, seed=None):
        if image.shape[0] == 33:
            raise RuntimeError("cannot handle 33 rows")
        return np.full_like(image, 255)


class _SeesHoles(Inpainter):
    name = "test-sees-holes"
    family = Family.CNN
    seen: list = []

    def inpaint(self, image, mask, *, seed=None):
        _SeesHoles.seen.append((image[mask].max(initial=0), seed))
        return np.full_like(image, 7)


def test_run_writes_rows_and_resumes_without_recomputing(tmp_path):
    data = write_photos(tmp_path / "data", 3, (48, 64), prefix="img")
    config = RunConfig(methods=["telea", "ns"], cases=["small", "large"], data=str(data),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    first = Runner(config, progress=False).run()
    assert first.computed_jobs == 12 and first.cached_jobs == 0 and first.errors.empty
    assert len(first.rows) == 12
    assert set(first.rows.columns) >= {"method", "family", "case", "image_id", "hole_fraction", "wall_time_s",
                                       "psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole"}
    run_dir = first.run_dir
    assert (run_dir / "rows.parquet").exists() and (run_dir / "masks" / "large" / "img0.png").exists()
    logged = logged_jobs(run_dir)
    assert len(logged) == 12 and set(logged.values()) == {1}
    second = Runner(config, progress=False).run()
    assert second.computed_jobs == 0 and second.cached_jobs == 12
    assert logged_jobs(run_dir) == logged
    pd.testing.assert_frame_equal(first.rows, second.rows)
    assert config.run_dir() == RunConfig(**{**vars(config), "workers": 3}).run_dir()
    assert config.run_dir() != RunConfig(**{**vars(config), "ssim": "skimage"}).run_dir()


def test_rows_record_how_each_mask_was_made(tmp_path):
    data = write_photos(tmp_path / "data", 2, (48, 64), prefix="img")
    config = RunConfig(methods=["telea"], cases=["large"], data=str(data), runs_root=str(tmp_path / "runs"),
                       learned_metrics=False)
    rows = Runner(config, progress=False).run().rows
    assert set(rows["mask_generator"]) <= {"strokes", "boxes"} and (rows["mask_frame"] == "341x256").all()
    assert rows["hole_rim_share"].between(0, 1).all()


def test_known_pixels_are_bit_identical_after_compositing(tmp_path):
    data = write_photos(tmp_path / "data", 1, (48, 64), prefix="img")
    config = RunConfig(methods=["telea"], cases=["region"], data=str(data), runs_root=str(tmp_path / "runs"),
                       learned_metrics=False)
    run_dir = Runner(config, progress=False).run().run_dir
    original = read_rgb_png(run_dir / "images" / "img0.png")
    prediction = read_rgb_png(run_dir / "pred" / "telea" / "region" / "img0.png")
    from masks.io import read_mask_png

    hole = read_mask_png(run_dir / "masks" / "region" / "img0.png")
    assert np.array_equal(prediction[~hole], original[~hole])


def test_rgb_png_round_trip_is_lossless(tmp_path):
    image = np.random.default_rng(5).integers(0, 256, (29, 43, 3), dtype=np.uint8)
    image[:10] = image[0, 0]  # a flat stretch as well as noise
    write_rgb_png(tmp_path / "image.png", image)
    assert (tmp_path / "image.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(read_rgb_png(tmp_path / "image.png"), image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "image.png").convert("RGB")), image)


@pytest.mark.parametrize("hole_share", [0.0, 0.3, 1.0])
def test_masking_and_compositing_take_each_pixel_from_the_right_image(hole_share):
    rng = np.random.default_rng(7)
    image, prediction = rng.integers(0, 256, (2, 37, 51, 3), dtype=np.uint8)
    hole = rng.random((37, 51)) < hole_share
    assert np.array_equal(composite(image, prediction, hole), np.where(hole[:, :, None], prediction, image))
    assert np.array_equal(masked_input(image, hole), np.where(hole[:, :, None], 0, image))
    assert composite(image, prediction, hole).dtype == masked_input(image, hole).dtype == np.uint8


def test_method_never_sees_hole_pixels_and_gets_a_seed(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, _SeesHoles.name, _SeesHoles)
    data = write_photos(tmp_path / "data", 2, (48, 64), prefix="img")
    _SeesHoles.seen.clear()
    config = RunConfig(methods=[_SeesHoles.name], cases=["large"], data=str(data), runs_root=str(tmp_path / "r"),
                       learned_metrics=False)
    Runner(config, progress=False).run()
    assert [value for value, _ in _SeesHoles.seen] == [0, 0]
    seeds = [seed for _, seed in _SeesHoles.seen]
    assert len(set(seeds)) == 2 and all(isinstance(seed, int) for seed in seeds)


def test_failing_job_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, _FailsOnSecondImage.name, _FailsOnSecondImage)
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(data / "a.png")
    Image.fromarray(np.zeros((33, 40, 3), np.uint8)).save(data / "b.png")
    config = RunConfig(methods=[_FailsOnSecondImage.name, "telea"], cases=["small"], data=str(data),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    outcome = Runner(config, progress=False).run()
    assert len(outcome.rows) == 3
    errors = pd.read_csv(outcome.run_dir / "errors.csv")
    assert errors.to_dict("records") == [{"method": "test-flaky", "case": "small", "image_id": "b",
                                          "error": "RuntimeError: cannot handle 33 rows"}]


def test_empty_and_full_user_masks(tmp_path):
    data = write_photos(tmp_path / "data", 2, (24, 24), prefix="img")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(masks / "img0.png")
    Image.fromarray(np.full((24, 24), 255, np.uint8)).save(masks / "img1.png")
    config = RunConfig(methods=["telea"], cases=["user"], data=str(data), masks=str(masks),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    rows = Runner(config, progress=False).run().rows.set_index("image_id")
    assert rows.loc["img0", "note"] == NOTHING_TO_FILL and rows.loc["img0", "l1"] == 0
    assert rows.loc["img1", "note"] == ALL_HOLE and rows.loc["img1", "hole_fraction"] == 1.0


def test_parallel_workers_give_the_same_rows(tmp_path):
    data = write_photos(tmp_path / "data", 2, (48, 64), prefix="img")
    serial = RunConfig(methods=["telea", "biharmonic"], cases=["small"], data=str(data),
                       runs_root=str(tmp_path / "a"), learned_metrics=False)
    parallel = RunConfig(**{**vars(serial), "runs_root": str(tmp_path / "b"), "workers": 2})
    columns = ["method", "case", "image_id", "psnr", "ssim", "l1"]
    first = Runner(serial, progress=False).run().rows[columns]
    second = Runner(parallel, progress=False).run().rows[columns]
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("bad", ["mask size", "missing mask"])
def test_user_mask_problems_name_the_file(tmp_path, bad):
    from bench.errors import UserError

    data = write_photos(tmp_path / "data", 1, (24, 24), prefix="img")
    masks = tmp_path / "masks"
    masks.mkdir()
    if bad == "mask size":
        Image.fromarray(np.zeros((20, 24), np.uint8)).save(masks / "img0.png")
        expected = "img0.png is 24x20 but image .* is 24x24"
    else:
        expected = "no mask for image"
    config = RunConfig(methods=["telea"], cases=["user"], data=str(data), masks=str(masks),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    with pytest.raises(UserError, match=expected):
        Runner(config, progress=False).run()


def _labelme(path, image_path, box=(10, 4, 30, 20), size=(24, 40)):
    import json

    x0, y0, x1, y1 = box
    path.write_text(json.dumps({"imagePath": image_path, "imageHeight": size[0], "imageWidth": size[1],
                                "shapes": [{"shape_type": "rectangle", "points": [[x0, y0], [x1, y1]]}]}))


def _user_run(tmp_path, data, masks):
    return RunConfig(methods=["telea"], cases=["user"], data=str(data), masks=str(masks),
                     runs_root=str(tmp_path / "runs"), learned_metrics=False)


def test_labelme_beside_its_images_is_read_as_the_mask(tmp_path):
    data = write_photos(tmp_path / "data", 1, (24, 40), prefix="img")
    _labelme(data / "img0.json", "img0.png")
    outcome = Runner(_user_run(tmp_path, data, data), progress=False).run()
    expected = 21 * 17 / (24 * 40)  # the rectangle, corners included
    assert outcome.rows.loc[0, "hole_fraction"] == pytest.approx(expected)


@pytest.mark.parametrize("image_path", ["img0.png", "../data/img0.png", "..\\data\\img0.png"])
def test_labelme_in_a_mask_folder_accepts_an_image_path_naming_its_image(tmp_path, image_path):
    data = write_photos(tmp_path / "data", 1, (24, 40), prefix="img")
    masks = tmp_path / "masks"
    masks.mkdir()
    _labelme(masks / "img0.json", image_path)
    outcome = Runner(_user_run(tmp_path, data, masks), progress=False).run()
    assert len(outcome.rows) == 1 and outcome.rows.loc[0, "hole_fraction"] > 0


@pytest.mark.parametrize("layout, expected", [
    ("png and json in a mask folder", "holds both img0.png and img0.json for image"),
    ("image as its own mask", "is the image itself (--masks names the data folder)"),
    ("json naming another image", "annotates 'img1.png' (its imagePath), not the image"),
])
def test_ambiguous_user_masks_stop_with_one_sentence(tmp_path, layout, expected):
    from bench.errors import UserError

    data = write_photos(tmp_path / "data", 1, (24, 40), prefix="img")
    masks = tmp_path / "masks"
    masks.mkdir()
    if layout == "png and json in a mask folder":
        Image.fromarray(np.full((24, 40), 255, np.uint8)).save(masks / "img0.png")
        _labelme(masks / "img0.json", "img0.png")
    elif layout == "image as its own mask":
        masks = data
    else:
        _labelme(masks / "img0.json", "img1.png")
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        Runner(_user_run(tmp_path, data, masks), progress=False).run()


def test_each_method_is_released_after_its_jobs_and_described_for_run_json(tmp_path, monkeypatch):
    from bench.run import runner

    monkeypatch.setitem(registry._REGISTRY, _SeesHoles.name, _SeesHoles)
    data = write_photos(tmp_path / "data", 2, (40, 48))
    config = RunConfig(methods=[_SeesHoles.name, "telea"], cases=["region"], data=str(data),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False, workers=1)
    outcome = Runner(config, progress=False).run()
    assert not [key for key in runner._METHOD_CACHE if key[0] in (_SeesHoles.name, "telea")]
    assert outcome.method_details == {_SeesHoles.name: {}, "telea": {"radius": "3"}}


def test_config_is_written_when_the_run_starts_and_run_json_when_it_ends(tmp_path, monkeypatch):
    data = write_photos(tmp_path / "data", 1, (40, 48))
    config = RunConfig(methods=["telea"], cases=["region"], data=str(data), runs_root=str(tmp_path / "runs"),
                       learned_metrics=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "load_methods", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Runner(config, progress=False).run()
    assert (config.run_dir() / "config.toml").is_file() and not (config.run_dir() / "run.json").exists()
    monkeypatch.undo()
    Runner(config, progress=False, command="relama-bench run (test)").run()
    assert read_json(config.run_dir() / "run.json")["command"] == "relama-bench run (test)"


class _CountsLiveImages(Inpainter):
    """Records, at each call, how many image arrays the run has read that are still alive."""

    name = "test-counts-live-images"
    family = Family.CNN
    live: list = []
    counts: list = []

    def inpaint(self, image, mask, *, seed=None):
        gc.collect()
        _CountsLiveImages.counts.append(sum(ref() is not None for ref in _CountsLiveImages.live))
        return np.full_like(image, 5)


def test_images_are_read_by_the_job_that_needs_them_not_held_for_the_run(tmp_path, monkeypatch):
    from bench.run import data as data_module, runner

    def tracked(array):
        _CountsLiveImages.live.append(weakref.ref(array))
        return array

    real_load, real_read = data_module.ImageSource.load, runner.read_rgb_png
    monkeypatch.setattr(data_module.ImageSource, "load", lambda source: _track_bench_image(real_load(source), tracked))
    monkeypatch.setattr(runner, "read_rgb_png", lambda path: tracked(real_read(path)))
    monkeypatch.setitem(registry._REGISTRY, _CountsLiveImages.name, _CountsLiveImages)
    _CountsLiveImages.live.clear()
    _CountsLiveImages.counts.clear()
    data = write_photos(tmp_path / "data", 12, (32, 32), prefix="img")
    config = RunConfig(methods=[_CountsLiveImages.name], cases=["small", "large"], data=str(data),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    outcome = Runner(config, progress=False).run()
    assert len(outcome.rows) == 24 and len(_CountsLiveImages.counts) == 24
    # The job's own image only, however many images the run has.
    assert max(_CountsLiveImages.counts) == 1


def _track_bench_image(bench_image, tracked):
    tracked(bench_image.image)
    return bench_image


class _RepaintsAnotherImage(Inpainter):
    """Overwrites the run's prepared copy of image img1 while img0's job runs."""

    name = "test-repaints-another-image"
    family = Family.CNN
    run_dir: Path | None = None

    def inpaint(self, image, mask, *, seed=None):
        if _RepaintsAnotherImage.run_dir is not None:
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(_RepaintsAnotherImage.run_dir / "images" / "img1.png")
            _RepaintsAnotherImage.run_dir = None
        return np.full_like(image, 5)


def test_a_prepared_input_changed_during_the_run_fails_its_jobs_and_a_rerun_restores_it(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, _RepaintsAnotherImage.name, _RepaintsAnotherImage)
    data = write_photos(tmp_path / "data", 2, (32, 32), prefix="img")
    config = RunConfig(methods=[_RepaintsAnotherImage.name], cases=["large"], data=str(data),
                       runs_root=str(tmp_path / "runs"), learned_metrics=False)
    _RepaintsAnotherImage.run_dir = config.run_dir()
    first = Runner(config, progress=False).run()
    assert first.rows["image_id"].tolist() == ["img0"]
    [error] = first.errors["error"].tolist()
    assert "img1.png changed while the run was going: rerun the same command" in error
    again = Runner(config, progress=False).run()
    fresh = Runner(RunConfig(**{**vars(config), "runs_root": str(tmp_path / "fresh")}), progress=False).run()
    assert again.errors.empty and again.computed_jobs == 1
    columns = ["image_id", "psnr", "ssim", "l1", "hole_fraction"]
    pd.testing.assert_frame_equal(again.rows[columns], fresh.rows[columns])
