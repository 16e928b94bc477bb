"""A tensor held by two layers (a tied weight, a module used twice) is counted once in
parameters and stored bytes; its MACs are counted at every use."""

from __future__ import annotations

import torch
import torch.nn as nn

import cnnzip
from cnnzip.profiling import weight_bytes
from cnnzip.prune import set_mask


class TiedMLP(nn.Module):
    """784 -> 32 -> 32 -> 32 -> 10, the two middle layers with one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(784, 32)
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(self.a(self.stem(x))))


# by hand: stem 784*32+32, a 32*32+32, b its bias only, fc 32*10+10
PARAMS = 25_120 + 1_056 + 32 + 330


def test_a_tied_weight_counts_once_in_params_and_bytes_and_twice_in_macs():
    model = TiedMLP()
    report = cnnzip.profile(model, (784,))
    assert report.params == PARAMS == sum(p.numel() for p in model.parameters())
    assert report.weight_bytes == 4 * PARAMS
    rows = {layer.name: layer for layer in report.layers}
    assert (rows["a"].params, rows["b"].params) == (1_056, 32)  # at its first layer
    assert sum(layer.params for layer in report.layers) == report.params
    assert rows["a"].macs == rows["b"].macs == 32 * 32  # each use multiplies
    assert report.macs == 784 * 32 + 2 * 32 * 32 + 32 * 10


def test_a_pruned_tied_weight_is_stored_once():
    model = TiedMLP()
    keep = torch.rand(32, 32) > 0.7
    set_mask(model, "b.weight", keep)
    report = cnnzip.profile(model, (784,))
    pruned = weight_bytes(model.a) - 4 * 32  # its sparse storage, without the bias
    assert pruned < 4 * 32 * 32
    assert report.params == PARAMS
    assert report.weight_bytes == 4 * (PARAMS - 32 * 32) + pruned


def test_a_module_used_twice_counts_once_with_both_calls():
    layer = nn.Linear(8, 8)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    report = cnnzip.profile(model, (8,))
    assert report.params == 72 and report.weight_bytes == 4 * 72
    assert report.macs == 2 * 64
