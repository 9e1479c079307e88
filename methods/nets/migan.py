"""MI-GAN inference generator (Sargsyan et al., ICCV 2023), written to load the released ``migan_*.pt`` files.

The structure follows the authors' inference module (``lib/model_zoo/migan_inference.py`` of
Picsart-AI-Research/MI-GAN at ca4df2e); ``../shared/golden/migan/README.md`` states every convention
and the golden tests check each block against the reference's tensors:

* an encoder ``b{R} ... b8`` (each halving the size) and ``b4``; a synthesis ``b4 ... b{R}`` that adds
  the encoder feature of the same size after its first convolution (a U-Net with skip additions);
* every convolution is separable: a depthwise 3x3 with bias, the activation, an optional 2x blur
  downsample, a pointwise 1x1 without bias, an optional 2x upsample, optional fixed noise, the
  activation again;
* the activation is leaky ReLU (0.2), times sqrt(2), clamped to [-256, 256];
* the 2x upsample repeats each pixel (nearest), keeps only the top-left sample of every 2x2 cell
  (zero insertion through the fixed ``filter_const`` pattern), pads (left/top 2, right/bottom 1) and
  blurs with a depthwise 4x4 filter; the 2x downsample is a depthwise 4x4 stride-2 blur;
* the output is an unbounded RGB image in about [-1, 1] (no output activation).

The noise (``noise_const``) and ``filter_const`` buffers have the size of their block, so a generator
only takes ``N x 4 x R x R`` inputs: channel 0 is ``known - 0.5`` (known = 1), channels 1-3 the image in
[-1, 1] with holes set to 0.

Widths follow the reference rule ``C(r) = min(ch_base // r, ch_max)``; the released models use
``ch_base=32768, ch_max=512``. State-dict keys and their order equal the released files'.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Width rule constants of the released models.
RELEASED_CH_BASE = 32768
RELEASED_CH_MAX = 512
#: Channels of the network input (known-mask channel, then RGB) and of its output.
INPUT_CHANNELS = 4
RGB_CHANNELS = 3
LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2)
ACTIVATION_CLAMP = 256.0
#: The 1-D binomial kernel of both blur filters.
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def activation(x: torch.Tensor) -> torch.Tensor:
    """The reference's ``lrelu_agc``: leaky ReLU (slope 0.2), times sqrt(2), then clamped to +-256.

    Works in place: every caller passes a tensor it has just computed. The same three operations in
    the same order give the same values; skipping a fresh whole-image tensor per operation made the
    element-wise work about half of a CPU pass at 512 x 512.
    """
    return F.leaky_relu_(x, LEAKY_SLOPE).mul_(ACTIVATION_GAIN).clamp_(-ACTIVATION_CLAMP, ACTIVATION_CLAMP)


def channels_at(resolution: int, ch_base: int, ch_max: int) -> int:
    """Width of the blocks working at ``resolution``: ``min(ch_base // resolution, ch_max)``."""
    return min(ch_base // resolution, ch_max)


def _blur_kernel(channels: int, gain: float) -> torch.Tensor:
    """``channels x 1 x 4 x 4`` copies of the normalised outer product of `BLUR_TAPS`, times ``gain``."""
    taps = torch.tensor(BLUR_TAPS)
    kernel = torch.outer(taps, taps)
    kernel = kernel / kernel.sum() * gain
    return kernel.expand(channels, 1, 4, 4).clone()


def _depthwise_filter(channels: int, stride: int, padding: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=4, stride=stride, padding=padding, groups=channels, bias=False)


class Downsample2d(nn.Module):
    """2x blur downsample: a depthwise 4x4 conv, stride 2, zero padding 1 (initialised to the binomial)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.filter = _depthwise_filter(channels, stride=2, padding=1)
        with torch.no_grad():
            self.filter.weight.copy_(_blur_kernel(channels, gain=1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.filter(x)


class Upsample2d(nn.Module):
    """2x upsample: nearest repeat, zero insertion by ``filter_const``, pad (2, 1, 2, 1), depthwise 4x4 blur.

    ``filter_const`` is a ``1 x 1 x R' x R'`` buffer (``R'`` the output side) holding 1 at even rows and
    columns, 0 elsewhere; the blur is initialised to the binomial times 4, which restores the mean.
    """

    def __init__(self, channels: int, resolution: int) -> None:
        super().__init__()
        self.nearest_up = nn.Upsample(scale_factor=2, mode="nearest")
        pattern = torch.zeros(resolution, resolution)
        pattern[::2, ::2] = 1.0
        self.register_buffer("filter_const", pattern[None, None])
        self.filter = _depthwise_filter(channels, stride=1, padding=0)
        with torch.no_grad():
            self.filter.weight.copy_(_blur_kernel(channels, gain=4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.nearest_up(x).mul_(self.filter_const)
        return self.filter(F.pad(x, (2, 1, 2, 1)))


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (bias) -> activation -> [downsample] -> pointwise 1x1 (no bias) -> [upsample]
    -> [+ noise_const * noise_strength] -> activation.

    Parameters
    ----------
    in_channels, out_channels : int
        Widths before and after the pointwise convolution.
    down, up : {1, 2}
        Resampling factor before / after the pointwise convolution.
    resolution : int
        Output side; sizes the upsample pattern and the noise buffer (unused otherwise).
    use_noise : bool
        Add the fixed noise ``noise_const`` (``resolution x resolution``) times ``noise_strength``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, down: int = 1, up: int = 1, resolution: int = 0,
                 use_noise: bool = False) -> None:
        super().__init__()
        if (up == 2 or use_noise) and resolution < 1:
            raise ValueError("an upsampling or noisy SeparableConv2d needs its output resolution")
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.use_noise = use_noise
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1, groups=in_channels)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.downsample = Downsample2d(in_channels) if down == 2 else None
        self.upsample = Upsample2d(out_channels, resolution) if up == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = activation(self.conv1(x))
        if self.downsample is not None:
            x = self.downsample(x)
        x = self.conv2(x)
        if self.upsample is not None:
            x = self.upsample(x)
        if self.use_noise:
            x = x.add_(self.noise_const * self.noise_strength)
        return activation(x)


class EncoderBlock(nn.Module):
    """``[fromrgb + activation] -> conv1 (feature) -> conv2 (2x down unless last)``; returns ``(x, feature)``."""

    def __init__(self, in_channels: int, out_channels: int, *, from_rgb: bool, down: int = 2) -> None:
        super().__init__()
        self.fromrgb = nn.Conv2d(INPUT_CHANNELS, in_channels, kernel_size=1) if from_rgb else None
        self.conv1 = SeparableConv2d(in_channels, in_channels)
        self.conv2 = SeparableConv2d(in_channels, out_channels, down=down)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fromrgb is not None:
            x = activation(self.fromrgb(x))
        feature = self.conv1(x)
        return self.conv2(feature), feature


class Encoder(nn.Module):
    """Blocks ``b{R}, b{R/2}, ..., b8`` (each halves the size) then ``b4``; returns the 4x4 code and every
    block's feature keyed by its resolution."""

    def __init__(self, resolution: int, ch_base: int, ch_max: int) -> None:
        super().__init__()
        self.resolutions = [2 ** level for level in range(int(math.log2(resolution)), 1, -1)]
        for index, side in enumerate(self.resolutions[:-1]):
            block = EncoderBlock(channels_at(side, ch_base, ch_max), channels_at(side // 2, ch_base, ch_max),
                                 from_rgb=index == 0)
            self.add_module(f"b{side}", block)
        width = channels_at(4, ch_base, ch_max)
        self.b4 = EncoderBlock(width, width, from_rgb=False, down=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        features = {}
        for side in self.resolutions:
            x, features[side] = getattr(self, f"b{side}")(x)
        return x, features


class SynthesisBlockFirst(nn.Module):
    """The 4x4 block: ``conv1 -> + feature -> conv2 -> torgb``; returns ``(x, img)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = SeparableConv2d(channels, channels)
        self.conv2 = SeparableConv2d(channels, channels)
        self.torgb = nn.Conv2d(channels, RGB_CHANNELS, kernel_size=1)

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv2(self.conv1(x).add_(feature))
        return x, self.torgb(x)


class SynthesisBlock(nn.Module):
    """A 2x block: ``conv1 (up, noise) -> + feature -> conv2 (noise)``; ``img = upsample(img) + torgb(x)``."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int) -> None:
        super().__init__()
        self.conv1 = SeparableConv2d(in_channels, out_channels, up=2, resolution=resolution, use_noise=True)
        self.conv2 = SeparableConv2d(out_channels, out_channels, resolution=resolution, use_noise=True)
        self.torgb = nn.Conv2d(out_channels, RGB_CHANNELS, kernel_size=1)
        self.upsample = Upsample2d(RGB_CHANNELS, resolution)

    def forward(self, x: torch.Tensor, feature: torch.Tensor,
                img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv2(self.conv1(x).add_(feature))
        return x, self.upsample(img).add_(self.torgb(x))


class Synthesis(nn.Module):
    """Blocks ``b4, b8, ..., b{R}``; returns the last block's RGB image."""

    def __init__(self, resolution: int, ch_base: int, ch_max: int) -> None:
        super().__init__()
        self.resolutions = [2 ** level for level in range(2, int(math.log2(resolution)) + 1)]
        self.b4 = SynthesisBlockFirst(channels_at(4, ch_base, ch_max))
        for side in self.resolutions[1:]:
            block = SynthesisBlock(channels_at(side // 2, ch_base, ch_max), channels_at(side, ch_base, ch_max), side)
            self.add_module(f"b{side}", block)

    def forward(self, x: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
        x, img = self.b4(x, features[4])
        for side in self.resolutions[1:]:
            x, img = getattr(self, f"b{side}")(x, features[side], img)
        return img


class MIGANGenerator(nn.Module):
    """The MI-GAN inference generator for ``resolution x resolution`` inputs.

    Parameters
    ----------
    resolution : int
        Side of the input and output, a power of two of at least 8 (released: 256, 512).
    ch_base, ch_max : int
        Width rule ``C(r) = min(ch_base // r, ch_max)`` (released: 32768, 512).

    The synthesis is registered before the encoder, as in the reference, so the state-dict keys come
    in the released files' order.
    """

    def __init__(self, resolution: int = 256, ch_base: int = RELEASED_CH_BASE, ch_max: int = RELEASED_CH_MAX) -> None:
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"MI-GAN resolution must be a power of two of at least 8, got {resolution}")
        if channels_at(resolution, ch_base, ch_max) < 1:
            raise ValueError(f"ch_base {ch_base} gives no channels at resolution {resolution}")
        self.resolution = resolution
        self.synthesis = Synthesis(resolution, ch_base, ch_max)
        self.encoder = Encoder(resolution, ch_base, ch_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Complete ``x`` (``N x 4 x R x R``: known mask - 0.5, then masked RGB in [-1, 1]); returns
        ``N x 3 x R x R`` RGB, unbounded (about [-1, 1])."""
        expected = (INPUT_CHANNELS, self.resolution, self.resolution)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"this MI-GAN generator is built for {self.resolution}x{self.resolution} and takes N x 4 x "
                f"{self.resolution} x {self.resolution} inputs, got {tuple(x.shape)}: resize the input to "
                f"{self.resolution}x{self.resolution} (its noise and filter buffers have that size)"
            )
        code, features = self.encoder(x)
        return self.synthesis(code, features)
