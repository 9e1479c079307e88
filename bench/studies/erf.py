"""Effective receptive fields (ERF) of deep inpainting generators, as Luo et al. (NeurIPS 2016) define them.

The ERF of an output location is the map of ``|d y(p) / d x(q)|`` over input positions ``q``: the
gradient of the output at location ``p`` (summed over its channels) with respect to the generator's
input tensor, its absolute value averaged over the input channels and over many inputs. The output
may be the generator's final output or the output of an inner layer (``model.<i>``, reached with a
forward hook); an inner layer's map is taken at the same relative location.

Inputs are real images with the holes of each mask case, and uniform noise without a hole (Luo et
al.'s random inputs). The gradient is taken with respect to the whole input tensor (for LaMa the
masked RGB and the mask), so hole positions have a gradient too: the map says which input positions
the output responds to at the activations real inputs produce.

Summaries of a map around the location ``p``:

- ``r50`` / ``r90``: radius of the smallest disc around ``p`` holding 50 % / 90 % of the gradient mass;
- ``fraction above 1 %``: share of the image whose gradient exceeds 1 % of the map's peak.

A network enters through `ERFSubject`: an ``nn.Module`` and a function building its input from
``N x 3 x H x W`` images in [0, 1] and ``N x 1 x H x W`` masks (1 = hole). Method adapters provide
it through an ``erf_network()`` method returning ``(module, make_input)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.run.data import load_images
from bench.errors import UserError
from masks.cases import case_mask

MakeInput = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Name of the input set of uniform-noise images without a hole.
RANDOM_INPUTS = "random"
#: Name of the map pooled over all input sets (each set's map normalised to unit mass first).
POOLED = "pooled"
#: Share of the peak above which a position counts towards `fraction_above`.
PEAK_SHARE = 0.01
LOADED_LABEL = "loaded weights"
FRESH_LABEL = "freshly initialised weights"


@dataclass
class ERFSubject:
    """A network to analyse.

    Parameters
    ----------
    method : str
        Method name, for labels.
    weights : str
        ``"loaded weights"`` or ``"freshly initialised weights"``.
    detail : str
        Where the weights come from (file name, or the seed of the initialisation).
    module : nn.Module
        The generator, used in eval mode.
    make_input : callable
        ``make_input(images, masks)`` builds the generator's input tensor.
    """

    method: str
    weights: str
    detail: str
    module: nn.Module
    make_input: MakeInput


class _StopForward(Exception):
    """Raised by the layer hook once the chosen layer has produced its output."""


def layer_name(layer: int | None) -> str:
    """Label of a layer: ``"model.<i>"`` or ``"output"``."""
    return "output" if layer is None else f"model.{layer}"


def _tensor_parts(output: object) -> list[torch.Tensor]:
    # FFC layers return a (local, global) pair whose empty part is the int 0.
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, (tuple, list)):
        return [part for item in output for part in _tensor_parts(item)]
    return []


def _location_target(output: object, location: tuple[float, float]) -> torch.Tensor:
    """Sum over batch and channels of ``output`` at the relative ``location`` (every tensor part)."""
    parts = _tensor_parts(output)
    if not parts:
        raise ValueError("the chosen layer produced no tensor to take the gradient of")
    total = 0
    for part in parts:
        height, width = part.shape[-2:]
        row = min(int(location[0] * height), height - 1)
        col = min(int(location[1] * width), width - 1)
        total = total + part[..., row, col].sum()
    return total


def layer_output(module: nn.Module, network_input: torch.Tensor, layer: int | None) -> object:
    """The output of ``module`` (``layer=None``) or of its sub-module ``model.<layer>`` for ``network_input``.

    The forward pass stops at the chosen layer.
    """
    if layer is None:
        return module(network_input)
    try:
        target = module.get_submodule(f"model.{layer}")
    except AttributeError:
        raise UserError(f"the network has no layer model.{layer}: pass --layer with an index of its "
                        "'model' sequence, or leave it out for the output") from None
    captured: list[object] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        captured.append(output)
        raise _StopForward

    handle = target.register_forward_hook(hook)
    try:
        module(network_input)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


def gradient_map(
    module: nn.Module,
    make_input: MakeInput,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    layer: int | None = None,
    location: tuple[float, float] = (0.5, 0.5),
    batch_size: int = 4,
) -> np.ndarray:
    """Mean over inputs and input channels of ``|d y(location) / d input|``.

    Parameters
    ----------
    module : nn.Module
        The network; it is put in eval mode, so samples of a batch do not interact.
    make_input : callable
        Builds the network input from ``images`` and ``masks``.
    images : (N, 3, H, W) tensor
        Images in [0, 1].
    masks : (N, 1, H, W) tensor
        Hole masks, 1 = hole.
    layer : int, optional
        Index in ``module.model`` whose output is differentiated; ``None`` = the network output.
    location : (float, float)
        Output location as fractions of height and width (default: the centre).
    batch_size : int
        Inputs per backward pass.

    Returns
    -------
    (H, W) float64 ndarray
    """
    module.eval()
    device = next(module.parameters()).device
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    with torch.enable_grad():
        for start in range(0, images.shape[0], batch_size):
            network_input = make_input(images[start:start + batch_size].to(device),
                                       masks[start:start + batch_size].to(device)).detach().requires_grad_(True)
            target = _location_target(layer_output(module, network_input, layer), location)
            (gradient,) = torch.autograd.grad(target, network_input)
            total += gradient.abs().mean(dim=1).sum(dim=0).double().cpu()
    return (total / images.shape[0]).numpy()


def location_pixel(shape: tuple[int, int], location: tuple[float, float]) -> tuple[int, int]:
    """Pixel ``(row, col)`` of a relative location in an image of ``shape``."""
    return min(int(location[0] * shape[0]), shape[0] - 1), min(int(location[1] * shape[1]), shape[1] - 1)


def mass_radius(erf: np.ndarray, centre: tuple[int, int], share: float) -> float:
    """Radius (pixels) of the smallest disc around ``centre`` holding ``share`` of the map's total.

    Raises
    ------
    ValueError
        The map is zero everywhere.
    """
    rows, cols = np.indices(erf.shape)
    distance = np.hypot(rows - centre[0], cols - centre[1]).ravel()
    order = np.argsort(distance, kind="stable")
    cumulative = np.cumsum(erf.ravel()[order])
    if cumulative[-1] <= 0:
        raise ValueError("the gradient map is zero everywhere; the output does not depend on the input")
    index = int(np.searchsorted(cumulative, share * cumulative[-1], side="left"))
    return float(distance[order][min(index, distance.size - 1)])


def fraction_above(erf: np.ndarray, share: float = PEAK_SHARE) -> float:
    """Share of positions whose value exceeds ``share`` times the map's peak."""
    return float(np.mean(erf > share * erf.max()))


def support_radius(erf: np.ndarray, centre: tuple[int, int]) -> int:
    """Largest Chebyshev distance from ``centre`` of a position with a non-zero value."""
    rows, cols = np.nonzero(erf)
    if rows.size == 0:
        return -1
    return int(max(np.abs(rows - centre[0]).max(), np.abs(cols - centre[1]).max()))


def erf_summary(erf: np.ndarray, centre: tuple[int, int]) -> dict[str, float]:
    """``r50_px``, ``r90_px``, the same as fractions of the image side (``r50_side``, ``r90_side``) and
    ``frac_above_1pct``."""
    side = max(erf.shape)
    r50, r90 = mass_radius(erf, centre, 0.5), mass_radius(erf, centre, 0.9)
    return {"r50_px": r50, "r90_px": r90, "r50_side": r50 / side, "r90_side": r90 / side,
            "frac_above_1pct": fraction_above(erf)}


def freshly_initialised(module: nn.Module, seed: int) -> nn.Module:
    """A copy of ``module`` with every layer re-initialised by PyTorch's default rule (seeded), in eval mode.

    Normalisation layers get their default affine parameters and running statistics back.
    """
    fresh = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in fresh.modules():
            reset = getattr(layer, "reset_parameters", None)
            if callable(reset):
                reset()
    for parameter in fresh.parameters():
        parameter.requires_grad_(False)
    return fresh.eval()


def _adapter_options(cls: type) -> dict[str, object]:
    # Adapters that fold BatchNorm for speed are built unfolded, so that the fresh control
    # re-initialises the architecture the weights were trained in.
    return {"optimize": False} if "optimize" in cls.options else {}


def method_subjects(name: str, weights: Path | None, *, random_init: bool, seed: int = 0,
                    device: str = "cpu") -> list[ERFSubject]:
    """The networks of method ``name`` to analyse: its loaded weights, and/or a freshly initialised control.

    With ``weights``: the loaded network, plus (``random_init``) the same architecture freshly
    initialised. Without: only the freshly initialised default architecture, and only when
    ``random_init`` asks for it; weights are never substituted silently.

    Raises
    ------
    UserError
        Unknown method, method without a network, or no weights and no ``random_init``.
    """
    from methods.registry import create_method, get_method_class, resolve_device

    try:
        cls = get_method_class(name)
    except KeyError as error:
        raise UserError(str(error.args[0])) from None
    if not cls.has_erf_network:
        raise UserError(f"method {name!r} exposes no network for ERF analysis; "
                        "choose a deep method such as lama or relama-cbam")
    subjects = []
    if weights is None and cls.weights_record is not None:
        # Methods that ship their weights inside the package are measured with them.
        weights = cls.weights_record.default_path()
    if weights is not None:
        adapter = create_method(name, weights=weights, device=device, **_adapter_options(cls))
        module, make_input = adapter.erf_network()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        subjects.append(ERFSubject(name, LOADED_LABEL, Path(weights).name, module.eval(), make_input))
        if random_init:
            subjects.append(ERFSubject(name, FRESH_LABEL, f"same architecture, seed {seed}",
                                       freshly_initialised(module, seed), make_input))
        return subjects
    if not random_init:
        raise UserError(f"{name}: weights missing: pass --weights {name}=PATH, or --random-init to measure "
                        "freshly initialised weights")
    if not cls.can_use_random_weights:
        raise UserError(f"{name} cannot be built without weights: pass --weights {name}=PATH")
    adapter = cls.with_random_weights(seed=seed, device=resolve_device(cls, device), **_adapter_options(cls))
    module, make_input = adapter.erf_network()
    default_config = getattr(cls, "default_config", "default configuration")
    return [ERFSubject(name, FRESH_LABEL, f"{default_config}, seed {seed}", module.eval(), make_input)]


def input_sets(size: int, n_images: int, cases: Sequence[str], *, seed: int = 0,
               data: Path | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Inputs of the measurement: ``size x size`` images with each case's holes, and uniform noise.

    Returns
    -------
    dict
        ``case -> (images, masks)`` for each case, and ``"random" -> (noise, no hole)``; images are
        ``N x 3 x S x S`` in [0, 1], masks ``N x 1 x S x S`` (1 = hole).
    """
    if n_images < 1:
        raise UserError(f"--images {n_images} selects no input: pass a positive number")
    bench_images = load_images(data, size=size, limit=n_images)
    images = torch.from_numpy(np.stack([item.image for item in bench_images])).permute(0, 3, 1, 2).float() / 255
    sets = {}
    for case in cases:
        masks = np.stack([case_mask((size, size), item.image_id, case, seed) for item in bench_images])
        sets[case] = (images, torch.from_numpy(masks)[:, None].float())
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((len(bench_images), 3, size, size), generator=generator)
    sets[RANDOM_INPUTS] = (noise, torch.zeros((len(bench_images), 1, size, size)))
    return sets


@dataclass
class ERFResult:
    """Maps of one subject at one layer: one per input set plus the pooled map."""

    subject: ERFSubject
    layer: int | None
    maps: dict[str, np.ndarray]
    counts: dict[str, int]
    centre: tuple[int, int]


def measure(subject: ERFSubject, sets: dict[str, tuple[torch.Tensor, torch.Tensor]], layer: int | None, *,
            location: tuple[float, float] = (0.5, 0.5), batch_size: int = 4) -> ERFResult:
    """The ERF maps of ``subject`` at ``layer`` for every input set, and their pooled map."""
    maps, counts = {}, {}
    for set_name, (images, masks) in sets.items():
        maps[set_name] = gradient_map(subject.module, subject.make_input, images, masks, layer=layer,
                                      location=location, batch_size=batch_size)
        counts[set_name] = int(images.shape[0])
    maps[POOLED] = np.mean([erf / erf.sum() for erf in maps.values() if erf.sum() > 0], axis=0)
    counts[POOLED] = sum(counts.values())
    shape = next(iter(maps.values())).shape
    return ERFResult(subject, layer, maps, counts, location_pixel(shape, location))


def results_table(results: Sequence[ERFResult]) -> pd.DataFrame:
    """One row per method, weights, layer and input set, with `erf_summary`'s columns."""
    records = []
    for result in results:
        for set_name, erf in result.maps.items():
            records.append({"method": result.subject.method, "weights": result.subject.weights,
                            "layer": layer_name(result.layer), "inputs": set_name,
                            "n_inputs": result.counts[set_name], **erf_summary(erf, result.centre)})
    return pd.DataFrame(records)


def uniform_reference(size: int, location: tuple[float, float] = (0.5, 0.5)) -> dict[str, float]:
    """`erf_summary` of a flat map: what "the whole image, evenly" reads as."""
    flat = np.ones((size, size))
    return erf_summary(flat, location_pixel(flat.shape, location))


#: Colour scale of every ERF figure: log10 of the map divided by its own peak.
LOG_FLOOR = -4.0


def _log_normalised(erf: np.ndarray) -> np.ndarray:
    peak = erf.max()
    scaled = erf / peak if peak > 0 else erf
    return np.log10(np.maximum(scaled, 10 ** LOG_FLOOR))


def _draw_map(axis, erf: np.ndarray, centre: tuple[int, int], title: str):
    from matplotlib.patches import Circle

    image = axis.imshow(_log_normalised(erf), cmap="magma", vmin=LOG_FLOOR, vmax=0.0, interpolation="nearest")
    summary = erf_summary(erf, centre)
    for radius, style in ((summary["r50_px"], "-"), (summary["r90_px"], "--")):
        axis.add_patch(Circle((centre[1], centre[0]), radius, fill=False, color="cyan", linestyle=style, linewidth=1))
    axis.plot(centre[1], centre[0], marker="+", color="cyan", markersize=8)
    # Circles larger than the image must not widen the panel.
    axis.set_xlim(-0.5, erf.shape[1] - 0.5)
    axis.set_ylim(erf.shape[0] - 0.5, -0.5)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(f"{title}\nr50 {summary['r50_px']:.0f} / r90 {summary['r90_px']:.0f} px; "
                   f"{summary['frac_above_1pct'] * 100:.0f} % >1% peak", fontsize=7)
    return image


def _colourbar(figure, image, axes) -> None:
    bar = figure.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("log10(|gradient| / peak)")


def heatmap_figure(results: Sequence[ERFResult], path: Path) -> None:
    """One method's maps: a row per weights and layer, a column per input set (pooled last)."""

    from bench.report.figures import new_figure, save_figure

    set_names = list(results[0].maps)
    figure, axes = new_figure(len(results), len(set_names), squeeze=False,
                                figsize=(2.6 * len(set_names) + 1, 2.8 * len(results) + 0.6))
    image = None
    for row, result in enumerate(results):
        for col, set_name in enumerate(set_names):
            title = f"{set_name} (N={result.counts[set_name]})"
            image = _draw_map(axes[row, col], result.maps[set_name], result.centre, title)
        axes[row, 0].set_ylabel(f"{result.subject.weights}\n{layer_name(result.layer)}", fontsize=8)
    _colourbar(figure, image, axes)
    figure.suptitle(f"{results[0].subject.method}: effective receptive field of the marked output pixel "
                    "(solid circle 50 %, dashed 90 % of gradient mass)", fontsize=10)
    save_figure(figure, path)


def comparison_figure(results: Sequence[ERFResult], path: Path, *, inputs: str = POOLED) -> None:
    """Every method and weights side by side (columns), one row per layer, all at the same colour scale."""

    from bench.report.figures import new_figure, save_figure

    columns = list(dict.fromkeys((result.subject.method, result.subject.weights) for result in results))
    layers = list(dict.fromkeys(result.layer for result in results))
    figure, axes = new_figure(len(layers), len(columns), squeeze=False,
                                figsize=(2.6 * len(columns) + 1, 2.8 * len(layers) + 0.8))
    image = None
    for result in results:
        row = layers.index(result.layer)
        col = columns.index((result.subject.method, result.subject.weights))
        image = _draw_map(axes[row, col], result.maps[inputs], result.centre,
                          f"{result.subject.method} ({result.subject.weights.split()[0]}), "
                          f"{layer_name(result.layer)}")
    for row in range(len(layers)):
        for col in range(len(columns)):
            if not axes[row, col].images:
                axes[row, col].axis("off")
    _colourbar(figure, image, axes)
    figure.suptitle(f"Effective receptive fields ({inputs} inputs), same colour scale; 'loaded' = loaded weights, "
                    "'freshly' = freshly initialised weights", fontsize=10)
    save_figure(figure, path)


def depth_figure(table: pd.DataFrame, path: Path, *, inputs: str = POOLED) -> None:
    """r50 and the share above 1 % of peak against layer index, one line per method and weights."""

    from bench.report.figures import new_figure, save_figure

    data = table[(table["inputs"] == inputs) & (table["layer"] != "output")].copy()
    data["index"] = data["layer"].str.split(".").str[1].astype(int)
    figure, (left, right) = new_figure(1, 2, figsize=(10, 3.8))
    for (method, weights), group in data.groupby(["method", "weights"], sort=False):
        group = group.sort_values("index")
        label = f"{method}, {weights}"
        left.plot(group["index"], group["r50_side"], marker="o", label=label)
        right.plot(group["index"], group["frac_above_1pct"] * 100, marker="o", label=label)
    left.set_xlabel("layer (index in the generator's model sequence)")
    left.set_ylabel("r50 / image side")
    right.set_xlabel("layer (index in the generator's model sequence)")
    right.set_ylabel("% of image above 1 % of peak")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    left.legend(fontsize=7)
    figure.suptitle(f"ERF growth with depth ({inputs} inputs)", fontsize=10)
    save_figure(figure, path)
