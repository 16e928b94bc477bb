"""AlexNet in torchvision's single-tower layout (61,100,840 parameters at 1000 classes).

The survey's reference point: 240 MB of float weights, 96% of them in the three
fully connected layers. The classifier reads a fixed 6x6 grid (adaptive
pooling), so the parameter count is the same at every input size; small inputs
(28, 32 px) use the small stem, which keeps conv1 but at stride 1 and without
the first max-pool.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["AlexNet", "alexnet"]


class AlexNet(nn.Module):
    """Five convolutions (11x11/4, 5x5, 3x3 x3) with three max-pools, then three fc layers."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        small_input: bool | None = None,
        dropout: float = 0.5,
        width_mult: float = 1.0,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory | None = None,
        act_layer: LayerFactory = nn.ReLU,
        linear_layer: LayerFactory = nn.Linear,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        small = use_small_stem(img_size, small_input)
        conv = partial(
            ConvNormAct, conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer
        )
        # widths at width_mult 1 (the paper's); a smaller one only for quick, cheap runs
        c1, c2, c3, c4, fc = (max(1, int(c * width_mult)) for c in (64, 192, 384, 256, 4096))

        # Shapes at 224 (small stem at 28: 28 -> 28 -> 13 -> 6).
        stem = [conv(in_chans, c1, 11, stride=1 if small else 4, padding=5 if small else 2)]
        # (N, 64, 55, 55)
        if not small:
            stem.append(nn.MaxPool2d(3, 2))  # (N, 64, 27, 27)
        self.features = nn.Sequential(
            *stem,
            conv(c1, c2, 5),  # (N, 192, 27, 27)
            nn.MaxPool2d(3, 2),  # (N, 192, 13, 13)
            conv(c2, c3, 3),
            conv(c3, c4, 3),
            conv(c4, c4, 3),  # (N, 256, 13, 13)
            nn.MaxPool2d(3, 2),  # (N, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            linear_layer(c4 * 6 * 6, fc),
            act_layer(),
            nn.Dropout(dropout),
            linear_layer(fc, fc),
            act_layer(),
            linear_layer(fc, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))  # (N, 256, 6, 6)
        return self.classifier(x.flatten(1))  # (N, num_classes)


@register_model()
def alexnet(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224, **kwargs: Any
) -> AlexNet:
    """AlexNet; ``small_input``, ``dropout``, ``width_mult`` (every width scaled: for quick
    runs, 1.0 is the paper's) and the layer factories pass through."""
    return AlexNet(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
