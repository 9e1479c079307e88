"""Fast Fourier convolution networks of LaMa (Suvorov et al., WACV 2022).

A port of the ``ffc_resnet`` generator of the reference implementation (advimman/lama,
``saicinpainting/training/modules/ffc.py``): same constructor parameters for the options big-lama
uses, same module tree and therefore the same ``state_dict`` names, so released weights load
strictly. Facts are taken from ``shared/golden/lama/README.md``.

Feature maps inside the network travel as a ``(local, global)`` pair. A part with no channels is the
integer ``0``, as in the reference, so that adding it is a no-op.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Union

import torch
from torch import nn

#: A ``(local, global)`` feature pair; a part without channels is the int ``0``.
FeaturePair = tuple[Union[torch.Tensor, int], Union[torch.Tensor, int]]


def split_channels(channels: int, ratio_global: float) -> tuple[int, int]:
    """Split ``channels`` into ``(local, global)`` widths the way the reference does.

    Parameters
    ----------
    channels : int
        Total number of channels.
    ratio_global : float
        Fraction of global channels; the global width is ``int(channels * ratio_global)``.

    Returns
    -------
    tuple of int
        ``(local, global)`` widths, summing to ``channels``.
    """
    global_channels = int(channels * ratio_global)
    return channels - global_channels, global_channels


def _refuse_options(owner: str, **options: Any) -> None:
    """Raise ``ValueError`` for reference options this port does not implement (all off in big-lama)."""
    used = [name for name, value in options.items() if value]
    if used:
        raise ValueError(f"{owner}: option(s) {', '.join(used)} of the reference are not supported by this port "
                         "(they are off in big-lama); remove them from the configuration")


class FourierUnit(nn.Module):
    """Pointwise convolution in the frequency domain (real FFT over H and W, ``norm='ortho'``).

    The real and imaginary parts are interleaved per channel (channel ``2k`` = Re, ``2k+1`` = Im),
    mixed by a 1x1 convolution, normalised and rectified, then transformed back to the input size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 1,
        spatial_scale_factor: float | None = None,
        spatial_scale_mode: str = "bilinear",
        spectral_pos_encoding: bool = False,
        use_se: bool = False,
        se_kwargs: dict | None = None,
        ffc3d: bool = False,
        fft_norm: str = "ortho",
    ) -> None:
        super().__init__()
        _refuse_options("FourierUnit", spatial_scale_factor=spatial_scale_factor,
                        spectral_pos_encoding=spectral_pos_encoding, use_se=use_se, ffc3d=ffc3d)
        self.groups = groups
        self.fft_norm = fft_norm
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        spectrum = torch.fft.rfftn(x.float(), dim=(-2, -1), norm=self.fft_norm)
        # (N, C, H, W', 2) -> (N, C, 2, H, W') -> (N, 2C, H, W'): Re/Im interleaved per channel.
        stacked = torch.view_as_real(spectrum).permute(0, 1, 4, 2, 3).reshape(batch, -1, height, spectrum.shape[-1])
        mixed = self.relu(self.bn(self.conv_layer(stacked)))
        # float(): under autocast the 1x1 convolution gives a reduced type, and complex needs float32.
        pairs = mixed.float().view(batch, -1, 2, height, spectrum.shape[-1]).permute(0, 1, 3, 4, 2).contiguous()
        # s= restores odd widths: without it irfftn returns W-1 columns.
        return torch.fft.irfftn(torch.view_as_complex(pairs), s=(height, width), dim=(-2, -1), norm=self.fft_norm)


def lfu_quadrants(x: torch.Tensor) -> torch.Tensor:
    """The input of the local Fourier unit: the four spatial quadrants of ``x``'s first quarter of
    channels, stacked on channels in the reference order (top-left, bottom-left, top-right, bottom-right).

    The reference only works on square maps with an even side; other shapes raise ``ValueError``.
    """
    height, width = x.shape[-2:]
    if height != width or height % 2 or height == 0:
        raise ValueError(f"the local Fourier unit (enable_lfu) needs a square feature map with an even side, "
                         f"got {height}x{width}; use input sizes that give such a bottleneck or disable LFU")
    half = height // 2
    quarter = x[:, : x.shape[1] // 4]
    columns = torch.cat((quarter[..., :half, :], quarter[..., half:, :]), dim=1)
    return torch.cat((columns[..., :half], columns[..., half:]), dim=1)


class SpectralTransform(nn.Module):
    """The global-to-global branch: 1x1 reduce, Fourier unit (plus optional local Fourier unit), 1x1 expand."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
        enable_lfu: bool = True,
        **fu_kwargs: Any,
    ) -> None:
        super().__init__()
        self.enable_lfu = enable_lfu
        self.downsample = nn.AvgPool2d(kernel_size=(2, 2), stride=2) if stride == 2 else nn.Identity()
        self.stride = stride
        hidden = out_channels // 2
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1, groups=groups, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.fu = FourierUnit(hidden, hidden, groups, **fu_kwargs)
        if self.enable_lfu:
            self.lfu = FourierUnit(hidden, hidden, groups)
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size=1, groups=groups, bias=False)

    def local_fourier(self, x: torch.Tensor) -> torch.Tensor:
        """The local Fourier unit on ``x``'s first quarter of channels (`lfu_quadrants`), before the 2x2 tiling."""
        return self.lfu(lfu_quadrants(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.downsample(x))
        total = x + self.fu(x)
        if self.enable_lfu:
            total = total + self.local_fourier(x).repeat(1, 1, 2, 2)
        return self.conv2(total)


class FFC(nn.Module):
    """Fast Fourier convolution: four branches between the local and the global channel groups.

    ``local_out = l2l(local) + g2l(global)`` and ``global_out = l2g(local) + g2g(global)``, where
    ``g2g`` is a `SpectralTransform` and the others are convolutions with reflect padding. A branch
    whose input or output width is zero is an ``nn.Identity`` without keys.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        enable_lfu: bool = True,
        padding_type: str = "reflect",
        gated: bool = False,
        **spectral_kwargs: Any,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FFC stride must be 1 or 2, got {stride}")
        _refuse_options("FFC", gated=gated)
        self.stride = stride
        in_local, in_global = split_channels(in_channels, ratio_gin)
        out_local, out_global = split_channels(out_channels, ratio_gout)
        self.ratio_gin = ratio_gin
        self.ratio_gout = ratio_gout
        self.global_in_num = in_global

        def spatial_conv(source: int, target: int) -> nn.Module:
            if source == 0 or target == 0:
                return nn.Identity()
            return nn.Conv2d(source, target, kernel_size, stride, padding, dilation, groups, bias,
                             padding_mode=padding_type)

        self.convl2l = spatial_conv(in_local, out_local)
        self.convl2g = spatial_conv(in_local, out_global)
        self.convg2l = spatial_conv(in_global, out_local)
        if in_global == 0 or out_global == 0:
            self.convg2g: nn.Module = nn.Identity()
        else:
            self.convg2g = SpectralTransform(in_global, out_global, stride, 1 if groups == 1 else groups // 2,
                                             enable_lfu, **spectral_kwargs)
        self.gated = gated

    @staticmethod
    def _branch(conv: nn.Module, x: torch.Tensor | int) -> torch.Tensor | int:
        # A missing branch or a missing input contributes nothing.
        if isinstance(conv, nn.Identity) or not torch.is_tensor(x):
            return 0
        return conv(x)

    def forward(self, x: FeaturePair | torch.Tensor) -> FeaturePair:
        x_local, x_global = x if isinstance(x, tuple) else (x, 0)
        out_local: torch.Tensor | int = 0
        out_global: torch.Tensor | int = 0
        if self.ratio_gout != 1:
            out_local = self._branch(self.convl2l, x_local) + self._branch(self.convg2l, x_global)
        if self.ratio_gout != 0:
            out_global = self._branch(self.convl2g, x_local) + self._branch(self.convg2g, x_global)
        return out_local, out_global


class FFC_BN_ACT(nn.Module):
    """`FFC` followed by a norm layer and an activation on each part (Identity for an empty part)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float = 0,
        ratio_gout: float = 0,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] = nn.Identity,
        padding_type: str = "reflect",
        enable_lfu: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding, dilation,
                       groups, bias, enable_lfu, padding_type=padding_type, **kwargs)
        out_local, out_global = split_channels(out_channels, ratio_gout)
        self.bn_l = nn.Identity() if ratio_gout == 1 else norm_layer(out_local)
        self.bn_g = nn.Identity() if ratio_gout == 0 else norm_layer(out_global)
        self.act_l = nn.Identity() if ratio_gout == 1 else activation_layer(inplace=True)
        self.act_g = nn.Identity() if ratio_gout == 0 else activation_layer(inplace=True)

    def forward(self, x: FeaturePair | torch.Tensor) -> FeaturePair:
        x_local, x_global = self.ffc(x)
        if torch.is_tensor(x_local):
            x_local = self.act_l(self.bn_l(x_local))
        if torch.is_tensor(x_global):
            x_global = self.act_g(self.bn_g(x_global))
        return x_local, x_global


class FFCResnetBlock(nn.Module):
    """Two 3x3 `FFC_BN_ACT` layers and a residual sum on each part, with no activation after the sum."""

    def __init__(
        self,
        dim: int,
        padding_type: str = "reflect",
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] = nn.ReLU,
        dilation: int = 1,
        spatial_transform_kwargs: dict | None = None,
        inline: bool = False,
        **conv_kwargs: Any,
    ) -> None:
        super().__init__()
        _refuse_options("FFCResnetBlock", spatial_transform_kwargs=spatial_transform_kwargs, inline=inline)
        self.conv1 = FFC_BN_ACT(dim, dim, kernel_size=3, padding=dilation, dilation=dilation, norm_layer=norm_layer,
                                activation_layer=activation_layer, padding_type=padding_type, **conv_kwargs)
        self.conv2 = FFC_BN_ACT(dim, dim, kernel_size=3, padding=dilation, dilation=dilation, norm_layer=norm_layer,
                                activation_layer=activation_layer, padding_type=padding_type, **conv_kwargs)

    def residual(self, x: FeaturePair) -> FeaturePair:
        """The block's branch before the sum with its input."""
        return self.conv2(self.conv1(x))

    def forward(self, x: FeaturePair | torch.Tensor) -> FeaturePair:
        x_local, x_global = x if isinstance(x, tuple) else (x, 0)
        out_local, out_global = self.residual((x_local, x_global))
        return x_local + out_local, x_global + out_global


class ConcatTupleLayer(nn.Module):
    """Concatenate a ``(local, global)`` pair on channels, local first; a lone part passes through."""

    def forward(self, x: FeaturePair) -> torch.Tensor:
        x_local, x_global = x
        if not torch.is_tensor(x_global):
            return x_local
        if not torch.is_tensor(x_local):
            return x_global
        return torch.cat((x_local, x_global), dim=1)


def output_activation(kind: str | bool) -> nn.Module:
    """The generator's output activation by the reference's name (``True`` means ``"tanh"``)."""
    if kind is True or kind == "tanh":
        return nn.Tanh()
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind is False:
        return nn.Identity()
    raise ValueError(f"unknown output activation {kind!r}; use 'sigmoid', 'tanh' or False")


class FFCResNetGenerator(nn.Module):
    """LaMa's ``ffc_resnet`` generator: FFC encoder, FFC residual blocks, transposed-conv decoder.

    Parameters follow the reference; options that are off in big-lama and not ported
    (``spatial_transform_layers``, ``out_ffc``) raise ``ValueError`` when set. The module tree is a
    single ``nn.Sequential`` named ``model``, so state-dict keys read ``model.<index>.<...>``.

    Parameters
    ----------
    input_nc, output_nc : int
        Input channels (RGB + mask = 4 for big-lama) and output channels.
    ngf : int
        Width of the first layer; doubled by each downsampling, capped at ``max_features``.
    n_downsampling : int
        Number of stride-2 FFC layers; inputs must be multiples of ``2 ** n_downsampling``.
    n_blocks : int
        Number of residual blocks at the bottleneck.
    init_conv_kwargs, downsample_conv_kwargs, resnet_conv_kwargs : dict
        ``ratio_gin``, ``ratio_gout``, ``enable_lfu`` (and other FFC options) of each stage. The last
        downsampling layer outputs with the resnet blocks' ``ratio_gin``.
    add_out_act : {"sigmoid", "tanh", True, False}
        Output activation (big-lama: ``"sigmoid"``).
    """

    #: Residual block class; `methods.nets.cbam` swaps in the attention block.
    block_class: ClassVar[type[nn.Module]] = FFCResnetBlock

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        n_downsampling: int = 3,
        n_blocks: int = 9,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        padding_type: str = "reflect",
        activation_layer: Callable[..., nn.Module] = nn.ReLU,
        up_norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        up_activation: nn.Module | None = None,
        init_conv_kwargs: dict | None = None,
        downsample_conv_kwargs: dict | None = None,
        resnet_conv_kwargs: dict | None = None,
        spatial_transform_layers: list[int] | None = None,
        spatial_transform_kwargs: dict | None = None,
        add_out_act: str | bool = True,
        max_features: int = 1024,
        out_ffc: bool = False,
        out_ffc_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        _refuse_options("FFCResNetGenerator", spatial_transform_layers=spatial_transform_layers, out_ffc=out_ffc)
        init_conv_kwargs = dict(init_conv_kwargs or {})
        downsample_conv_kwargs = dict(downsample_conv_kwargs or {})
        resnet_conv_kwargs = dict(resnet_conv_kwargs or {})
        # The reference shares one in-place ReLU instance across the decoder.
        up_activation = up_activation if up_activation is not None else nn.ReLU(inplace=True)
        self.n_downsampling = n_downsampling

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            FFC_BN_ACT(input_nc, ngf, kernel_size=7, padding=0, norm_layer=norm_layer,
                       activation_layer=activation_layer, **init_conv_kwargs),
        ]
        for i in range(n_downsampling):
            stage_kwargs = dict(downsample_conv_kwargs)
            if i == n_downsampling - 1:
                stage_kwargs["ratio_gout"] = resnet_conv_kwargs.get("ratio_gin", 0)
            layers.append(FFC_BN_ACT(min(max_features, ngf * 2 ** i), min(max_features, ngf * 2 ** (i + 1)),
                                     kernel_size=3, stride=2, padding=1, norm_layer=norm_layer,
                                     activation_layer=activation_layer, **stage_kwargs))
        bottleneck = min(max_features, ngf * 2 ** n_downsampling)
        for _ in range(n_blocks):
            layers.append(self.block_class(bottleneck, padding_type=padding_type, activation_layer=activation_layer,
                                           norm_layer=norm_layer, **resnet_conv_kwargs))
        layers.append(ConcatTupleLayer())
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            out_channels = min(max_features, int(ngf * mult / 2))
            layers += [
                nn.ConvTranspose2d(min(max_features, ngf * mult), out_channels, kernel_size=3, stride=2, padding=1,
                                   output_padding=1),
                up_norm_layer(out_channels),
                up_activation,
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0)]
        if add_out_act:
            layers.append(output_activation(add_out_act))
        self.model = nn.Sequential(*layers)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** n_downsampling``)."""
        return 2 ** self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
