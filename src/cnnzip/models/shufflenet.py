"""ShuffleNet v1: grouped 1x1 convolutions made to talk through a channel shuffle.

Grouped pointwise convs cut the 1x1 cost by ``groups``, but stacked they would
only ever see their own group's channels; shuffling the channels between them
lets information cross groups for free. ``shuffle=False`` builds the paper's
ablation. Channels follow the paper's Table 1 (stage widths per ``groups``,
times ``scale``); the bottleneck is a quarter of a unit's output, and the
first pointwise conv of stage 2 is not grouped (its input has only 24
channels). At ``scale=1`` the MACs at 224 (1000 classes, ``cnnzip.profile``)
are 143 / 141 / 137 / 134 / 138 M for groups 1 / 2 / 3 / 4 / 8 (the paper's
Table 2 rounds to 143 / 140 / 137 / 133 / 137). Scaled widths are rounded to
multiples of ``groups``.
The small stem runs conv1 at stride 1 and drops the max-pool.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["ShuffleNetV1", "ShuffleUnit", "channel_shuffle", "shufflenet_v1"]

# Output channels of stages 2, 3, 4 at scale 1, by number of groups (paper, Table 1).
STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
STAGE_UNITS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g * c, H, W) viewed as (N, g, c, H, W), transposed to (N, c, g, H, W), flattened back."""
    n, chs, h, w = x.shape
    return x.view(n, groups, chs // groups, h, w).transpose(1, 2).reshape(n, chs, h, w)


def _round_to(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest positive multiple of ``multiple``, as groups need."""
    return max(multiple, round(value / multiple) * multiple)


class ShuffleUnit(nn.Module):
    """1x1 group conv -> shuffle -> 3x3 depthwise (stride) -> 1x1 group conv, joined to the input.

    Stride 1 adds the input; stride 2 concatenates a 3x3 average-pooled copy of
    it, so the conv branch produces only ``out_chs - in_chs`` channels.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        mid_chs: int,
        *,
        stride: int,
        groups: int,
        group_first: bool = True,
        shuffle: bool = True,
        conv: LayerFactory,
        act_layer: LayerFactory,
    ) -> None:
        super().__init__()
        first_groups = groups if group_first else 1
        self.shuffle_groups = first_groups if shuffle else 1
        branch_chs = out_chs - in_chs if stride == 2 else out_chs
        self.conv1 = conv(in_chs, mid_chs, 1, groups=first_groups)
        self.dw = conv(mid_chs, mid_chs, 3, stride=stride, groups=mid_chs, act_layer=None)
        self.conv2 = conv(mid_chs, branch_chs, 1, groups=groups, act_layer=None)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)  # (N, mid, H, W)
        if self.shuffle_groups > 1:
            out = channel_shuffle(out, self.shuffle_groups)
        out = self.conv2(self.dw(out))  # (N, branch, H/s, W/s)
        if self.pool is None:
            return self.act(x + out)  # (N, out, H, W)
        return self.act(torch.cat([self.pool(x), out], dim=1))  # (N, in + branch, H/2, W/2)


class ShuffleNetV1(nn.Module):
    """conv 3x3/2 24 + max-pool, stages of 4 / 8 / 4 shuffle units, global pool, fc."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        groups: int = 3,
        scale: float = 1.0,
        shuffle: bool = True,
        small_input: bool | None = None,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory = nn.ReLU,
        linear_layer: LayerFactory = nn.Linear,
    ) -> None:
        super().__init__()
        if groups not in STAGE_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        conv = partial(
            ConvNormAct, conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer
        )
        small = use_small_stem(img_size, small_input)
        chs = _round_to(24 * scale, groups)
        self.stem = conv(in_chans, chs, 3, stride=1 if small else 2)  # 224: (N, 24, 112, 112)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, stride=2, padding=1)
        unit = partial(ShuffleUnit, groups=groups, shuffle=shuffle, conv=conv, act_layer=act_layer)
        stages: list[nn.Module] = []
        for i, (width, units) in enumerate(zip(STAGE_CHANNELS[groups], STAGE_UNITS, strict=True)):
            out_chs = _round_to(width * scale, groups)
            mid_chs = _round_to(out_chs / 4, groups)
            blocks = [unit(chs, out_chs, mid_chs, stride=2, group_first=i > 0)]
            blocks += [unit(out_chs, out_chs, mid_chs, stride=1) for _ in range(units - 1)]
            chs = out_chs
            stages.append(nn.Sequential(*blocks))
        # 224: (N, c2, 28, 28) -> (N, c3, 14, 14) -> (N, c4, 7, 7)
        self.stage2, self.stage3, self.stage4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_layer(chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))  # (N, 24, 56, 56) at 224
        x = self.stage4(self.stage3(self.stage2(x)))  # (N, c4, 7, 7)
        return self.fc(self.avgpool(x).flatten(1))  # (N, num_classes)


@register_model()
def shufflenet_v1(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    groups: int = 3,
    scale: float = 1.0,
    shuffle: bool = True,
    **kwargs: Any,
) -> ShuffleNetV1:
    """ShuffleNet v1 ``scale``x, ``groups`` in {1, 2, 3, 4, 8}; ``shuffle=False``: the ablation."""
    return ShuffleNetV1(
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        groups=groups,
        scale=scale,
        shuffle=shuffle,
        **kwargs,
    )
