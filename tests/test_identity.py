"""Content-addressed cache: a changed image, mask or weights file recomputes exactly the jobs it feeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.run.config import RunConfig
from bench.run.identity import ContentDigests, JobIdentity, array_digest
from bench.run.runner import Runner
from conftest import logged_jobs, write_photos
from methods import registry
from methods.base import Family, Inpainter
from methods.weights_record import WeightsFile, WeightsRecord

IMAGES = ("p0", "p1")


class _WeightedFill(Inpainter):
    """Fills holes with the first byte of its weights file: its output changes with the file's content."""

    name = "test-weighted"
    family = Family.CNN
    weights_record = WeightsRecord(takes="file", what="any file",
                                   files=(WeightsFile(path="", source="this test", licence="none"),),
                                   verification="none")

    def __init__(self, weights: Path) -> None:
        self.value = Path(weights).read_bytes()[0]

    def inpaint(self, image, mask, *, seed=None):
        return np.full_like(image, self.value)


@pytest.fixture
def weighted_method(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, _WeightedFill.name, _WeightedFill)
    return _WeightedFill.name


def _inputs(root: Path) -> tuple[Path, Path, Path]:
    data = write_photos(root / "data", len(IMAGES), (40, 56), prefix="p")
    masks = root / "masks"
    masks.mkdir()
    for index, image_id in enumerate(IMAGES):
        hole = np.zeros((40, 56), np.uint8)
        hole[10 + index:25, 12:30 + index] = 255
        Image.fromarray(hole).save(masks / f"{image_id}.png")
    weights = root / "weights.bin"
    weights.write_bytes(bytes([40]) * 64)
    return data, masks, weights


def _config(root: Path, data: Path, masks: Path, weights: Path, method: str) -> RunConfig:
    return RunConfig(methods=["telea", method], cases=["user"], data=str(data), masks=str(masks),
                     weights={method: str(weights)}, runs_root=str(root / "runs"), learned_metrics=False)


def _record_stamps(run_dir: Path) -> dict[str, int]:
    """``method/image_id`` of each logged job with its number of log lines (a recomputed job has one more)."""
    return {f"{job.split('/')[0]}/{job.split('/')[2]}": count for job, count in logged_jobs(run_dir).items()}


def _change(kind: str, data: Path, masks: Path, weights: Path) -> None:
    if kind == "image":
        write_photos(data, 1, (40, 56), seed=99, prefix="p")  # rewrites p0 only
    elif kind == "mask":
        hole = np.zeros((40, 56), np.uint8)
        hole[2:9, 3:50] = 255
        Image.fromarray(hole).save(masks / "p1.png")
    else:
        weights.write_bytes(bytes([200]) * 64)  # same size


@pytest.mark.parametrize("kind, recomputed", [
    ("image", {"telea/p0", "test-weighted/p0"}),
    ("mask", {"telea/p1", "test-weighted/p1"}),
    ("weights", {"test-weighted/p0", "test-weighted/p1"}),
])
def test_a_changed_input_recomputes_exactly_the_jobs_it_feeds(tmp_path, weighted_method, kind, recomputed):
    data, masks, weights = _inputs(tmp_path)
    config = _config(tmp_path, data, masks, weights, weighted_method)
    first = Runner(config, progress=False).run()
    assert first.computed_jobs == 4
    before = _record_stamps(first.run_dir)

    unchanged = Runner(config, progress=False).run()
    assert unchanged.computed_jobs == 0 and unchanged.cached_jobs == 4
    assert _record_stamps(first.run_dir) == before

    _change(kind, data, masks, weights)
    second = Runner(config, progress=False).run()
    after = _record_stamps(second.run_dir)
    assert second.run_dir == first.run_dir
    assert {job for job in after if after[job] != before[job]} == recomputed
    assert second.computed_jobs == len(recomputed) and second.cached_jobs == 4 - len(recomputed)

    fresh_config = RunConfig(**{**vars(config), "runs_root": str(tmp_path / "fresh")})
    fresh = Runner(fresh_config, progress=False).run()
    columns = [column for column in fresh.rows.columns if column != "wall_time_s"]
    pd.testing.assert_frame_equal(second.rows[columns], fresh.rows[columns])
    if kind == "image":
        prepared = np.asarray(Image.open(second.run_dir / "images" / "p0.png"))
        assert np.array_equal(prepared, np.asarray(Image.open(data / "p0.png")))
    if kind == "mask":
        prepared = np.asarray(Image.open(second.run_dir / "masks" / "user" / "p1.png")) > 0
        assert np.array_equal(prepared, np.asarray(Image.open(masks / "p1.png")) > 0)


def test_a_changed_image_discards_its_cached_features(tmp_path, weighted_method):
    data, masks, weights = _inputs(tmp_path)
    config = _config(tmp_path, data, masks, weights, weighted_method)
    run_dir = Runner(config, progress=False).run().run_dir
    features = {name: run_dir / "features" / name for name in
                ("_originals/p0.npy", "_originals/p1.npy", "telea/user/p0.npy", "telea/user/p1.npy")}
    for path in features.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.zeros((1, 4), np.float32))
    _change("image", data, masks, weights)
    Runner(config, progress=False).run()
    assert {name for name, path in features.items() if path.exists()} == {"_originals/p1.npy", "telea/user/p1.npy"}


def test_an_option_change_recomputes_only_that_method(tmp_path, weighted_method):
    data, masks, weights = _inputs(tmp_path)
    config = _config(tmp_path, data, masks, weights, weighted_method)
    config.run_id = "fixed"  # the options are in the run id too; pin it to reuse the directory
    run_dir = Runner(config, progress=False).run().run_dir
    before = _record_stamps(run_dir)
    config.options = {"telea": {"radius": 7.0}}
    Runner(config, progress=False).run()
    after = _record_stamps(run_dir)
    assert {job for job in after if after[job] != before[job]} == {"telea/p0", "telea/p1"}


def test_records_of_an_older_layout_are_recomputed(tmp_path, weighted_method):
    data, masks, weights = _inputs(tmp_path)
    config = _config(tmp_path, data, masks, weights, weighted_method)
    run_dir = Runner(config, progress=False).run().run_dir
    log = run_dir / "logs" / "jobs.rank0.1.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    old = next(index for index, line in enumerate(lines) if '"method": "telea"' in line and '"image_id": "p0"' in line)
    lines[old] = lines[old].replace('"job_key"', '"old_key"')
    log.write_text("".join(lines))
    assert Runner(config, progress=False).run().computed_jobs == 1


def test_job_key_changes_with_every_field():
    base = JobIdentity(method="telea", case="large", image_id="a", image="i", mask="m", weights=None,
                       device="cpu", seed=1, samples=1, options={"radius": 3.0}, software={"numpy": "2"})
    variants = [
        {"method": "ns"}, {"case": "small"}, {"image_id": "b"}, {"image": "j"}, {"mask": "n"}, {"weights": "w"},
        {"device": "cuda"}, {"seed": 2}, {"samples": 3}, {"options": {"radius": 5.0}}, {"software": {"numpy": "3"}},
    ]
    keys = {JobIdentity(**{**vars(base), **change}).key() for change in variants}
    assert len(keys) == len(variants) and base.key() not in keys
    assert JobIdentity(**vars(base)).key() == base.key()


def test_array_digest_sees_values_shape_and_dtype():
    image = np.zeros((4, 6, 3), np.uint8)
    changed = image.copy()
    changed[0, 0, 0] = 1
    assert array_digest(image) == array_digest(image.copy())
    assert len({array_digest(image), array_digest(changed), array_digest(image.reshape(6, 4, 3)),
                array_digest(image.astype(bool))}) == 4


def test_content_digests_rehash_only_after_a_stat_change(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 100)
    store = tmp_path / "digests.json"
    writes = []

    def write(path, payload):
        writes.append(payload)
        path.write_text(json.dumps(payload))

    digests = ContentDigests(store, write)
    first = digests.file(weights)
    digests.save()
    assert len(writes) == 1
    again = ContentDigests(store, write)
    assert again.file(weights) == first
    again.save()
    assert len(writes) == 1, "an unchanged file is not hashed again"
    stamp = weights.stat()
    weights.write_bytes(b"b" * 100)
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # size and mtime preserved, like cp -p
    assert ContentDigests(store, write).file(weights) != first


def test_folder_digest_covers_names_and_contents(tmp_path):
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.pth").write_bytes(b"1")
    (folder / "b.pth").write_bytes(b"2")
    digests = ContentDigests(tmp_path / "d.json")
    first = digests.path(folder)
    (folder / "sub" / "a.pth").write_bytes(b"3")
    assert ContentDigests(tmp_path / "d.json").path(folder) != first


def test_a_deleted_prediction_is_computed_again(tmp_path, weighted_method):
    data, masks, weights = _inputs(tmp_path)
    config = _config(tmp_path, data, masks, weights, weighted_method)
    run_dir = Runner(config, progress=False).run().run_dir
    (run_dir / "pred" / "telea" / "user" / "p1.png").unlink()
    again = Runner(config, progress=False).run()
    assert again.computed_jobs == 1 and (run_dir / "pred" / "telea" / "user" / "p1.png").exists()
