"""One torch thread for these tiny models: on a shared 2-core machine, two threads
spin against each other and a 0.3 s fit takes 10 s."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnzip.data import Dataset
from cnnzip.models import get_model
from cnnzip.train import TrainConfig, fit


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every pruning test at one torch thread (tests/conftest.py's ``one_thread``)."""


@pytest.fixture(scope="module")
def trained(toy_data: Dataset) -> nn.Module:
    """LeNet-300 (32, 16 hidden) after 3 epochs on toy_data: a model whose layers'
    sensitivity curves differ, for the sweep's tests."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=[32, 16])
    fit(model, toy_data, TrainConfig(epochs=3, batch_size=32), progress=False)
    return model
