"""Checkpoint loading, ReLaMa-from-LaMa, BatchNorm folding and the ``lama``/``relama-cbam`` adapters."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import shared_path

from methods.base import MethodUnavailable
from methods.checkpoint import CheckpointError
from methods.lama import (LaMa, infer_generator_config, load_generator, pad_to_modulo,
                          read_generator_checkpoint, save_generator)
from methods.nets.cbam import ReLaMaCBAMGenerator, attention_keys
from bench.studies.lama_speed import perturbed_generator
from methods.nets.configs import build_generator, generator_config
from methods.nets.ffc import FFC_BN_ACT, FFCResNetGenerator, FourierUnit
from methods.nets.ffc_fused import (ConvTransposeReLU, FusedFFC, FusedFFCResnetBlock, PackedWeights, RowStackedConv,
                                    _FourierProduct, conv_accumulate_, conv_with_reflected_borders, fast_conv2d,
                                    reflect_pad_nhwc, transpose_channels)
from methods.nets.fold import fold_batchnorm, prepare_for_inference
from methods.registry import available_methods, create_method
from methods.relama_cbam import ReLaMaCBAM

CASES = ["", "_nonsquare", "_odd_bottleneck"]


@pytest.fixture(scope="module")
def lama_golden() -> dict:
    return torch.load(shared_path("golden", "lama", "golden_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def cbam_golden() -> dict:
    return torch.load(shared_path("golden", "relama_cbam", "golden_small.pt"), weights_only=True)


@pytest.fixture
def lama_weights(lama_golden: dict, tmp_path):
    path = tmp_path / "lama_small.pt"
    torch.save(lama_golden["state_dict"], path)
    return path


@pytest.fixture
def cbam_weights(cbam_golden: dict, tmp_path):
    path = tmp_path / "relama_small.pt"
    torch.save(cbam_golden["state_dict"], path)
    return path


def _max_diff(model: torch.nn.Module, golden: dict, case: str) -> float:
    with torch.no_grad():
        return (model(golden["input" + case]) - golden["output" + case]).abs().max().item()


def test_replica_lightning_checkpoint_loads_and_reproduces_outputs(lama_golden: dict) -> None:
    path = shared_path("golden", "lama", "replica", "replica_best_small.ckpt")
    checkpoint = read_generator_checkpoint(path)
    assert checkpoint.container == "lightning"
    assert list(checkpoint.state) == list(lama_golden["state_dict"])  # evaluator keys dropped, prefix stripped
    # The config comes from the pickled hyper-parameters, interpolations resolved.
    assert checkpoint.config["ngf"] == 16 and checkpoint.config["downsample_conv_kwargs"]["ratio_gin"] == 0
    assert checkpoint.config["resnet_conv_kwargs"]["ratio_gout"] == 0.75
    model = load_generator(path)
    assert type(model) is FFCResNetGenerator
    for case in CASES:
        assert _max_diff(model, lama_golden, case) == 0


def test_plain_and_prefixed_state_dicts_load(lama_golden: dict, tmp_path) -> None:
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"generator." + key: value for key, value in lama_golden["state_dict"].items()}, prefixed)
    model = load_generator(prefixed)
    assert _max_diff(model, lama_golden, "") <= 1e-6


def test_strict_loading_names_missing_and_unexpected_keys(lama_golden: dict, tmp_path) -> None:
    state = dict(lama_golden["state_dict"])
    state.pop("model.5.conv1.ffc.convl2l.weight")
    state["model.5.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_generator(path, config=json.loads(lama_golden["config"]))
    message = str(error.value)
    assert str(path) in message
    assert "missing keys: model.5.conv1.ffc.convl2l.weight" in message
    assert "unexpected keys: model.5.extra.weight" in message


def test_files_without_generator_weights_are_refused(tmp_path) -> None:
    no_generator = tmp_path / "discr_only.ckpt"
    torch.save({"state_dict": {"discriminator.model0.0.weight": torch.zeros(1)}}, no_generator)
    with pytest.raises(CheckpointError, match="without 'generator"):
        read_generator_checkpoint(no_generator)
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(CheckpointError, match="neither a Lightning checkpoint nor a state dict"):
        read_generator_checkpoint(not_weights)
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"weight": torch.zeros(2)}, unrelated)
    with pytest.raises(CheckpointError, match="do not look like a LaMa FFC generator"):
        load_generator(unrelated)


def test_safetensors_round_trip_keeps_config_and_outputs(lama_golden: dict, tmp_path) -> None:
    config = dict(json.loads(lama_golden["config"]), add_out_act="tanh")
    model = FFCResNetGenerator(**config).eval()
    model.load_state_dict(lama_golden["state_dict"])
    path = tmp_path / "ours.safetensors"
    save_generator(model, path, config)
    loaded = load_generator(path)
    assert isinstance(loaded.model[-1], torch.nn.Tanh)  # taken from the stored config, not inferred
    with torch.no_grad():
        assert torch.equal(loaded(lama_golden["input"]), model(lama_golden["input"]))


def test_inferred_config_matches_named_configs() -> None:
    for name in ("big-lama", "big-relama-cbam"):
        state = build_generator(name, device="meta").state_dict()
        assert infer_generator_config(state) == generator_config(name)


def test_relama_from_lama_weights_needs_the_option(lama_golden: dict, lama_weights) -> None:
    with pytest.raises(CheckpointError, match="init_attention=True"):
        load_generator(lama_weights, kind="ffc_resnet_cbam")
    model = load_generator(lama_weights, kind="ffc_resnet_cbam", init_attention=True)
    again = load_generator(lama_weights, kind="ffc_resnet_cbam", init_attention=True)
    assert isinstance(model, ReLaMaCBAMGenerator)
    state, fresh = model.state_dict(), set(attention_keys(model))
    for key, value in lama_golden["state_dict"].items():
        assert torch.equal(state[key], value)
    assert all(torch.equal(state[key], again.state_dict()[key]) for key in fresh)  # seeded init


def test_relama_checkpoint_is_refused_by_lama(cbam_golden: dict, cbam_weights) -> None:
    assert isinstance(load_generator(cbam_weights), ReLaMaCBAMGenerator)
    with pytest.raises(CheckpointError, match="use it with relama-cbam"):
        load_generator(cbam_weights, kind="ffc_resnet")


@pytest.mark.parametrize("channels_last", [False, True], ids=["folded", "fused-channels-last"])
@pytest.mark.parametrize("golden_name", ["lama", "lama_lfu", "relama_cbam"])
def test_batchnorm_folding_keeps_outputs(golden_name: str, channels_last: bool) -> None:
    folder, file = {"lama": ("lama", "golden_small.pt"), "lama_lfu": ("lama", "golden_enable_lfu.pt"),
                    "relama_cbam": ("relama_cbam", "golden_small.pt")}[golden_name]
    golden = torch.load(shared_path("golden", folder, file), weights_only=True)
    cls = ReLaMaCBAMGenerator if folder == "relama_cbam" else FFCResNetGenerator
    model = cls(**json.loads(golden["config"])).eval()
    model.load_state_dict(golden["state_dict"])
    prepare_for_inference(model, channels_last=channels_last)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())
    assert any(isinstance(module, FusedFFCResnetBlock) for module in model.modules()) == channels_last
    assert any(isinstance(module, RowStackedConv) for module in model.modules()) == channels_last
    with torch.inference_mode():
        for key in golden:
            if key.startswith("input"):
                batch = golden[key].contiguous(memory_format=torch.channels_last) if channels_last else golden[key]
                output = model(batch)
                assert (output - golden[key.replace("input", "output")]).abs().max().item() <= 1e-4


def test_folding_a_model_without_running_stats_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(model)


def test_pad_to_modulo_is_numpy_symmetric_bottom_right() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    padded = pad_to_modulo(array, 4)
    assert padded.shape == (4, 4)
    assert np.array_equal(padded[:2, 3], [2, 5]) and np.array_equal(padded[2:, :3], array[::-1])


def test_adapter_handles_odd_sizes_and_batches(lama_weights, lama_golden: dict) -> None:
    method = LaMa(weights=lama_weights, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((45, 70), (45, 70), (7, 5), (33, 17))]
    masks = [rng.random(image.shape[:2]) < 0.3 for image in images]
    batch = method.inpaint_batch(images, masks)
    for image, mask, result in zip(images, masks, batch):
        assert result.shape == image.shape and result.dtype == np.uint8
        assert np.array_equal(result, method.inpaint(image, mask))
    fixed = LaMa(weights=lama_weights, device="cpu", working_size=32).inpaint(images[0], masks[0])
    assert fixed.shape == images[0].shape
    assert method.describe()["inference"].startswith("BatchNorm folded")


def test_relama_adapter_runs_its_own_weights(cbam_weights, cbam_golden: dict) -> None:
    image = (cbam_golden["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    mask = cbam_golden["mask"][0, 0].numpy() > 0
    result = ReLaMaCBAM(weights=cbam_weights, device="cpu", optimize=False).inpaint(image, mask)
    expected = np.clip(cbam_golden["inpainted"][0].permute(1, 2, 0).numpy() * 255, 0, 255).astype(np.uint8)
    assert np.abs(result.astype(int) - expected.astype(int)).max() <= 1


def test_methods_without_weights_are_unavailable_and_never_built() -> None:
    for name in ("lama", "relama-cbam"):
        with pytest.raises(MethodUnavailable, match=f"weights missing: pass --weights {name}=PATH"):
            create_method(name)
        info = {info.name: info for info in available_methods()}[name]
        assert not info.available and info.family == "fourier"


@pytest.mark.parametrize("width", [1, 2, 3])
def test_channels_last_reflect_pad_equals_torch_pad(width: int) -> None:
    x = torch.rand(2, 5, 7, 6).contiguous(memory_format=torch.channels_last)
    expected = torch.nn.functional.pad(x, (width,) * 4, mode="reflect")
    produced = reflect_pad_nhwc(x.permute(0, 2, 3, 1)[..., 1:4], width).permute(0, 3, 1, 2)
    assert torch.equal(produced, expected[:, 1:4])


def _small_lama(enable_lfu: bool) -> FFCResNetGenerator:
    """A small big-lama-shaped generator (global ratio 0.75 in the blocks) with non-trivial BatchNorm statistics."""
    flat = {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False}
    return perturbed_generator({"input_nc": 4, "output_nc": 3, "ngf": 8, "n_downsampling": 2, "n_blocks": 2,
                                "add_out_act": "sigmoid", "init_conv_kwargs": flat, "downsample_conv_kwargs": flat,
                                "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75,
                                                       "enable_lfu": enable_lfu}})


@pytest.mark.parametrize("enable_lfu", [False, True], ids=["fu", "fu+lfu"])
def test_fused_fp32_and_bf16_paths_against_the_reference(enable_lfu: bool) -> None:
    reference = _small_lama(enable_lfu)
    fused = prepare_for_inference(_small_lama(enable_lfu), channels_last=True)
    reduced = prepare_for_inference(_small_lama(enable_lfu), channels_last=True).to(torch.bfloat16)
    batch = torch.rand(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(batch)
    fast_batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert (fused(fast_batch) - expected).abs().max().item() <= 1e-4
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = reduced(fast_batch).float()
    # Measured 2.3e-4 (fu) and 2.6e-4 (fu+lfu) on these sigmoid outputs; the bound leaves room for other CPUs' kernels.
    assert 0 < (low - expected).abs().max().item() <= 2e-3


def test_fused_model_keeps_blocked_weights_correct_across_sizes_changes_and_copies() -> None:
    reference = _small_lama(enable_lfu=False)
    fused = prepare_for_inference(_small_lama(enable_lfu=False), channels_last=True)
    generator = torch.Generator().manual_seed(2)
    batches = [torch.rand(1, 4, 32, 32, generator=generator), torch.rand(2, 4, 24, 40, generator=generator)]

    def check(model: torch.nn.Module) -> None:
        for batch in (*batches, batches[0]):  # a new shape, then the first one again
            with torch.no_grad():
                expected = reference(batch)
            with torch.inference_mode():
                assert (model(batch.contiguous(memory_format=torch.channels_last)) - expected).abs().max() <= 1e-4

    check(fused)
    check(copy.deepcopy(fused))
    # An in-place change of the weights (a state-dict load) is seen: the blocked copies are remade.
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(0.5)
    fused.load_state_dict(prepare_for_inference(copy.deepcopy(reference), channels_last=True).state_dict())
    check(fused)


@pytest.mark.parametrize(("stride", "padding", "relu"), [(1, 0, False), (2, 1, True), (1, 2, True)])
def test_fast_conv2d_with_kept_weights_equals_conv2d(stride: int, padding: int, relu: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    weight = (torch.rand(16, 8, 3, 3, generator=generator) - 0.5).contiguous(memory_format=torch.channels_last)
    bias = torch.rand(16, generator=generator)
    packed = PackedWeights()
    for shape in [(2, 8, 12, 12), (1, 8, 7, 13), (2, 8, 12, 12)]:
        x = torch.rand(*shape, generator=generator).contiguous(memory_format=torch.channels_last)
        expected = torch.nn.functional.conv2d(x, weight, bias, stride, padding)
        expected = expected.relu() if relu else expected
        with torch.inference_mode():
            produced = fast_conv2d(x, weight, bias, packed=(packed, "w"), stride=(stride, stride),
                                   padding=(padding, padding), relu=relu)
            assert (produced - expected).abs().max().item() <= 1e-5
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = fast_conv2d(x, weight, bias, packed=(packed, "w"), stride=(stride, stride),
                                  padding=(padding, padding), relu=relu)
        assert low.dtype == torch.bfloat16
        assert (low.float() - expected).abs().max().item() <= 2e-2 * expected.abs().max().item()


@pytest.mark.parametrize("relu", [False, True])
def test_conv_transpose_relu_equals_the_module(relu: bool) -> None:
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(8, 6, kernel_size=3, stride=2, padding=1, output_padding=1).eval()
    fused = ConvTransposeReLU(conv, relu)
    for shape in [(2, 8, 6, 6), (1, 8, 5, 9)]:
        x = torch.rand(*shape).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            expected = conv(x).relu() if relu else conv(x)
            assert (fused(x) - expected).abs().max().item() <= 1e-5
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = fused(x)
        assert low.dtype == torch.bfloat16
        assert (low.float() - expected).abs().max().item() <= 2e-2 * expected.abs().max().item()
    assert not ConvTransposeReLU.applies_to(torch.nn.ConvTranspose2d(8, 6, 3, groups=2))


def test_fusion_runs_the_decoder_relus_inside_the_transposed_convolutions() -> None:
    fused = prepare_for_inference(_small_lama(enable_lfu=False), channels_last=True)
    upsampling = [module for module in fused.model if isinstance(module, ConvTransposeReLU)]
    assert len(upsampling) == 2 and all(module.relu for module in upsampling)
    assert not any(isinstance(module, torch.nn.ReLU) for module in fused.model)


def test_row_stacked_conv_equals_the_narrow_convolution() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 3, kernel_size=(5, 3))
    rewritten = RowStackedConv(conv)
    x = torch.rand(2, 8, 11, 9).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = conv(x)
        assert (rewritten(x) - expected).abs().max().item() <= 1e-5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = rewritten.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert low.dtype == torch.float32
    assert (low - expected).abs().max().item() <= 2e-2 * expected.abs().max().item()
    assert not RowStackedConv.applies_to(torch.nn.Conv2d(8, 16, 3))
    assert not RowStackedConv.applies_to(torch.nn.Conv2d(8, 3, 3, padding=1))
    assert not RowStackedConv.applies_to(torch.nn.Conv2d(8, 3, 3, stride=2))


def test_channel_transposes_keep_values_and_give_the_layout() -> None:
    x = torch.rand(2, 5, 7, 6)
    channels_last = transpose_channels(x, to_planar=False)
    assert torch.equal(channels_last, x) and channels_last.is_contiguous(memory_format=torch.channels_last)
    planar = transpose_channels(channels_last[:, :, 1:, 2:], to_planar=True)
    assert torch.equal(planar, x[:, :, 1:, 2:]) and planar.is_contiguous()


@pytest.mark.parametrize("relu", [False, True])
def test_conv_accumulate_adds_the_convolution_and_rectifies(relu: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 6, 9, 9, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = (torch.rand(5, 6, 3, 3, generator=generator) - 0.5).contiguous(memory_format=torch.channels_last)
    start = torch.randn(2, 5, 7, 7, generator=generator)
    expected = start + torch.nn.functional.conv2d(x, weight)
    expected = expected.relu() if relu else expected
    with torch.inference_mode():
        for layout in (torch.channels_last, torch.contiguous_format):  # oneDNN post-ops, and the plain fallback
            accumulator = start.contiguous(memory_format=layout)
            result = conv_accumulate_(accumulator, x, weight, relu=relu)
            assert result is accumulator and (result - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize(("padding", "stride", "kernel"), [(1, 2, 3), (1, 1, 3), (3, 1, 7), (2, 2, 5), (1, 2, 4)])
@pytest.mark.parametrize("size", [(9, 12), (10, 7)])
def test_conv_with_reflected_borders_equals_padding_first(padding: int, stride: int, kernel: int, size) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *size, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.rand(4, 3, kernel, kernel, generator=generator) - 0.5
    bias = torch.rand(4, generator=generator)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (padding,) * 4, mode="reflect"), weight, bias,
                                          stride)
    produced = conv_with_reflected_borders(
        x, lambda data, pad: torch.nn.functional.conv2d(data, weight, bias, stride, pad), padding, stride, kernel)
    assert produced.shape == expected.shape and (produced - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("options", [
    {"ratio_gin": 1.0, "ratio_gout": 0.5},
    {"ratio_gin": 1.0, "ratio_gout": 0.5, "stride": 2},
    {"ratio_gin": 0.5, "ratio_gout": 1.0},
    {"ratio_gin": 0.5, "ratio_gout": 0.5, "stride": 2},
    {"ratio_gin": 0.5, "ratio_gout": 0.5, "padding_type": "zeros"},
    {"ratio_gin": 0.0, "ratio_gout": 0.5, "stride": 2},
], ids=["global-in", "global-in-stride2", "global-out", "stride2", "zero-padding", "local-in-stride2"])
def test_fused_layer_matches_the_reference_in_every_branch_layout(options: dict) -> None:
    torch.manual_seed(0)
    layer = FFC_BN_ACT(16, 16, kernel_size=3, padding=1, activation_layer=torch.nn.ReLU, **options).eval()
    for module in layer.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 16, 16, 16)
    global_in = int(16 * options["ratio_gin"])
    parts = (x[:, :16 - global_in], x[:, 16 - global_in:])
    pair = tuple(part if part.shape[1] else 0 for part in parts)
    with torch.no_grad():
        expected = layer(pair)
    fused = FusedFFC(fold_batchnorm(layer))
    with torch.inference_mode():
        produced = fused(tuple(part.contiguous(memory_format=torch.channels_last) if torch.is_tensor(part) else part
                               for part in pair))
    for fast, exact in zip(produced, expected):
        assert torch.is_tensor(fast) == torch.is_tensor(exact)
        if torch.is_tensor(exact):
            assert (fast - exact).abs().max().item() <= 1e-5


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (6, 5)])
@pytest.mark.parametrize("norm", ["ortho", "backward", "forward"])
def test_fused_fourier_unit_equals_the_reference_at_odd_sizes(size, norm: str) -> None:
    torch.manual_seed(0)
    unit = FourierUnit(4, 4, fft_norm=norm).eval()
    fold_batchnorm(unit)
    x = torch.rand(2, 4, *size)
    with torch.inference_mode():
        expected = unit(x)
        produced = _FourierProduct(unit)(x)
    assert produced.shape == expected.shape and (produced - expected).abs().max().item() <= 1e-5
