"""Fully connected ReLU nets: the teachers and students of Hinton et al.'s MNIST distillation.

The paper's teacher is 2x1200 with dropout (and +-2 pixel jitter, which is a
data augmentation: see ``cnnzip.distill.jitter``), its students 2x800 with no
regularisation and 2x30. One ``MLP`` class builds them all; the registered
variants only change defaults, and every one takes ``hidden`` and ``dropout``
so ``-k hidden=[1200,1200] -k dropout=0.5`` works from the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from cnnzip.models.registry import register_model

__all__ = ["MLP", "mlp", "mlp30", "mlp1200"]


class MLP(nn.Module):
    """Flatten, then Linear-ReLU(-Dropout) per hidden size, then the classifier.

    ``input_dropout`` drops input pixels (Hinton's dropout nets used 0.2);
    ``dropout`` follows each hidden layer. Both are no-ops in eval mode.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_features: int = 784,
        hidden: Sequence[int] = (800, 800),
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        linear_layer: Callable[..., nn.Module] = nn.Linear,
    ) -> None:
        super().__init__()
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be a non-empty list of positive ints: {hidden}")
        if not (0.0 <= dropout < 1.0 and 0.0 <= input_dropout < 1.0):
            raise ValueError(f"dropout rates must be in [0, 1): {dropout}, {input_dropout}")
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(input_dropout)]
        width = in_features
        for h in hidden:
            layers += [linear_layer(width, h), act_layer(), nn.Dropout(dropout)]
            width = h
        layers.append(linear_layer(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (N, C, H, W) -> (N, num_classes)


@register_model()
def mlp(
    *,
    num_classes: int = 10,
    in_features: int = 784,
    hidden: Sequence[int] = (800, 800),
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> MLP:
    """Any ReLU MLP; by default Hinton's unregularised 2x800 student (1,276,810 parameters)."""
    return MLP(
        num_classes=num_classes,
        in_features=in_features,
        hidden=tuple(hidden),
        dropout=dropout,
        input_dropout=input_dropout,
    )


@register_model()
def mlp1200(
    *,
    num_classes: int = 10,
    in_features: int = 784,
    hidden: Sequence[int] = (1200, 1200),
    dropout: float = 0.5,
    input_dropout: float = 0.2,
) -> MLP:
    """Hinton's big teacher: 2x1200 with dropout (train it with jitter for the full recipe)."""
    return mlp(
        num_classes=num_classes,
        in_features=in_features,
        hidden=hidden,
        dropout=dropout,
        input_dropout=input_dropout,
    )


@register_model()
def mlp30(
    *, num_classes: int = 10, in_features: int = 784, hidden: Sequence[int] = (30, 30)
) -> MLP:
    """Hinton's tiny 2x30 student (24,790 parameters at 784 inputs)."""
    return mlp(num_classes=num_classes, in_features=in_features, hidden=hidden)
