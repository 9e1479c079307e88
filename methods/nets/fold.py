"""Inference-time rewriting of FFC generators: BatchNorm folded into the preceding convolutions.

In eval mode a BatchNorm is an affine map per channel, so it can be merged into the linear layer in
front of it; the network then does the same arithmetic with one memory pass fewer per norm. In an
FFC layer each part's norm follows a *sum* of two branches, so its scale goes into both branch
convolutions and its shift into one of them.

The rewrite is in place and only valid for inference: the folded model has no BatchNorm modules
(and therefore different state-dict keys) and must not be trained.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.nets.ffc import FFC_BN_ACT, FourierUnit, SpectralTransform
from methods.nets.ffc_fused import can_fuse, fuse_ffc


def _scale_and_shift(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` with ``norm(x) == x * scale + shift`` in eval mode."""
    if norm.running_var is None or norm.running_mean is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    return scale, shift


def _scale_outputs(conv: nn.Module, scale: torch.Tensor) -> None:
    """Multiply every output channel of ``conv`` (weight and bias) by ``scale``."""
    if isinstance(conv, nn.ConvTranspose2d):
        if conv.groups != 1:
            raise ValueError("folding into a grouped transposed convolution is not supported")
        shape = (1, -1) + (1,) * (conv.weight.dim() - 2)
    elif isinstance(conv, nn.Conv2d):
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    else:
        raise TypeError(f"cannot fold a norm into {type(conv).__name__}")
    with torch.no_grad():
        conv.weight.copy_((conv.weight.double() * scale.view(shape)).to(conv.weight.dtype))
        if conv.bias is not None:
            conv.bias.copy_((conv.bias.double() * scale).to(conv.bias.dtype))


def _add_bias(conv: nn.Conv2d | nn.ConvTranspose2d, shift: torch.Tensor) -> None:
    with torch.no_grad():
        if conv.bias is None:
            conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
        else:
            conv.bias.add_(shift.to(conv.bias.dtype))


def _fold_into(convs: list[nn.Module], norm: nn.BatchNorm2d) -> None:
    """Fold ``norm`` into the sum of ``convs``: all are scaled, the first one takes the shift."""
    scale, shift = _scale_and_shift(norm)
    for conv in convs:
        _scale_outputs(conv, scale)
    _add_bias(convs[0], shift)


def _fold_ffc_bn_act(layer: FFC_BN_ACT) -> None:
    ffc = layer.ffc
    if isinstance(layer.bn_l, nn.BatchNorm2d):
        local_sources = [conv for conv in (ffc.convl2l, ffc.convg2l) if isinstance(conv, nn.Conv2d)]
        _fold_into(local_sources, layer.bn_l)
        layer.bn_l = nn.Identity()
    if isinstance(layer.bn_g, nn.BatchNorm2d):
        global_sources: list[nn.Module] = [conv for conv in (ffc.convl2g,) if isinstance(conv, nn.Conv2d)]
        if isinstance(ffc.convg2g, SpectralTransform):
            global_sources.append(ffc.convg2g.conv2)
        _fold_into(global_sources, layer.bn_g)
        layer.bn_g = nn.Identity()


def _fold_sequential(sequence: nn.Sequential) -> None:
    """Fold every BatchNorm2d that directly follows a convolution inside ``sequence``."""
    for index in range(1, len(sequence)):
        previous, current = sequence[index - 1], sequence[index]
        if isinstance(current, nn.BatchNorm2d) and isinstance(previous, (nn.Conv2d, nn.ConvTranspose2d)):
            _fold_into([previous], current)
            sequence[index] = nn.Identity()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold the BatchNorm layers of an FFC generator (or any conv stack) into their convolutions, in place.

    Parameters
    ----------
    model : nn.Module
        A generator from `methods.nets.ffc` / `methods.nets.cbam`, with its trained running statistics.

    Returns
    -------
    nn.Module
        ``model`` itself, in eval mode, without BatchNorm modules in the folded positions; outputs
        equal the unfolded model's up to float rounding.
    """
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, FourierUnit) and isinstance(module.bn, nn.BatchNorm2d):
            _fold_into([module.conv_layer], module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, FFC_BN_ACT):
            _fold_ffc_bn_act(module)
        elif isinstance(module, nn.Sequential):
            _fold_sequential(module)
    return model


def prepare_for_inference(model: nn.Module, *, channels_last: bool = False) -> nn.Module:
    """Make ``model`` an inference-only network: eval mode, no gradients, BatchNorm folded (in place).

    Parameters
    ----------
    model : nn.Module
        The generator to rewrite.
    channels_last : bool
        Also store the weights in channels-last layout and, for FFC generators, replace the FFC
        layers by the fused channels-last kernels of `methods.nets.ffc_fused` (feed it
        channels-last inputs).

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    fold_batchnorm(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if channels_last:
        if can_fuse(model):
            fuse_ffc(model)
        model.to(memory_format=torch.channels_last)
    return model
