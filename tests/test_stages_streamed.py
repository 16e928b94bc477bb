"""Every stage of a recipe (sensitivity, pruning, sharing, fine-tuning, encoding) runs on the
user's torch Dataset, streamed, and gives the very model the in-memory path gives."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import cnnzip
from cnnzip.data import Split, StreamSplit, from_loaders, synthetic
from cnnzip.recipes import parse_recipe


class ColourNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))  # (N, 8, 8, 8)
        return self.fc(nn.functional.max_pool2d(x, 2).flatten(1))  # (N, 10)


RECIPE = {
    "stages": [
        {"prune": {"sparsity": 0.5, "steps": 2, "epochs": 1, "batch_size": 32}},
        {"share": {"bits": 4}},
        {"finetune": {"epochs": 1, "batch_size": 32}},
        {"encode": {}},
    ]
}


def _compress(data: cnnzip.data.Dataset, path: Path) -> nn.Module:
    torch.manual_seed(0)
    result = cnnzip.compress(ColourNet(), data, parse_recipe(RECIPE), log=lambda _: None)
    result.save(path)
    return result.model


def test_a_recipe_on_streamed_data_gives_the_in_memory_model(tmp_path: Path) -> None:
    memory = synthetic(n_train=96, n_val=32, n_test=32, shape=(3, 8, 8), seed=0)
    streamed = from_loaders(
        TensorDataset(memory.train.x, memory.train.y),
        TensorDataset(memory.test.x, memory.test.y),
        val=TensorDataset(memory.val.x, memory.val.y),
        num_classes=10,
    )
    assert isinstance(memory.train, Split) and isinstance(streamed.train, StreamSplit)
    a = _compress(memory, tmp_path / "memory.cnnz")
    b = _compress(streamed, tmp_path / "streamed.cnnz")
    x = memory.test.x
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))  # the same batches, in the same order
    loaded = cnnzip.load(tmp_path / "streamed.cnnz", model=ColourNet())
    with torch.no_grad():
        assert torch.equal(loaded(x), b(x))
