"""LaMa's training losses (``saicinpainting/training/losses``), with big-lama's weights as defaults.

- `masked_l1`: L1 weighted per pixel, known pixels ``weight_known`` (10), holes ``weight_missing`` (0).
- `generator_adversarial` / `discriminator_adversarial`: non-saturating loss with an R1 penalty on
  real images; the discriminator treats only the hole pixels of a fake as fake (mask as fake target).
- `feature_matching`: mean over discriminator layers of the MSE between fake and real features.
- `VGG16PerceptualLoss`: the fallback perceptual loss when LaMa's segmentation ResNet is not given.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def masked_l1(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
              weight_known: float = 10.0, weight_missing: float = 0.0) -> torch.Tensor:
    """Per-pixel L1 weighted by ``mask * weight_missing + (1 - mask) * weight_known``, averaged.

    ``mask`` is ``N x 1 x H x W`` with 1 = hole.
    """
    pixel_weights = mask * weight_missing + (1 - mask) * weight_known
    return (pixel_weights * (predicted - target).abs()).mean()


def _resize_mask(mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    # The reference scales the mask to the logits map with nearest-neighbour interpolation.
    return mask if mask.shape[-2:] == shape else F.interpolate(mask, size=shape, mode="nearest")


def generator_adversarial(fake_logits: torch.Tensor, *, weight: float = 10.0) -> torch.Tensor:
    """Non-saturating generator loss ``softplus(-D(fake))``, averaged, times ``weight``."""
    return F.softplus(-fake_logits).mean() * weight


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Mean over images of the squared norm of ``d sum(D(real)) / d real`` (graph kept for backward)."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return gradient.reshape(gradient.shape[0], -1).norm(2, dim=1).pow(2).mean()


def discriminator_adversarial(real_logits: torch.Tensor, fake_logits: torch.Tensor, mask: torch.Tensor,
                              real_images: torch.Tensor, *, gp_coef: float = 0.001
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Discriminator loss: real -> real, fake holes -> fake, fake known pixels -> real, plus R1.

    ``real_images`` must require grad and be the tensor ``real_logits`` was computed from.

    Returns
    -------
    loss : torch.Tensor
        ``mean(softplus(-real) + fake_term) + gp_coef * R1`` (the reference's sum, then mean).
    parts : dict
        ``real``, ``fake`` and ``r1`` (unweighted), detached.
    """
    hole = _resize_mask(mask, fake_logits.shape[-2:])
    real_term = F.softplus(-real_logits)
    fake_term = F.softplus(fake_logits) * hole + F.softplus(-fake_logits) * (1 - hole)
    penalty = r1_penalty(real_logits, real_images)
    loss = real_term.mean() + fake_term.mean() + gp_coef * penalty
    return loss, {"real": real_term.mean().detach(), "fake": fake_term.mean().detach(), "r1": penalty.detach()}


def feature_matching(fake_features: Sequence[torch.Tensor], real_features: Sequence[torch.Tensor], *,
                     weight: float = 100.0) -> torch.Tensor:
    """Mean over layers of ``MSE(fake, real)``, times ``weight`` (real features are treated as constants)."""
    losses = [F.mse_loss(fake, real.detach()) for fake, real in zip(fake_features, real_features)]
    return torch.stack(losses).mean() * weight


class VGG16PerceptualLoss(nn.Module):
    """Mean over VGG16 layers of the squared distance between channel-normalised features.

    Inputs are RGB in [0, 1], normalised with the ImageNet statistics the VGG16 weights expect. At
    each layer the feature vector of every position is scaled to unit length (as LPIPS does), the
    squared distances are summed over channels and averaged over positions and images. Raw VGG
    activations are in the tens, so their MSE would dwarf every other LaMa loss; after the
    normalisation each layer contributes at most 4, and the weight plays the role of LaMa's
    segmentation-ResNet loss weight (30). The network is frozen and kept in eval mode.

    Parameters
    ----------
    features_state : mapping
        Torchvision-layout VGG16 weights (``features.<i>.weight`` / ``.bias``; other keys ignored).
    layers : sequence of int
        Indices in ``vgg16().features`` whose outputs are compared; default: relu1_2, relu2_2,
        relu3_3, relu4_3.
    weight : float
        Multiplier of the mean.
    """

    def __init__(self, features_state: Mapping[str, torch.Tensor], layers: Sequence[int] = (3, 8, 15, 22),
                 weight: float = 30.0) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # Only the trunk up to the last compared layer is built (torchvision's vgg16() allocates 138M
        # parameters); a number in the layout is a conv + ReLU, "M" a max-pool.
        layout, modules = [], 0
        for item in cfgs["D"]:
            if modules > max(layers):
                break
            layout.append(item)
            modules += 1 if item == "M" else 2
        features = make_layers(layout)[: max(layers) + 1]
        selected = {key[len("features."):]: value for key, value in features_state.items()
                    if key.startswith("features.") and int(key.split(".")[1]) <= max(layers)}
        try:
            features.load_state_dict(selected, strict=True)
        except RuntimeError as error:
            raise ValueError(f"the VGG16 weights do not fit torchvision's layout ({str(error).splitlines()[-1].strip()}); "
                             "pass a torchvision vgg16 state dict") from None
        self.features = features.eval().requires_grad_(False)
        self.layers = tuple(sorted(layers))
        self.weight = weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGG16PerceptualLoss":
        # The frozen backbone stays in eval mode whatever the trainer asks.
        super().train(False)
        return self

    def _activations(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layers:
                outputs.append(x)
        return outputs

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self._activations(target)
        predicted_features = self._activations(predicted)
        distances = [(_unit(p) - _unit(t)).pow(2).sum(dim=1).mean()
                     for p, t in zip(predicted_features, target_features)]
        return torch.stack(distances).mean() * self.weight


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
