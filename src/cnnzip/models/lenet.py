"""LeNet-300-100 and LeNet-5 as used by Han et al. (Deep Compression's MNIST models).

LeNet-5 is the Caffe version: conv 5x5 20 -> pool -> conv 5x5 50 -> pool ->
fc 500 -> fc 10 (431,080 parameters). The Caffe net has no activation after its
convolutions; we put ``act_layer`` after each pooling, which adds no parameter
and trains faster. Layers are injected factories so the same net builds with
binary or other layers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from cnnzip.models.registry import register_model

__all__ = ["LeNet5", "LeNet300", "lenet5", "lenet300"]

ConvFactory = Callable[..., nn.Module]
LinearFactory = Callable[..., nn.Module]


class LeNet300(nn.Module):
    """Fully connected 784-300-100-10 with ReLU."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_features: int = 784,
        hidden: tuple[int, int] = (300, 100),
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        linear_layer: LinearFactory = nn.Linear,
    ) -> None:
        super().__init__()
        h1, h2 = hidden
        self.fc1 = linear_layer(in_features, h1)
        self.act1 = act_layer()
        self.fc2 = linear_layer(h1, h2)
        self.act2 = act_layer()
        self.fc3 = linear_layer(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, 784)
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


class LeNet5(nn.Module):
    """Caffe LeNet-5: two 5x5 convs with 2x2 max-pooling, then fc 500 and the classifier."""

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int = 28,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        conv_layer: ConvFactory = nn.Conv2d,
        linear_layer: LinearFactory = nn.Linear,
    ) -> None:
        super().__init__()
        self.conv1 = conv_layer(in_chans, 20, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.act1 = act_layer()
        self.conv2 = conv_layer(20, 50, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.act2 = act_layer()
        side = ((img_size - 4) // 2 - 4) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        if side < 1:
            raise ValueError(f"img_size {img_size} is too small for LeNet-5: it needs >= 16")
        self.fc1 = linear_layer(50 * side * side, 500)
        self.act3 = act_layer()
        self.fc2 = linear_layer(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pool1(self.conv1(x)))  # (N, 20, 12, 12)
        x = self.act2(self.pool2(self.conv2(x)))  # (N, 50, 4, 4)
        x = self.act3(self.fc1(x.flatten(1)))  # (N, 500)
        return self.fc2(x)


@register_model()
def lenet300(
    *, num_classes: int = 10, in_features: int = 784, hidden: tuple[int, int] = (300, 100)
) -> LeNet300:
    """LeNet-300-100 (266,610 parameters at 784 inputs, 10 classes)."""
    return LeNet300(num_classes=num_classes, in_features=in_features, hidden=tuple(hidden))


@register_model()
def lenet5(*, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> LeNet5:
    """Caffe LeNet-5 (431,080 parameters at 28x28 grey, 10 classes)."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans, img_size=img_size)
