"""Pluralistic Image Completion (PICNet, Zheng et al. 2019) with the authors' released checkpoints.

``--weights pluralistic=DIR`` names a folder holding the reference's ``latest_net_E.pth`` and
``latest_net_G.pth`` (e.g. ``checkpoints/celeba_center``); the discriminators are not needed.

Conventions, following the reference test path (`methods.nets.pluralistic` has the networks):

* The image goes in as RGB in [-1, 1]; the mask is the reference's polarity, 1 = known, 0 = hole,
  and the encoder sees only ``mask * image`` (holes at 0).
* Completions are drawn as the reference's ``test()`` draws them: the encoder runs once per image,
  then for each sample ``z ~ Normal(mu, sigma)`` of the encoder's prior for the masked image (no
  truncation, no temperature), one generator call, and ``(1 - mask) * G + mask * masked image``.
  Here ``z`` comes from a ``torch.Generator`` seeded with the call's seed, so a run is reproducible.
* Resolution: the released models were trained at 256x256 and the network needs sides that are
  multiples of 32. By default (``working_size=256``) every image is resized to 256x256 (area
  filter down, bilinear up; a working pixel is a hole when any hole pixel touches it), completed,
  and resized back, which is what the reference data loader does. ``working_size=None`` instead
  pads each side (mirror) up to a multiple of 32 and runs at the native size, up to 512x512.
* Spectral normalisation advances u and v on every network call, as in the reference (eval mode
  included). ``spectral_state="reset"`` (the default) restores the checkpoint's u and v before each
  image, so the output depends only on the image, the mask and the seed; within one `sample` call
  the generator's u and v still advance once per sample, as in the reference loop.
  ``spectral_state="carry"`` keeps them advancing across calls, exactly like a long reference run,
  so results then depend on the order of the calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import torch

from methods.base import Family, Inpainter, Option, Resolution, check_image_mask
from methods.checkpoint import CheckpointError, build_and_load, read_checkpoint, strip_prefix
from methods.nets.pluralistic import (
    PICNetEncoder,
    PICNetGenerator,
    attention_mask,
    power_iteration_state,
    restore_power_iteration_state,
)
from methods.registry import register_method
from methods.releases import GDRIVE_FOLDER, Release, ReleasedFile
from methods.weights_record import WeightsFile, WeightsRecord

ENCODER_FILE = "latest_net_E.pth"
GENERATOR_FILE = "latest_net_G.pth"
#: Side multiple the five stride-2 stages need.
SIDE_MULTIPLE = 32
#: Largest padded area accepted with ``working_size=None``; the attention map grows with its square.
MAX_PADDED_AREA = 512 * 512
#: The ``DataParallel`` prefix the released files carry on every key.
DATA_PARALLEL_PREFIX = "module."
SPECTRAL_STATES = ("reset", "carry")


def read_reference_state(path: Path) -> dict[str, torch.Tensor]:
    """Read one reference ``latest_net_*.pth`` file as a state dict with one ``module.`` prefix removed.

    Only a single leading ``module.`` is stripped: the spectral-norm keys contain ``.module.``
    themselves (``module.block0.conv1.module.bias`` becomes ``block0.conv1.module.bias``).
    """
    content = read_checkpoint(path)
    if not isinstance(content, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items()
    ):
        raise CheckpointError(
            f"checkpoint {path} does not hold a plain state dict of tensors ({type(content).__name__}); "
            "pass the reference's latest_net_E.pth / latest_net_G.pth files"
        )
    return strip_prefix(content, DATA_PARALLEL_PREFIX)


def _widths_from_encoder_state(state: Mapping[str, torch.Tensor], source: Path) -> dict[str, int]:
    """Base width, latent channels and width cap of the encoder that ``state`` belongs to."""
    first, prior_in, prior_out = (
        "block0.conv1.module.weight_bar", "prior.conv1.module.weight_bar", "prior.conv2.module.weight_bar",
    )
    for key in (first, prior_in, prior_out):
        if key not in state:
            raise CheckpointError(
                f"checkpoint {source} has no key {key!r}, so it is not a Pluralistic encoder; "
                f"pass the folder holding the reference's {ENCODER_FILE}"
            )
    # The top encoder width is ngf * min(16, img_f // ngf); using it as img_f builds the same network.
    return {
        "ngf": int(state[first].shape[0]),
        "z_nc": int(state[prior_out].shape[0]) // 2,
        "img_f": int(state[prior_in].shape[1]),
    }


def load_pluralistic(directory: Path | str) -> tuple[PICNetEncoder, PICNetGenerator]:
    """Build the encoder and generator from a reference checkpoint folder, strictly, in eval mode.

    The widths (base width, latent channels, width cap) are read from the encoder file, so the
    released models (32/128/128) and smaller test replicas both load; depth and heads are the
    released configuration (6 prior refinements, 5 stages, 4 output scales).

    Raises
    ------
    CheckpointError
        A file is missing, unreadable, or its keys or shapes do not fit; the message names the file.
    """
    directory = Path(directory)
    encoder_path, generator_path = directory / ENCODER_FILE, directory / GENERATOR_FILE
    encoder_state = read_reference_state(encoder_path)
    generator_state = read_reference_state(generator_path)
    widths = _widths_from_encoder_state(encoder_state, encoder_path)
    encoder = build_and_load(lambda: PICNetEncoder(**widths), encoder_state, encoder_path)
    generator = build_and_load(lambda: PICNetGenerator(**widths), generator_state, generator_path)
    return encoder.eval(), generator.eval()


@register_method
class Pluralistic(Inpainter):
    """PICNet with the released checkpoints; see the module docstring for every convention.

    Parameters
    ----------
    weights : path
        Folder with ``latest_net_E.pth`` and ``latest_net_G.pth``.
    working_size : int or None
        Side of the square the image is resized to (a multiple of 32; 256 = the training size), or
        ``None`` to pad to a multiple of 32 and run at the input size.
    spectral_state : {"reset", "carry"}
        Restore the checkpoint's spectral-norm u/v before each image (reproducible), or let them
        drift across calls as the reference does.
    device : str
        Torch device for the networks; sampling noise is always drawn on the CPU.
    """

    name = "pluralistic"
    family = Family.CNN
    resolution = Resolution("native", 256)
    weights_record = WeightsRecord(
        takes="folder",
        what=f"folder with the released {ENCODER_FILE} and {GENERATOR_FILE}",
        files=tuple(WeightsFile(path=file, source="https://github.com/lyndonzheng/Pluralistic-Inpainting (README, "
                                                  "pretrained models; fetched: Places2_random)",
                                licence="CC BY-NC 4.0 (the README's licence: research and education only)")
                    for file in (ENCODER_FILE, GENERATOR_FILE)),
        verification="read with weights_only=True; strict load of encoder and generator (every key and shape)",
        release=Release(
            files=tuple(ReleasedFile(f"places2_random/{name}", GDRIVE_FOLDER, "1L4NAHQqyEJ_ANt4SfEP1hdEVdGrteu4L",
                                     folder_member=name) for name in (ENCODER_FILE, GENERATOR_FILE)),
            weights="places2_random",
            expected=(f"places2_random/{ENCODER_FILE}", f"places2_random/{GENERATOR_FILE}"),
        ),
    )
    devices = ("cpu", "cuda")
    options = {
        "working_size": Option(int, f"square working side, a multiple of {SIDE_MULTIPLE} (256 = training size); none: "
                               "pad and run at the input size", minimum=SIDE_MULTIPLE, allows_none=True),
        "spectral_state": Option(str, "reset: spectral-norm u/v restored before each image; carry: as the reference",
                                 choices=SPECTRAL_STATES),
    }
    can_use_random_weights = True
    can_sample = True
    stochastic = True
    summary = "PICNet pluralistic completion (Zheng et al. 2019), released checkpoints, z from the encoder prior"

    def __init__(self, weights: Path | str, *, working_size: int | None = 256, spectral_state: str = "reset",
                 device: str = "cpu") -> None:
        if working_size is not None and (working_size < SIDE_MULTIPLE or working_size % SIDE_MULTIPLE):
            raise ValueError(f"working_size must be a positive multiple of {SIDE_MULTIPLE} or None, got {working_size}")
        if spectral_state not in SPECTRAL_STATES:
            raise ValueError(f"spectral_state must be one of {', '.join(SPECTRAL_STATES)}, got {spectral_state!r}")
        self.weights = Path(weights)
        self._install(*load_pluralistic(self.weights), working_size=working_size, spectral_state=spectral_state,
                      device=device)

    def _install(self, encoder: PICNetEncoder, generator: PICNetGenerator, *, working_size: int | None,
                 spectral_state: str, device: str) -> None:
        self.working_size = working_size
        self.spectral_state = spectral_state
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device)
        self.generator = generator.to(self.device)
        self._encoder_uv = power_iteration_state(self.encoder)
        self._generator_uv = power_iteration_state(self.generator)

    @classmethod
    def with_random_weights(cls, *, seed: int = 0, device: str = "cpu") -> "Pluralistic":
        """The released architecture (widths 32/128/128) with fresh random weights, for timing and memory
        measurements only (`relama-bench perf --random-weights`); its completions are meaningless."""
        instance = cls.__new__(cls)
        instance.weights = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder, generator = PICNetEncoder().eval(), PICNetGenerator().eval()
        instance._install(encoder, generator, working_size=256, spectral_state="reset", device=device)
        return instance

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        """One completion: the first sample the reference loop would draw with this seed (None = 0)."""
        return self.sample(image, mask, 1, 0 if seed is None else seed)[0]

    def sample(self, image: np.ndarray, mask: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
        """Draw ``n`` completions of one image from the encoder's prior, reproducibly for ``seed``.

        Sample ``k`` uses generator u/v advanced ``k`` times, as in the reference loop; with
        ``spectral_state="reset"`` sample 0 equals ``inpaint(image, mask, seed=seed)``.
        """
        check_image_mask(image, mask)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        working_image, known = self._to_working(image, mask)
        completions = self._complete(working_image, known, n, seed)
        return [self._from_working(completion, image.shape[:2]) for completion in completions]

    def describe(self) -> dict[str, str]:
        if self.working_size is None:
            size = f"input padded (mirror) to a multiple of {SIDE_MULTIPLE}, native size"
        else:
            size = f"resized to {self.working_size}x{self.working_size} and back (trained at 256x256)"
        if self.spectral_state == "reset":
            uv = "reset to the checkpoint before every image: reproducible from the seed"
        else:
            uv = "carried across calls as in the reference: depends on call order"
        widths = self.encoder.block0.conv1.module.weight_bar.shape[0], self.encoder.z_nc
        return {
            "weights": str(self.weights),
            "widths": f"ngf {widths[0]}, z_nc {widths[1]}",
            "resolution": size,
            "spectral-norm u/v": uv,
            "sampling": "z ~ N(mu, sigma) of the encoder prior for the masked image, torch.Generator(seed)",
            "device": str(self.device),
        }

    def _to_working(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Image in [-1, 1] and known-pixel mask (1 = known) at the working size, as 1xCxHxW tensors."""
        height, width = mask.shape
        hole = mask.astype(np.float32)
        if self.working_size is None:
            padded_h = -(-height // SIDE_MULTIPLE) * SIDE_MULTIPLE
            padded_w = -(-width // SIDE_MULTIPLE) * SIDE_MULTIPLE
            if padded_h * padded_w > MAX_PADDED_AREA:
                raise ValueError(
                    f"image {width}x{height} pads to {padded_w}x{padded_h}, more than the {MAX_PADDED_AREA} pixels "
                    "the attention layer handles with working_size=None; use working_size=256"
                )
            pad = ((0, padded_h - height), (0, padded_w - width))
            pixels = np.pad(image, pad + ((0, 0),), mode="symmetric")
            # Mirrored pixels are real image content, so the padding counts as known.
            hole = np.pad(hole, pad, mode="constant")
        else:
            size = (self.working_size, self.working_size)
            shrink = self.working_size < max(height, width)
            pixels = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            hole = cv2.resize(hole, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        known = (hole <= 0).astype(np.float32)
        image_tensor = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
        known_tensor = torch.from_numpy(known)[None, None]
        return image_tensor.to(self.device), known_tensor.to(self.device)

    def _from_working(self, completion: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Working-size completion in [-1, 1] to a uint8 RGB image of ``size`` (height, width)."""
        height, width = size
        pixels = ((completion[0].permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).clip(0, 255)
        if self.working_size is None:
            pixels = pixels[:height, :width]
        else:
            shrink = self.working_size > max(height, width)
            pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return np.rint(pixels).clip(0, 255).astype(np.uint8)

    def _complete(self, image: torch.Tensor, known: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
        """The reference test path on tensors: encode once, then ``n`` draws of z and generator calls."""
        if self.spectral_state == "reset":
            restore_power_iteration_state(self.encoder, self._encoder_uv)
            restore_power_iteration_state(self.generator, self._generator_uv)
        noise = torch.Generator().manual_seed(int(seed))
        completions = []
        with torch.no_grad():
            masked = known * image
            mu, std, features = self.encoder(masked)
            attn_mask = attention_mask(known, tuple(features[2].shape[-2:]))
            mu_cpu, std_cpu = mu.cpu(), std.cpu()
            for _ in range(n):
                z = torch.normal(mu_cpu, std_cpu, generator=noise).to(self.device)
                images, _ = self.generator(z, features[-1], features[2], attn_mask)
                completions.append((1 - known) * images[-1] + known * masked)
        return completions
