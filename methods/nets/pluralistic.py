"""PICNet (Zheng, Cham & Cai, "Pluralistic Image Completion", CVPR 2019): encoder and generator.

A port of the networks of the reference implementation (github: lyndonzheng/Pluralistic-Inpainting)
whose ``state_dict`` has exactly the reference's keys, so the released ``latest_net_E.pth`` and
``latest_net_G.pth`` load strictly. Three properties of the reference are kept on purpose:

* Spectral normalisation is the reference's own flavour, not ``torch.nn.utils.spectral_norm``: the
  wrapped convolution stores ``weight_bar``, ``weight_u`` and ``weight_v`` (no plain ``weight``),
  the matrix is ``weight_bar`` viewed as ``(shape[0], -1)`` also for transposed convolutions, and
  **every forward call runs one power iteration and writes u and v back, in eval mode too**. The
  networks are therefore stateful; `power_iteration_state` / `restore_power_iteration_state`
  snapshot and restore u and v.
* Each residual block registers its convolutions twice (as attributes and inside the ``model`` /
  ``shortcut`` sequences), so every convolution parameter appears under two names in the
  ``state_dict``. Both names refer to one tensor.
* LeakyReLU has slope 0.1 everywhere except inside the attention layer's residual block (0.01).

Tensors are NCHW float32; images are in [-1, 1] and masks are 1 on known pixels, 0 in holes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Negative slope of the network-wide LeakyReLU.
LEAKY_SLOPE = 0.1
#: Negative slope inside the attention layer's residual block (the block class's default).
ATTENTION_BLOCK_SLOPE = 0.01
#: Epsilon added to the norm when normalising u and v.
NORMALIZE_EPS = 1e-12


def _l2_normalize(vector: torch.Tensor) -> torch.Tensor:
    return vector / (vector.norm() + NORMALIZE_EPS)


class SpectralNormConv(nn.Module):
    """Convolution divided by its largest singular value, estimated by one power step per call.

    The wrapped layer lives in ``self.module`` (hence the ``.module.`` in the key names) and holds
    ``bias``, ``weight_u``, ``weight_v`` and ``weight_bar`` in that order; its plain ``weight`` is
    removed because the normalised weight is recomputed on every call.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size : int
        Square kernel side.
    stride, padding : int
        As for ``nn.Conv2d``.
    transposed : bool
        Wrap an ``nn.ConvTranspose2d`` instead (with ``output_padding``).
    output_padding : int
        Only for transposed convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        transposed: bool = False,
        output_padding: int = 0,
    ) -> None:
        super().__init__()
        if transposed:
            layer: nn.Conv2d | nn.ConvTranspose2d = nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                output_padding=output_padding,
            )
        else:
            layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        weight = layer.weight.detach()
        height = weight.shape[0]
        width = weight[0].numel()
        del layer._parameters["weight"]
        u = torch.empty(height, device=weight.device).normal_()
        v = torch.empty(width, device=weight.device).normal_()
        layer.register_parameter("weight_u", nn.Parameter(_l2_normalize(u), requires_grad=False))
        layer.register_parameter("weight_v", nn.Parameter(_l2_normalize(v), requires_grad=False))
        layer.register_parameter("weight_bar", nn.Parameter(weight))
        self.module = layer
        self.transposed = transposed

    def normalized_weight(self) -> torch.Tensor:
        """Advance u and v by one power iteration (in place) and return ``weight_bar / sigma``."""
        layer = self.module
        matrix = layer.weight_bar.view(layer.weight_bar.shape[0], -1)
        with torch.no_grad():
            layer.weight_v.copy_(_l2_normalize(torch.mv(matrix.t(), layer.weight_u)))
            layer.weight_u.copy_(_l2_normalize(torch.mv(matrix, layer.weight_v)))
        sigma = torch.dot(layer.weight_u, torch.mv(matrix, layer.weight_v))
        return layer.weight_bar / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.normalized_weight()
        layer = self.module
        if self.transposed:
            return F.conv_transpose2d(
                x, weight, layer.bias, layer.stride, layer.padding, layer.output_padding, layer.groups,
                layer.dilation,
            )
        return F.conv2d(x, weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: act, 3x3 conv, act, 3x3 conv, plus a 1x1 conv shortcut.

    With ``downsample`` both paths end with 2x2 average pooling. No normalisation (the reference
    builds these blocks without norm in both networks).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, *, slope: float,
                 downsample: bool = False) -> None:
        super().__init__()
        self.conv1 = SpectralNormConv(in_channels, hidden_channels, 3, padding=1)
        self.conv2 = SpectralNormConv(hidden_channels, out_channels, 3, padding=1)
        self.bypass = SpectralNormConv(in_channels, out_channels, 1)
        self.model = nn.Sequential(nn.LeakyReLU(slope), self.conv1, nn.LeakyReLU(slope), self.conv2)
        self.shortcut = nn.Sequential(self.bypass)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            return self.pool(self.model(x)) + self.pool(self.shortcut(x))
        return self.model(x) + self.shortcut(x)


class FirstEncoderBlock(nn.Module):
    """The encoder's first block: conv, act, conv, pool; the shortcut pools, then a 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, *, slope: float) -> None:
        super().__init__()
        self.conv1 = SpectralNormConv(in_channels, out_channels, 3, padding=1)
        self.conv2 = SpectralNormConv(out_channels, out_channels, 3, padding=1)
        self.bypass = SpectralNormConv(in_channels, out_channels, 1)
        self.model = nn.Sequential(self.conv1, nn.LeakyReLU(slope), self.conv2, nn.AvgPool2d(kernel_size=2, stride=2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2), self.bypass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class UpsampleBlock(nn.Module):
    """Decoder block doubling the resolution.

    Main path: instance norm, act, 3x3 conv, instance norm, act, 3x3 stride-2 transposed conv;
    shortcut: a 3x3 stride-2 transposed conv.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int, *, slope: float) -> None:
        super().__init__()
        self.conv1 = SpectralNormConv(in_channels, hidden_channels, 3, padding=1)
        self.conv2 = SpectralNormConv(hidden_channels, out_channels, 3, stride=2, padding=1, transposed=True,
                                      output_padding=1)
        self.bypass = SpectralNormConv(in_channels, out_channels, 3, stride=2, padding=1, transposed=True,
                                       output_padding=1)
        self.model = nn.Sequential(
            nn.InstanceNorm2d(in_channels, affine=True), nn.LeakyReLU(slope), self.conv1,
            nn.InstanceNorm2d(hidden_channels, affine=True), nn.LeakyReLU(slope), self.conv2,
        )
        self.shortcut = nn.Sequential(self.bypass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class OutputHead(nn.Module):
    """Image head: act, reflection pad 1, 3x3 conv, tanh."""

    def __init__(self, in_channels: int, out_channels: int, *, slope: float) -> None:
        super().__init__()
        self.conv1 = SpectralNormConv(in_channels, out_channels, 3)
        self.model = nn.Sequential(nn.LeakyReLU(slope), nn.ReflectionPad2d(1), self.conv1, nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ShortLongAttention(nn.Module):
    """Short+long term attention.

    Self-attention on the decoder feature (the 1x1 query projection doubles as the key, the value is
    the feature itself, scaled by ``gamma``), and the same attention map applied to the encoder
    feature to copy context into the holes (scaled by ``alpha``) while known positions keep the
    encoder feature. A residual block fuses the two back to ``channels``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))
        self.alpha = nn.Parameter(torch.zeros(1))
        self.query_conv = nn.Conv2d(channels, channels // 4, kernel_size=1)
        self.model = ResidualBlock(2 * channels, channels, channels, slope=ATTENTION_BLOCK_SLOPE)

    def forward(self, x: torch.Tensor, encoder_feature: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the fused feature and the ``B x N x N`` attention map (N = h*w, row-major).

        ``mask`` is 1 on known positions, at the feature's size (fractional at hole borders).
        """
        batch, channels, height, width = x.shape
        positions = height * width
        query = self.query_conv(x).view(batch, -1, positions)
        attention = torch.softmax(torch.bmm(query.permute(0, 2, 1), query), dim=-1)
        attended = torch.bmm(x.view(batch, -1, positions), attention.permute(0, 2, 1))
        attended = self.gamma * attended.view(batch, channels, height, width) + x
        context = torch.bmm(encoder_feature.view(batch, -1, positions), attention.permute(0, 2, 1))
        context = context.view(batch, -1, height, width)
        context = self.alpha * (1 - mask) * context + mask * encoder_feature
        return self.model(torch.cat([attended, context], dim=1)), attention


class PICNetEncoder(nn.Module):
    """Representation network: masked image to multi-scale features and the conditional prior.

    Parameters
    ----------
    input_nc : int
        Input channels (3).
    ngf : int
        Base width; the released models use 32.
    z_nc : int
        Latent channels (128 released).
    img_f : int
        Width cap (128 released).
    num_refinements : int
        Residual blocks refining the prior (the reference's ``L``, 6).
    layers : int
        Down-sampling stages (5), so input sides must be multiples of ``2**layers``.
    """

    def __init__(self, input_nc: int = 3, ngf: int = 32, z_nc: int = 128, img_f: int = 128,
                 num_refinements: int = 6, layers: int = 5) -> None:
        super().__init__()
        self.layers = layers
        self.z_nc = z_nc
        self.num_refinements = num_refinements
        self.block0 = FirstEncoderBlock(input_nc, ngf, slope=LEAKY_SLOPE)
        mult = 1
        for index in range(layers - 1):
            mult_prev = mult
            mult = min(2 ** (index + 1), img_f // ngf)
            block = ResidualBlock(ngf * mult_prev, ngf * mult, ngf * mult_prev, slope=LEAKY_SLOPE, downsample=True)
            setattr(self, f"encoder{index}", block)
        width = ngf * mult
        for index in range(num_refinements):
            setattr(self, f"infer_prior{index}", ResidualBlock(width, width, width, slope=LEAKY_SLOPE))
        # ``posterior`` only serves two-path training; it is built so released checkpoints load strictly.
        self.posterior = ResidualBlock(width, 2 * z_nc, width, slope=LEAKY_SLOPE)
        self.prior = ResidualBlock(width, 2 * z_nc, width, slope=LEAKY_SLOPE)

    def forward(self, masked_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Encode ``mask * image`` (holes 0, no mask channel).

        Returns
        -------
        mu, std : Tensor
            Mean and standard deviation (after softplus) of the prior over z, ``z_nc x H/32 x W/32``.
        features : list of Tensor
            Encoder features at 1/2 ... 1/32 of the input; ``features[2]`` feeds the attention layer
            and ``features[-1]`` is added to the generator's first feature.
        """
        out = self.block0(masked_image)
        features = [out]
        for index in range(self.layers - 1):
            out = getattr(self, f"encoder{index}")(out)
            features.append(out)
        for index in range(self.num_refinements):
            out = getattr(self, f"infer_prior{index}")(out)
        mu, std_raw = torch.split(self.prior(out), self.z_nc, dim=1)
        return mu, F.softplus(std_raw), features


class PICNetGenerator(nn.Module):
    """Generation network: latent z plus encoder features to images at four scales.

    Parameters
    ----------
    output_nc : int
        Image channels (3).
    ngf, z_nc, img_f, layers : int
        As for `PICNetEncoder` (32, 128, 128, 5 released).
    output_scale : int
        Number of output heads (4 released): images at 1/8, 1/4, 1/2 and 1/1.
    """

    def __init__(self, output_nc: int = 3, ngf: int = 32, z_nc: int = 128, img_f: int = 128, layers: int = 5,
                 output_scale: int = 4) -> None:
        super().__init__()
        self.layers = layers
        self.output_scale = output_scale
        mult = min(2 ** (layers - 1), img_f // ngf)
        self.generator = ResidualBlock(z_nc, ngf * mult, ngf * mult, slope=LEAKY_SLOPE)
        for index in range(layers):
            mult_prev = mult
            mult = min(2 ** (layers - index - 1), img_f // ngf)
            # Blocks after the first output head also take that head's image (+output_nc channels).
            extra = output_nc if index > layers - output_scale else 0
            block = UpsampleBlock(ngf * mult_prev + extra, ngf * mult, ngf * mult, slope=LEAKY_SLOPE)
            setattr(self, f"decoder{index}", block)
            if self._has_head(index):
                setattr(self, f"out{index}", OutputHead(ngf * mult, output_nc, slope=LEAKY_SLOPE))
            if index == 1:
                self.attn1 = ShortLongAttention(ngf * mult)

    def _has_head(self, index: int) -> bool:
        return index > self.layers - self.output_scale - 1

    def forward(self, z: torch.Tensor, f_m: torch.Tensor, f_e: torch.Tensor,
                mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Generate from ``z``.

        Parameters
        ----------
        z : Tensor
            Latent map, ``z_nc x H/32 x W/32``.
        f_m, f_e : Tensor
            Encoder ``features[-1]`` and ``features[2]``.
        mask : Tensor
            Known-pixel mask resized to ``f_e``'s size (see `attention_mask`), one channel.

        Returns
        -------
        images : list of Tensor
            Outputs in [-1, 1], coarsest first; ``images[-1]`` is full resolution.
        attention : Tensor
            The attention layer's ``B x N x N`` map.
        """
        out = f_m + self.generator(z)
        images = []
        attention = torch.zeros(0)
        for index in range(self.layers):
            out = getattr(self, f"decoder{index}")(out)
            if index == 1:
                out, attention = self.attn1(out, f_e, mask)
            if self._has_head(index):
                image = getattr(self, f"out{index}")(out)
                images.append(image)
                out = torch.cat([out, image], dim=1)
        return images, attention


def attention_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a known-pixel mask (N x C x H x W) to ``size`` as the reference does; first channel only."""
    return F.interpolate(mask[:, :1], size=size, mode="bilinear", align_corners=True)


def power_iteration_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every spectral-norm u and v of ``net``, keyed by parameter name (aliases excluded)."""
    return {
        name: parameter.detach().clone()
        for name, parameter in net.named_parameters()
        if name.endswith((".weight_u", ".weight_v"))
    }


def restore_power_iteration_state(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Write u and v saved by `power_iteration_state` back into ``net``."""
    parameters = dict(net.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)
