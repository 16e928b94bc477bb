"""GoogLeNet (Inception v1) in torchvision's layout, without the auxiliary heads.

6,624,904 parameters at 1000 classes, which is torchvision's count: batch norm
after every convolution, and 3x3 kernels in the branch the paper gives 5x5
(torchvision's long-standing choice, kept so the reference count holds). The
two auxiliary classifiers of the paper only help training on ImageNet and are
left out. The small stem keeps conv1 at stride 1 and drops the first max-pool.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["GoogLeNet", "Inception", "googlenet"]

# (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj) of each Inception module.
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; pool -> 1x1), concatenated."""

    def __init__(
        self,
        in_chs: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        conv: LayerFactory,
    ) -> None:
        super().__init__()
        self.branch1 = conv(in_chs, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_chs, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv(in_chs, ch5x5red, 1), conv(ch5x5red, ch5x5, 3))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(in_chs, pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], dim=1)  # (N, sum of branch widths, H, W)


class GoogLeNet(nn.Module):
    """Stem (7x7/2, 1x1, 3x3), nine Inception modules in three stages, global pool, fc."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        small_input: bool | None = None,
        dropout: float = 0.2,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory | None = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
        linear_layer: LayerFactory = nn.Linear,
    ) -> None:
        super().__init__()
        conv = partial(
            ConvNormAct, conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer
        )
        small = use_small_stem(img_size, small_input)

        def pool(k: int = 3) -> nn.MaxPool2d:
            return nn.MaxPool2d(k, stride=2, ceil_mode=True)

        def stage(*names: str) -> list[nn.Module]:
            return [Inception(*INCEPTIONS[n], conv=conv) for n in names]

        # Shapes at 224.
        stem = [conv(in_chans, 64, 7, stride=1 if small else 2)]  # (N, 64, 112, 112)
        if not small:
            stem.append(pool())  # (N, 64, 56, 56)
        self.features = nn.Sequential(
            *stem,
            conv(64, 64, 1),
            conv(64, 192, 3),
            pool(),  # (N, 192, 28, 28)
            *stage("3a", "3b"),  # (N, 480, 28, 28)
            pool(),  # (N, 480, 14, 14)
            *stage("4a", "4b", "4c", "4d", "4e"),  # (N, 832, 14, 14)
            pool(2),  # (N, 832, 7, 7)
            *stage("5a", "5b"),  # (N, 1024, 7, 7)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_layer(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)  # (N, 1024)
        return self.fc(self.dropout(x))  # (N, num_classes)


@register_model()
def googlenet(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, **kwargs: Any
) -> GoogLeNet:
    """GoogLeNet; ``small_input``, ``dropout`` and the layer factories pass through."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
