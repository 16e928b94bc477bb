"""VGG-16 (configuration D, 138,357,544 parameters at 1000 classes).

Thirteen 3x3 convolutions in five blocks, each block closed by a 2x2 max-pool,
then three fully connected layers on a fixed 7x7 grid (adaptive pooling, so
the parameter count is the same at every input size). The small stem drops
the first max-pool: a 28x28 input then ends at 1x1 instead of vanishing.
``norm_layer=nn.BatchNorm2d`` gives the batch-normalised variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["VGG", "vgg16"]

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool.
VGG16_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """A stack of 3x3 convs and max-pools given by ``layers``, then fc 4096 -> 4096 -> classes."""

    def __init__(
        self,
        layers: Sequence[int | str],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        small_input: bool | None = None,
        dropout: float = 0.5,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory | None = None,
        act_layer: LayerFactory = nn.ReLU,
        linear_layer: LayerFactory = nn.Linear,
    ) -> None:
        super().__init__()
        conv = partial(
            ConvNormAct, conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer
        )
        if use_small_stem(img_size, small_input):
            layers = list(layers)
            layers.remove("M")  # the first pool only
        features: list[nn.Module] = []
        chs = in_chans
        for spec in layers:
            if spec == "M":
                features.append(nn.MaxPool2d(2, 2))
            else:
                features.append(conv(chs, int(spec), 3))
                chs = int(spec)
        self.features = nn.Sequential(*features)  # 224 -> (N, 512, 7, 7)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            linear_layer(chs * 7 * 7, 4096),
            act_layer(),
            nn.Dropout(dropout),
            linear_layer(4096, 4096),
            act_layer(),
            nn.Dropout(dropout),
            linear_layer(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))  # (N, 512, 7, 7)
        return self.classifier(x.flatten(1))  # (N, num_classes)


@register_model()
def vgg16(*, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, **kwargs: Any) -> VGG:
    """VGG-16; ``small_input``, ``dropout`` and the layer factories pass through."""
    return VGG(
        VGG16_LAYERS, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs
    )
