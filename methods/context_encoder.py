"""Context Encoder (Pathak et al., CVPR 2016) with the released Paris StreetView generator.

The released model (``netG_streetview.pth`` of BoyuanJiang/context_encoder_pytorch) fills one fixed hole:
given a 128x128 view whose central 56x56 square is set to constant fill values, it predicts the 64x64
centre (the hole plus a 4-pixel overlap ring of known pixels). This module reproduces the reference's
test-time procedure exactly (`prepare_reference_input`, `blank_center`, `paste_center`,
`center_hole_metrics`) and builds on it an adapter for any image and any mask.

How the adapter covers arbitrary holes
--------------------------------------
Holes are the 8-connected components of the mask. A component whose bounding box has its longer side
``extent`` of at most ``max_fill_side`` image pixels (default 224) is filled by one square view centred on
the box: the view is 128 pixels wide when ``extent <= 56`` (native scale, no resampling) and otherwise
``ceil((extent + 1) * 128 / 56)`` pixels wide, shrunk to 128x128 with PIL bilinear, so that the box always
lies inside the view's 56x56 blanked square. A larger component is cut by a regular grid into the fewest
equal tiles whose sides are at most ``max_fill_side``, and each tile's part of the hole gets its own view.
Views are filled one after another (components in raster order of their first pixel, tiles row by row),
each on the image as filled so far; hole pixels not yet filled show the reference's fill colour. Parts of
a view outside the image are filled by mirroring the image at its border. The 128x128 reconstruction (the
view with its 64x64 centre replaced by the prediction) is resized back to the view's size with bilinear
interpolation and only the component's hole pixels are taken from it.

Checking the released checkpoint against the paper
---------------------------------------------------
With ``netG_streetview.pth`` and the 100 Paris StreetView evaluation images (the folder
``dataset/val/paris_eval_gt`` of the reference repository), run::

    python -m methods.context_encoder --weights path/to/netG_streetview.pth --images path/to/paris_eval_gt

It follows the reference's ``test.py`` (blank the centre of every image, predict it) and prints the L2, L1
and the mean PSNR over the 64x64 centre. The paper (Table 1, Paris StreetView, central region) reports
a PSNR of 18.58 dB for the context encoder; a working checkpoint and port give a value of that order
(high teens of dB). For comparison, the untrained small generator of the golden tests gives 11.8 dB on
images 001-004, so a result near 12 dB points to wrong weights or a broken preprocessing.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from methods.base import Family, Inpainter, Option, Resolution, check_image_mask
from methods.checkpoint import CheckpointError, build_and_load, read_checkpoint, strip_prefix
from methods.nets.context_encoder import CENTER_SIZE, IMAGE_SIZE, ContextEncoderGenerator
from methods.registry import register_method
from methods.releases import GDRIVE_FILE, Release, ReleasedFile
from methods.weights_record import WeightsFile, WeightsRecord

#: Width of the blank ring of known pixels that the generator also predicts (the reference's ``overlapPred``).
OVERLAP = 4
#: Half-open row/column range of the predicted centre in a 128x128 view.
CENTER_START, CENTER_STOP = IMAGE_SIZE // 4, IMAGE_SIZE // 4 + CENTER_SIZE
#: Half-open row/column range set to the fill values (the centre shrunk by the overlap ring).
FILL_START, FILL_STOP = CENTER_START + OVERLAP, CENTER_STOP - OVERLAP
#: Side of the blanked square.
FILL_SIDE = FILL_STOP - FILL_START
#: Fill values in 8-bit terms, by channel index as the reference writes them (117 goes to channel 0).
FILL_VALUES_8BIT = (117, 104, 123)
#: Longest side of a hole (image pixels) that one view fills by default; larger holes are tiled.
DEFAULT_MAX_FILL_SIDE = 224


def fill_values() -> torch.Tensor:
    """The per-channel constants of the blanked square in the network's [-1, 1] range, float32."""
    return torch.tensor([2.0 * value / 255.0 - 1.0 for value in FILL_VALUES_8BIT], dtype=torch.float32)


def resize_and_crop(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Shorter side to ``size`` with PIL bilinear, then a centred ``size x size`` crop (``Scale`` + ``CenterCrop``).

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image.
    size : int
        Output side.

    Returns
    -------
    (size, size, 3) uint8 ndarray
    """
    height, width = image.shape[:2]
    if min(height, width) != size:
        if width <= height:
            new_width, new_height = size, int(size * height / width)
        else:
            new_width, new_height = int(size * width / height), size
        image = np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.BILINEAR))
        height, width = new_height, new_width
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image[top:top + size, left:left + size]


def to_network_range(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` RGB to float32 ``3 x H x W`` in [-1, 1] (``ToTensor`` then mean/std 0.5)."""
    unit = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32).div(255)
    return unit.sub(0.5).div(0.5)


def prepare_reference_input(images: Sequence[np.ndarray]) -> torch.Tensor:
    """The reference's ``input_real``: every image resized, centre-cropped and normalised, ``N x 3 x 128 x 128``."""
    return torch.stack([to_network_range(resize_and_crop(image)) for image in images])


def real_center(real: torch.Tensor) -> torch.Tensor:
    """The 64x64 centre (rows and columns 32 to 95) of ``N x 3 x 128 x 128`` images."""
    return real[:, :, CENTER_START:CENTER_STOP, CENTER_START:CENTER_STOP]


def blank_center(real: torch.Tensor) -> torch.Tensor:
    """The generator input: a copy with rows/columns 36 to 91 set to the per-channel fill values."""
    cropped = real.clone()
    values = fill_values().to(device=real.device, dtype=real.dtype).view(1, -1, 1, 1)
    cropped[:, :, FILL_START:FILL_STOP, FILL_START:FILL_STOP] = values
    return cropped


def paste_center(cropped: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The reference's reconstruction: the whole 64x64 prediction replaces the centre of the input."""
    recon = cropped.clone()
    recon[:, :, CENTER_START:CENTER_STOP, CENTER_START:CENTER_STOP] = prediction
    return recon


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """One ``3 x H x W`` image in [-1, 1] to uint8 ``H x W x 3`` RGB, rounded to the nearest level."""
    levels = (image.detach().float().cpu() + 1.0) * 127.5
    return levels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def center_hole_metrics(prediction: torch.Tensor, center: torch.Tensor) -> dict[str, Any]:
    """L2, L1 and PSNR of predicted centres as the reference's ``test.py`` prints them.

    L2 and L1 are means over all values in [-1, 1] units; PSNR is per image on the values mapped with
    ``(x + 1) * 127.5`` (no quantisation), peak 255, over the full 64x64 centre, computed in float32 numpy.

    Returns
    -------
    dict
        ``l2_mean``, ``l1_mean``, ``psnr_per_image`` (list) and ``psnr_mean``.
    """
    fake = prediction.detach().cpu().numpy().astype(np.float32)
    real = center.detach().cpu().numpy().astype(np.float32)
    difference = real - fake
    real_levels = (real + 1) * 127.5
    fake_levels = (fake + 1) * 127.5
    psnrs = []
    for real_image, fake_image in zip(real_levels, fake_levels):
        mse = np.mean((real_image.transpose(1, 2, 0) - fake_image.transpose(1, 2, 0)) ** 2)
        psnrs.append(100.0 if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse)))
    return {
        "l2_mean": float(np.mean(np.square(difference))),
        "l1_mean": float(np.mean(np.abs(difference))),
        "psnr_per_image": psnrs,
        "psnr_mean": sum(psnrs) / len(psnrs),
    }


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator in eval mode with the facts of the file it came from."""

    network: ContextEncoderGenerator
    path: Path
    epoch: int | None


def load_context_encoder(path: Path | str) -> LoadedGenerator:
    """Load a Context Encoder generator checkpoint safely and strictly.

    Accepts the released ``netG_streetview.pth`` (a dict ``{'epoch', 'state_dict'}``, legacy serialisation,
    CUDA-tagged storages, no ``num_batches_tracked`` entries), the same container re-saved with current
    torch, or a flat state dict (``.pth`` or ``.safetensors``). The widths (``nef``, ``ngf``,
    ``nBottleneck``) are read from the tensor shapes, so reduced-width generators load too.

    Raises
    ------
    CheckpointError
        The file cannot be read safely or its keys or shapes do not fit the generator.
    """
    path = Path(path)
    content = read_checkpoint(path)
    epoch = None
    if isinstance(content, Mapping) and "state_dict" in content:
        state, epoch = content["state_dict"], content.get("epoch")
    else:
        state = content
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(value) for value in state.values()):
        raise CheckpointError(
            f"checkpoint {path} is not a Context Encoder generator (expected a dict with a 'state_dict' of tensors, "
            "like netG_streetview.pth); pass --weights context-encoder=PATH to the released generator"
        )
    state = strip_prefix(state, "module.")
    widths = {}
    if "main.0.weight" in state and state["main.0.weight"].ndim == 4:
        widths["nc"], widths["nef"] = int(state["main.0.weight"].shape[1]), int(state["main.0.weight"].shape[0])
    if "main.14.weight" in state:
        widths["n_bottleneck"] = int(state["main.14.weight"].shape[0])
    if "main.17.weight" in state and state["main.17.weight"].ndim == 4:
        widths["ngf"] = int(state["main.17.weight"].shape[1]) // 8
    # Files from torch < 0.4 (the 2017 release) have no num_batches_tracked; eval mode never reads it.
    network = build_and_load(lambda: ContextEncoderGenerator(**widths), state, path,
                             allow_missing=lambda module: [key for key in module.state_dict()
                                                           if key.endswith("num_batches_tracked")])
    if network.nc != 3:
        raise CheckpointError(f"checkpoint {path} is a generator for {network.nc} channels; RGB (3) is required")
    network.eval()
    return LoadedGenerator(network=network, path=path, epoch=int(epoch) if isinstance(epoch, int) else None)


def view_side(extent: int) -> int:
    """Side (image pixels) of the square view whose 56x56 blanked square holds a hole ``extent`` pixels long."""
    if extent <= FILL_SIDE:
        return IMAGE_SIZE
    # One spare pixel so that the half-pixel rounding of the view's position cannot push the hole out.
    return -(-(extent + 1) * IMAGE_SIZE // FILL_SIDE)


def view_origin(top: int, bottom: int, left: int, right: int, side: int) -> tuple[int, int]:
    """Top-left corner of a ``side``-pixel view centred on the half-open box ``[top, bottom) x [left, right)``."""
    return (top + bottom - side) // 2, (left + right - side) // 2


def _mirror(indices: np.ndarray, length: int) -> np.ndarray:
    """Map indices outside ``[0, length)`` back inside by mirroring at the border (edge pixel repeated)."""
    period = indices % (2 * length)
    return np.where(period >= length, 2 * length - 1 - period, period)


def _tile_edges(start: int, stop: int, max_side: int) -> list[int]:
    count = -(-(stop - start) // max_side)
    return [start + (stop - start) * index // count for index in range(count + 1)]


def hole_pieces(mask: np.ndarray, max_fill_side: int = DEFAULT_MAX_FILL_SIDE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split a mask into the pieces that one view each fills, in filling order.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        ``True`` where pixels are missing.
    max_fill_side : int
        Longest bounding-box side of a piece; larger connected components are tiled.

    Returns
    -------
    list of (rows, cols)
        Pixel coordinates of each piece.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    pieces = []
    for label in range(1, count):
        left, top, width, height = (int(value) for value in stats[label, :4])
        component = labels[top:top + height, left:left + width] == label
        row_edges = _tile_edges(0, height, max_fill_side)
        col_edges = _tile_edges(0, width, max_fill_side)
        for row_start, row_stop in zip(row_edges[:-1], row_edges[1:]):
            for col_start, col_stop in zip(col_edges[:-1], col_edges[1:]):
                rows, cols = np.nonzero(component[row_start:row_stop, col_start:col_stop])
                if rows.size:
                    pieces.append((rows + top + row_start, cols + left + col_start))
    return pieces


@register_method
class ContextEncoder(Inpainter):
    """The released Paris StreetView Context Encoder, applied view by view to any hole (module docstring)."""

    name = "context-encoder"
    family = Family.CNN
    resolution = Resolution("native", IMAGE_SIZE)
    weights_record = WeightsRecord(
        takes="file",
        what="netG_streetview.pth, the Paris StreetView generator released with context_encoder_pytorch",
        files=(WeightsFile(path="", source="https://github.com/BoyuanJiang/context_encoder_pytorch (README, "
                                           "pretrained Paris StreetView model)",
                           licence="MIT (the repository's licence)"),),
        verification="read with weights_only=True (legacy container accepted); strict load (every key and shape)",
        release=Release(
            files=(ReleasedFile("netG_streetview.pth", GDRIVE_FILE, "0B6oeoQaX0xmzS0RXXzNYZkZ3ZUk"),),
            weights="netG_streetview.pth",
            expected=("netG_streetview.pth",),
        ),
    )
    devices = ("cpu", "cuda")
    options = {"max_fill_side": Option(int, "longest hole side filled from one view; longer holes are tiled",
                                       minimum=1)}
    summary = "Context Encoder (Pathak et al. 2016), Paris StreetView generator, one 128x128 view per hole"

    def __init__(self, weights: Path | str, *, device: str = "cpu",
                 max_fill_side: int = DEFAULT_MAX_FILL_SIDE) -> None:
        if max_fill_side < 1:
            raise ValueError(f"max_fill_side must be a positive number of pixels, got {max_fill_side}")
        self.loaded = load_context_encoder(weights)
        self.device = torch.device(device)
        self.network = self.loaded.network.to(self.device)
        self.max_fill_side = int(max_fill_side)

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        check_image_mask(image, mask)
        canvas = image.copy()
        canvas[mask] = FILL_VALUES_8BIT
        for rows, cols in hole_pieces(mask, self.max_fill_side):
            self._fill_piece(canvas, rows, cols)
        return canvas

    def _fill_piece(self, canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Fill the hole pixels ``(rows, cols)`` of ``canvas`` in place from one view around them."""
        top, bottom, left, right = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        side = view_side(max(bottom - top, right - left))
        view_top, view_left = view_origin(top, bottom, left, right, side)
        offsets = np.arange(side)
        view_rows = _mirror(view_top + offsets, canvas.shape[0])
        view_cols = _mirror(view_left + offsets, canvas.shape[1])
        view = canvas[view_rows[:, None], view_cols[None, :]]
        if side != IMAGE_SIZE:
            view = np.asarray(Image.fromarray(view).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
        cropped = blank_center(to_network_range(view)[None].to(self.device))
        with torch.inference_mode():
            recon = paste_center(cropped, self.network(cropped))
            if side != IMAGE_SIZE:
                recon = F.interpolate(recon, size=(side, side), mode="bilinear", align_corners=False)
        filled = to_uint8(recon[0])
        canvas[rows, cols] = filled[rows - view_top, cols - view_left]

    def describe(self) -> dict[str, str]:
        network = self.loaded.network
        facts = {
            "weights": self.loaded.path.name,
            "network": f"nef {network.nef}, ngf {network.ngf}, bottleneck {network.n_bottleneck}",
            "views": (
                "one square view per 8-connected hole, centred on it, 128 px (native) when the hole's box is at "
                "most 56 px, else ceil((extent+1)*128/56) px shrunk to 128; holes longer than "
                f"{self.max_fill_side} px are tiled into equal pieces of at most {self.max_fill_side} px; "
                "views filled in order on the image filled so far; mirrored outside the image"
            ),
        }
        if self.loaded.epoch is not None:
            facts["epoch"] = str(self.loaded.epoch)
        return facts


def evaluate_center_hole(generator: ContextEncoderGenerator, image_paths: Sequence[Path | str],
                         batch_size: int = 100) -> dict[str, Any]:
    """Centre-hole L2, L1 and PSNR over images, following the reference's ``test.py``.

    Parameters
    ----------
    generator : ContextEncoderGenerator
        In eval mode.
    image_paths : sequence of path-like
        Images of any size (resized and centre-cropped to 128x128 as the reference does).
    batch_size : int
        Images per forward pass; the metrics do not depend on it.
    """
    if not image_paths:
        raise ValueError("no images to evaluate: pass a folder holding image files")
    predictions, centers = [], []
    device = next(generator.parameters()).device
    for start in range(0, len(image_paths), batch_size):
        images = [np.asarray(Image.open(path).convert("RGB")) for path in image_paths[start:start + batch_size]]
        real = prepare_reference_input(images)
        with torch.inference_mode():
            predictions.append(generator(blank_center(real).to(device)).cpu())
        centers.append(real_center(real))
    metrics = center_hole_metrics(torch.cat(predictions), torch.cat(centers))
    metrics["images"] = len(image_paths)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Print the centre-hole metrics of a generator checkpoint on a folder of images."""
    parser = argparse.ArgumentParser(prog="python -m methods.context_encoder",
                                     description="centre-hole L2/L1/PSNR of a Context Encoder generator, as test.py")
    parser.add_argument("--weights", required=True, type=Path, help="netG_streetview.pth")
    parser.add_argument("--images", required=True, type=Path, help="folder of evaluation images (e.g. paris_eval_gt)")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder")
    paths = sorted(path for path in args.images.iterdir() if path.suffix.lower() in {".png", ".jpg", ".jpeg"})
    metrics = evaluate_center_hole(load_context_encoder(args.weights).network, paths)
    print(f"images {metrics['images']}  L2 {metrics['l2_mean']:.5f}  L1 {metrics['l1_mean']:.5f}  "
          f"PSNR {metrics['psnr_mean']:.2f} dB (paper, Paris StreetView centre: 18.58 dB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
