"""ICT (Wan et al., ICCV 2021): a transformer samples a low-resolution appearance prior, then a CNN
upsamples it guided by the masked image.

The test-time pipeline follows the reference (raywzy/ICT ``run.py`` -> ``Transformer/inference.py`` ->
``Guided_Upsample/test.py``):

1. the image is squashed to the token grid (32x32, 48x48 for FFHQ) with Pillow bilinear, the mask with
   Pillow nearest (a token is missing when the sampled mask value is >= 128);
2. pixels are quantised to the 512-colour palette;
3. missing tokens are sampled one at a time in raster order, one full transformer forward pass per
   token, keeping the top-k logits;
4. the prior is upsampled to 256x256 with Pillow bicubic and, with the image (centre-cropped, bicubic)
   and the mask (squashed, bicubic, any non-zero value is a hole), fed to the upsampler.

``mode="reference"`` reproduces this, quirks included: the result is the raw generator output (no
compositing), the two stages threshold the mask differently, the upsampler centre-crops a non-square
image but squashes its mask, and pixels under the hole are read through the resize filters.
``mode="default"`` keeps the networks and sampler but uses one geometry (everything squashed to the
working size and resized back) and one mask rule (a token or pixel is a hole when any hole pixel
contributes to it through the resize filter, so no hidden pixel is ever read), rounds instead of
truncating, and composites the known pixels.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from methods.base import Family, Inpainter, Option, Resolution, check_image_mask
from methods.checkpoint import CheckpointError, build_and_load, read_checkpoint, strip_prefix
from methods.nets.ict_transformer import ICT_TRANSFORMER_CONFIGS, ICTTransformer, config_from_state_dict
from methods.nets.ict_upsampler import ICTUpsampler, upsampler_shape_from_state_dict
from methods.registry import register_method
from methods.releases import HTTP, Release, ReleasedFile
from methods.weights_record import WeightsFile, WeightsRecord

#: Dataset variants of the released checkpoints, in the order preferred when several are installed
#: (the benchmark's photos are natural scenes).
DATASETS: tuple[str, ...] = ("Places2_Nature", "ImageNet", "FFHQ")
#: Working size of the upsampler; the reference forces INPUT_SIZE to 256 at test time.
UPSAMPLER_SIZE = 256
#: ``run.py`` passes ``--top_k 40`` to the transformer stage.
DEFAULT_TOP_K = 40
MODES = ("default", "reference")

_PALETTE_FILE = "ict_kmeans_centers.npy"


@lru_cache(maxsize=1)
def palette_255() -> np.ndarray:
    """The 512 palette colours in 0..255 as float32 (512, 3), rounded half-to-even like the reference."""
    with importlib.resources.files("methods.data").joinpath(_PALETTE_FILE).open("rb") as handle:
        centres = np.load(handle)
    palette = np.rint(127.5 * (centres.astype(np.float32) + 1.0)).astype(np.float32)
    palette.setflags(write=False)
    return palette


def quantise(pixels: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Palette index of every pixel, in raster order.

    Parameters
    ----------
    pixels : (..., 3) uint8 ndarray
    palette : (K, 3) float32 ndarray, optional
        Defaults to `palette_255`.

    Returns
    -------
    (N,) int64 ndarray
        The index of the nearest colour by squared Euclidean distance in float32; ties go to the
        lowest index.
    """
    palette = palette_255() if palette is None else palette
    flat = pixels.reshape(-1, 3).astype(np.float32)
    distances = ((flat[:, None, :] - palette[None, :, :]) ** 2).sum(-1)
    return distances.argmin(axis=1).astype(np.int64)


def dequantise(tokens: np.ndarray, grid_size: int, palette: np.ndarray | None = None) -> np.ndarray:
    """``(grid, grid, 3)`` uint8 image of the palette colours of ``tokens`` (raster order)."""
    palette = palette_255() if palette is None else palette
    return palette[np.asarray(tokens)].reshape(grid_size, grid_size, 3).astype(np.uint8)


def pil_resize(array: np.ndarray, width: int, height: int, resample: Image.Resampling) -> np.ndarray:
    """Resize a uint8 image (H, W[, 3]) with Pillow, whose filters the reference relies on."""
    return np.array(Image.fromarray(array).resize((width, height), resample=resample))


def reference_transformer_inputs(
    image: np.ndarray, mask_u8: np.ndarray, grid_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The transformer stage's preprocessing as ``Transformer/inference.py`` does it.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    mask_u8 : (H, W) uint8 ndarray
        Grey-level mask, 255 = hole.
    grid_size : int

    Returns
    -------
    small : (grid, grid, 3) uint8 ndarray
        Pillow bilinear resize of the whole image (non-square images are squashed).
    tokens : (grid*grid,) int64 ndarray
        Palette indices, 0 at missing positions.
    missing : (grid*grid,) float32 ndarray
        1 where the nearest-resized mask is >= 128.
    """
    small = pil_resize(image, grid_size, grid_size, Image.Resampling.BILINEAR)
    small_mask = pil_resize(mask_u8, grid_size, grid_size, Image.Resampling.NEAREST)
    missing = (small_mask.reshape(-1) / 255.0 > 0.5).astype(np.float32)
    tokens = quantise(small) * (1 - missing.astype(np.int64))
    return small, tokens, missing


def reference_upsampler_inputs(
    image: np.ndarray, mask_u8: np.ndarray, priors: np.ndarray, size: int = UPSAMPLER_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The upsampler stage's preprocessing as the reference test Dataset does it.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    mask_u8 : (H, W) uint8 ndarray
        Grey-level mask, 255 = hole.
    priors : (n, S, S, 3) uint8 ndarray
        The transformer's palette images.
    size : int
        Working size (256 at test time).

    Returns
    -------
    image : (size, size, 3) uint8 ndarray
        Centre-cropped to the short side, then Pillow bicubic.
    hole : (size, size) bool ndarray
        Pillow bicubic of the whole (uncropped) mask, any non-zero value is a hole.
    priors : (n, size, size, 3) uint8 ndarray
        Pillow bicubic.
    """
    height, width = image.shape[:2]
    if height != width:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top:top + side, left:left + side]
    image = pil_resize(image, size, size, Image.Resampling.BICUBIC)
    hole = pil_resize(mask_u8, size, size, Image.Resampling.BICUBIC) > 0
    priors = np.stack([pil_resize(prior, size, size, Image.Resampling.BICUBIC) for prior in priors])
    return image, hole, priors


def contributing_holes(mask: np.ndarray, width: int, height: int, support: float) -> np.ndarray:
    """Which pixels of a resize to ``width x height`` read at least one hole pixel.

    The input span of an output pixel follows Pillow's resampling: centre ``(i + 0.5) * scale``,
    half-width ``support * max(scale, 1)`` (1 for bilinear, 2 for bicubic), both ends rounded as
    Pillow rounds them. A same-size resize is a copy, so the mask is returned unchanged.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        True = hole.
    width, height : int
        Output size.
    support : float
        The filter's support at scale 1.

    Returns
    -------
    (height, width) bool ndarray
    """
    if mask.shape == (height, width):
        return mask.copy()
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)

    def spans(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        scale = in_size / out_size
        half = support * max(scale, 1.0)
        centres = (np.arange(out_size) + 0.5) * scale
        low = np.clip(np.floor(centres - half + 0.5), 0, in_size).astype(np.int64)
        high = np.clip(np.floor(centres + half + 0.5), 0, in_size).astype(np.int64)
        return low, high

    rows_low, rows_high = spans(mask.shape[0], height)
    cols_low, cols_high = spans(mask.shape[1], width)
    counts = (
        integral[rows_high[:, None], cols_high[None, :]]
        - integral[rows_low[:, None], cols_high[None, :]]
        - integral[rows_high[:, None], cols_low[None, :]]
        + integral[rows_low[:, None], cols_low[None, :]]
    )
    return counts > 0


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf (ties with it are kept)."""
    kth = torch.topk(logits, k).values[:, [-1]]
    filtered = logits.clone()
    filtered[filtered < kth] = -float("inf")
    return filtered


def sample_tokens(
    model: ICTTransformer,
    tokens: torch.Tensor,
    missing: torch.Tensor,
    *,
    top_k: int = DEFAULT_TOP_K,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    fast: bool = True,
    progress: Callable[[Iterator[int], int], Iterator[int]] | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Fill the missing tokens one at a time, in raster order, like the reference's ``sample_mask``.

    Parameters
    ----------
    model : ICTTransformer
    tokens : (n, T) int64 tensor
        The n sample rows (usually identical copies); not modified.
    missing : (n, T) float32 tensor
        1 = missing; which positions are visited is read from row 0, as the reference does.
    top_k, temperature : int, float
        Sampling settings (the reference uses 40 and 1.0).
    generator : torch.Generator, optional
        Source of randomness; exactly one ``multinomial`` call is made per visited position.
    fast : bool
        Compute only the logits that are read (a window of rows in the last block, the final
        LayerNorm and the head) under ``inference_mode``. The logits, hence the samples, are
        bit-identical to those of the full forward pass (checked by the tests).
    progress : callable, optional
        Wraps the iterator over visited positions (e.g. a tqdm bar); receives it and its length.

    Returns
    -------
    tokens : (n, T) int64 tensor
        The completed sequences.
    visit_order : list of int
        The positions that were sampled.
    """
    tokens = tokens.clone()
    missing = missing.clone()
    visit_order = torch.nonzero(missing[0] != 0).flatten().tolist()
    positions: Iterator[int] = iter(visit_order)
    if progress is not None:
        positions = progress(positions, len(visit_order))
    context = torch.inference_mode() if fast else torch.no_grad()
    with context:
        for position in positions:
            if fast:
                logits = model(tokens, missing, position=position)
            else:
                logits = model(tokens, missing)[:, position, :]
            logits = logits / temperature
            if top_k:
                logits = top_k_filter(logits, top_k)
            probabilities = F.softmax(logits, dim=-1)
            drawn = torch.multinomial(probabilities, num_samples=1, generator=generator)
            tokens[:, position] = drawn[:, 0]
            missing[:, position] = 0.0
    return tokens, visit_order


def image_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (n, H, W, C) uint8 -> contiguous (n, C, H, W) float32 in [0, 1], dividing by 255.

    The layout matters: a channels-last input would send the convolutions down kernels whose
    rounding differs from the reference's.
    """
    batch = array if array.ndim == 4 else array[None]
    return torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2).contiguous().float().div(255)


def truncate_to_uint8(output: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) in [0, 1] -> (n, H, W, 3) uint8 by scaling by 255 and truncating, as the reference saves."""
    return (output * 255.0).permute(0, 2, 3, 1).int().to(torch.uint8).cpu().numpy()


def round_to_uint8(output: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) in [0, 1] -> (n, H, W, 3) uint8, rounded."""
    return (output * 255.0).round().clamp(0, 255).permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


# ----------------------------------------------------------------------------------------- checkpoints

def transformer_path(root: Path, dataset: str) -> Path:
    """Where the released layout keeps the transformer of ``dataset`` under a ``ckpts_ICT`` folder."""
    return root / "Transformer" / f"{dataset}.pth"


def upsampler_path(root: Path, dataset: str) -> Path:
    """Where the released layout keeps the upsampler generator of ``dataset``."""
    return root / "Upsample" / dataset / "InpaintingModel_gen.pth"


def checkpoint_root(weights: Path) -> Path:
    """The ``ckpts_ICT`` folder: ``weights`` itself, or its ``ckpts_ICT`` sub-folder when it has one."""
    nested = weights / "ckpts_ICT"
    return nested if nested.is_dir() else weights


def installed_datasets(weights: Path) -> list[str]:
    """Dataset variants with both checkpoints present under ``weights``, in preference order."""
    root = checkpoint_root(weights)
    return [
        dataset for dataset in DATASETS
        if transformer_path(root, dataset).is_file() and upsampler_path(root, dataset).is_file()
    ]


def _require_tensors(state: dict, path: Path) -> None:
    not_tensors = [str(key) for key, value in state.items() if not (isinstance(key, str) and torch.is_tensor(value))]
    if not_tensors:
        raise CheckpointError(f"checkpoint {path} has state dict entries that are not named tensors "
                              f"({', '.join(not_tensors[:4])}); pass an ICT checkpoint file")


def load_transformer(path: Path, dataset: str | None = None, n_head: int | None = None) -> ICTTransformer:
    """Load an ICT transformer checkpoint strictly.

    A ``.pt`` file may hold a bare state dict (the reference reads it so); otherwise the state dict is
    the ``'model'`` entry and every other entry (epoch, optimizer, ...) is ignored. The configuration
    is the released one of ``dataset`` when the shapes match it; otherwise it is read from the shapes,
    which needs ``n_head``.

    Raises
    ------
    CheckpointError
        The file is unreadable, has no state dict, or does not fit the model.
    """
    content = read_checkpoint(path)
    if isinstance(content, dict) and isinstance(content.get("model"), dict):
        state = content["model"]
    elif path.suffix == ".pt" and isinstance(content, dict) and "tok_emb.weight" in content:
        state = content
    else:
        raise CheckpointError(
            f"checkpoint {path} has no 'model' state dict: pass an ICT transformer file "
            "(ckpts_ICT/Transformer/<dataset>.pth)"
        )
    _require_tensors(state, path)
    if n_head is not None:
        if n_head < 1:
            raise ValueError(f"ict option n_head must be a positive number of heads, got {n_head}")
        try:
            config = config_from_state_dict(state, n_head)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {path} is not an ICT transformer ({error})") from None
    else:
        config = ICT_TRANSFORMER_CONFIGS.get(dataset or "")
        embedding = state.get("pos_emb")
        if config is None or embedding is None or tuple(embedding.shape) != (1, config.block_size, config.n_embd):
            raise CheckpointError(
                f"checkpoint {path} does not have the shapes of the released {dataset} transformer; "
                "for another configuration pass the option n_head"
            )
    return build_and_load(lambda: ICTTransformer(config), state, path).eval()


def load_upsampler(path: Path) -> ICTUpsampler:
    """Load an ICT upsampler generator (``'generator'`` entry, optional ``module.`` prefix) strictly.

    Raises
    ------
    CheckpointError
        The file is unreadable, has no ``'generator'`` entry, or does not fit the model.
    """
    content = read_checkpoint(path)
    if not (isinstance(content, dict) and isinstance(content.get("generator"), dict)):
        raise CheckpointError(
            f"checkpoint {path} has no 'generator' state dict: pass an ICT upsampler file "
            "(ckpts_ICT/Upsample/<dataset>/InpaintingModel_gen.pth)"
        )
    # Files saved from nn.DataParallel carry a 'module.' prefix (raywzy/ICT issue #17).
    state = strip_prefix(content["generator"], "module.")
    _require_tensors(state, path)
    try:
        base_width, residual_blocks = upsampler_shape_from_state_dict(state)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path} is not an ICT upsampler ({error})") from None
    return build_and_load(lambda: ICTUpsampler(base_width=base_width, residual_blocks=residual_blocks), state,
                          path).eval()


# -------------------------------------------------------------------------------------------- adapter

@dataclass
class ICTStats:
    """What the last call cost: transformer forward passes (one per missing token) and samples."""

    forward_passes: int = 0
    samples: int = 0


@register_method
class ICT(Inpainter):
    """ICT with the released checkpoints; ``--weights ict=DIR`` names the ``ckpts_ICT`` folder.

    Parameters
    ----------
    weights : Path
        Folder holding ``Transformer/<dataset>.pth`` and ``Upsample/<dataset>/InpaintingModel_gen.pth``.
    dataset : {"Places2_Nature", "ImageNet", "FFHQ"}, optional
        Variant to load; by default the first installed one in that order.
    mode : {"default", "reference"}
        See the module docstring.
    top_k, temperature : int, float
        Sampling settings (40 and 1.0 as ``run.py`` runs it).
    fast : bool
        Use the bit-identical faster sampler (see `sample_tokens`).
    n_head : int, optional
        Head count, only for transformer files that are not a released configuration.
    progress : bool, optional
        Show a bar over the sampled tokens; by default only on a terminal.
    device : str
        Torch device.
    """

    name = "ict"
    family = Family.TRANSFORMER
    resolution = Resolution("native", UPSAMPLER_SIZE)
    weights_record = WeightsRecord(
        takes="folder",
        what="the ckpts_ICT folder released with ICT (Transformer/ and Upsample/)",
        files=tuple(WeightsFile(path=path, source="https://github.com/raywzy/ICT (README, pretrained models: "
                                                  "ckpts_ICT)", licence="none stated; the README says academic research use only")
                    for path in ("Transformer/{variant}.pth", "Upsample/{variant}/InpaintingModel_gen.pth")),
        verification="read with weights_only=True; strict load of transformer and upsampler (every key and shape)",
        variants=DATASETS,
        nested_folder="ckpts_ICT",
        release=Release(
            files=(ReleasedFile("ckpts_ICT.zip", HTTP, "https://www.dropbox.com/s/cqjgcj0serkbdxd/ckpts_ICT.zip?dl=1",
                                unpack=True),),
            weights="ckpts_ICT",
            expected=("ckpts_ICT/Transformer/Places2_Nature.pth",
                      "ckpts_ICT/Upsample/Places2_Nature/InpaintingModel_gen.pth"),
        ),
    )
    devices = ("cpu", "cuda")
    options = {
        "dataset": Option(str, "variant to load; none: the first installed of " + ", ".join(DATASETS),
                          choices=DATASETS, allows_none=True),
        "mode": Option(str, "default: composited, one mask rule; reference: as the released code", choices=MODES),
        "top_k": Option(int, "sample among the k most likely tokens (0: no filter)", minimum=0),
        "temperature": Option(float, "sampling temperature (positive)"),
        "fast": Option(bool, "the bit-identical faster sampler"),
        "n_head": Option(int, "attention heads, only for transformer files of no released configuration",
                         minimum=1, allows_none=True),
        "progress": Option(bool, "a progress bar over the sampled tokens; none: only on a terminal", allows_none=True),
    }
    can_use_random_weights = True
    can_sample = True
    stochastic = True
    summary = "ICT (Wan et al. 2021): transformer appearance prior + guided upsampler"
    in_default_run = False

    def __init__(
        self,
        weights: Path,
        dataset: str | None = None,
        mode: str = "default",
        top_k: int = DEFAULT_TOP_K,
        temperature: float = 1.0,
        fast: bool = True,
        n_head: int | None = None,
        progress: bool | None = None,
        device: str = "cpu",
    ) -> None:
        self._configure(mode, top_k, temperature, fast, progress, device)
        weights = Path(weights)
        installed = installed_datasets(weights)
        if dataset is None:
            if not installed:
                raise CheckpointError(f"no ICT checkpoints under {weights}: {self.unavailable_reason(weights)}")
            dataset = installed[0]
        elif dataset not in DATASETS:
            raise ValueError(f"ict dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        elif dataset not in installed:
            raise CheckpointError(
                f"the {dataset} checkpoints are not under {weights}: expected "
                f"{transformer_path(checkpoint_root(weights), dataset)} and "
                f"{upsampler_path(checkpoint_root(weights), dataset)}"
            )
        root = checkpoint_root(weights)
        transformer_file, upsampler_file = transformer_path(root, dataset), upsampler_path(root, dataset)
        self._install(
            load_transformer(transformer_file, dataset, n_head), load_upsampler(upsampler_file),
            dataset, f"{transformer_file.relative_to(root)}, {upsampler_file.relative_to(root)}",
        )

    @classmethod
    def with_random_weights(
        cls,
        dataset: str = "Places2_Nature",
        *,
        seed: int = 0,
        mode: str = "default",
        fast: bool = True,
        progress: bool | None = None,
        device: str = "cpu",
    ) -> "ICT":
        """An instance of a released configuration with random weights, for timing only.

        Its images are meaningless; `relama-bench perf --random-weights` labels such rows.
        """
        if dataset not in ICT_TRANSFORMER_CONFIGS:
            raise ValueError(f"ict dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        instance = cls.__new__(cls)
        instance._configure(mode, DEFAULT_TOP_K, 1.0, fast, progress, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer = ICTTransformer(ICT_TRANSFORMER_CONFIGS[dataset]).eval()
            upsampler = ICTUpsampler().eval()
        instance._install(transformer, upsampler, dataset, "random (timing only)")
        return instance

    def _configure(
        self, mode: str, top_k: int, temperature: float, fast: bool, progress: bool | None, device: str
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"ict mode must be one of {', '.join(MODES)}, got {mode!r}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables the filter), got {top_k}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.mode = mode
        self.top_k = int(top_k)
        self.temperature = float(temperature)
        self.fast = bool(fast)
        self.progress = progress
        self.device = torch.device(device)
        self.stats = ICTStats()

    def _install(self, transformer: ICTTransformer, upsampler: ICTUpsampler, dataset: str, weights: str) -> None:
        self.transformer = transformer.to(self.device)
        self.upsampler = upsampler.to(self.device)
        self.dataset = dataset
        self.weights_label = weights
        self.grid_size = transformer.config.grid_size

    # ---------------------------------------------------------------------------------- interface

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        """Draw one completion; ``seed=None`` means seed 0, so runs are reproducible."""
        return self._complete(image, mask, 1, 0 if seed is None else seed)[0]

    def sample(self, image: np.ndarray, mask: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
        """Draw ``n`` completions; the n sequences go through the transformer together, as in the reference."""
        if n < 1:
            raise ValueError(f"number of samples must be at least 1, got {n}")
        return self._complete(image, mask, n, seed)

    def describe(self) -> dict[str, str]:
        if self.mode == "reference":
            mode = ("reference: raw generator output, no compositing; transformer mask nearest >= 128, "
                    "upsampler mask bicubic > 0; non-square images centre-cropped for the upsampler")
        else:
            mode = ("default: composited; one mask rule (any hole pixel under the resize filter) and one "
                    "geometry for both stages")
        return {
            "mode": mode,
            "dataset": self.dataset,
            "token grid": f"{self.grid_size}x{self.grid_size}",
            "sampling": (f"top-k {self.top_k}, temperature {self.temperature:g}; one transformer forward "
                         f"per missing token ({self.stats.forward_passes} for the last image)"),
            "sampler": "fast (bit-identical)" if self.fast else "reference",
            "weights": self.weights_label,
        }

    # ----------------------------------------------------------------------------------- pipeline

    def _progress(self, positions: Iterator[int], total: int) -> Iterator[int]:
        return tqdm(positions, total=total, desc="ict tokens", unit="tok", leave=False,
                    disable=None if self.progress is None else not self.progress)

    def _sample_priors(self, tokens: np.ndarray, missing: np.ndarray, n: int, seed: int) -> np.ndarray:
        token_rows = torch.from_numpy(tokens).to(self.device).repeat(n, 1)
        missing_rows = torch.from_numpy(missing).to(self.device).repeat(n, 1)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        completed, visited = sample_tokens(
            self.transformer, token_rows, missing_rows, top_k=self.top_k, temperature=self.temperature,
            generator=generator, fast=self.fast, progress=self._progress,
        )
        self.stats = ICTStats(forward_passes=len(visited), samples=n)
        return np.stack([dequantise(row, self.grid_size) for row in completed.cpu().numpy()])

    def _upsample(self, image: np.ndarray, hole: np.ndarray, priors: np.ndarray) -> torch.Tensor:
        images = image_to_tensor(image).to(self.device)
        holes = torch.from_numpy(hole).to(self.device, torch.float32)[None, None]
        prior_tensors = image_to_tensor(priors).to(self.device)
        generator_input = ICTUpsampler.build_input(images.expand(len(priors), -1, -1, -1), holes, prior_tensors)
        with torch.inference_mode():
            return self.upsampler(generator_input)

    def _complete(self, image: np.ndarray, mask: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
        check_image_mask(image, mask)
        if self.mode == "reference":
            return self._complete_reference(image, mask, n, seed)
        return self._complete_default(image, mask, n, seed)

    def _complete_reference(self, image: np.ndarray, mask: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
        height, width = mask.shape
        mask_u8 = mask.astype(np.uint8) * 255
        _, tokens, missing = reference_transformer_inputs(image, mask_u8, self.grid_size)
        priors = self._sample_priors(tokens, missing, n, seed)
        work_image, hole, work_priors = reference_upsampler_inputs(image, mask_u8, priors)
        outputs = truncate_to_uint8(self._upsample(work_image, hole, work_priors))
        # The reference writes the 256x256 result of the centre crop; map it back onto the crop and
        # fill the margins a non-square image loses from the prior, the only prediction covering them.
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        results = []
        for output, prior in zip(outputs, priors):
            result = pil_resize(prior, width, height, Image.Resampling.BICUBIC).copy()
            result[top:top + side, left:left + side] = pil_resize(output, side, side, Image.Resampling.BICUBIC)
            results.append(result)
        return results

    def _complete_default(self, image: np.ndarray, mask: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
        height, width = mask.shape
        grid, size = self.grid_size, UPSAMPLER_SIZE
        # Hidden pixels are zeroed so that no result can depend on them; the mask rule below
        # guarantees that nothing marked known reads them anyway.
        visible = np.where(mask[..., None], 0, image).astype(np.uint8)
        small = pil_resize(visible, grid, grid, Image.Resampling.BILINEAR)
        missing = contributing_holes(mask, grid, grid, support=1.0).reshape(-1).astype(np.float32)
        tokens = quantise(small) * (1 - missing.astype(np.int64))
        priors = self._sample_priors(tokens, missing, n, seed)
        work_image = pil_resize(visible, size, size, Image.Resampling.BICUBIC)
        hole = contributing_holes(mask, size, size, support=2.0)
        work_priors = np.stack([pil_resize(prior, size, size, Image.Resampling.BICUBIC) for prior in priors])
        outputs = round_to_uint8(self._upsample(work_image, hole, work_priors))
        results = []
        for output in outputs:
            resized = pil_resize(output, width, height, Image.Resampling.BICUBIC)
            results.append(np.where(mask[..., None], resized, image))
        return results
