"""Effective receptive fields: known receptive fields, summaries of synthetic maps, the LaMa hook, the command."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from bench.studies import erf
from bench.cli.erf import add_command, parse_layers, parse_location
from bench.errors import UserError
from methods.nets.ffc import FFC_BN_ACT, ConcatTupleLayer
from conftest import shared_path

SIZE = 32
CENTRE = (SIZE // 2, SIZE // 2)


class ConvStack(nn.Module):
    """``depth`` 3x3 convolutions with zero padding, no activation."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                                   *[nn.Conv2d(4, 4, 3, padding=1) for _ in range(depth - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SplitPair(nn.Module):
    """First half of the channels local, second half global."""

    def forward(self, x: torch.Tensor):
        half = x.shape[1] // 2
        return x[:, :half], x[:, half:]


class OneFFC(nn.Module):
    def __init__(self, ratio: float) -> None:
        super().__init__()
        layer = FFC_BN_ACT(4, 16, 3, ratio_gin=ratio, ratio_gout=ratio, padding=1, enable_lfu=False)
        self.model = nn.Sequential(SplitPair() if ratio else nn.Identity(), layer, ConcatTupleLayer())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def image_only(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return images


def image_and_mask(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return torch.cat([images, masks], dim=1)


def random_inputs(count: int = 2, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand((count, 3, size, size), generator=generator), torch.zeros((count, 1, size, size))


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_conv_stack_has_the_receptive_field_its_depth_predicts(depth: int) -> None:
    torch.manual_seed(depth)
    gradient = erf.gradient_map(ConvStack(depth), image_only, *random_inputs())
    assert erf.support_radius(gradient, CENTRE) == depth
    assert erf.fraction_above(gradient, 0.0) == pytest.approx((2 * depth + 1) ** 2 / SIZE ** 2)


def test_layer_hook_measures_an_inner_layer() -> None:
    torch.manual_seed(0)
    network = ConvStack(5)
    gradient = erf.gradient_map(network, image_only, *random_inputs(), layer=1)
    assert erf.support_radius(gradient, CENTRE) == 2
    with pytest.raises(UserError, match="no layer model.9"):
        erf.gradient_map(network, image_only, *random_inputs(), layer=9)


def test_ffc_layer_gradient_reaches_the_whole_image_and_a_local_one_does_not() -> None:
    torch.manual_seed(0)
    fourier = erf.gradient_map(OneFFC(0.5), image_and_mask, *random_inputs())
    local = erf.gradient_map(OneFFC(0.0), image_and_mask, *random_inputs())
    assert (fourier > 0).all()
    assert erf.support_radius(local, CENTRE) == 1


def test_mass_radii_of_synthetic_maps() -> None:
    point = np.zeros((SIZE, SIZE))
    point[CENTRE] = 1.0
    assert erf.mass_radius(point, CENTRE, 0.5) == 0 and erf.mass_radius(point, CENTRE, 0.9) == 0
    two = point * 0.6
    two[CENTRE[0], CENTRE[1] + 5] = 0.4
    assert erf.mass_radius(two, CENTRE, 0.5) == 0
    assert erf.mass_radius(two, CENTRE, 0.9) == 5
    flat = erf.uniform_reference(256)
    # Half of a square's area lies within sqrt(1/(2 pi)) of its side from the centre.
    assert flat["r50_side"] == pytest.approx(np.sqrt(1 / (2 * np.pi)), abs=2 / 256)
    assert flat["frac_above_1pct"] == 1.0
    with pytest.raises(ValueError, match="zero everywhere"):
        erf.mass_radius(np.zeros((4, 4)), (2, 2), 0.5)


def test_fraction_above_one_percent_of_peak() -> None:
    values = np.full((10, 10), 0.005)
    values[:3] = 1.0
    assert erf.fraction_above(values) == pytest.approx(0.3)
    values[:3] = 0.4
    # The threshold follows the peak: 0.005 is above 1 % of 0.4.
    assert erf.fraction_above(values) == 1.0
    assert erf.fraction_above(np.full((10, 10), 0.009) + np.eye(10)) == pytest.approx(0.1)


def test_fresh_copy_reinitialises_every_layer_reproducibly() -> None:
    torch.manual_seed(0)
    network = OneFFC(0.5)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(0.5)
    first, second = erf.freshly_initialised(network, seed=3), erf.freshly_initialised(network, seed=3)
    for (name, original), fresh, again in zip(network.state_dict().items(), first.state_dict().values(),
                                              second.state_dict().values()):
        assert torch.equal(fresh, again), name
        if name.endswith("conv_layer.weight") or name.endswith("convl2l.weight"):
            assert not torch.equal(fresh, original), name
    assert not first.training


@pytest.fixture(scope="module")
def lama_weights(tmp_path_factory) -> str:
    golden = torch.load(shared_path("golden", "lama", "golden_small.pt"), weights_only=True)
    from methods.lama import save_generator
    from methods.nets.configs import build_generator

    config = json.loads(golden["config"])
    generator = build_generator(config)
    generator.load_state_dict(golden["state_dict"])
    path = tmp_path_factory.mktemp("weights") / "lama_small.safetensors"
    save_generator(generator, path, config)
    return str(path)


def test_lama_encoder_is_local_and_first_ffc_block_is_global(lama_weights: str) -> None:
    subjects = erf.method_subjects("lama", lama_weights, random_init=True)
    assert [subject.weights for subject in subjects] == [erf.LOADED_LABEL, erf.FRESH_LABEL]
    images, masks = random_inputs(1, 64)
    for subject in subjects:
        # 7x7 stem (radius 3) then three stride-2 3x3 convs add 1, 2 and 4: radius 10.
        encoder = erf.gradient_map(subject.module, subject.make_input, images, masks, layer=4)
        assert erf.support_radius(encoder, (32, 32)) == 10
        first_block = erf.gradient_map(subject.module, subject.make_input, images, masks, layer=5)
        assert (first_block > 0).all()


def test_methods_without_weights_need_random_init_and_classical_methods_are_refused() -> None:
    with pytest.raises(UserError, match="--random-init") as missing:
        erf.method_subjects("lama", None, random_init=False)
    assert "\n" not in str(missing.value)
    with pytest.raises(UserError, match="no network"):
        erf.method_subjects("telea", None, random_init=True)
    with pytest.raises(UserError, match="unknown method"):
        erf.method_subjects("nope", None, random_init=True)


def test_layer_and_location_arguments() -> None:
    assert parse_layers("2, 5,output") == [2, 5, None]
    assert parse_location("0.25,0.5") == (0.25, 0.5)
    for bad in ("x", ""):
        with pytest.raises(UserError, match="--layer"):
            parse_layers(bad)
    for bad in ("0.5", "1.0,0.5", "a,b"):
        with pytest.raises(UserError, match="--location"):
            parse_location(bad)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "lama", "--size", "50"], "--size 50"),
    (["--methods", "lama", "--images", "0"], "--images 0"),
    (["--methods", "lama", "--cases", "huge"], "unknown mask case"),
    (["--methods", "lama"], "weights missing"),
    (["--methods", "lama", "--random-init", "--weights", "relama-cbam=x.pt"], "not in --methods"),
])
def test_command_errors_are_one_sentence(argv: list[str], message: str, tmp_path) -> None:
    with pytest.raises(UserError, match=message) as error:
        _run(["erf", "--runs-dir", str(tmp_path), *argv])
    text = str(error.value)
    assert "\n" not in text and not re.search(r"\.\s+[A-Z]", text)


def test_command_writes_tables_figures_and_both_reports(lama_weights: str, tmp_path) -> None:
    code = _run(["erf", "--methods", "lama", "--weights", f"lama={lama_weights}", "--random-init",
                 "--images", "1", "--size", "32", "--cases", "small", "--layer", "4,output",
                 "--runs-dir", str(tmp_path), "--out", "erf"])
    assert code == 0
    out = tmp_path / "erf"
    table = __import__("pandas").read_csv(out / "erf.csv")
    assert list(table.columns) == ["method", "weights", "layer", "inputs", "n_inputs", "r50_px", "r90_px",
                                   "r50_side", "r90_side", "frac_above_1pct"]
    assert set(table["weights"]) == {erf.LOADED_LABEL, erf.FRESH_LABEL}
    assert set(table["inputs"]) == {"small", erf.RANDOM_INPUTS, erf.POOLED}
    assert (out / "figures" / "erf_comparison.png").exists() and (out / "figures" / "erf_lama.png").exists()
    assert "freshly initialised weights" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img src=\"figures/" not in html


def test_shipped_methods_are_measured_with_their_own_weights() -> None:
    subjects = erf.method_subjects("lama-celebahq64", None, random_init=True)
    assert [subject.weights for subject in subjects] == [erf.LOADED_LABEL, erf.FRESH_LABEL]
    assert subjects[0].detail == "lama_celebahq64.safetensors"
