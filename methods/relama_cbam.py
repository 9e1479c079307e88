"""ReLaMa-CBAM: LaMa's FFC generator with FFC-aware channel and spatial attention (CBAM) in every
residual block; the network is `methods.nets.cbam.ReLaMaCBAMGenerator`.

The adapter shares everything with LaMa's (`methods.lama.FourierInpainter`: checkpoint loading,
padding, batching, compositing); it only fixes the generator kind and its weights record. Train a
checkpoint with ``relama-bench train --arch relama-cbam``; compact ones trained on CelebA-HQ ship with
the package (`methods.shipped`).
"""

from __future__ import annotations

from methods.lama import FourierInpainter
from methods.registry import register_method
from methods.weights_record import WeightsFile, WeightsRecord


@register_method
class ReLaMaCBAM(FourierInpainter):
    name = "relama-cbam"
    summary = "ReLaMa-CBAM: LaMa with FFC-aware channel and spatial attention in every residual block"
    generator_kind = "ffc_resnet_cbam"
    default_config = "big-relama-cbam"
    weights_record = WeightsRecord(
        takes="file",
        what="a ReLaMa-CBAM generator checkpoint (.safetensors from relama-bench train, or a state dict)",
        files=(WeightsFile(path="", source="trained with `relama-bench train --arch relama-cbam` (no released "
                                           "checkpoint exists)", licence="MIT (relama-bench)"),),
        verification="read with weights_only=True or safetensors; strict load: every key and shape must match",
    )

