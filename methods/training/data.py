"""Image folders, the held-out validation split and the step-indexed data order.

The order of training samples is a pure function of ``(seed, global sample counter)``: epoch ``e``
visits a permutation drawn from ``(seed, e)``. Step ``s`` uses samples ``s*B ... s*B+B-1`` of that
sequence (``B`` = global batch), and rank ``r`` of ``W`` processes takes its contiguous share, as a
distributed sampler would. Resuming at any step therefore needs no state, and the union of the
ranks' batches equals the single-process batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from methods.training.masks import sample_rng, training_mask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Stream ids of `sample_rng`; crops draw from their own stream so that the flips and masks of a
#: sample are the same whichever crop mode runs.
TRAIN_STREAM, VALIDATION_STREAM, CROP_STREAM = 0, 1, 2


def list_images(folder: Path | str) -> list[Path]:
    """Image files directly in ``folder``, sorted by name.

    Raises
    ------
    ValueError
        The folder does not exist or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"training data folder {folder} does not exist; pass a folder of images with --data")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"training data folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def split_validation(files: Sequence[Path], count: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Hold out ``count`` files chosen by a seeded permutation; returns ``(train, validation)`` in name order."""
    if not 0 <= count < len(files):
        raise ValueError(f"cannot hold out {count} of {len(files)} images for validation")
    chosen = set(np.random.default_rng(np.random.SeedSequence([seed, 7])).permutation(len(files))[:count].tolist())
    train = [path for index, path in enumerate(files) if index not in chosen]
    validation = [path for index, path in enumerate(files) if index in chosen]
    return train, validation


def read_rgb(path: Path) -> np.ndarray:
    """RGB uint8 ``H x W x 3`` of an image file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}; remove it from the training folder")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size x size`` square at a random scale of ``image`` (RGB uint8 ``H x W x 3``).

    The shorter side is resized to a length drawn uniformly from ``[size, shorter side]`` (so the
    image is never upscaled unless it is smaller than ``size``), then a square is cut at a uniformly
    drawn position: both the scale and the position vary from sample to sample.
    """
    height, width = image.shape[:2]
    shorter = min(height, width)
    target = int(rng.integers(size, max(size, shorter) + 1))
    if target != shorter:
        scale = target / shorter
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top = int(rng.integers(0, image.shape[0] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def load_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 ``size x size``: the shorter side resized to ``size``, then a centred square crop."""
    image = read_rgb(path)
    height, width = image.shape[:2]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        shrinking = scale < 1
        image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        top = (image.shape[0] - size) // 2
        left = (image.shape[1] - size) // 2
        image = image[top:top + size, left:left + size]
    return np.ascontiguousarray(image)


class StepOrder:
    """Global sample counter -> dataset index, with a fresh seeded permutation per epoch."""

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self._epoch = -1
        self._permutation = np.arange(length)

    def index(self, counter: int) -> int:
        epoch, position = divmod(counter, self.length)
        if epoch != self._epoch:
            self._permutation = np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(self.length)
            self._epoch = epoch
        return int(self._permutation[position])


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """``N x 3 x H x W`` float32 in [0, 1] from RGB uint8 arrays."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)


def masks_to_tensor(masks: Sequence[np.ndarray]) -> torch.Tensor:
    """``N x 1 x H x W`` float32 (1 = hole) from bool arrays."""
    return torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]


class TrainingBatches:
    """Batches of ``(images, masks)`` for a step, this process's share.

    Parameters
    ----------
    files : sequence of Path
        Training images.
    size : int
        Training side.
    batch_size : int
        Global batch (all processes together).
    seed : int
        Seed of the data order, crops, masks and flips.
    rank, world_size : int
        This process and the process count; ``batch_size`` must be divisible by ``world_size``.
    crop : {"centre", "random"}
        How a sample is cut from its image (`methods.training.config.CROP_MODES`).
    """

    def __init__(self, files: Sequence[Path], size: int, batch_size: int, seed: int, *, rank: int = 0,
                 world_size: int = 1, crop: str = "centre") -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the {world_size} processes")
        self.files = list(files)
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.local_batch = batch_size // world_size
        self.rank = rank
        self.crop = crop
        self.order = StepOrder(len(self.files), seed)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (``N x 3 x H x W`` in [0, 1]) and masks (``N x 1 x H x W``) for ``step``."""
        first = step * self.batch_size + self.rank * self.local_batch
        images, masks = [], []
        for counter in range(first, first + self.local_batch):
            rng = sample_rng(self.seed, TRAIN_STREAM, counter)
            path = self.files[self.order.index(counter)]
            if self.crop == "random":
                image = random_crop(read_rgb(path), self.size, sample_rng(self.seed, CROP_STREAM, counter))
            else:
                image = load_image(path, self.size)
            if rng.random() < 0.5:
                image = image[:, ::-1]
            images.append(image)
            masks.append(training_mask(self.size, rng))
        return to_tensor(images), masks_to_tensor(masks)


def validation_set(files: Sequence[Path], size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All validation images and their fixed masks (drawn from the training mix with ``seed``)."""
    images = [load_image(path, size) for path in files]
    masks = [training_mask(size, sample_rng(seed, VALIDATION_STREAM, index)) for index in range(len(files))]
    return to_tensor(images), masks_to_tensor(masks)
