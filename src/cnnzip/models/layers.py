"""Layers the zoo shares: conv -> norm -> act built from injected factories.

Every model takes ``conv_layer``, ``norm_layer`` and ``act_layer`` (timm style)
and builds all its convolutions through :class:`ConvNormAct`, so the same
architecture builds with binary or otherwise replaced layers by passing other
factories, without a second copy of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

__all__ = ["SMALL_INPUT_BELOW", "ConvNormAct", "LayerFactory", "use_small_stem"]

LayerFactory = Callable[..., nn.Module]

# Inputs narrower than this get the small stem by default (28x28 and 32x32 do,
# ImageNet's 224 and MobileNet's 128-192 resolutions do not).
SMALL_INPUT_BELOW = 64


def use_small_stem(img_size: int, small_input: bool | None) -> bool:
    """Whether to drop the stem's downsampling: ``small_input`` if given, else by ``img_size``.

    ImageNet stems divide the input by 4 before the first block; a 28x28 image
    would shrink to nothing by the last stage. The small stem keeps the same
    layers (so the same parameters) but without that first stride and max-pool.
    """
    return img_size < SMALL_INPUT_BELOW if small_input is None else small_input


class ConvNormAct(nn.Sequential):
    """``conv_layer`` -> ``norm_layer`` -> ``act_layer``; norm and act may be None.

    The convolution has a bias only when there is no norm after it (a bias
    before batch norm is cancelled by its mean). Children are named ``conv``,
    ``norm`` and ``act`` so weights are addressed as ``"....conv.weight"``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory | None = nn.BatchNorm2d,
        act_layer: LayerFactory | None = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = conv_layer(
            in_chs,
            out_chs,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            groups=groups,
            bias=norm_layer is None,
        )
        if norm_layer is not None:
            self.norm = norm_layer(out_chs)
        if act_layer is not None:
            self.act = act_layer()
