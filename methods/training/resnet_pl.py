"""LaMa's high-receptive-field perceptual loss (``ResNetPL``): feature MSE through an ADE20k segmentation ResNet.

The encoder is the MIT scene-parsing ``resnet50dilated`` (the weights file LaMa uses is
``ade20k/ade20k-resnet50dilated-ppm/encoder_epoch_20.pth``): a ResNet-50 with a three-convolution
stem (3->64 stride 2, 64->64, 64->128, each with BatchNorm and ReLU, then a 3x3 max-pool), bottleneck
stages of 3/4/6/3 blocks whose first block strides on its 3x3 convolution, and an output stride of 8:
``layer3`` and ``layer4`` do not stride, and their 3x3 convolutions are dilated by 2 and 4 (the
first, formerly strided, one by half of that). Module names follow that file, so it loads strictly.

The loss is ``weight * sum over layer1..layer4 of MSE(features(pred), features(target))`` on
ImageNet-normalised inputs, with the encoder frozen in eval mode (big-lama: weight 30).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from methods.training.losses import IMAGENET_MEAN, IMAGENET_STD

#: Blocks per stage of ResNet-50.
STAGE_BLOCKS = (3, 4, 6, 3)


def _conv3x3(source: int, target: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(source, target, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided / dilated) -> 1x1 (x4 channels), each with BatchNorm, residual sum, ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + shortcut)


class DilatedResNet50Encoder(nn.Module):
    """The ``resnet50dilated`` encoder; `forward` returns the outputs of ``layer1`` ... ``layer4``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, 64, stride=2)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(64, 64)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = _conv3x3(64, 128)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu3 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 128
        # (planes, stride of the first block, dilation of the first block, dilation of the others)
        stages = ((64, 1, 1, 1), (128, 2, 1, 1), (256, 1, 1, 2), (512, 1, 2, 4))
        for index, ((planes, stride, first_dilation, dilation), blocks) in enumerate(zip(stages, STAGE_BLOCKS)):
            # layer3/layer4 lost their stride to dilation, but keep the 1x1 projection shortcut.
            downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(inplanes, planes, stride, first_dilation, downsample)]
            inplanes = planes * 4
            layers += [Bottleneck(inplanes, planes, 1, dilation) for _ in range(1, blocks)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        features = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            features.append(x)
        return features


class ResNetPerceptualLoss(nn.Module):
    """LaMa's ``ResNetPL``.

    Parameters
    ----------
    encoder_state : mapping
        The ``encoder_epoch_20.pth`` state dict (``num_batches_tracked`` may be absent).
    weight : float
        Multiplier of the sum over the four stages (big-lama: 30).
    """

    def __init__(self, encoder_state: Mapping[str, torch.Tensor], weight: float = 30.0) -> None:
        super().__init__()
        self.encoder = DilatedResNet50Encoder()
        expected = self.encoder.state_dict()
        state = dict(encoder_state)
        for key, value in expected.items():
            # Checkpoints older than PyTorch 0.4.1 have no BatchNorm batch counters.
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = value
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"the segmentation encoder weights do not fit resnet50dilated (missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]}); pass "
                             "ade20k-resnet50dilated-ppm/encoder_epoch_20.pth")
        self.encoder.load_state_dict(state, strict=True)
        self.encoder.eval().requires_grad_(False)
        self.weight = weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "ResNetPerceptualLoss":
        # The frozen encoder stays in eval mode (running BatchNorm statistics) whatever the trainer asks.
        super().train(False)
        return self

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.encoder((target - self.mean) / self.std)
        predicted_features = self.encoder((predicted - self.mean) / self.std)
        losses = [F.mse_loss(p, t) for p, t in zip(predicted_features, target_features)]
        return torch.stack(losses).sum() * self.weight


def read_encoder_state(path: Path | str) -> dict[str, torch.Tensor]:
    """Read ``encoder_epoch_20.pth`` (or a ``.safetensors`` copy) without executing pickled code."""
    from methods.checkpoint import read_checkpoint

    state = read_checkpoint(Path(path))
    if not isinstance(state, Mapping) or not all(torch.is_tensor(value) for value in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors; pass ade20k-resnet50dilated-ppm/encoder_epoch_20.pth")
    return dict(state)
