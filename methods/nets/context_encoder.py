"""Context Encoder networks (Pathak et al., CVPR 2016) as the PyTorch port builds them.

Ported from the classes ``_netG`` and ``_netlocalD`` of ``model.py`` in BoyuanJiang/context_encoder_pytorch
(commit ``01cbf96``), which is the code behind the released ``netG_streetview.pth``. Both networks keep all
layers in one ``nn.Sequential`` called ``main``, so state-dict keys are ``main.<index>.<name>`` exactly as in
the reference and its checkpoints load unchanged.

The generator maps a 128x128 image, whose centre has been blanked, to a 64x64 prediction of the centre.
Its "bottleneck" is the one the PyTorch port uses: a full 4x4 valid convolution from the 4x4 encoder map to
``n_bottleneck`` channels at 1x1 (not the channel-wise fully connected layer of the paper's Torch code).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

#: Side of the generator's input (the reference's ``imageSize``); the layer stack is built for it.
IMAGE_SIZE = 128
#: Side of the generator's output and of the discriminator's input.
CENTER_SIZE = IMAGE_SIZE // 2


def _down(in_channels: int, out_channels: int, *, normalise: bool) -> list[nn.Module]:
    """Strided 4x4 convolution halving the size, optional BatchNorm, LeakyReLU(0.2)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    if normalise:
        layers.append(nn.BatchNorm2d(out_channels))
    # In place like the reference: a hook on the convolution sees its pre-activation output.
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def _up(in_channels: int, out_channels: int, stride: int, padding: int) -> list[nn.Module]:
    """4x4 transposed convolution, BatchNorm, ReLU."""
    return [
        nn.ConvTranspose2d(in_channels, out_channels, 4, stride, padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _check_image_size(options: Mapping[str, Any]) -> None:
    size = int(options.get("imageSize", IMAGE_SIZE))
    if size != IMAGE_SIZE:
        raise ValueError(f"the Context Encoder layer stack is built for imageSize {IMAGE_SIZE}, got {size}")


class ContextEncoderGenerator(nn.Module):
    """The reference ``_netG``: encoder, 4x4 bottleneck convolution, decoder (31 modules in ``main``).

    Parameters
    ----------
    nc : int
        Image channels.
    nef : int
        Width of the first encoder convolution (doubles every layer up to ``8 * nef``).
    ngf : int
        Width of the last decoder layer before the output (the decoder starts at ``8 * ngf``).
    n_bottleneck : int
        Channels of the 1x1 code (the reference's ``nBottleneck``).

    Notes
    -----
    Input ``N x nc x 128 x 128`` in [-1, 1]; output ``N x nc x 64 x 64`` after Tanh, the prediction of
    rows and columns 32 to 95 of the input.
    """

    def __init__(self, nc: int = 3, nef: int = 64, ngf: int = 64, n_bottleneck: int = 4000) -> None:
        super().__init__()
        self.nc, self.nef, self.ngf, self.n_bottleneck = nc, nef, ngf, n_bottleneck
        encoder = [
            *_down(nc, nef, normalise=False),  # 64x64
            *_down(nef, nef, normalise=True),  # 32x32
            *_down(nef, nef * 2, normalise=True),  # 16x16
            *_down(nef * 2, nef * 4, normalise=True),  # 8x8
            *_down(nef * 4, nef * 8, normalise=True),  # 4x4
            nn.Conv2d(nef * 8, n_bottleneck, 4, bias=False),  # 1x1 code
            nn.BatchNorm2d(n_bottleneck),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        decoder = [
            *_up(n_bottleneck, ngf * 8, 1, 0),  # 4x4
            *_up(ngf * 8, ngf * 4, 2, 1),  # 8x8
            *_up(ngf * 4, ngf * 2, 2, 1),  # 16x16
            *_up(ngf * 2, ngf, 2, 1),  # 32x32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),  # 64x64
            nn.Tanh(),
        ]
        self.main = nn.Sequential(*encoder, *decoder)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ContextEncoderGenerator":
        """Build from the reference's option names (``nc``, ``nef``, ``ngf``, ``nBottleneck``, ``imageSize``)."""
        _check_image_size(options)
        return cls(nc=int(options.get("nc", 3)), nef=int(options.get("nef", 64)), ngf=int(options.get("ngf", 64)),
                   n_bottleneck=int(options.get("nBottleneck", 4000)))

    def forward(self, image: Tensor) -> Tensor:
        return self.main(image)


class ContextEncoderLocalDiscriminator(nn.Module):
    """The reference ``_netlocalD``: judges a 64x64 centre patch, output ``N x 1`` probabilities.

    Parameters
    ----------
    nc : int
        Image channels.
    ndf : int
        Width of the first convolution (doubles every layer up to ``8 * ndf``).
    """

    def __init__(self, nc: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.nc, self.ndf = nc, ndf
        self.main = nn.Sequential(
            *_down(nc, ndf, normalise=False),  # 32x32
            *_down(ndf, ndf * 2, normalise=True),  # 16x16
            *_down(ndf * 2, ndf * 4, normalise=True),  # 8x8
            *_down(ndf * 4, ndf * 8, normalise=True),  # 4x4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),  # 1x1
            nn.Sigmoid(),
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ContextEncoderLocalDiscriminator":
        """Build from the reference's option names (``nc``, ``ndf``, ``imageSize``)."""
        _check_image_size(options)
        return cls(nc=int(options.get("nc", 3)), ndf=int(options.get("ndf", 64)))

    def forward(self, center: Tensor) -> Tensor:
        return self.main(center).view(-1, 1)
