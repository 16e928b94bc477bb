"""SqueezeNet 1.0 and 1.1: AlexNet accuracy from Fire modules, with optional bypasses.

Layouts are torchvision's (1,248,424 and 1,235,496 parameters at 1000
classes); 1.1 starts with a 3x3/64 conv and pools earlier, cutting computation
2.4x. ``bypass`` adds the paper's residual connections around Fire modules:
"simple" is an identity where a Fire module keeps its width (fire3, 5, 7, 9),
"complex" also adds a 1x1 conv shortcut where it does not (fire2, 4, 6, 8).
The small stem keeps conv1 but at stride 1 and without the first max-pool.

Trained from scratch, the paper's layout as PyTorch initialises it stays at chance
(Fashion-MNIST, 1,600 images: loss 2.302 after 100 Adam steps): default init shrinks
the signal through ten ReLU convs without normalisation until the biases drown it, and
the ReLU after conv10 zeroes every negative logit and its gradient. So convs get
Kaiming (He) init with zero biases, conv10 starts small (std 0.01, as torchvision), and
conv10 has no ReLU unless ``final_relu=True`` (the paper's; no parameters either way).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
import torch.nn as nn

from cnnzip.models.layers import ConvNormAct, LayerFactory, use_small_stem
from cnnzip.models.registry import register_model

__all__ = ["Fire", "SqueezeNet", "squeezenet1_0", "squeezenet1_1"]

Bypass = Literal["none", "simple", "complex"]

# Per version: conv1 (channels, kernel), then Fire (squeeze, expand per branch) or "M" max-pool.
CONFIGS: dict[str, tuple[tuple[int, int], tuple[tuple[int, int] | str, ...]]] = {
    "1_0": (
        (96, 7),
        ((16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192), (64, 256), "M",
         (64, 256)),
    ),
    "1_1": (
        (64, 3),
        ((16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256),
         (64, 256)),
    ),
}  # fmt: skip


class Fire(nn.Module):
    """Squeeze 1x1 -> (expand 1x1 | expand 3x3) concatenated, plus an optional shortcut."""

    def __init__(
        self,
        in_chs: int,
        squeeze_chs: int,
        expand_chs: int,
        *,
        shortcut: Literal["none", "identity", "conv"] = "none",
        conv: LayerFactory,
    ) -> None:
        super().__init__()
        self.squeeze = conv(in_chs, squeeze_chs, 1)
        self.expand1x1 = conv(squeeze_chs, expand_chs, 1)
        self.expand3x3 = conv(squeeze_chs, expand_chs, 3)
        self.shortcut: nn.Module | None = None
        if shortcut == "identity":
            self.shortcut = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = conv(in_chs, 2 * expand_chs, 1, act_layer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)  # (N, squeeze, H, W)
        out = torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)  # (N, 2 * expand, H, W)
        return out if self.shortcut is None else out + self.shortcut(x)


def _shortcut_kind(
    bypass: Bypass, in_chs: int, out_chs: int
) -> Literal["none", "identity", "conv"]:
    if bypass == "none":
        return "none"
    if in_chs == out_chs:
        return "identity"
    return "conv" if bypass == "complex" else "none"


class SqueezeNet(nn.Module):
    """conv1, eight Fire modules with three max-pools, dropout, 1x1 conv10, global pool."""

    def __init__(
        self,
        version: str = "1_0",
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
        small_input: bool | None = None,
        bypass: Bypass = "none",
        dropout: float = 0.5,
        final_relu: bool = False,
        conv_layer: LayerFactory = nn.Conv2d,
        norm_layer: LayerFactory | None = None,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        if bypass not in ("none", "simple", "complex"):
            raise ValueError(f"bypass must be 'none', 'simple' or 'complex', got {bypass!r}")
        conv = partial(
            ConvNormAct, conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer
        )
        (stem_chs, stem_k), body = CONFIGS[version]
        small = use_small_stem(img_size, small_input)
        # 1.0 at 224: (N, 96, 109, 109) -> pool 54 -> fire2-4 -> pool 27 -> fire5-8 -> pool 13.
        layers: list[nn.Module] = [
            conv(in_chans, stem_chs, stem_k, stride=1 if small else 2, padding=0)
        ]
        if not small:
            layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
        chs = stem_chs
        for spec in body:
            if spec == "M":
                layers.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
                continue
            squeeze_chs, expand_chs = spec
            kind = _shortcut_kind(bypass, chs, 2 * expand_chs)
            layers.append(Fire(chs, squeeze_chs, expand_chs, shortcut=kind, conv=conv))
            chs = 2 * expand_chs
        self.features = nn.Sequential(*layers)  # (N, 512, 13, 13) at 224
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            ConvNormAct(
                chs,
                num_classes,
                1,
                conv_layer=conv_layer,
                norm_layer=None,
                act_layer=act_layer if final_relu else None,
            ),
            nn.AdaptiveAvgPool2d(1),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """He init keeps the signal's scale through the unnormalised ReLU convs; the
        classifier starts near zero so the first logits are near uniform."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier[1].conv.weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).flatten(1)  # (N, num_classes)


@register_model()
def squeezenet1_0(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    bypass: Bypass = "none",
    **kwargs: Any,
) -> SqueezeNet:
    """SqueezeNet 1.0 (1,248,424 parameters); ``bypass`` = "none" | "simple" | "complex"."""
    return SqueezeNet(
        "1_0",
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        bypass=bypass,
        **kwargs,
    )


@register_model()
def squeezenet1_1(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int = 224,
    bypass: Bypass = "none",
    **kwargs: Any,
) -> SqueezeNet:
    """SqueezeNet 1.1 (1,235,496 parameters, 2.4x fewer MACs); ``bypass`` as for 1.0."""
    return SqueezeNet(
        "1_1",
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=img_size,
        bypass=bypass,
        **kwargs,
    )
