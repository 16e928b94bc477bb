"""MobileNet v1: depthwise separable convolutions with a width multiplier.

A 3x3 depthwise conv (one filter per channel) followed by a 1x1 pointwise conv
costs 1/N + 1/9 of a full 3x3 conv, and 95% of the remaining MACs sit in the
1x1 convs. ``width_mult`` is the paper's alpha (every layer's channels times
alpha, rounded down); the resolution multiplier rho is just the input size
(the network ends in global pooling, so any ``img_size`` runs). At 224 and
1000 classes, alpha 1.0 has 4,231,976 parameters and 569 M MACs. The small
stem runs the first conv at stride 1; by default inputs under SMALL_INPUT_BELOW
(64 px, cnnzip.models.layers) get it, ``small_input`` overrides.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["DepthwiseSeparable", "MobileNetV1", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise separable blocks, before alpha.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)  # fmt: skip


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv -> norm -> act, then 1x1 pointwise conv -> norm -> act."""

    def __init__(self, in_chs: int, out_chs: int, *, stride: int, conv: LayerFactory) -> None:
        super().__init__()
        self.dw = conv(in_chs, in_chs, 3, stride=stride, groups=in_chs)  # (N, in, H/s, W/s)
        self.pw = conv(in_chs, out_chs, 1)  # (N, out, H/s, W/s)


class MobileNetV1(nn.Module):
    """conv 3x3/2 32, 13 depthwise separable blocks, global average pool, fc."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        width_mult: float = 1.0,
        small_input: bool | None = None,
        dropout: float = 0.0,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
        linear_layer: LayerFactory = nn.Linear,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        conv = partial(
            ConvNormAct, conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer
        )
        chs = max(1, int(32 * width_mult))
        stem_stride = 1 if use_small_stem(img_size, small_input) else 2
        layers: list[nn.Module] = [conv(in_chans, chs, 3, stride=stem_stride)]  # (N, 32a, 112, 112)
        for out, stride in BLOCKS:
            out_chs = max(1, int(out * width_mult))
            layers.append(DepthwiseSeparable(chs, out_chs, stride=stride, conv=conv))
            chs = out_chs
        self.features = nn.Sequential(*layers)  # (N, 1024a, 7, 7) at 224
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_layer(chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)  # (N, 1024a)
        return self.fc(self.dropout(x))  # (N, num_classes)


@register_model()
def mobilenet_v1(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    width_mult: float = 1.0,
    **kwargs: Any,
) -> MobileNetV1:
    """MobileNet v1 at width ``width_mult`` (alpha: 1.0, 0.75, 0.5, 0.25 in the paper)."""
    return MobileNetV1(
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        width_mult=width_mult,
        **kwargs,
    )
