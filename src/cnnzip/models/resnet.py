"""ResNet-18 and ResNet-50 in torchvision's v1.5 layout.

v1.5 puts a bottleneck's stride on its 3x3 convolution rather than the first
1x1 (more accurate, a little more computation: ResNet-50 is 4.1 G MACs).
Parameter counts equal torchvision's (11,689,512 and 25,557,032 at 1000
classes). The small stem keeps the 7x7 conv1 but at stride 1 and drops the
max-pool, so a 28x28 input reaches the last stage at 4x4.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


def _shortcut(in_chs: int, out_chs: int, stride: int, conv: LayerFactory) -> nn.Module:
    """Identity, or a strided 1x1 conv + norm where the block changes the shape."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    return conv(in_chs, out_chs, 1, stride=stride, act_layer=None)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut; output width = ``mid_chs``."""

    expansion = 1

    def __init__(
        self, in_chs: int, mid_chs: int, *, stride: int, conv: LayerFactory, act_layer: LayerFactory
    ) -> None:
        super().__init__()
        self.conv1 = conv(in_chs, mid_chs, 3, stride=stride)
        self.conv2 = conv(mid_chs, mid_chs, 3, act_layer=None)
        self.downsample = _shortcut(in_chs, mid_chs, stride, conv)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.downsample(x))  # (N, mid, H/s, W/s)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (the stride, v1.5) -> 1x1 expand to 4 * ``mid_chs``, plus the shortcut."""

    expansion = 4

    def __init__(
        self, in_chs: int, mid_chs: int, *, stride: int, conv: LayerFactory, act_layer: LayerFactory
    ) -> None:
        super().__init__()
        out_chs = mid_chs * self.expansion
        self.conv1 = conv(in_chs, mid_chs, 1)
        self.conv2 = conv(mid_chs, mid_chs, 3, stride=stride)
        self.conv3 = conv(mid_chs, out_chs, 1, act_layer=None)
        self.downsample = _shortcut(in_chs, out_chs, stride, conv)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))  # (N, 4 * mid, H/s, W/s)
        return self.act(out + self.downsample(x))


class ResNet(nn.Module):
    """Stem (7x7/2, max-pool/2), four stages of 64/128/256/512-wide blocks, global pool, fc."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: Sequence[int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        small_input: bool | None = None,
        width_mult: float = 1.0,
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
        small = use_small_stem(img_size, small_input)
        # the paper's widths at width_mult 1; a smaller one only for quick, cheap runs
        widths = [max(1, int(c * width_mult)) for c in (64, 128, 256, 512)]
        self.stem = conv(in_chans, widths[0], 7, stride=1 if small else 2)  # 224: (N, 64, 112, 112)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        in_chs = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_chs, width, stride=stride, conv=conv, act_layer=act_layer))
                in_chs = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        # 224: (N, 64e, 56, 56) -> (N, 128e, 28, 28) -> (N, 256e, 14, 14) -> (N, 512e, 7, 7)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_layer(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 512e, H/32, W/32)
        return self.fc(self.avgpool(x).flatten(1))  # (N, num_classes)


@register_model()
def resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, **kwargs: Any
) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2); ``small_input`` and layer factories pass through."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        **kwargs,
    )


@register_model()
def resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, **kwargs: Any
) -> ResNet:
    """ResNet-50: bottlenecks (3, 4, 6, 3); ``small_input`` and layer factories pass through."""
    return ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        **kwargs,
    )
