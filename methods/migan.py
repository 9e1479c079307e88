"""MI-GAN (Sargsyan et al., ICCV 2023) with the authors' released generators.

Weights: ``--weights migan=FILE``, one of the files the authors publish (MIT licence, their
``LICENSE-WEIGHTS``), from the Google Drive folder linked in the README of
https://github.com/Picsart-AI-Research/MI-GAN
(https://drive.google.com/drive/folders/1xNtvN2lto0p5yFKOEEg9RioMjGrYM74w):

* ``migan_256_places2.pt`` and ``migan_512_places2.pt`` (Places2 scenes, 256 and 512);
* ``migan_256_ffhq.pt`` (FFHQ faces, 256).

``relama-bench weights fetch migan`` downloads ``migan_512_places2.pt`` (the model of the authors' ONNX
pipeline) into the suite's cache; the other two are fetched by hand from the same folder.

Each released file is a plain state dict; the model's side R (256 or 512) is read from its keys, and the option
``resolution`` only checks it. A generator takes exactly R x R inputs (its fixed noise and filter
buffers have that size), so the adapter always works on an R x R picture:

* ``mode="crop"`` (default, for real photos at any size): a square around the hole's bounding box is
  completed. Its side is the bounding box's longer extent (last minus first hole row or column) plus
  ``context`` pixels on each side (the authors' ONNX pipeline uses 128), at least R and at most the
  image's longer side. It is centred on the box's centre and shifted to lie inside the image; along an
  image side shorter than the square, the square is centred on the image and the image is mirrored
  (``numpy`` ``symmetric``) to fill it, mask included. The square is resized to R x R (area when
  shrinking, bicubic when enlarging; a working pixel is a hole if it touches any hole pixel), completed
  and blended with its known pixels, resized back (area / bicubic) and rounded, and **only the hole
  pixels** are pasted into the input; every known pixel keeps its full resolution. The authors' ONNX
  pipeline instead clips the square to the image (squashing it when the image is narrower than the
  square) and feathers the paste over about 2 pixels, which changes known pixels.
* ``mode="reference"``: the authors' evaluation script (``scripts/evaluate_fid_lpips.py``, which made
  the paper's numbers): the whole image is squashed to R x R (PIL bicubic), the mask with PIL nearest
  (a pixel is known only where the resized known-mask is 255), the output is blended as
  ``known * image + (1 - known) * output`` in float, and written as the export script does,
  ``(x * 127.5 + 127.5).clamp(0, 255)`` truncated to uint8. On an R x R input that is the reference
  exactly; other sizes are resized back to the input size (OpenCV bicubic, before the truncation),
  which the evaluation script never needs because its images are R x R.

Network input in both modes, as in every reference pipeline: ``cat(known - 0.5, image * known)`` with
the image in [-1, 1] (``uint8 * 2 / 255 - 1``) and known = 1 (the opposite of LaMa's mask).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import torch
from PIL import Image

from methods.base import Family, Inpainter, Option, Resolution, check_image_mask
from methods.checkpoint import CheckpointError, load_state_strict, read_checkpoint
from methods.lama import resize_image, resize_mask
from methods.nets.migan import INPUT_CHANNELS, RELEASED_CH_BASE, RELEASED_CH_MAX, MIGANGenerator
from methods.registry import register_method
from methods.releases import GDRIVE_FOLDER, Release, ReleasedFile
from methods.weights_record import WeightsFile, WeightsRecord

MODES = ("crop", "reference")
#: Context the authors' ONNX pipeline adds on each side of the hole's bounding box.
DEFAULT_CONTEXT = 128
#: Sides a checkpoint may declare; larger ones would allocate huge fixed buffers.
SUPPORTED_RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)
#: Widest block a checkpoint may declare (the released models: 512), checked before building.
MAX_WIDTH = 4096
RELEASED_FILES = {
    "migan_256_places2.pt": "Places2 scenes, 256x256",
    "migan_512_places2.pt": "Places2 scenes, 512x512",
    "migan_256_ffhq.pt": "FFHQ faces, 256x256",
}
#: Id of the authors' Google Drive folder of released generators, linked from their README.
RELEASE_FOLDER_ID = "1xNtvN2lto0p5yFKOEEg9RioMjGrYM74w"
#: The file `relama-bench weights fetch migan` downloads: the 512 Places2 model (the ONNX pipeline's).
FETCHED_FILE = "migan_512_places2.pt"
_FROM_RGB_KEY = re.compile(r"^encoder\.b(\d+)\.fromrgb\.weight$")


@dataclass(frozen=True)
class _CheckpointResolution(Resolution):
    """A native size that the weights file fixes (256 or 512), not the class."""

    def describe(self) -> str:
        return "runs at the file's 256x256 or 512x512 (hole crop or squash), resizes"


def read_migan_state(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a released ``migan_*.pt`` file (a plain state dict) without executing code from it."""
    path = Path(path)
    content = read_checkpoint(path)
    if not isinstance(content, Mapping) or not content or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items()
    ):
        raise CheckpointError(f"checkpoint {path} does not hold a plain state dict of tensors "
                              f"({type(content).__name__}); pass a released migan_*.pt file")
    return dict(content)


def generator_shape(state: Mapping[str, torch.Tensor], source: Path | str) -> dict[str, int]:
    """The ``resolution``, ``ch_base`` and ``ch_max`` of the generator that ``state`` belongs to.

    R is the ``r`` of the only ``encoder.b{r}.fromrgb.weight`` key; ``C(R)`` is that weight's output
    width and ``ch_max`` the width at 4x4, so ``ch_base = C(R) * R`` reproduces every width.
    """
    sides = [int(match.group(1)) for key in state if (match := _FROM_RGB_KEY.match(key))]
    if len(sides) != 1 or "encoder.b4.conv1.conv1.weight" not in state:
        raise CheckpointError(f"checkpoint {source} is not an MI-GAN generator (it needs exactly one "
                              "encoder.b<R>.fromrgb.weight and an encoder.b4 block); pass a released migan_*.pt file")
    resolution = sides[0]
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise CheckpointError(f"checkpoint {source} declares an MI-GAN of side {resolution}; supported sides are "
                              f"{', '.join(map(str, SUPPORTED_RESOLUTIONS))}")
    from_rgb = state[f"encoder.b{resolution}.fromrgb.weight"]
    if from_rgb.dim() != 4 or from_rgb.shape[1] != INPUT_CHANNELS:
        raise CheckpointError(f"checkpoint {source}: encoder.b{resolution}.fromrgb.weight has shape "
                              f"{tuple(from_rgb.shape)}, not C x 4 x 1 x 1; pass a released migan_*.pt file")
    top_width, bottom_width = int(from_rgb.shape[0]), int(state["encoder.b4.conv1.conv1.weight"].shape[0])
    if not 1 <= top_width <= bottom_width <= MAX_WIDTH:
        raise CheckpointError(f"checkpoint {source} has widths {top_width} at {resolution}x{resolution} and "
                              f"{bottom_width} at 4x4; MI-GAN widths grow towards 4x4 and stay at most {MAX_WIDTH}")
    return {"resolution": resolution, "ch_base": top_width * resolution, "ch_max": bottom_width}


def load_migan(path: Path | str, resolution: int | None = None) -> MIGANGenerator:
    """Build the generator a released file describes and load it strictly; eval mode, CPU.

    Parameters
    ----------
    path : path-like
        A ``migan_*.pt`` file (or a smaller file of the same layout).
    resolution : int, optional
        The side the caller expects; a file of another side is refused.

    Raises
    ------
    CheckpointError
        Unreadable or unsafe file, not an MI-GAN, another side than ``resolution``, or a key/shape mismatch.
    """
    state = read_migan_state(path)
    shape = generator_shape(state, path)
    if resolution is not None and shape["resolution"] != resolution:
        raise CheckpointError(f"checkpoint {path} holds a {shape['resolution']}x{shape['resolution']} MI-GAN but "
                              f"resolution={resolution} was asked for; pass the migan_{resolution}_*.pt file or "
                              "drop the resolution option")
    generator = MIGANGenerator(**shape)
    load_state_strict(generator, state, path)
    return generator.eval()


def network_input(image: np.ndarray, known: np.ndarray) -> torch.Tensor:
    """The reference's input ``cat(known - 0.5, image * known)`` as a ``1 x 4 x H x W`` float32 tensor.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB; mapped to [-1, 1] as ``u * 2 / 255 - 1`` in float32, as the reference does.
    known : (H, W) ndarray
        1 (or True) at known pixels, 0 at holes.
    """
    pixels = torch.tensor(image).float().permute(2, 0, 1)[None] * 2 / 255 - 1
    mask = torch.tensor(known, dtype=torch.float32)[None, None]
    return torch.cat([mask - 0.5, pixels * mask], dim=1)


def squash_like_evaluation(image: np.ndarray, hole: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation script's resizing: image to R x R with PIL bicubic (only when it is not R x R), the
    known-mask (255 = known) with PIL nearest, known where it is still 255.

    Returns
    -------
    (R, R, 3) uint8 ndarray and (R, R) float32 ndarray of 0/1 (1 = known).
    """
    size = (resolution, resolution)
    picture = Image.fromarray(image)
    if picture.size != size:
        picture = picture.resize(size, Image.BICUBIC)
    known = Image.fromarray(np.where(hole, 0, 255).astype(np.uint8)).resize(size, Image.NEAREST)
    return np.asarray(picture), (np.asarray(known) // 255).astype(np.float32)


def crop_square(hole: np.ndarray, resolution: int, context: int) -> tuple[int, int, int]:
    """The square the crop mode completes, as ``(top, left, side)``; it may extend past the image only
    along a side shorter than ``side`` (see the module docstring for the rule).

    Parameters
    ----------
    hole : (H, W) bool ndarray
        ``True`` at missing pixels; at least one must be set.
    """
    height, width = hole.shape
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    extent = max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0]))
    side = min(max(extent + 2 * context, resolution), max(height, width))
    top = _place(int(rows[0] + rows[-1]) // 2, side, height)
    left = _place(int(cols[0] + cols[-1]) // 2, side, width)
    return top, left, side


def _place(centre: int, side: int, length: int) -> int:
    """Start of a window of ``side`` centred on ``centre``, shifted inside ``[0, length)``, or centred on
    the whole axis when it is longer than the axis."""
    if side >= length:
        return -((side - length) // 2)
    return min(max(centre - side // 2, 0), length - side)


def _window(array: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """``array[top:top+side, left:left+side]``, mirroring the array where the window leaves it."""
    height, width = array.shape[:2]
    inside = array[max(top, 0):min(top + side, height), max(left, 0):min(left + side, width)]
    pad = [(max(-top, 0), max(top + side - height, 0)), (max(-left, 0), max(left + side - width, 0))]
    return np.pad(inside, pad + [(0, 0)] * (array.ndim - 2), mode="symmetric")


@register_method
class MIGAN(Inpainter):
    """MI-GAN with a released generator; see the module docstring for both modes and every convention.

    Parameters
    ----------
    weights : path
        A released ``migan_*.pt`` file.
    mode : {"crop", "reference"}
        Complete a square around the hole and paste back only hole pixels (default), or squash the whole
        image to R x R as the authors' evaluation script does.
    context : int
        Crop mode: pixels of context on each side of the hole's bounding box (the authors' 128).
    resolution : int, optional
        Expected side of the file's model (256 or 512); a file of another side is refused.
    device : str or torch.device
        Torch device of the generator.
    """

    name = "migan"
    family = Family.CNN
    resolution = _CheckpointResolution("native", 0)
    weights_record = WeightsRecord(
        takes="file",
        what=f"{', '.join(list(RELEASED_FILES)[:-1])} or {list(RELEASED_FILES)[-1]}: a released MI-GAN generator, "
             "its side (256 or 512) read from the file",
        files=(WeightsFile(path="", source="https://github.com/Picsart-AI-Research/MI-GAN (README, pre-trained models: "
                                           f"https://drive.google.com/drive/folders/{RELEASE_FOLDER_ID})",
                           licence="MIT (the repository's LICENSE-WEIGHTS)"),),
        verification="read with weights_only=True as a plain state dict; side and widths read from the keys and "
                     f"bounded (sides {SUPPORTED_RESOLUTIONS[0]}-{SUPPORTED_RESOLUTIONS[-1]}, widths at most "
                     f"{MAX_WIDTH}) before building; strict load (every key and shape)",
        release=Release(
            files=(ReleasedFile(FETCHED_FILE, GDRIVE_FOLDER, RELEASE_FOLDER_ID, folder_member=FETCHED_FILE),),
            weights=FETCHED_FILE,
            expected=(FETCHED_FILE,),
        ),
    )
    devices = ("cpu", "cuda")
    options = {
        "mode": Option(str, "crop: a square around the hole, only hole pixels pasted back; reference: the whole "
                            "image squashed to R x R as the authors' evaluation script", choices=MODES),
        "context": Option(int, "crop mode: pixels of context on each side of the hole's bounding box", minimum=0),
        "resolution": Option(int, "side the file's model must have (256 or 512 for the released files); none: "
                                  "the file's own", choices=SUPPORTED_RESOLUTIONS, allows_none=True),
    }
    can_use_random_weights = True
    summary = "MI-GAN (Sargsyan et al. 2023), 6M-parameter mobile GAN, released Places2/FFHQ generators"

    def __init__(self, weights: Path | str, *, mode: str = "crop", context: int = DEFAULT_CONTEXT,
                 resolution: int | None = None, device: str | torch.device = "cpu") -> None:
        self.weights: Path | None = Path(weights)
        self._install(load_migan(self.weights, resolution), mode=mode, context=context, device=device)

    @classmethod
    def with_random_weights(cls, *, resolution: int = 512, seed: int = 0,
                            device: str | torch.device = "cpu") -> "MIGAN":
        """The released architecture at ``resolution`` with fresh random weights, for timing and memory
        measurements only (`relama-bench perf --random-weights`); its completions are meaningless."""
        instance = cls.__new__(cls)
        instance.weights = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = MIGANGenerator(resolution, RELEASED_CH_BASE, RELEASED_CH_MAX).eval()
        instance._install(generator, mode="crop", context=DEFAULT_CONTEXT, device=device)
        return instance

    def _install(self, generator: MIGANGenerator, *, mode: str, context: int, device: str | torch.device) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if context < 0:
            raise ValueError(f"context must be at least 0 pixels, got {context}")
        self.mode = mode
        self.context = context
        self.device = torch.device(device)
        # Channels-last: the network is depthwise and 1x1 convolutions, which oneDNN runs much faster in
        # that layout on the CPU; outputs move by ~1e-7 (within the golden tolerance).
        self.generator = generator.to(self.device, memory_format=torch.channels_last)
        self.side = generator.resolution

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        """Fill the holes of one image (deterministic: ``seed`` is ignored)."""
        check_image_mask(image, mask)
        if not mask.any():
            return image.copy()
        if self.mode == "reference":
            return self._inpaint_reference(image, mask)
        return self._inpaint_crop(image, mask)

    def _complete(self, image: np.ndarray, known: np.ndarray) -> torch.Tensor:
        """``known * image + (1 - known) * G(x)`` in [-1, 1] for an R x R image, ``1 x 3 x R x R`` on the CPU."""
        x = network_input(image, known).to(self.device, memory_format=torch.channels_last)
        with torch.inference_mode():
            output = self.generator(x)
        known_tensor, pixels = x[:, :1] + 0.5, x[:, 1:]
        # The network input holds image * known, so the known part of the blend is already there.
        return (pixels + (1 - known_tensor) * output).cpu()

    def _inpaint_reference(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        height, width = mask.shape
        squashed, known = squash_like_evaluation(image, mask, self.side)
        composed = self._complete(squashed, known)
        pixels = (composed * 127.5 + 127.5).clamp(0, 255)[0].permute(1, 2, 0).numpy()
        if (height, width) != (self.side, self.side):
            pixels = np.clip(cv2.resize(pixels, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255)
        return pixels.astype(np.uint8)

    def _inpaint_crop(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        height, width = mask.shape
        top, left, side = crop_square(mask, self.side, self.context)
        size = (self.side, self.side)
        square_image = _window(image, top, left, side)
        square_hole = _window(mask, top, left, side)
        if side != self.side:
            square_image, square_hole = resize_image(square_image, size), resize_mask(square_hole, size)
        composed = self._complete(square_image, (~square_hole).astype(np.float32))
        pixels = (composed * 127.5 + 127.5).clamp(0, 255)[0].permute(1, 2, 0).numpy()
        if side != self.side:
            shrink = side < self.side
            pixels = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        filled = np.rint(np.clip(pixels, 0, 255)).astype(np.uint8)
        rows = slice(max(top, 0) - top, min(top + side, height) - top)
        cols = slice(max(left, 0) - left, min(left + side, width) - left)
        result = image.copy()
        window = result[max(top, 0):top + side, max(left, 0):left + side]
        hole = mask[max(top, 0):top + side, max(left, 0):left + side]
        window[hole] = filled[rows, cols][hole]
        return result

    def describe(self) -> dict[str, str]:
        parameters = sum(p.numel() for p in self.generator.parameters())
        if self.weights is None:
            weights = "random (timing only)"
        else:
            domain = RELEASED_FILES.get(self.weights.name)
            weights = self.weights.name + (f" ({domain})" if domain else "")
        if self.mode == "crop":
            mode = (f"crop: square around the hole with {self.context} px context, resized to {self.side}x{self.side}, "
                    "only hole pixels pasted back at full resolution")
        else:
            mode = f"reference: whole image squashed to {self.side}x{self.side} (evaluation script), float blend"
        return {"weights": weights, "resolution": f"{self.side}x{self.side}", "mode": mode,
                "parameters": f"{parameters / 1e6:.2f}M", "device": str(self.device)}
