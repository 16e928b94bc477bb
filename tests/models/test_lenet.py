"""LeNets: Han et al.'s parameter counts, and builder arguments that follow from the data."""

from __future__ import annotations

import torch

from cnnzip.models import get_model
from cnnzip.models.registry import data_kwargs


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_papers() -> None:
    # 784*300+300 + 300*100+100 + 100*10+10 and Caffe LeNet-5 (20, 50, 500, 10)
    assert n_params(get_model("lenet300")) == 266_610
    assert n_params(get_model("lenet5")) == 431_080


def test_lenet5_builds_at_other_sizes() -> None:
    model = get_model("lenet5", in_chans=3, img_size=32, num_classes=7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_data_kwargs_fill_only_what_the_builder_takes_and_the_user_left_unset() -> None:
    assert data_kwargs("lenet5", {"num_classes": 3}, (3, 32, 32), 10) == {
        "num_classes": 3,
        "in_chans": 3,
        "img_size": 32,
    }
    assert data_kwargs("lenet300", {}, (1, 28, 28), 10) == {"num_classes": 10, "in_features": 784}
