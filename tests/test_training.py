"""Training: mask mix, losses on hand-made tensors, data order, learning, bit-for-bit resume, 2-process DDP."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from methods.training import losses
from methods.training.config import TrainConfig, read_config_file
from methods.training.data import StepOrder, TrainingBatches, random_crop, split_validation
from methods.training.masks import REFERENCE_SIDE, sample_rng, training_mask
from methods.training.quality import psnr, ssim
from methods.training.trainer import CHECKPOINT_NAME, LOSS_LOG, VALIDATION_LOG, Trainer, build_initial_generator
from training_helpers import make_image_folder, tiny_config


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("faces") / "train")


# -- masks ----------------------------------------------------------------------------------------

def test_training_masks_are_the_reference_mix_scaled_to_the_size():
    sizes = {}
    for size in (64, 256):
        masks = [training_mask(size, sample_rng(3, 0, index)) for index in range(200)]
        assert all(mask.shape == (size, size) and mask.dtype == bool for mask in masks)
        sizes[size] = np.array([mask.mean() for mask in masks])
    # The same draws at another size: nearest-neighbour scaling keeps each mask's hole fraction.
    np.testing.assert_allclose(sizes[64], sizes[256], atol=0.03)
    assert 0.1 < sizes[256].mean() < 0.6
    assert (sizes[256] > 0).all()


def test_training_masks_use_strokes_and_boxes_half_and_half():
    from masks.generators import irregular_strokes, random_boxes

    from methods.training import masks as training_masks

    kinds = []
    for index in range(400):
        rng = sample_rng(0, 0, index)
        strokes = rng.random() < training_masks.STROKE_PROBABILITY
        kinds.append(strokes)
        expected = (irregular_strokes if strokes else random_boxes)(
            (REFERENCE_SIDE, REFERENCE_SIDE),
            training_masks.TRAINING_STROKES if strokes else training_masks.TRAINING_BOXES, rng)
        if index < 20:
            np.testing.assert_array_equal(training_mask(REFERENCE_SIDE, sample_rng(0, 0, index)), expected)
    assert 0.42 < np.mean(kinds) < 0.58


def test_masks_are_a_function_of_seed_stream_and_index():
    first = training_mask(64, sample_rng(1, 0, 5))
    assert np.array_equal(first, training_mask(64, sample_rng(1, 0, 5)))
    assert not np.array_equal(first, training_mask(64, sample_rng(1, 1, 5)))


# -- losses ---------------------------------------------------------------------------------------

def test_masked_l1_weights_known_pixels_only():
    predicted = torch.zeros(1, 3, 2, 2)
    target = torch.ones(1, 3, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # 3 known pixels of 4, error 1, weight 10, averaged over 12 values: 10 * 9 / 12.
    assert losses.masked_l1(predicted, target, mask).item() == pytest.approx(7.5)
    assert losses.masked_l1(predicted, target, mask, weight_known=0, weight_missing=2).item() == pytest.approx(0.5)


def test_adversarial_losses_on_known_logits():
    fake = torch.zeros(1, 1, 2, 2)
    assert losses.generator_adversarial(fake).item() == pytest.approx(10 * np.log(2))
    # D(x) = sum(w * x): the R1 gradient is w for every image.
    weight = torch.tensor([1.0, 2.0, 2.0]).view(1, 3, 1, 1)
    real = torch.rand(2, 3, 2, 2, requires_grad=True)
    real_logits = (real * weight).sum(dim=(1, 2, 3)).view(2, 1, 1, 1)
    assert losses.r1_penalty(real_logits, real).item() == pytest.approx(4 * (1 + 4 + 4))
    # Mask as fake target: a hole patch counts as fake, a known patch of the fake image as real.
    real_logits = torch.zeros(1, 1, 1, 2)
    real_input = torch.zeros(1, 3, 1, 2, requires_grad=True)
    fake_logits = torch.tensor([[[[2.0, 2.0]]]])
    mask = torch.tensor([[[[1.0, 0.0]]]])
    real_out = real_logits + (real_input.sum() * 0)
    total, parts = losses.discriminator_adversarial(real_out, fake_logits, mask, real_input, gp_coef=0.001)
    softplus = torch.nn.functional.softplus
    expected_fake = (softplus(torch.tensor(2.0)) + softplus(torch.tensor(-2.0))) / 2
    assert parts["fake"].item() == pytest.approx(expected_fake.item())
    assert parts["real"].item() == pytest.approx(np.log(2))
    assert total.item() == pytest.approx(np.log(2) + expected_fake.item())


def test_feature_matching_is_the_mean_layer_mse():
    fake = [torch.zeros(1, 2, 2, 2), torch.ones(1, 1, 3, 3)]
    real = [torch.ones(1, 2, 2, 2), torch.ones(1, 1, 3, 3) * 3]
    assert losses.feature_matching(fake, real).item() == pytest.approx(100 * (1 + 4) / 2)


def test_vgg16_perceptual_loss_is_zero_for_equal_images_and_bounded():
    torch.manual_seed(0)
    from torchvision.models.vgg import cfgs, make_layers

    state = {f"features.{key}": value for key, value in make_layers(cfgs["D"][:5]).state_dict().items()}
    loss = losses.VGG16PerceptualLoss(state, layers=(3, 8), weight=30)
    images = torch.rand(2, 3, 16, 16)
    assert loss(images, images).item() == pytest.approx(0.0, abs=1e-6)
    value = loss(images, torch.rand(2, 3, 16, 16)).item()
    # Unit-length features differ by at most 2, so each layer's squared distance is at most 4.
    assert 0 < value <= 30 * 4
    with pytest.raises(ValueError, match="torchvision"):
        losses.VGG16PerceptualLoss({"features.0.weight": torch.zeros(1)}, layers=(3,))


def test_resnet_pl_encoder_has_the_reference_layout_and_loads_strictly(tmp_path):
    from methods.training.resnet_pl import DilatedResNet50Encoder, ResNetPerceptualLoss, read_encoder_state

    torch.manual_seed(0)
    state = DilatedResNet50Encoder().state_dict()
    # The reference's loss_resnet_pl group (golden README): 330 entries, 23,685,367 values.
    assert len(state) == 330 and sum(value.numel() for value in state.values()) == 23_685_367
    legacy = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    torch.save(legacy, tmp_path / "encoder_epoch_20.pth")
    loss = ResNetPerceptualLoss(read_encoder_state(tmp_path / "encoder_epoch_20.pth"), weight=30)
    features = loss.encoder(torch.rand(1, 3, 32, 32))
    # Output stride 8 from layer2 on: layer3/layer4 dilate instead of striding.
    assert [tuple(f.shape[1:]) for f in features] == [(256, 8, 8), (512, 4, 4), (1024, 4, 4), (2048, 4, 4)]
    images = torch.rand(1, 3, 32, 32)
    assert loss(images, images).item() == 0.0
    assert loss(images, torch.rand(1, 3, 32, 32)).item() > 0
    with pytest.raises(ValueError, match="encoder_epoch_20"):
        ResNetPerceptualLoss({key: value for key, value in legacy.items() if not key.startswith("layer4")})


def test_psnr_and_ssim_on_known_images():
    target = torch.full((1, 3, 8, 8), 0.5)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)
    assert ssim(target, target).item() == pytest.approx(1.0)
    assert ssim(target + 0.2, target).item() < 1


# -- data and config ------------------------------------------------------------------------------

def test_data_order_is_a_permutation_per_epoch_and_shards_the_global_batch(image_folder):
    order = StepOrder(10, seed=4)
    first_epoch = [order.index(counter) for counter in range(10)]
    assert sorted(first_epoch) == list(range(10))
    assert [order.index(counter) for counter in range(10, 20)] != first_epoch
    files = sorted(image_folder.iterdir())
    single = TrainingBatches(files, 16, 4, seed=1).batch(3)
    shards = [TrainingBatches(files, 16, 4, seed=1, rank=rank, world_size=2).batch(3) for rank in range(2)]
    assert torch.equal(single[0], torch.cat([shard[0] for shard in shards]))
    assert torch.equal(single[1], torch.cat([shard[1] for shard in shards]))
    train, validation = split_validation(files, 3)
    assert len(validation) == 3 and not set(train) & set(validation)


def test_config_rejects_unknown_settings_and_reads_toml(tmp_path):
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainConfig.from_mapping({"colour": 1})
    with pytest.raises(ValueError, match="multiple of"):
        TrainConfig(size=20, n_downsampling=3)
    path = tmp_path / "run.toml"
    path.write_text('arch = "relama-cbam"\nsteps = 7\n')
    assert TrainConfig.from_mapping(read_config_file(path)).steps == 7


# -- training -------------------------------------------------------------------------------------

def test_a_few_steps_reduce_the_loss(image_folder, tmp_path):
    def first_and_last(config: TrainConfig, name: str) -> tuple[float, float]:
        trainer = Trainer(config, tmp_path / "run", progress=False)
        records = [trainer.train_step() for _ in range(config.steps)]
        return np.mean([r[name] for r in records[:5]]), np.mean([r[name] for r in records[-5:]])

    first, last = first_and_last(tiny_config(image_folder, steps=40), "generator")
    assert last < 0.7 * first
    # With the adversarial terms off, the L1 on known pixels alone goes down too.
    first, last = first_and_last(tiny_config(image_folder, steps=40, adversarial_weight=0,
                                             feature_matching_weight=0), "l1")
    assert last < 0.9 * first


def _all_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return {key: value for key, value in load_file(str(run_dir / CHECKPOINT_NAME)).items()}


def test_resume_continues_bit_for_bit(image_folder, tmp_path):
    config = tiny_config(image_folder, arch="relama-cbam", steps=4, validation_every=3, ema_decay=0.5)
    straight = Trainer(config, tmp_path / "straight", progress=False)
    straight.run()
    interrupted = Trainer(config, tmp_path / "resumed", progress=False)
    interrupted.run(stop_at=2)
    resumed = Trainer(config, tmp_path / "resumed", progress=False, resume=True)
    assert resumed.step == 2
    resumed.run()
    expected, actual = _all_state(tmp_path / "straight"), _all_state(tmp_path / "resumed")
    assert expected.keys() == actual.keys()
    assert any(key.startswith("ema.") for key in expected)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    # The logs of the resumed run hold those of the straight run (wall times aside); the interrupted
    # run also validated at the step where it stopped.
    for name in (LOSS_LOG, VALIDATION_LOG):
        straight_rows = [row.split(",") for row in (tmp_path / "straight" / name).read_text().splitlines()]
        resumed_rows = {row.split(",")[0]: row.split(",")[2:]
                        for row in (tmp_path / "resumed" / name).read_text().splitlines()}
        assert all(resumed_rows[row[0]] == row[2:] for row in straight_rows)
    assert len((tmp_path / "resumed" / LOSS_LOG).read_text().splitlines()) == \
        len((tmp_path / "straight" / LOSS_LOG).read_text().splitlines())
    assert (tmp_path / "resumed" / "curves.png").is_file()


def test_a_validation_column_added_on_resume_widens_the_log(image_folder, tmp_path):
    config = tiny_config(image_folder, steps=2, validation_every=1)
    Trainer(config, tmp_path / "run", progress=False).run(stop_at=1)
    distance = lambda predicted, target: (predicted - target).abs().flatten(1).mean(dim=1)  # noqa: E731
    Trainer(config, tmp_path / "run", progress=False, resume=True, lpips=distance).run()
    lines = (tmp_path / "run" / VALIDATION_LOG).read_text().splitlines()
    assert lines[0] == "step,wall_s,psnr,ssim,lpips" and len(lines) == 3 and lines[1].endswith(",")
    assert (tmp_path / "run" / "curves.png").is_file()


def test_resume_without_checkpoint_names_the_fix(image_folder, tmp_path):
    with pytest.raises(ValueError, match="cannot resume"):
        Trainer(tiny_config(image_folder), tmp_path / "empty", progress=False, resume=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _distributed_worker(rank: int, world_size: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(tiny_config(Path(data), steps=1), Path(out) / "run", progress=False)
    trainer.train_step()
    torch.save({"generator": trainer.generator.state_dict(), "discriminator": trainer.discriminator.state_dict()},
               Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _parameters(module_state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    names = {name for name, _ in module.named_parameters()}
    return {key: value for key, value in module_state.items() if key in names}


def test_two_process_ddp_matches_one_process_on_the_global_batch(image_folder, tmp_path):
    mp.spawn(_distributed_worker, args=(2, _free_port(), str(image_folder), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for part in ("generator", "discriminator"):
        for key, value in ranks[0][part].items():
            if value.is_floating_point():
                assert torch.equal(value, ranks[1][part][key]) or "running" in key, (part, key)
    # One process, the same global batch in two micro-batches (the same BatchNorm groups as the ranks).
    single = Trainer(tiny_config(image_folder, steps=1, micro_batches=2), tmp_path / "single", progress=False)
    single.train_step()
    for part, module in (("generator", single.generator), ("discriminator", single.discriminator)):
        expected = _parameters(module.state_dict(), module)
        actual = _parameters(ranks[0][part], module)
        assert expected.keys() == actual.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6)


def test_lama_and_relama_cbam_start_from_the_same_shared_weights(image_folder, tmp_path):
    lama = Trainer(tiny_config(image_folder, n_blocks=2), tmp_path / "lama", progress=False)
    relama = Trainer(tiny_config(image_folder, n_blocks=2, arch="relama-cbam"), tmp_path / "relama", progress=False)
    lama_state, relama_state = lama.generator.state_dict(), relama.generator.state_dict()
    attention = {key for key in relama_state if ".ca." in key or ".sa." in key}
    assert attention and set(relama_state) - attention == set(lama_state)
    for key, value in lama_state.items():
        assert torch.equal(value, relama_state[key]), key
    for key, value in lama.discriminator.state_dict().items():
        assert torch.equal(value, relama.discriminator.state_dict()[key]), key
    # The attention weights are random draws of their own, not left at a constant.
    assert any(relama_state[key].std() > 0 for key in attention if relama_state[key].numel() > 1)


def test_initial_lama_generator_is_the_seeded_default(image_folder):
    config = tiny_config(image_folder)
    torch.manual_seed(3)
    first = build_initial_generator(TrainConfig(**{**config.to_dict(), "seed": 3}))
    torch.manual_seed(3)
    again = build_initial_generator(TrainConfig(**{**config.to_dict(), "seed": 3}))
    torch.manual_seed(4)
    other = build_initial_generator(TrainConfig(**{**config.to_dict(), "seed": 4}))
    first_state, other_state = first.state_dict(), other.state_dict()
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in first_state.items())
    assert not all(torch.equal(value, other_state[key]) for key, value in first_state.items())


def test_random_crop_varies_scale_and_position_and_never_upscales():
    image = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
    crops = [random_crop(image, 16, np.random.default_rng(seed)) for seed in range(20)]
    assert all(crop.shape == (16, 16, 3) and crop.dtype == np.uint8 for crop in crops)
    assert len({crop.tobytes() for crop in crops}) > 10
    # A draw of the full scale is a plain window of the original.
    native = [crop for crop in crops if any((crop == image[top:top + 16, left:left + 16]).all()
                                            for top in range(25) for left in range(45))]
    assert len(native) < len(crops)
    small = np.full((10, 12, 3), 7, np.uint8)
    assert random_crop(small, 16, np.random.default_rng(0)).shape == (16, 16, 3)


def test_random_crops_keep_flips_and_masks_of_the_centre_mode(image_folder):
    files = sorted(image_folder.iterdir())
    centre = TrainingBatches(files, 8, 4, seed=1)
    jittered = TrainingBatches(files, 8, 4, seed=1, crop="random")
    assert torch.equal(centre.batch(2)[1], jittered.batch(2)[1])
    assert torch.equal(jittered.batch(2)[0], TrainingBatches(files, 8, 4, seed=1, crop="random").batch(2)[0])


def test_config_rejects_an_unknown_crop_mode(image_folder):
    with pytest.raises(ValueError, match="crop mode"):
        tiny_config(image_folder, crop="corner")
