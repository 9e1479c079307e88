"""``relama-bench train``: settings precedence, run directory contents, resume, --init-from, user errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from bench.cli import train as train_command
from bench.studies.train import initial_generator
from methods.lama import load_generator
from methods.training.config import TrainConfig
from training_helpers import make_image_folder

TINY_TOML = """
size = 16
batch_size = 4
ngf = 4
n_downsampling = 1
n_blocks = 1
ndf = 4
discriminator_layers = 2
perceptual = "none"
validation_count = 2
threads = 1
device = "cpu"
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train_command")
    config = root / "tiny.toml"
    config.write_text(TINY_TOML)
    return make_image_folder(root / "faces"), config


@pytest.fixture(scope="module")
def lama_run(setup, tmp_path_factory) -> Path:
    data, config = setup
    out = tmp_path_factory.mktemp("runs") / "lama"
    assert train_command.main(["--arch", "lama", "--data", str(data), "--config", str(config), "--steps", "2",
                               "--out", str(out), "--no-progress"]) == 0
    return out


def test_the_run_directory_holds_everything(lama_run):
    for name in ("config.json", "checkpoint.safetensors", "losses.csv", "validation.csv", "curves.png",
                 "generator.safetensors", "summary.json"):
        assert (lama_run / name).is_file(), name
    saved = json.loads((lama_run / "config.json").read_text())
    # Flags override the TOML file, which overrides the defaults.
    assert saved["steps"] == 2 and saved["ngf"] == 4 and saved["lr_generator"] == TrainConfig().lr_generator
    summary = json.loads((lama_run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["perceptual_loss"] == "none"
    assert set(summary["validation"]) == {"psnr", "ssim"}
    generator = load_generator(lama_run / "generator.safetensors")
    assert generator(torch.rand(1, 4, 16, 16)).shape == (1, 3, 16, 16)


def test_resume_extends_a_run_and_refuses_other_changes(lama_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in lama_run.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert train_command.main(["--resume", str(copy), "--steps", "3", "--no-progress"]) == 0
    assert json.loads((copy / "summary.json").read_text())["steps"] == 3
    assert json.loads((copy / "config.json").read_text())["steps"] == 3
    assert train_command.main(["--resume", str(copy), "--arch", "relama-cbam"]) == 2
    assert "drop --arch" in capsys.readouterr().err


def test_init_from_lama_keeps_lama_weights_and_adds_attention(setup, lama_run, tmp_path):
    data, config_file = setup
    out = tmp_path / "relama"
    assert train_command.main(["--arch", "relama-cbam", "--data", str(data), "--config", str(config_file),
                               "--steps", "1", "--init-from", f"lama={lama_run / 'generator.safetensors'}",
                               "--out", str(out), "--no-progress"]) == 0
    config = TrainConfig.from_mapping(json.loads((out / "config.json").read_text()))
    assert config.init_from_lama.endswith("generator.safetensors")
    state = initial_generator(config)
    lama_state = load_generator(lama_run / "generator.safetensors").state_dict()
    assert any(".ca." in key for key in state)
    for key, value in lama_state.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("arguments, message", [
    (["--arch", "lama"], "--data"),
    (["--data", "/nonexistent/folder"], "does not exist"),
    (["--resume", "/nonexistent/run"], "cannot resume"),
    (["--arch", "lama", "--init-from", "relama=x"], "lama=PATH"),
    (["--perceptual", "resnet_pl"], "encoder_epoch_20.pth"),
])
def test_user_errors_are_one_sentence_and_exit_2(setup, arguments, message, capsys, tmp_path):
    data, config = setup
    extra = ["--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]
    if "--init-from" in arguments or "--perceptual" in arguments:
        extra += ["--data", str(data)]
    assert train_command.main(arguments + extra) == 2
    assert message in capsys.readouterr().err


def test_existing_run_directory_asks_for_resume(setup, lama_run, capsys):
    data, config = setup
    assert train_command.main(["--data", str(data), "--config", str(config), "--out", str(lama_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_add_command_registers_train():
    parser = argparse.ArgumentParser()
    train_command.add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--arch", "relama-cbam", "--data", "x", "--size", "64"])
    assert args.func is train_command.run and args.size == 64
