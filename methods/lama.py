"""The LaMa family's adapter: `FourierInpainter` (shared by LaMa, `methods.relama_cbam` and the
compact models of `methods.shipped`), the LaMa adapter, and loading of their checkpoints.

Supported weight files (all read without executing pickled code):

- the released ``big-lama/models/best.ckpt`` Lightning checkpoint: the ``generator.*`` keys are kept,
  everything else (evaluators, discriminator) is ignored; the pickled training config and callback
  classes are rebuilt as inert stand-ins so that ``weights_only=True`` accepts them;
- a plain generator ``state_dict`` saved with ``torch.save`` (keys ``model.<i>...``, optionally with a
  ``generator.`` prefix);
- this suite's own ``.safetensors`` files (`save_generator`), which carry the configuration.

The architecture is read from the checkpoint's config when it has one, otherwise inferred from the
tensor shapes; loading is strict. The pre- and post-processing reproduce the reference's
``bin/predict.py`` (``shared/golden/lama/README.md``).
"""

from __future__ import annotations

import collections
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import cv2
import numpy as np
import torch

from methods.base import Family, Inpainter, Option, Resolution, check_image_mask
from methods.checkpoint import CheckpointError, build_and_load, read_checkpoint
from methods.nets.allocator import retain_freed_memory
from methods.nets.cbam import ReLaMaCBAMGenerator, attention_keys
from methods.nets.configs import GENERATOR_KINDS, build_discriminator, build_generator, generator_config, generator_input
from methods.nets.ffc import FFCResNetGenerator
from methods.nets.fold import prepare_for_inference
from methods.registry import register_method
from methods.releases import HTTP, Release, ReleasedFile
from methods.weights_record import WeightsFile, WeightsRecord

__all__ = [
    "FourierInpainter",
    "GeneratorCheckpoint",
    "LaMa",
    "build_discriminator",
    "build_generator",
    "generator_input",
    "infer_generator_config",
    "load_generator",
    "pad_to_modulo",
    "read_generator_checkpoint",
    "resize_image",
    "resize_mask",
    "save_generator",
]

GENERATOR_PREFIX = "generator."

#: Reduced-precision compute types of the ``precision`` option; FFTs stay float32 in every mode.
AUTOCAST_TYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Values of the ``precision`` option: ``fp32`` (exact) and the reduced types.
PRECISION_OPTION = Option(str, "arithmetic: fp32 (exact), bf16 (CPU/CUDA) or fp16 (CUDA); reduced types run the "
                               "convolutions in that type, FFTs in fp32", choices=("fp32", *AUTOCAST_TYPES))


class PickledStandIn:
    """Inert replacement for a class pickled into a Lightning checkpoint; it only keeps the pickled state."""

    pickled_name: ClassVar[str] = ""


def _stand_in(dotted_name: str) -> tuple[type, str]:
    cls = type(dotted_name.rsplit(".", 1)[1], (PickledStandIn,), {"pickled_name": dotted_name, "__module__": __name__})
    return cls, dotted_name


#: What ``weights_only`` unpickling may rebuild in a LaMa Lightning checkpoint: omegaconf containers and
#: the Lightning callback class become stand-ins (neither package is needed); the rest are plain types.
LIGHTNING_SAFE_GLOBALS: list[Any] = [
    _stand_in(name)
    for name in (
        "omegaconf.dictconfig.DictConfig",
        "omegaconf.listconfig.ListConfig",
        "omegaconf.base.ContainerMetadata",
        "omegaconf.base.Metadata",
        "omegaconf.nodes.AnyNode",
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        "typing.Any",
    )
] + [dict, list, int, collections.defaultdict]

_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def _to_plain(value: Any) -> Any:
    """Turn pickled omegaconf stand-ins into plain dicts, lists and values."""
    if isinstance(value, PickledStandIn):
        state = vars(value)
        if "_content" in state:
            return _to_plain(state["_content"])
        return _to_plain(state.get("_val"))
    if isinstance(value, Mapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    return value


def _resolve(value: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """Resolve ``${a.b.c}`` references to other config entries; other interpolations are left as strings."""
    if depth > 32:
        raise ValueError("interpolation cycle in the checkpoint's config")
    if isinstance(value, Mapping):
        return {key: _resolve(item, root, depth) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, root, depth) for item in value]
    match = _INTERPOLATION.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    target: Any = root
    for part in match.group(1).split("."):
        if not isinstance(target, Mapping) or part not in target:
            return value
        target = target[part]
    return _resolve(target, root, depth + 1)


@dataclass
class GeneratorCheckpoint:
    """Generator weights read from a file, with the configuration the file states (if any)."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    source: Path
    container: str


def _generator_section(hyper_parameters: Any, source: Path) -> dict[str, Any] | None:
    plain = _to_plain(hyper_parameters)
    if not isinstance(plain, Mapping) or not isinstance(plain.get("generator"), Mapping):
        return None
    try:
        section = _resolve(plain["generator"], plain)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {source}: {error}; pass the architecture explicitly with config=...") from None
    unresolved = [f"{key}={value}" for key, value in section.items() if isinstance(value, str) and "${" in value]
    if unresolved:
        raise CheckpointError(f"checkpoint {source}: the generator config has unresolved interpolations "
                              f"({', '.join(unresolved)}); pass the architecture explicitly with config=...")
    return dict(section)


def read_generator_checkpoint(path: Path | str) -> GeneratorCheckpoint:
    """Read generator weights from a Lightning checkpoint, a state dict, or a ``.safetensors`` file.

    Raises
    ------
    CheckpointError
        The file is unreadable, unsafe, or holds no generator weights.
    """
    path = Path(path)
    content = read_checkpoint(path, safe_globals=LIGHTNING_SAFE_GLOBALS)
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        generator_state = {key[len(GENERATOR_PREFIX):]: value for key, value in content["state_dict"].items()
                           if key.startswith(GENERATOR_PREFIX)}
        if not generator_state:
            raise CheckpointError(f"checkpoint {path} is a training checkpoint without 'generator.*' weights; "
                                  "pass the LaMa Lightning checkpoint (big-lama/models/best.ckpt)")
        if not all(torch.is_tensor(value) for value in generator_state.values()):
            raise CheckpointError(f"checkpoint {path} has 'generator.*' entries that are not tensors; "
                                  "pass the LaMa Lightning checkpoint (big-lama/models/best.ckpt)")
        return GeneratorCheckpoint(generator_state, _generator_section(content.get("hyper_parameters"), path), path,
                                   "lightning")
    if not isinstance(content, Mapping) or not content or not all(torch.is_tensor(v) for v in content.values()):
        raise CheckpointError(f"checkpoint {path} is neither a Lightning checkpoint nor a state dict of tensors; "
                              "pass big-lama/models/best.ckpt, a generator state_dict or a .safetensors file")
    state = dict(content)
    if all(key.startswith(GENERATOR_PREFIX) for key in state):
        state = {key[len(GENERATOR_PREFIX):]: value for key, value in state.items()}
    config = None
    container = "state_dict"
    if path.suffix == ".safetensors":
        container = "safetensors"
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            stored = (handle.metadata() or {}).get("generator_config")
        config = _metadata_config(stored, path) if stored else None
    return GeneratorCheckpoint(state, config, path, container)


def _metadata_config(stored: str, path: Path) -> dict[str, Any]:
    """The ``generator_config`` metadata entry of a ``.safetensors`` file as a dict."""
    try:
        config = json.loads(stored)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path} has a generator_config metadata entry that is not valid JSON "
                              f"({error}); re-save the file with save_generator or pass config=...") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has a generator_config metadata entry that is a "
                              f"{type(config).__name__}, not a JSON object; re-save the file with save_generator")
    return config


def _block_indices(state: Mapping[str, torch.Tensor], marker: str) -> list[int]:
    pattern = re.compile(r"^model\.(\d+)\." + re.escape(marker))
    return sorted({int(match.group(1)) for key in state if (match := pattern.match(key))})


def _ratio(global_channels: int, channels: int) -> float:
    """A ratio whose ``int(channels * ratio)`` is exactly ``global_channels``."""
    ratio = global_channels / channels
    while int(channels * ratio) < global_channels:
        ratio = float(np.nextafter(ratio, 1.0))
    return ratio


def infer_generator_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Infer an ``ffc_resnet`` (or ``ffc_resnet_cbam``) configuration from a generator state dict.

    The output activation has no weights, so the big-lama choice (``sigmoid``) is assumed.

    Raises
    ------
    CheckpointError
        The state dict does not look like an FFC ResNet generator.
    """
    try:
        ngf, input_nc = state["model.1.ffc.convl2l.weight"].shape[:2]
        downsampling = [index for index in _block_indices(state, "ffc.") if index >= 2]
        blocks = _block_indices(state, "conv1.")
        first = f"model.{blocks[0]}.conv1.ffc."
        local_in = state[first + "convl2l.weight"].shape[1]
        global_in = state[first + "convg2l.weight"].shape[1] if first + "convg2l.weight" in state else 0
        global_out = state[first + "convl2g.weight"].shape[0] if first + "convl2g.weight" in state else 0
        output_nc = max(((int(key.split(".")[1]), value) for key, value in state.items()
                         if re.match(r"^model\.\d+\.weight$", key) and value.dim() == 4), key=lambda kv: kv[0])[1].shape[0]
    except (KeyError, IndexError, ValueError) as error:
        raise CheckpointError(f"the weights do not look like a LaMa FFC generator (no {error}); "
                              "pass a LaMa / ReLaMa-CBAM generator checkpoint") from None
    dim = local_in + global_in
    resnet = {"ratio_gin": _ratio(global_in, dim), "ratio_gout": _ratio(global_out, dim),
              "enable_lfu": f"{first}convg2g.lfu.conv_layer.weight" in state}
    flat = {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False}
    has_attention = any(".ca." in key for key in state)
    return {
        "kind": "ffc_resnet_cbam" if has_attention else "ffc_resnet",
        "input_nc": int(input_nc),
        "output_nc": int(output_nc),
        "ngf": int(ngf),
        "n_downsampling": len(downsampling),
        "n_blocks": len(blocks),
        "add_out_act": "sigmoid",
        "init_conv_kwargs": dict(flat),
        "downsample_conv_kwargs": dict(flat),
        "resnet_conv_kwargs": resnet,
    }


def load_generator(
    weights: Path | str,
    *,
    kind: str | None = None,
    config: str | Mapping[str, Any] | None = None,
    init_attention: bool = False,
    seed: int = 0,
) -> FFCResNetGenerator:
    """Build a generator and load ``weights`` into it strictly; the result is in eval mode on the CPU.

    Parameters
    ----------
    weights : path-like
        Any file `read_generator_checkpoint` accepts.
    kind : {"ffc_resnet", "ffc_resnet_cbam"}, optional
        Force the architecture family (the adapters do); by default the checkpoint decides.
    config : str or mapping, optional
        Architecture override (``"big-lama"``, a generator section); by default the checkpoint's own
        config, else one inferred from the tensor shapes.
    init_attention : bool
        For ``ffc_resnet_cbam``: accept a LaMa checkpoint without attention weights and initialise the
        attention modules afresh (PyTorch default init, drawn from ``seed``), to fine-tune ReLaMa-CBAM
        from LaMa.
    seed : int
        Seed of the fresh attention weights.

    Raises
    ------
    CheckpointError
        Unreadable file or a key/shape mismatch; the message lists missing and unexpected keys.
    """
    checkpoint = read_generator_checkpoint(weights)
    if config is not None:
        resolved = generator_config(config)
    elif checkpoint.config is not None:
        try:
            resolved = generator_config(checkpoint.config)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {checkpoint.source} describes a generator this suite does not know "
                                  f"({error}); pass config=... to name the architecture") from None
    else:
        try:
            resolved = infer_generator_config(checkpoint.state)
        except CheckpointError as error:
            raise CheckpointError(f"checkpoint {checkpoint.source}: {error}") from None
    if kind is not None:
        resolved["kind"] = kind
    _check_structure(resolved, checkpoint)

    def build() -> FFCResNetGenerator:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_generator(resolved)

    try:
        generator = build_and_load(build, checkpoint.state, checkpoint.source,
                                   allow_missing=attention_keys if init_attention else None)
    except CheckpointError as error:
        file_attention = any(".ca." in key or ".sa." in key for key in checkpoint.state)
        model_attention = GENERATOR_KINDS.get(resolved["kind"]) is ReLaMaCBAMGenerator
        if model_attention and not file_attention:
            raise CheckpointError(f"{error}; this looks like a LaMa checkpoint: pass init_attention=True to start "
                                  "ReLaMa-CBAM from it with fresh attention") from None
        if file_attention and not model_attention:
            raise CheckpointError(f"{error}; this looks like a ReLaMa-CBAM checkpoint: use it with relama-cbam") from None
        raise
    return generator.eval()


#: Configuration entries that set the generator's size; each must equal what the weights' shapes say.
_STRUCTURE_KEYS = ("input_nc", "output_nc", "ngf", "n_downsampling", "n_blocks")


def _check_structure(config: Mapping[str, Any], checkpoint: GeneratorCheckpoint) -> None:
    """Refuse a configuration whose widths and depths differ from the weights' before anything is built.

    A configuration comes from the file's metadata or an option, so it may ask for any size (``ngf``
    16384 is a 19 GB network); the tensor shapes bound it by what the file really holds. When the
    shapes are too damaged to infer a configuration, only the depths are bounded here (by the number
    of layers in the file) and `build_and_load` reports the mismatching keys.
    """
    try:
        inferred = infer_generator_config(checkpoint.state)
    except CheckpointError:
        layers = len({key.split(".")[1] for key in checkpoint.state if key.startswith("model.")})
        differences = [f"{key} {config[key]!r} but the file has {layers} layers"
                       for key in ("n_downsampling", "n_blocks")
                       if key in config and not (isinstance(config[key], int) and 0 <= config[key] <= layers)]
    else:
        differences = [f"{key} {config[key]!r} but the weights have {inferred[key]}"
                       for key in _STRUCTURE_KEYS if key in config and config[key] != inferred[key]]
    if differences:
        raise CheckpointError(f"checkpoint {checkpoint.source} does not fit its generator configuration "
                              f"({'; '.join(differences)}): pass weights and a configuration that belong together")


def save_generator(generator: FFCResNetGenerator, path: Path | str, config: str | Mapping[str, Any]) -> None:
    """Write ``generator``'s weights and configuration as ``.safetensors`` (readable by `load_generator`)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_generator writes .safetensors files, got {path}")
    state = {key: value.detach().cpu().contiguous() for key, value in generator.state_dict().items()}
    save_file(state, str(path), metadata={"generator_config": json.dumps(generator_config(config))})


def pad_to_modulo(array: np.ndarray, modulo: int, minimum: int = 0) -> np.ndarray:
    """Pad an ``H x W [x C]`` array at the bottom and right to multiples of ``modulo`` (numpy ``symmetric``).

    This is the reference's ``pad_img_to_modulo``: the mirror repeats the edge pixel. ``minimum``
    raises the padded size to at least that many pixels per side.
    """
    height, width = array.shape[:2]
    target_h = max(-(-height // modulo) * modulo, minimum)
    target_w = max(-(-width // modulo) * modulo, minimum)
    padding = [(0, target_h - height), (0, target_w - width)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, padding, mode="symmetric")


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Any overlap with a hole stays a hole, so no missing pixel is treated as known after resizing.
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    shrinking = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


class FourierInpainter(Inpainter):
    """Shared adapter of the FFC generators; subclasses fix the generator kind."""

    family = Family.FOURIER
    resolution = Resolution("modulo", 8)
    devices = ("cpu", "cuda")
    can_use_random_weights = True
    has_erf_network = True
    has_reference_path = True
    options = {
        "optimize": Option(bool, "fold BatchNorm, channels-last, inference_mode; false runs the network as trained"),
        "working_size": Option(int, "run at this fixed square size (a multiple of 8); none: the input size",
                               minimum=16, allows_none=True),
        "batch_size": Option(int, "most images per forward pass", minimum=1),
        "config": Option(str, "architecture override, e.g. big-lama; default: the checkpoint's own"),
        "init_attention": Option(bool, "relama-cbam only: start from LaMa weights with fresh attention"),
        "precision": PRECISION_OPTION,
    }
    generator_kind: ClassVar[str]
    #: Configuration used by `with_random_weights`.
    default_config: ClassVar[str | Mapping[str, Any]]

    def __init__(
        self,
        weights: Path | str,
        *,
        device: str | torch.device | None = None,
        optimize: bool = True,
        working_size: int | None = None,
        batch_size: int = 4,
        config: str | Mapping[str, Any] | None = None,
        init_attention: bool = False,
        precision: str = "fp32",
    ) -> None:
        """
        Parameters
        ----------
        weights : path-like
            Checkpoint file (see the module docstring).
        device : str or torch.device, optional
            Default: CUDA when available, else the CPU.
        optimize : bool
            Fold BatchNorm into the convolutions, use channels-last layout and run under
            ``torch.inference_mode`` (outputs equal
            the reference's within 1e-4); ``False`` runs the network exactly as trained.
        working_size : int, optional
            Run at this fixed square size (image resized, result resized back); default: native size.
        batch_size : int
            Most images per forward pass in `inpaint_batch` (images of the same size are batched).
        config : str or mapping, optional
            Architecture override, see `load_generator`.
        init_attention : bool
            ReLaMa-CBAM only: start from LaMa weights with fresh attention (see `load_generator`).
        precision : {"fp32", "bf16", "fp16"}
            ``fp32`` (default) is exact. ``bf16`` (CPU or CUDA) and ``fp16`` (CUDA only) run the
            convolutions under autocast in that type (the optimised path also stores its weights in
            it), FFTs in float32; faster, but outputs move by a few grey levels (measured in
            ``bench/studies/precision_accuracy.py``).
        """
        self._configure(device, optimize, working_size, batch_size, precision)
        self.weights: Path | None = Path(weights)
        self._install(load_generator(self.weights, kind=self.generator_kind, config=config,
                                     init_attention=init_attention))

    @classmethod
    def with_random_weights(cls, config: str | Mapping[str, Any] | None = None, *, seed: int = 0,
                            device: str | torch.device | None = None, optimize: bool = True,
                            batch_size: int = 4, precision: str = "fp32") -> "FourierInpainter":
        """An instance with freshly initialised weights, for timing and memory measurements only.

        Its outputs are meaningless; `relama-bench perf --random-weights` uses it and labels the rows.
        ``config`` defaults to the full released configuration (big-lama, or big-lama plus CBAM).
        """
        instance = cls.__new__(cls)
        instance._configure(device, optimize, None, batch_size, precision)
        instance.weights = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = build_generator(config if config is not None else cls.default_config)
        instance._install(generator.eval())
        return instance

    def _configure(self, device: str | torch.device | None, optimize: bool, working_size: int | None,
                   batch_size: int, precision: str) -> None:
        if working_size is not None and (working_size < 16 or working_size % 8):
            raise ValueError(f"working_size must be a multiple of 8 and at least 16, got {working_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.optimize = optimize
        self.working_size = working_size
        self.batch_size = batch_size
        if precision not in PRECISION_OPTION.choices:
            raise ValueError(f"precision {precision!r} is unknown; use one of {', '.join(PRECISION_OPTION.choices)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device (CPU half-precision convolutions are slow and "
                             "inaccurate); use 'bf16' on the CPU")
        self.precision = precision

    def _install(self, generator: FFCResNetGenerator) -> None:
        # Channels-last lets the oneDNN/cuDNN convolutions skip layout reorders (about 10 % on the CPU).
        self.generator = (prepare_for_inference(generator, channels_last=True) if self.optimize
                          else generator).to(self.device)
        if self.optimize and self.precision in AUTOCAST_TYPES:
            # Weights stored once in the reduced type: autocast would otherwise cast every one per call.
            self.generator.to(AUTOCAST_TYPES[self.precision])
        if self.optimize and self.device.type == "cpu":
            # Without it, glibc maps, faults in and zeroes the big feature maps afresh on every pass (~5 % at 512x512).
            retain_freed_memory()
        self.modulo = max(self.resolution.value, generator.size_multiple)
        # Reflect padding at the bottleneck needs at least 2 pixels there.
        self.minimum_side = 2 * generator.size_multiple

    def inpaint(self, image: np.ndarray, mask: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        return self.inpaint_batch([image], [mask], seed=seed)[0]

    def inpaint_batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
                      seed: int | None = None) -> list[np.ndarray]:
        if len(images) != len(masks):
            raise ValueError(f"got {len(images)} images but {len(masks)} masks")
        for image, mask in zip(images, masks):
            check_image_mask(image, mask)
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape[:2], []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                for index, result in zip(chunk, self._run([images[i] for i in chunk], [masks[i] for i in chunk])):
                    results[index] = result
        return results  # type: ignore[return-value]

    def _run(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        original_h, original_w = images[0].shape[:2]
        if self.working_size is not None:
            size = (self.working_size, self.working_size)
            images = [resize_image(image, size) for image in images]
            masks = [resize_mask(mask, size) for mask in masks]
        height, width = images[0].shape[:2]
        padded_images = np.stack([pad_to_modulo(image.astype(np.float32) / 255, self.modulo, self.minimum_side)
                                  for image in images])
        padded_masks = np.stack([pad_to_modulo(mask.astype(np.float32), self.modulo, self.minimum_side)
                                 for mask in masks])
        image_tensor = torch.from_numpy(padded_images).permute(0, 3, 1, 2).to(self.device)
        mask_tensor = (torch.from_numpy(padded_masks)[:, None] > 0).to(self.device, torch.float32)
        network_input = generator_input(image_tensor, mask_tensor)
        if self.optimize:
            network_input = network_input.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode() if self.optimize else torch.no_grad():
            with torch.autocast(self.device.type, dtype=AUTOCAST_TYPES.get(self.precision),
                                enabled=self.precision in AUTOCAST_TYPES):
                predicted = self.generator(network_input).float()
            blended = mask_tensor * predicted + (1 - mask_tensor) * image_tensor
        blended_np = blended.permute(0, 2, 3, 1).float().cpu().numpy()[:, :height, :width]
        # The reference truncates (astype after clip), it does not round.
        results = [np.clip(result * 255, 0, 255).astype(np.uint8) for result in blended_np]
        if self.working_size is not None:
            results = [cv2.resize(result, (original_w, original_h), interpolation=cv2.INTER_CUBIC)
                       for result in results]
        return results

    def erf_network(self) -> tuple[torch.nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """The generator and the function building its input from images and hole masks (for ERF analysis)."""
        return self.generator, generator_input

    def describe(self) -> dict[str, str]:
        parameters = sum(p.numel() for p in self.generator.parameters())
        weights = self.weights.name if self.weights is not None else "random (timing only)"
        facts = {"weights": weights, "device": str(self.device),
                 "parameters": f"{parameters / 1e6:.1f}M",
                 "inference": ("BatchNorm folded, fused channels-last FFC kernels, inference_mode" if self.optimize
                               else "as trained (reference path)"),
                 "precision": self.precision if self.precision == "fp32" else
                 f"{self.precision} autocast (convolutions {self.precision}, FFTs fp32)"}
        if self.working_size is not None:
            facts["working size"] = f"{self.working_size}x{self.working_size}"
        return facts


@register_method
class LaMa(FourierInpainter):
    name = "lama"
    summary = "LaMa (Suvorov et al. 2022), fast Fourier convolutions, big-lama"
    generator_kind = "ffc_resnet"
    default_config = "big-lama"
    weights_record = WeightsRecord(
        takes="file",
        what="big-lama/models/best.ckpt from LaMa's big-lama.zip, a LaMa generator state dict, or a relama-bench "
             ".safetensors",
        files=(WeightsFile(path="", source="https://github.com/advimman/lama (README, 'big-lama' pretrained model)",
                           licence="BSD-3-Clause (the repository's licence; the README states none for the weights)"),),
        verification="read with weights_only=True; strict load: every generator key and shape must match",
        release=Release(
            files=(ReleasedFile("big-lama.zip", HTTP, "https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip",
                                unpack=True),),
            weights="big-lama/models/best.ckpt",
            expected=("big-lama/config.yaml", "big-lama/models/best.ckpt"),
        ),
    )
