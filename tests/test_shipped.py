"""Shipped compact checkpoints: native-size adapter, compositing, domain facts, availability."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main as cli_main
from bench.cli.options import default_run_methods
from methods import shipped, weights_record
from methods.checkpoint import CheckpointError
from methods.lama import save_generator
from methods.nets.configs import build_generator
from methods.registry import create_method, get_method_class, list_methods
from methods.training.config import TrainConfig


def _tiny_weights(tmp_path: Path, arch: str) -> Path:
    config = TrainConfig(arch=arch, ngf=4, n_blocks=1).generator_config()
    torch.manual_seed(0)
    path = tmp_path / f"{arch}.safetensors"
    save_generator(build_generator(config).eval(), path, config)
    return path


@pytest.mark.parametrize("cls, arch", [(shipped.LaMaCelebAHQ64, "lama"),
                                       (shipped.ReLaMaCBAMCelebAHQ64, "relama-cbam")])
def test_runs_at_64_on_any_input_and_keeps_known_pixels(tmp_path, cls, arch):
    method = cls(_tiny_weights(tmp_path, arch), device="cpu")
    rng = np.random.default_rng(0)
    for shape in ((64, 64), (100, 70), (33, 200)):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        mask = np.zeros(shape, bool)
        mask[shape[0] // 4: shape[0] // 2, shape[1] // 3: shape[1] // 2] = True
        result = method.inpaint(image, mask)
        assert result.shape == image.shape and result.dtype == np.uint8
        np.testing.assert_array_equal(result[~mask], image[~mask])
        assert not np.array_equal(result[mask], image[mask])


def test_large_input_is_filled_from_the_64_pixel_result(tmp_path):
    weights = _tiny_weights(tmp_path, "lama")
    method = shipped.LaMaCelebAHQ64(weights, device="cpu")
    image = np.full((128, 128, 3), 120, np.uint8)
    mask = np.zeros((128, 128), bool)
    mask[32:96, 32:96] = True
    small = method.inpaint(np.full((64, 64, 3), 120, np.uint8), mask[::2, ::2])
    result = method.inpaint(image, mask)
    # The centre of the hole is the 64x64 result upscaled 2x (cubic resampling only blends neighbours).
    np.testing.assert_allclose(result[60:68, 60:68].astype(float), small[30:34, 30:34].repeat(2, 0).repeat(2, 1),
                               atol=3)


def test_describe_names_domain_and_native_resolution(tmp_path):
    facts = shipped.ReLaMaCBAMCelebAHQ64(_tiny_weights(tmp_path, "relama-cbam"), device="cpu").describe()
    assert facts["training domain"] == "CelebA-HQ faces 64x64"
    assert facts["native resolution"].startswith("64x64")


def test_face_models_join_the_default_run_only_on_faces():
    for name in ("lama-celebahq64", "relama-cbam-celebahq64"):
        assert name in list_methods()
        cls = get_method_class(name)
        assert cls.weights_record.shipped and cls.in_default_run and cls.family.value == "fourier"
        assert cls.resolution.describe() == "runs at 64x64, resizes"
        assert cls.default_run_reason("faces") is None
        assert "--data-domain faces" in cls.default_run_reason("photos")
    assert not {"lama-celebahq64", "relama-cbam-celebahq64"} & set(default_run_methods("photos"))
    assert {"lama-celebahq64", "relama-cbam-celebahq64"} <= set(default_run_methods("faces"))
    # The scene models are research baselines that still lose to Telea: named runs only, and list says so.
    for name in ("lama-scenes", "relama-cbam-scenes"):
        assert name not in default_run_methods("photos") and name not in default_run_methods("faces")
        assert "loses to Telea" in get_method_class(name).default_run_reason("photos")


def test_list_says_why_face_models_are_not_in_the_default_run(capsys):
    assert cli_main(["list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("lama-celebahq64 "))
    assert "no: a faces model" in line and "--data-domain faces" in line


def test_run_with_data_domain_faces_runs_the_face_models(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(data / "face.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    code = cli_main(["run", "--data", str(data), "--data-domain", "faces", "--cases", "region",
                     "--no-learned-metrics", "--runs-dir", str(tmp_path / "runs"), "--workers", "1"])
    assert code == 0
    rows = pd.read_parquet(next((tmp_path / "runs").glob("*/rows.parquet")))
    assert {"lama-celebahq64", "relama-cbam-celebahq64", "telea"} <= set(rows["method"])


@pytest.mark.parametrize("cls, arch", [(shipped.LaMaScenes, "lama"), (shipped.ReLaMaCBAMScenes, "relama-cbam")])
def test_scene_models_work_at_their_working_side_and_keep_known_pixels(tmp_path, cls, arch):
    method = cls(_tiny_weights(tmp_path, arch), device="cpu")
    assert method.working_side == shipped.SCENES_WORKING_SIDE == 128
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (150, 301, 3), dtype=np.uint8)
    mask = np.zeros((150, 301), bool)
    mask[0:60, 250:301] = True
    result = method.inpaint(image, mask)
    assert result.shape == image.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[~mask], image[~mask])
    seen = []
    original = shipped.FourierInpainter._run
    monkey = pytest.MonkeyPatch()
    monkey.setattr(shipped.FourierInpainter, "_run",
                   lambda self, images, masks: seen.append(images[0].shape) or original(self, images, masks))
    method.inpaint(image, mask)
    own = cls(_tiny_weights(tmp_path, arch), device="cpu", working_side=0)
    own.inpaint(image, mask)
    small = image[:100, :120]
    method.inpaint(small, mask[:100, :120])
    monkey.undo()
    assert seen == [(128, 257, 3), (150, 301, 3), (100, 120, 3)]


def test_scene_model_working_side_is_validated(tmp_path):
    with pytest.raises(ValueError, match="working_side"):
        shipped.LaMaScenes(_tiny_weights(tmp_path, "lama"), device="cpu", working_side=8)
    with pytest.raises(ValueError, match="working_side"):
        create_method("lama-scenes", working_side=-1)


def test_missing_shipped_file_makes_the_method_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_record, "SHIPPED_DIR", tmp_path)
    reason = shipped.LaMaCelebAHQ64.unavailable_reason(None)
    assert reason is not None and "lama_celebahq64.safetensors" in reason and "reinstall" in reason
    with pytest.raises(Exception, match="reinstall"):
        create_method("lama-celebahq64")


def test_shipped_file_is_used_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_record, "SHIPPED_DIR", tmp_path)
    _tiny_weights(tmp_path, "relama-cbam").rename(tmp_path / shipped.ReLaMaCBAMCelebAHQ64.weights_record.shipped)
    method = create_method("relama-cbam-celebahq64", device="cpu")
    assert method.describe()["weights"] == shipped.ReLaMaCBAMCelebAHQ64.weights_record.shipped


def test_wrong_architecture_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="LaMa checkpoint"):
        shipped.ReLaMaCBAMCelebAHQ64(_tiny_weights(tmp_path, "lama"), device="cpu")


@pytest.mark.parametrize("cls", [shipped.LaMaCelebAHQ64, shipped.ReLaMaCBAMCelebAHQ64, shipped.LaMaScenes,
                                 shipped.ReLaMaCBAMScenes])
def test_the_shipped_weights_load_and_have_a_model_card(cls):
    path = cls.weights_record.default_path()
    assert path.stat().st_size < 20e6
    assert path.with_suffix(".md").is_file()
    method = cls(device="cpu")
    image = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    result = method.inpaint(image, mask)
    np.testing.assert_array_equal(result[~mask], image[~mask])
