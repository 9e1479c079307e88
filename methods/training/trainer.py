"""The training loop: LaMa's generator/discriminator steps, checkpoints, resume, validation, logs, DDP.

One process trains on the CPU or one GPU. Under ``torchrun`` (``WORLD_SIZE`` > 1) every process
holds a share of each global batch, the networks are wrapped in ``DistributedDataParallel``
(BatchNorm synchronised on CUDA; on the CPU each process keeps its own batch statistics, as
SyncBatchNorm needs CUDA), and rank 0 alone writes logs and checkpoints.

A checkpoint (``checkpoint.safetensors``) holds the generator, the discriminator, the optional EMA
generator, both Adam states and the torch RNG state; the step, the wall time so far and the Adam
hyper-parameters are in its metadata. Samples, masks and flips are functions of the step (see
`methods.training.data`), so a resumed run repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from methods.nets.configs import build_discriminator, build_generator, generator_input
from methods.training import losses
from methods.training.config import TrainConfig
from methods.training.data import TrainingBatches, list_images, split_validation, validation_set
from methods.training.quality import psnr, ssim
from methods.training.resnet_pl import ResNetPerceptualLoss

CHECKPOINT_NAME = "checkpoint.safetensors"
LOSS_LOG = "losses.csv"
VALIDATION_LOG = "validation.csv"
CURVES = "curves.png"
LOSS_COLUMNS = ("step", "wall_s", "generator", "l1", "adversarial", "feature_matching", "perceptual",
                "discriminator", "d_real", "d_fake", "r1")
#: Seed of the held-out split and of the validation masks, shared by every run on the same folder.
VALIDATION_SEED = 0
#: Added to the run's seed for the attention weights of ReLaMa-CBAM, drawn from their own generator.
ATTENTION_SEED_OFFSET = 104_729

#: ``lpips(predicted, target)`` on ``N x 3 x H x W`` tensors in [0, 1] -> per-image distances.
LPIPSFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)``, initialising the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _device(config: TrainConfig) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    state = optimizer.state_dict()
    tensors = {f"{prefix}.{index}.{name}": value.detach().cpu().contiguous()
               for index, entries in state["state"].items() for name, value in entries.items()}
    return tensors, json.dumps(state["param_groups"])


def _optimizer_state(prefix: str, tensors: Mapping[str, torch.Tensor], groups: str) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": json.loads(groups)}


def build_initial_generator(config: TrainConfig) -> nn.Module:
    """The generator at step 0: every parameter LaMa shares with ReLaMa-CBAM starts from the same values.

    The attention-free generator is drawn from the global torch generator (seeded by the caller);
    for ReLaMa-CBAM its state is copied into the attention model, whose own attention weights come
    from a separate generator seeded with ``config.seed + ATTENTION_SEED_OFFSET``. The global
    generator therefore advances identically for both architectures, so the discriminator built
    next is identical too: an architecture comparison is not confounded by initialisation.
    """
    shared = build_generator(config.generator_config("lama"))
    if config.arch == "lama":
        return shared
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + ATTENTION_SEED_OFFSET)
        generator = build_generator(config.generator_config())
    state = generator.state_dict()
    missing = sorted(set(shared.state_dict()) - set(state))
    if missing:
        raise ValueError(f"{config.arch} lacks LaMa parameters {missing[:3]}: cannot share its initialisation")
    state.update(shared.state_dict())
    generator.load_state_dict(state, strict=True)
    return generator


class Trainer:
    """Train one generator/discriminator pair into ``run_dir``.

    Parameters
    ----------
    config : TrainConfig
        Every setting of the run (saved as ``run_dir/config.json``).
    run_dir : path-like
        Output folder: config, checkpoint, CSV logs, curves.
    perceptual_state : mapping, optional
        Weights of the perceptual network: the ADE20k encoder for ``resnet_pl``, torchvision VGG16
        for ``vgg16``.
    initial_generator_state : mapping, optional
        Generator weights to start from (e.g. LaMa weights with fresh attention); loaded strictly.
    lpips : callable, optional
        Adds an ``lpips`` column to the validation log.
    resume : bool
        Continue from ``run_dir/checkpoint.safetensors``.
    progress : bool
        Show a tqdm bar with the loss values (rank 0 only).
    """

    def __init__(self, config: TrainConfig, run_dir: Path | str, *,
                 perceptual_state: Mapping[str, torch.Tensor] | None = None,
                 initial_generator_state: Mapping[str, torch.Tensor] | None = None,
                 lpips: LPIPSFunction | None = None, resume: bool = False, progress: bool = True) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = _distributed()
        self.device = _device(config)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.lpips = lpips
        self.progress = progress
        if (config.batch_size // config.micro_batches) % self.world_size:
            raise ValueError(f"batch size {config.batch_size} / micro_batches {config.micro_batches} is not "
                             f"divisible by the {self.world_size} processes")

        files = list_images(config.data)
        train_files, validation_files = split_validation(files, config.validation_count, VALIDATION_SEED)
        self.batches = TrainingBatches(train_files, config.size, config.batch_size, config.seed,
                                       rank=self.rank, world_size=self.world_size, crop=config.crop)
        self.validation_files = validation_files

        torch.manual_seed(config.seed)
        self.generator = build_initial_generator(config).to(self.device)
        self.discriminator = build_discriminator(config.discriminator_config()).to(self.device)
        if initial_generator_state is not None:
            self.generator.load_state_dict(dict(initial_generator_state), strict=True)
        self.perceptual: nn.Module | None = None
        if config.perceptual != "none":
            if perceptual_state is None:
                raise ValueError(f"the {config.perceptual} perceptual loss needs its weights (perceptual_state); "
                                 "pass them or set perceptual = 'none'")
            if config.perceptual == "resnet_pl":
                self.perceptual = ResNetPerceptualLoss(perceptual_state, weight=config.perceptual_weight)
            else:
                self.perceptual = losses.VGG16PerceptualLoss(perceptual_state, weight=config.perceptual_weight)
            self.perceptual.to(self.device)
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False) if config.ema_decay else None

        self.generator_step_module: nn.Module = self.generator
        self.discriminator_step_module: nn.Module = self.discriminator
        if self.world_size > 1:
            if self.device.type == "cuda":
                self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
                self.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.generator_step_module = nn.parallel.DistributedDataParallel(self.generator, device_ids=ids)
            self.discriminator_step_module = nn.parallel.DistributedDataParallel(self.discriminator, device_ids=ids)

        betas = tuple(config.betas)
        self.optimizer_generator = torch.optim.Adam(self.generator.parameters(), lr=config.lr_generator, betas=betas)
        self.optimizer_discriminator = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_discriminator,
                                                        betas=betas)
        self.step = 0
        self.wall_before = 0.0
        if resume:
            self._load_checkpoint()
        elif self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.json")
            for name in (LOSS_LOG, VALIDATION_LOG):
                (self.run_dir / name).unlink(missing_ok=True)
        self._validation_data: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- one step ------------------------------------------------------------------------------

    def _generator_losses(self, images: torch.Tensor, masks: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        predicted = self.generator_step_module(generator_input(images, masks))
        fake_logits, fake_features = self.discriminator(predicted)
        with torch.no_grad():
            _, real_features = self.discriminator(images)
        parts = {
            "l1": losses.masked_l1(predicted, images, masks, weight_known=config.l1_weight_known,
                                   weight_missing=config.l1_weight_missing),
            "adversarial": losses.generator_adversarial(fake_logits, weight=config.adversarial_weight),
            "feature_matching": losses.feature_matching(fake_features, real_features,
                                                        weight=config.feature_matching_weight),
        }
        if self.perceptual is not None:
            parts["perceptual"] = self.perceptual(predicted, images)
        return predicted, sum(parts.values()), parts

    def train_step(self) -> dict[str, float]:
        """One generator update then one discriminator update on the batch of ``self.step``."""
        config = self.config
        images, masks = self.batches.batch(self.step)
        images, masks = images.to(self.device), masks.to(self.device)
        chunks = list(zip(images.chunk(config.micro_batches), masks.chunk(config.micro_batches)))
        record: dict[str, float] = {}

        def add(name: str, value: torch.Tensor) -> None:
            record[name] = record.get(name, 0.0) + float(value.detach()) / len(chunks)

        # Generator step; the discriminator's weights are constants here.
        self.discriminator.requires_grad_(False)
        self.optimizer_generator.zero_grad(set_to_none=True)
        predictions = []
        for index, (chunk_images, chunk_masks) in enumerate(chunks):
            sync = self._sync_context(self.generator_step_module, index == len(chunks) - 1)
            with sync:
                predicted, total, parts = self._generator_losses(chunk_images, chunk_masks)
                (total / len(chunks)).backward()
            predictions.append(predicted.detach())
            add("generator", total)
            for name, value in parts.items():
                add(name, value)
        self.optimizer_generator.step()
        self.discriminator.requires_grad_(True)

        # Discriminator step on the same predictions (detached).
        self.optimizer_discriminator.zero_grad(set_to_none=True)
        for index, ((chunk_images, chunk_masks), predicted) in enumerate(zip(chunks, predictions)):
            sync = self._sync_context(self.discriminator_step_module, index == len(chunks) - 1)
            with sync:
                real = chunk_images.detach().requires_grad_(True)
                real_logits, _ = self.discriminator_step_module(real)
                fake_logits, _ = self.discriminator_step_module(predicted)
                total, parts = losses.discriminator_adversarial(real_logits, fake_logits, chunk_masks, real,
                                                                gp_coef=config.gp_coef)
                (total / len(chunks)).backward()
            add("discriminator", total)
            for name, value in parts.items():
                add(f"d_{name}" if name != "r1" else "r1", value)
        self.optimizer_discriminator.step()
        self._update_ema()
        self.step += 1
        return record

    @staticmethod
    def _sync_context(module: nn.Module, last: bool):
        # Gradients are averaged across processes once per step, after the last micro-batch.
        if isinstance(module, nn.parallel.DistributedDataParallel) and not last:
            return module.no_sync()
        return nullcontext()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        for averaged, current in zip(self.ema.parameters(), self.generator.parameters()):
            averaged.lerp_(current, 1 - self.config.ema_decay)
        for averaged, current in zip(self.ema.buffers(), self.generator.buffers()):
            averaged.copy_(current)

    # -- validation ----------------------------------------------------------------------------

    def inference_generator(self) -> nn.Module:
        """The generator to ship: the EMA copy when EMA is on, else the trained one."""
        return self.ema if self.ema is not None else self.generator

    @torch.no_grad()
    def validate(self, batch_size: int = 32) -> dict[str, float]:
        """Mean PSNR / SSIM (and LPIPS) of the blended results on the held-out images and fixed masks."""
        if self._validation_data is None:
            self._validation_data = validation_set(self.validation_files, self.config.size, VALIDATION_SEED)
        images_all, masks_all = self._validation_data
        generator = self.inference_generator()
        was_training = generator.training
        generator.eval()
        scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": []}
        if self.lpips is not None:
            scores["lpips"] = []
        for start in range(0, len(images_all), batch_size):
            images = images_all[start:start + batch_size].to(self.device)
            masks = masks_all[start:start + batch_size].to(self.device)
            predicted = generator(generator_input(images, masks))
            blended = (masks * predicted + (1 - masks) * images).clamp(0, 1)
            scores["psnr"].append(psnr(blended, images).cpu())
            scores["ssim"].append(ssim(blended, images).cpu())
            if self.lpips is not None:
                scores["lpips"].append(self.lpips(blended, images).flatten().cpu())
        generator.train(was_training)
        return {name: float(torch.cat(values).mean()) for name, values in scores.items()}

    # -- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, wall_s: float) -> Path:
        """Write ``checkpoint.safetensors`` atomically (rank 0 only); returns its path."""
        from safetensors.torch import save_file

        path = self.run_dir / CHECKPOINT_NAME
        if self.rank != 0:
            return path
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("generator", self.generator), ("discriminator", self.discriminator),
                               ("ema", self.ema)):
            if module is not None:
                tensors.update({f"{prefix}.{key}": value.detach().cpu().contiguous()
                                for key, value in module.state_dict().items()})
        generator_state, generator_groups = _optimizer_tensors("optimizer_generator", self.optimizer_generator)
        discriminator_state, discriminator_groups = _optimizer_tensors("optimizer_discriminator",
                                                                       self.optimizer_discriminator)
        tensors.update(generator_state)
        tensors.update(discriminator_state)
        tensors["rng.torch"] = torch.get_rng_state()
        metadata = {"step": str(self.step), "wall_s": repr(wall_s), "config": json.dumps(self.config.to_dict()),
                    "generator_config": json.dumps(self.config.generator_config()),
                    "optimizer_generator.param_groups": generator_groups,
                    "optimizer_discriminator.param_groups": discriminator_groups}
        temporary = path.with_suffix(".tmp")
        save_file(tensors, str(temporary), metadata=metadata)
        os.replace(temporary, path)
        return path

    def _load_checkpoint(self) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self.run_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise ValueError(f"cannot resume: {path} does not exist; pass a run directory written by "
                             "relama-bench train")
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {key[len(prefix) + 1:]: value for key, value in tensors.items() if key.startswith(prefix + ".")}

        self.generator.load_state_dict(part("generator"), strict=True)
        self.discriminator.load_state_dict(part("discriminator"), strict=True)
        if self.ema is not None:
            self.ema.load_state_dict(part("ema"), strict=True)
        self.optimizer_generator.load_state_dict(_optimizer_state(
            "optimizer_generator", tensors, metadata["optimizer_generator.param_groups"]))
        self.optimizer_discriminator.load_state_dict(_optimizer_state(
            "optimizer_discriminator", tensors, metadata["optimizer_discriminator.param_groups"]))
        torch.set_rng_state(tensors["rng.torch"])
        self.step = int(metadata["step"])
        self.wall_before = float(metadata["wall_s"])
        if self.rank == 0:
            # Rows written after the checkpoint are redone by this run.
            for name in (LOSS_LOG, VALIDATION_LOG):
                log = self.run_dir / name
                if log.is_file():
                    rows = list(csv.reader(log.open()))
                    kept = rows[:1] + [row for row in rows[1:] if int(row[0]) <= self.step]
                    with log.open("w", newline="") as handle:
                        csv.writer(handle).writerows(kept)

    # -- logs ----------------------------------------------------------------------------------

    def _append(self, name: str, row: Mapping[str, float | int]) -> None:
        log = self.run_dir / name
        rows: list[Mapping[str, object]] = list(csv.DictReader(log.open())) if log.is_file() else []
        columns = list(rows[0].keys()) if rows else []
        if columns and set(row) <= set(columns):
            with log.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=columns).writerow(row)
            return
        # A new column (e.g. LPIPS switched on when resuming): rewrite the log with the wider header.
        columns += [key for key in row if key not in columns]
        with log.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows([*rows, row])

    def plot_curves(self) -> Path | None:
        """Loss and validation curves as ``curves.png`` from the CSV logs (rank 0 only)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import pandas as pd

        loss_log, validation_log = self.run_dir / LOSS_LOG, self.run_dir / VALIDATION_LOG
        if self.rank != 0 or not loss_log.is_file():
            return None
        frame = pd.read_csv(loss_log)
        validation = pd.read_csv(validation_log) if validation_log.is_file() else None
        metrics = [name for name in ("psnr", "ssim", "lpips") if validation is not None and name in validation]
        figure, axes = plt.subplots(1, 2 + len(metrics), figsize=(5 * (2 + len(metrics)), 3.6))
        for name in ("generator", "l1", "adversarial", "feature_matching", "perceptual"):
            if name in frame and frame[name].notna().any():
                axes[0].plot(frame["step"], frame[name], label=name)
        axes[0].set_title("generator losses")
        axes[0].set_yscale("log")
        for name in ("discriminator", "d_real", "d_fake", "r1"):
            axes[1].plot(frame["step"], frame[name], label=name)
        axes[1].set_title("discriminator losses")
        for axis, name in zip(axes[2:], metrics):
            axis.plot(validation["step"], validation[name], marker="o")
            axis.set_title(f"validation {name.upper()}")
        for axis in axes:
            axis.set_xlabel("step")
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7)
        title = f"{self.config.arch}: ngf {self.config.ngf}, {self.config.n_blocks} blocks, {self.config.size}px"
        figure.suptitle(title)
        figure.tight_layout()
        path = self.run_dir / CURVES
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path

    # -- loop ----------------------------------------------------------------------------------

    def run(self, stop_at: int | None = None) -> dict[str, float]:
        """Train until ``config.steps`` (or ``stop_at``), checkpointing and validating on schedule.

        Returns the last validation scores (validated at the end whatever the schedule).
        """
        from tqdm import tqdm

        config = self.config
        last = min(config.steps, stop_at) if stop_at is not None else config.steps
        started = time.perf_counter()
        bar = tqdm(total=config.steps, initial=self.step, disable=self.rank != 0 or not self.progress,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)
        window: list[dict[str, float]] = []
        scores: dict[str, float] = {}
        while self.step < last:
            window.append(self.train_step())
            bar.update(1)
            wall = self.wall_before + time.perf_counter() - started
            if self.step % config.log_every == 0 or self.step == last:
                means = {name: sum(row.get(name, math.nan) for row in window) / len(window) for name in LOSS_COLUMNS[2:]}
                window = []
                if self.rank == 0:
                    self._append(LOSS_LOG, {"step": self.step, "wall_s": round(wall, 2), **means})
                bar.set_postfix({name: f"{value:.3g}" for name, value in means.items()
                                 if name in ("generator", "l1", "perceptual", "discriminator")})
            if self.step % config.validation_every == 0 or self.step == last:
                scores = self.validate()
                if self.rank == 0:
                    self._append(VALIDATION_LOG, {"step": self.step, "wall_s": round(wall, 2), **scores})
                    self.plot_curves()
            if self.step % config.checkpoint_every == 0 or self.step == last:
                self.save_checkpoint(self.wall_before + time.perf_counter() - started)
        bar.close()
        self.wall_s = self.wall_before + time.perf_counter() - started
        # A run resumed at its last step trains nothing; its scores are still reported.
        return scores or self.validate()
