"""Inference kernels of the FFC generators on channels-last tensors (after BatchNorm folding).

The trained modules carry each feature map as a ``(local, global)`` pair and every FFC layer as four
branch convolutions whose results are summed. The fused modules keep the pair (each part one
channels-last tensor) but lay the arithmetic out with far fewer memory passes:

- each output part is made by one branch's convolution, carrying every branch's bias (folded
  BatchNorm shifts included); the other branch is accumulated into it by the convolution itself,
  with the part's ReLU, as oneDNN post-ops (`conv_accumulate_`), so no separate add or ReLU pass;
- reflection padding writes straight into a channels-last padded buffer; layers without a global
  input (the encoder's) and the output convolution reflect inside the convolution instead
  (`conv_with_reflected_borders`), with no padded copy;
- the FFTs run on planar data, where they are about 3x faster than over the pixel axes of
  channels-last data; the 1x1 products run channels-last in oneDNN (`fast_conv2d`); the layout
  changes between them are blocked 2-D transposes (`transpose_channels`) or transposes of whole
  complex numbers;
- every convolution keeps its weight in oneDNN's blocked layout between calls (`PackedWeights`)
  instead of having oneDNN convert it on each call;
- a final convolution with few output channels (LaMa's 64 -> 3, 7x7) runs as a wide ``1 x 7``
  convolution plus row sums (`RowStackedConv`);
- the decoder's transposed convolutions apply their ReLU in oneDNN's output stage (`ConvTransposeReLU`).

Outputs equal the pair-based modules' up to float rounding (tests hold them to 1e-4). Under CPU
autocast the convolutions and products run in the reduced type; the FFTs always run in float32.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from methods.nets.cbam import CBAMFFCResnetBlock
from methods.nets.ffc import (FFC, FFC_BN_ACT, ConcatTupleLayer, FeaturePair, FFCResnetBlock, FourierUnit,
                              SpectralTransform, lfu_quadrants)


def reflect_pad_nhwc(x: torch.Tensor, width: int) -> torch.Tensor:
    """Reflect-pad an ``N x H x W x C`` tensor (any strides) by ``width`` on both spatial sides.

    Equals ``F.pad(..., mode="reflect")``; the result is a new contiguous ``N x H+2w x W+2w x C`` tensor.
    """
    batch, height, width_in, channels = x.shape
    if width == 0:
        return x.contiguous()
    out = x.new_empty((batch, height + 2 * width, width_in + 2 * width, channels))
    out[:, width:width + height, width:width + width_in] = x
    for i in range(width):
        out[:, width - 1 - i, width:width + width_in] = x[:, i + 1]
        out[:, width + height + i, width:width + width_in] = x[:, height - 2 - i]
    for j in range(width):
        out[:, :, width - 1 - j] = out[:, :, width + 1 + j]
        out[:, :, width + width_in + j] = out[:, :, width + width_in - 2 - j]
    return out


def transpose_channels(x: torch.Tensor, *, to_planar: bool) -> torch.Tensor:
    """``x`` (``N x C x H x W``) copied into planar (``to_planar``) or channels-last memory; values unchanged.

    A copy that swaps the channel axis with the pixel axes, done per image as a 2-D transpose, which
    PyTorch copies in cache-sized blocks (about 4x faster here than ``contiguous(memory_format=...)``
    for planar to channels-last, whose element-wise copy walks one of the two tensors with a long stride).
    """
    batch, channels, height, width = x.shape
    if to_planar:
        out = x.new_empty((batch, channels, height * width))
        for index in range(batch):
            out[index].copy_(x[index].permute(1, 2, 0).reshape(height * width, channels).t())
        return out.view(batch, channels, height, width)
    out = x.new_empty((batch, height * width, channels))
    for index in range(batch):
        out[index].copy_(x[index].reshape(channels, height * width).t())
    return out.view(batch, height, width, channels).permute(0, 3, 1, 2)


class PackedWeights:
    """oneDNN-blocked copies of a module's convolution weights, made on first use and kept.

    Given a plain weight, oneDNN re-lays it out into its blocked format on every call (about 45 ms
    of a 2.2 s fp32 big-lama pass at 512x512); with the blocked copy kept, each weight is converted
    once per compute type and input shape. An entry is remade when its weight changes (other storage
    or type, or an in-place update) or the input shape or convolution geometry does. Copies and
    pickles of the owning module start empty: the blocked tensors are oneDNN objects of this
    process. Weights without a version counter (made under ``torch.inference_mode``) are converted
    per call, as an in-place change could not be seen.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, torch.Tensor]] = {}

    def __deepcopy__(self, memo: dict) -> "PackedWeights":
        return PackedWeights()

    def __reduce__(self) -> tuple[type, tuple]:
        return PackedWeights, ()

    def get(self, name: str, weight: torch.Tensor, dtype: torch.dtype, x: torch.Tensor, stride: tuple[int, int],
            padding: tuple[int, int], dilation: tuple[int, int],
            output_padding: tuple[int, int] | None = None) -> torch.Tensor:
        """The blocked ``dtype`` copy of ``weight`` (the module's ``name``) for convolving inputs like ``x``;
        with ``output_padding``, of a transposed convolution's weight."""
        if weight.is_inference():
            return weight.to(dtype)
        # oneDNN picks the blocked format for the input's shape and converts a weight blocked for another
        # shape at every call, at up to 100x the cost of a plain one (a 66x66 format used on a 66x3 strip):
        # one entry per weight, remade when the shape changes (as often as a plain weight is converted).
        key = (weight.data_ptr(), weight.dtype, weight._version, dtype, tuple(x.shape), stride, padding, dilation,
               output_padding)
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            if output_padding is None:
                packed = torch.ops.mkldnn._reorder_convolution_weight(
                    weight.to(dtype), list(padding), list(stride), list(dilation), 1, list(x.shape))
            else:
                packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                    weight.to(dtype), list(padding), list(output_padding), list(stride), list(dilation), 1,
                    list(x.shape))
            entry = self._entries[name] = (key, packed)
        return entry[1]


def _onednn_applies(x: torch.Tensor) -> bool:
    """Whether ``x``'s convolutions can call oneDNN directly: on the CPU, outside ``torch.compile`` tracing."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling() and torch.backends.mkldnn.is_available()


def _compute_type(weight: torch.Tensor) -> torch.dtype:
    """The CPU autocast type when autocast is on (as ``F.conv2d`` would compute), else the weights' type."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else weight.dtype


def fast_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                packed: tuple[PackedWeights, str] | None = None, stride: tuple[int, int] = (1, 1),
                padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
                relu: bool = False) -> torch.Tensor:
    """``F.conv2d`` (ungrouped), then ReLU if ``relu``, as one oneDNN call with the weight kept blocked.

    On the CPU this calls oneDNN directly: ``F.conv2d`` sends unstrided 1x1 convolutions of small
    batches on one thread to an unfold + BLAS path at about 40 % of oneDNN's speed here, and oneDNN
    applies the ReLU in its output stage. ``packed`` (the module's `PackedWeights` and the weight's
    name) keeps the weight in oneDNN's blocked layout between calls. It computes in the CPU
    autocast type when autocast is on, else in the weights' type. Other devices, and graphs being
    traced by ``torch.compile`` (which picks its own kernels), use ``F.conv2d``.
    """
    if not _onednn_applies(x):
        out = F.conv2d(x, weight, bias, stride, padding, dilation)
        return out.relu_() if relu else out
    dtype = _compute_type(weight)
    kernel = packed[0].get(packed[1], weight, dtype, x, stride, padding, dilation) if packed else weight.to(dtype)
    return torch.ops.mkldnn._convolution_pointwise(
        x.to(dtype), kernel, bias.to(dtype) if bias is not None else None, list(padding), list(stride),
        list(dilation), 1, "relu" if relu else "none", [], "")


class _FourierProduct(nn.Module):
    """A BatchNorm-folded `FourierUnit` on planar ``N x C x H x W`` data: FFT, 1x1 product + bias + ReLU, inverse FFT.

    The FFTs run on planar data (about 3x faster here than over the H and W axes of channels-last
    data, which the FFT transposes internally anyway); the 1x1 product runs channels-last, where
    oneDNN is fastest. Between the two, the spectrum is transposed as complex numbers, one copy each
    way, so that each (Re, Im) pair moves as one element.
    """

    def __init__(self, unit: FourierUnit) -> None:
        super().__init__()
        if unit.groups != 1 or not isinstance(unit.bn, nn.Identity):
            raise ValueError("only folded, ungrouped Fourier units can be fused")
        self.fft_norm = unit.fft_norm
        self.conv = unit.conv_layer
        self.packed = PackedWeights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        spectrum = torch.fft.rfftn(x.float(), dim=(2, 3), norm=self.fft_norm)
        half_width = spectrum.shape[3]
        # (N, H, W', C) complex as (N, H, W', 2C) real: channel 2k = Re, 2k+1 = Im, the reference's order.
        pairs = torch.view_as_real(spectrum.permute(0, 2, 3, 1).contiguous()).reshape(batch, height, half_width, -1)
        mixed = fast_conv2d(pairs.permute(0, 3, 1, 2), self.conv.weight, self.conv.bias, packed=(self.packed, "conv"),
                            relu=True)
        mixed_pairs = mixed.permute(0, 2, 3, 1).float().reshape(batch, height, half_width, -1, 2)
        # irfftn in its own two steps (as it computes it), with a contiguous copy between them: the inverse
        # real FFT along the rows of the strided column-transform result was the slower part (at 32x32,
        # 0.37 instead of 0.55 ms; same values).
        columns = torch.fft.ifft(torch.view_as_complex(mixed_pairs).permute(0, 3, 1, 2), dim=2, norm=self.fft_norm)
        return torch.fft.irfft(columns.contiguous(), n=width, dim=3, norm=self.fft_norm)


class _SpectralProduct(nn.Module):
    """A folded `SpectralTransform` on channels-last data, up to its output 1x1 convolution, which the
    enclosing `FusedFFC` runs (accumulating it into the layer's global part, with every branch's bias)."""

    def __init__(self, transform: SpectralTransform) -> None:
        super().__init__()
        reduce_conv, reduce_norm = transform.conv1[0], transform.conv1[1]
        if reduce_conv.groups != 1 or transform.conv2.groups != 1 or not isinstance(reduce_norm, nn.Identity):
            raise ValueError("only folded, ungrouped spectral transforms can be fused")
        self.stride = transform.stride
        self.reduce = reduce_conv
        self.fu = _FourierProduct(transform.fu)
        self.lfu = _FourierProduct(transform.lfu) if transform.enable_lfu else None
        self.expand = transform.conv2
        self.packed = PackedWeights()

    def local_fourier(self, x: torch.Tensor) -> torch.Tensor:
        """The local Fourier unit on planar ``x`` (`lfu_quadrants`), tiled 2x2 as in the reference."""
        return self.lfu(lfu_quadrants(x)).repeat(1, 1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The transform of ``x`` (``N x C x H x W`` channels-last) up to its output 1x1 convolution ``expand``,
        whose input this returns (channels-last), so that the caller can accumulate that convolution.
        """
        if self.stride == 2:
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        hidden = fast_conv2d(x, self.reduce.weight, self.reduce.bias, packed=(self.packed, "reduce"), relu=True)
        # The FFTs need float32: one conversion (under autocast) also keeps the sums below in one type.
        planar = transpose_channels(hidden, to_planar=True).to(torch.float32)
        total = self.fu(planar).add_(planar)
        if self.lfu is not None:
            total.add_(self.local_fourier(planar))
        # The output convolution computes in the convolutions' type: convert before the transpose.
        return transpose_channels(total.to(hidden.dtype), to_planar=False)


def conv_with_reflected_borders(x: torch.Tensor, conv: Callable[[torch.Tensor, int], torch.Tensor], padding: int,
                                stride: int, kernel: int,
                                border_conv: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """``conv`` of ``x`` reflect-padded by ``padding``, without making the padded copy of ``x``.

    ``conv(t, p)`` is the convolution (square ``kernel``, ``stride``, no dilation) of ``t`` zero-padded
    by ``p``, which oneDNN does inside the kernel. The outputs whose windows reach into the padding
    are then recomputed from reflect-padded strips of ``x`` a few pixels wide, by ``border_conv``
    (the same convolution; default ``conv``). At 512x512 this saves a 64 MB copy per layer.
    """
    out = conv(x, padding)
    border_conv = border_conv or conv

    def border_outputs(size: int, out_size: int) -> tuple[int, int]:
        first_inside = -(-padding // stride)
        last_inside = (size - kernel + padding) // stride
        return min(first_inside, out_size), max(out_size - 1 - last_inside, 0)

    height, width = x.shape[2:]
    top, bottom = border_outputs(height, out.shape[2])
    left, right = border_outputs(width, out.shape[3])
    if top:
        rows = (top - 1) * stride - padding + kernel
        out[:, :, :top] = border_conv(F.pad(x[:, :, :rows], (padding, padding, padding, 0), mode="reflect"), 0)
    if bottom:
        start = (out.shape[2] - bottom) * stride - padding
        out[:, :, -bottom:] = border_conv(F.pad(x[:, :, start:], (padding, padding, 0, padding), mode="reflect"), 0)
    if left:
        columns = (left - 1) * stride - padding + kernel
        out[..., :left] = border_conv(F.pad(x[..., :columns], (padding, 0, padding, padding), mode="reflect"), 0)
    if right:
        start = (out.shape[3] - right) * stride - padding
        out[..., -right:] = border_conv(F.pad(x[..., start:], (0, padding, padding, padding), mode="reflect"), 0)
    return out


class ChannelsLastReflectionPad(nn.Module):
    """``nn.ReflectionPad2d`` with equal sides for channels-last data, writing a channels-last result.

    (``nn.ReflectionPad2d`` returns a planar tensor that the next convolution copies back.)
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_pad_nhwc(x.permute(0, 2, 3, 1), self.width).permute(0, 3, 1, 2)


class RowStackedConv(nn.Module):
    """An unpadded stride-1 ``k_h x k_w`` convolution with few output channels, as a ``1 x k_w`` convolution
    with ``k_h`` times the output channels and a sum of ``k_h`` row-shifted channel groups.

    oneDNN vectorises over output channels, so a convolution with fewer than `NARROW_OUTPUT` of them
    (LaMa's final 64 -> 3 channel 7x7 layer) runs at a fifth of the speed of a wide one; stacking the
    kernel rows on the output channels makes it wide (2.7x faster for LaMa's layer at 512x512).
    The row sums run in float32 whatever the convolution's type.
    """

    #: Below this many output channels a convolution is rewritten.
    NARROW_OUTPUT = 16

    def __init__(self, conv: nn.Conv2d, reflect_padding: int = 0) -> None:
        """``reflect_padding``: pad the input by reflection first (the ``nn.ReflectionPad2d`` in front of
        ``conv``), through `conv_with_reflected_borders`; needs a square kernel."""
        super().__init__()
        if not self.applies_to(conv):
            raise ValueError("RowStackedConv takes an unpadded, stride-1, ungrouped, undilated narrow convolution")
        out_channels, in_channels, rows, columns = conv.weight.shape
        if reflect_padding and rows != columns:
            raise ValueError("RowStackedConv reflects its padding only for square kernels")
        self.out_channels, self.rows = out_channels, rows
        self.reflect_padding = reflect_padding
        # Output channel r * out_channels + c holds kernel row r of output channel c.
        stacked = conv.weight.detach().permute(2, 0, 1, 3).reshape(rows * out_channels, in_channels, 1, columns)
        self.weight = nn.Parameter(stacked.contiguous(memory_format=torch.channels_last), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False) if conv.bias is not None else None
        self.packed = PackedWeights()

    @classmethod
    def applies_to(cls, module: nn.Module) -> bool:
        """Whether ``module`` is a convolution this rewrite speeds up."""
        return (type(module) is nn.Conv2d and module.out_channels < cls.NARROW_OUTPUT and module.kernel_size[0] > 1
                and module.stride == (1, 1) and module.dilation == (1, 1) and module.groups == 1
                and module.padding == (0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reflect_padding:
            return conv_with_reflected_borders(x, self._zero_padded, self.reflect_padding, 1, self.rows,
                                               border_conv=lambda strip, padding: self._zero_padded(strip, padding,
                                                                                                   keep_packed=False))
        return self._zero_padded(x, 0)

    def _zero_padded(self, x: torch.Tensor, padding: int, keep_packed: bool = True) -> torch.Tensor:
        # One conversion up front: adding reduced-type slices into a float32 sum is 4x slower than float32 ones.
        partial = fast_conv2d(x, self.weight, None, packed=(self.packed, "weight") if keep_packed else None,
                              padding=(padding, padding)).float()
        height = partial.shape[2] - self.rows + 1
        out = partial[:, :self.out_channels, :height].clone()
        for row in range(1, self.rows):
            out += partial[:, row * self.out_channels:(row + 1) * self.out_channels, row:row + height]
        if self.bias is not None:
            out += self.bias.float().view(1, -1, 1, 1)
        return out


class ConvTransposeReLU(nn.Module):
    """An ungrouped ``nn.ConvTranspose2d``, then ReLU if ``relu``, as one oneDNN call with its weight kept blocked.

    (The decoder's upsampling layers; their BatchNorm is folded and the ReLU that follows runs in
    oneDNN's output stage.) It shares ``conv``'s parameters and computes as `fast_conv2d` does.
    """

    def __init__(self, conv: nn.ConvTranspose2d, relu: bool) -> None:
        super().__init__()
        if not self.applies_to(conv):
            raise ValueError("ConvTransposeReLU takes an ungrouped, zero-padded 2-D transposed convolution")
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.output_padding = conv.output_padding
        self.relu = relu
        self.packed = PackedWeights()

    @classmethod
    def applies_to(cls, module: nn.Module) -> bool:
        """Whether ``module`` is a transposed convolution this module can run."""
        return type(module) is nn.ConvTranspose2d and module.groups == 1 and module.padding_mode == "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _onednn_applies(x):
            out = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding, 1,
                                     self.dilation)
            return out.relu_() if self.relu else out
        dtype = _compute_type(self.weight)
        kernel = self.packed.get("weight", self.weight, dtype, x, self.stride, self.padding, self.dilation,
                                 output_padding=self.output_padding)
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x.to(dtype), kernel, self.bias.to(dtype) if self.bias is not None else None, list(self.padding),
            list(self.output_padding), list(self.stride), list(self.dilation), 1, "relu" if self.relu else "none",
            [], "")


def conv_accumulate_(accumulator: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, *, relu: bool,
                     stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                     dilation: tuple[int, int] = (1, 1),
                     packed: tuple[PackedWeights, str] | None = None) -> torch.Tensor:
    """``accumulator += conv2d(x, weight)``, then ReLU in place if ``relu``; returns ``accumulator``.

    On the CPU with channels-last tensors this is one oneDNN convolution whose output stage adds into
    ``accumulator`` and rectifies (the post-ops PyTorch's own compiler uses), instead of a convolution
    followed by two more passes over the result; ``packed`` keeps the weight blocked (as in
    `fast_conv2d`). It computes in the CPU autocast type when autocast is on, else in the weights'
    type; other devices and ``torch.compile`` tracing use plain operations.
    """
    if not _onednn_applies(x) or not accumulator.is_contiguous(memory_format=torch.channels_last):
        accumulator.add_(F.conv2d(x, weight, None, stride, padding, dilation))
        return accumulator.relu_() if relu else accumulator
    dtype = _compute_type(weight)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    kernel = (packed[0].get(packed[1], weight, dtype, x, stride, padding, dilation) if packed
              else weight.to(dtype).contiguous(memory_format=torch.channels_last))
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        accumulator, x, kernel, None, list(padding), list(stride), list(dilation), 1, "add", None,
        "relu" if relu else None, [], None)


def _frozen(tensor: torch.Tensor | None) -> nn.Parameter | None:
    if tensor is None:
        return None
    layout = torch.channels_last if tensor.dim() == 4 else torch.contiguous_format
    return nn.Parameter(tensor.detach().contiguous(memory_format=layout), requires_grad=False)


def _sum_of_biases(*convs: nn.Module | None) -> torch.Tensor | None:
    biases = [conv.bias.detach() for conv in convs if isinstance(conv, nn.Conv2d) and conv.bias is not None]
    return torch.stack(biases).sum(0) if biases else None


class FusedFFC(nn.Module):
    """A BatchNorm-folded `FFC_BN_ACT` layer on a ``(local, global)`` pair of channels-last tensors.

    A part without channels is the int ``0`` (the reference's convention). Each output part is made
    by its first branch's convolution (with every branch's bias) and the other branch accumulates
    into it, with the part's ReLU, inside oneDNN (`conv_accumulate_`).

    Parameters
    ----------
    layer : FFC_BN_ACT
        The folded layer (norms already ``nn.Identity``); its activations must be ReLU or Identity.
    """

    def __init__(self, layer: FFC_BN_ACT) -> None:
        super().__init__()
        ffc: FFC = layer.ffc
        if not isinstance(layer.bn_l, nn.Identity) or not isinstance(layer.bn_g, nn.Identity):
            raise ValueError("fold the BatchNorm layers before fusing")
        convs = [conv for conv in (ffc.convl2l, ffc.convl2g, ffc.convg2l) if isinstance(conv, nn.Conv2d)]
        if not convs:
            raise ValueError("an FFC without spatial convolutions cannot be fused")
        template = convs[0]
        if template.padding_mode not in ("reflect", "zeros") or template.groups != 1:
            raise ValueError(f"cannot fuse an FFC with padding mode {template.padding_mode!r} or groups")
        self.stride, self.dilation = template.stride, template.dilation
        self.padding = template.padding[0]
        self.reflect = template.padding_mode == "reflect"
        spectral = ffc.convg2g if isinstance(ffc.convg2g, SpectralTransform) else None

        def weight(conv: nn.Module) -> nn.Parameter | None:
            return _frozen(conv.weight) if isinstance(conv, nn.Conv2d) else None

        self.l2l_weight, self.l2g_weight = weight(ffc.convl2l), weight(ffc.convl2g)
        self.g2l_weight = weight(ffc.convg2l)
        self.packed = PackedWeights()
        self.local_bias = _frozen(_sum_of_biases(ffc.convl2l, ffc.convg2l))
        self.global_bias = _frozen(_sum_of_biases(ffc.convl2g, spectral.conv2 if spectral is not None else None))
        self.spectral = _SpectralProduct(spectral) if spectral is not None else None
        activations = {type(layer.act_l), type(layer.act_g)}
        if not activations <= {nn.ReLU, nn.Identity}:
            raise ValueError(f"cannot fuse activation(s) {', '.join(sorted(a.__name__ for a in activations))}")
        self.relu_local = isinstance(layer.act_l, nn.ReLU)
        self.relu_global = isinstance(layer.act_g, nn.ReLU)
        # Layers reading only the local part (the encoder's) reflect inside the convolution instead of
        # padding a copy; layers with a global input pad a copy (recomputing the borders of a 64x64
        # bottleneck map would add about 6 % to its convolution work).
        self.kernel = template.kernel_size[0]
        self.borders_in_conv = (self.reflect and self.padding > 0 and self.g2l_weight is None and self.spectral is None
                                and self.dilation == (1, 1) and self.stride[0] == self.stride[1]
                                and template.kernel_size[0] == template.kernel_size[1])

    def _conv(self, x_padded: torch.Tensor, name: str, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
        """The convolution with weight ``name`` of ``x_padded`` (from `_pad`), plus ``bias``, then ReLU if ``relu``."""
        weight = getattr(self, name)

        def conv(data: torch.Tensor, padding: int | tuple[int, int], keep_packed: bool = True) -> torch.Tensor:
            return fast_conv2d(data, weight, bias, packed=(self.packed, name) if keep_packed else None,
                               stride=self.stride, padding=(padding, padding) if isinstance(padding, int) else padding,
                               dilation=self.dilation, relu=relu)

        if self.borders_in_conv:
            return conv_with_reflected_borders(x_padded, conv, self.padding, self.stride[0], self.kernel,
                                               border_conv=lambda strip, padding: conv(strip, padding,
                                                                                       keep_packed=False))
        return conv(x_padded, self._conv_padding())

    def _conv_padding(self) -> tuple[int, int]:
        # Reflecting layers get inputs padded by `_pad`; zero-padding layers let the convolution pad.
        return (0, 0) if self.reflect else (self.padding, self.padding)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reflect or self.padding == 0 or self.borders_in_conv:
            return x
        return reflect_pad_nhwc(x.permute(0, 2, 3, 1), self.padding).permute(0, 3, 1, 2)

    def _part(self, first: tuple[torch.Tensor, str] | None, second: tuple[torch.Tensor, str] | None,
              bias: torch.Tensor | None, relu: bool) -> torch.Tensor | int:
        """One output part from its two branches' ``(input, weight name)`` (either may be missing)."""
        branches = [branch for branch in (first, second) if branch is not None]
        if not branches:
            return 0
        out = self._conv(branches[0][0], branches[0][1], bias, relu=relu and len(branches) == 1)
        out = out.contiguous(memory_format=torch.channels_last)
        if len(branches) == 1:
            return out
        data, name = branches[1]
        return conv_accumulate_(out, data, getattr(self, name), relu=relu, stride=self.stride,
                                padding=self._conv_padding(), dilation=self.dilation, packed=(self.packed, name))

    def forward(self, x: torch.Tensor | FeaturePair) -> FeaturePair:
        """``x``: a channels-last tensor (all local) or a ``(local, global)`` pair; returns the output pair."""
        local_in, global_in = x if isinstance(x, tuple) else (x, 0)
        has_local, has_global = torch.is_tensor(local_in), torch.is_tensor(global_in)
        local_padded = self._pad(local_in) if has_local else None
        global_padded = self._pad(global_in) if has_global and self.g2l_weight is not None else None
        l2l = (local_padded, "l2l_weight") if has_local and self.l2l_weight is not None else None
        g2l = (global_padded, "g2l_weight") if global_padded is not None else None
        l2g = (local_padded, "l2g_weight") if has_local and self.l2g_weight is not None else None
        out_local = self._part(l2l, g2l, self.local_bias, self.relu_local)
        if self.spectral is None or not has_global:
            return out_local, self._part(l2g, None, self.global_bias, self.relu_global)
        mixed = self.spectral(global_in)
        expand = self.spectral.expand.weight
        if l2g is None:
            return out_local, fast_conv2d(mixed, expand, self.global_bias, packed=(self.packed, "expand"),
                                          relu=self.relu_global)
        out_global = self._part(l2g, None, self.global_bias, relu=False)
        return out_local, conv_accumulate_(out_global, mixed, expand, relu=self.relu_global,
                                           packed=(self.packed, "expand"))


class FusedFFCResnetBlock(nn.Module):
    """A folded `FFCResnetBlock` (or its CBAM subclass) on channels-last pairs; residual sums in place."""

    def __init__(self, block: FFCResnetBlock) -> None:
        super().__init__()
        self.conv1 = FusedFFC(block.conv1)
        self.conv2 = FusedFFC(block.conv2)
        self.ca: Optional[nn.Module] = block.ca if isinstance(block, CBAMFFCResnetBlock) else None
        self.sa: Optional[nn.Module] = block.sa if isinstance(block, CBAMFFCResnetBlock) else None

    def forward(self, x: torch.Tensor | FeaturePair) -> FeaturePair:
        x_local, x_global = x if isinstance(x, tuple) else (x, 0)
        out = self.conv2(self.conv1((x_local, x_global)))
        if self.ca is not None and self.sa is not None:
            out = tuple(part.contiguous(memory_format=torch.channels_last) if torch.is_tensor(part) else part
                        for part in self.sa(self.ca(out)))
        return tuple(_add_(part, residual) for part, residual in zip(out, (x_local, x_global)))


def _add_(part: torch.Tensor | int, residual: torch.Tensor | int) -> torch.Tensor | int:
    if torch.is_tensor(part) and torch.is_tensor(residual):
        return part.add_(residual)
    return part + residual


class ConcatPair(nn.Module):
    """`ConcatTupleLayer` for the fused pairs: one channels-last tensor, local channels first."""

    def forward(self, x: FeaturePair) -> torch.Tensor:
        parts = [part for part in x if torch.is_tensor(part)]
        return torch.cat(parts, dim=1).contiguous(memory_format=torch.channels_last) if len(parts) > 1 else parts[0]


def can_fuse(model: nn.Module) -> bool:
    """Whether `fuse_ffc` can rewrite ``model``: a folded FFC generator with a plain ``model`` Sequential."""
    sequence = getattr(model, "model", None)
    if not isinstance(sequence, nn.Sequential):
        return False
    blocks = [module for module in sequence if isinstance(module, (FFC_BN_ACT, FFCResnetBlock))]
    try:
        for module in blocks:
            FusedFFCResnetBlock(module) if isinstance(module, FFCResnetBlock) else FusedFFC(module)
    except (ValueError, StopIteration):
        return False
    return bool(blocks)


def fuse_ffc(model: nn.Module) -> nn.Module:
    """Replace the FFC layers and blocks of a folded generator's ``model`` Sequential by fused ones, in place.

    The rewritten generator takes and returns the same tensors; its inner features are pairs of
    channels-last tensors. Call only when `can_fuse` is true.
    """
    sequence: nn.Sequential = model.model
    for index, module in list(enumerate(sequence)):
        if isinstance(module, FFCResnetBlock):
            sequence[index] = FusedFFCResnetBlock(module)
        elif isinstance(module, FFC_BN_ACT):
            sequence[index] = FusedFFC(module)
        elif isinstance(module, ConcatTupleLayer):
            sequence[index] = ConcatPair()
        elif ConvTransposeReLU.applies_to(module):
            following = index + 1
            while following < len(sequence) and isinstance(sequence[following], nn.Identity):  # folded norms
                following += 1
            relu = following < len(sequence) and type(sequence[following]) is nn.ReLU
            if relu:
                sequence[following] = nn.Identity()
            sequence[index] = ConvTransposeReLU(module, relu)
        elif isinstance(module, nn.ReflectionPad2d) and len(set(module.padding)) == 1:
            sequence[index] = ChannelsLastReflectionPad(module.padding[0])
        elif RowStackedConv.applies_to(module):
            previous = sequence[index - 1] if index else None
            if isinstance(previous, ChannelsLastReflectionPad) and module.kernel_size[0] == module.kernel_size[1]:
                sequence[index - 1] = nn.Identity()
                sequence[index] = RowStackedConv(module, reflect_padding=previous.width)
            else:
                sequence[index] = RowStackedConv(module)
    return model
