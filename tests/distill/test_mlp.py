"""The MLPs of Hinton et al.'s experiment: sizes, dropout, builder arguments."""

from __future__ import annotations

import itertools

import pytest
import torch

from cnnzip.errors import ModelError
from cnnzip.models import get_model


def _params(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize(
    ("name", "kwargs", "sizes"),
    [
        ("mlp", {}, [784, 800, 800, 10]),
        ("mlp1200", {}, [784, 1200, 1200, 10]),
        ("mlp30", {}, [784, 30, 30, 10]),
        ("mlp", {"hidden": [50, 40, 30], "in_features": 64, "num_classes": 3}, [64, 50, 40, 30, 3]),
    ],
)
def test_sizes(name, kwargs, sizes):
    model = get_model(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == _params(sizes)
    side = int(sizes[0] ** 0.5)
    assert model(torch.randn(2, 1, side, side)).shape == (2, sizes[-1])


def test_dropout_only_in_training():
    model = get_model("mlp1200")
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))


def test_bad_sizes_are_model_errors():
    with pytest.raises(ModelError, match="hidden"):
        get_model("mlp", hidden=[])
    with pytest.raises(ModelError, match="dropout"):
        get_model("mlp", dropout=1.0)
