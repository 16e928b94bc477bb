"""The one place for weight targets: split, original and effective tensor, keep-mask, swap."""

import torch
import torch.nn as nn

from cnnzip.prune import set_mask
from cnnzip.quantize import share_layer
from cnnzip.transforms import (
    effective_tensor,
    keep_mask,
    original_tensor,
    split_target,
    swap_module,
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))


def test_split_target_names_module_and_tensor():
    assert split_target("1.1.weight") == ("1.1", "weight")
    assert split_target("weight") == ("", "weight")


def test_original_and_effective_tensor_under_a_mask():
    net = _net()
    before = net[0].weight.detach().clone()
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[0] = False
    set_mask(net, "0.weight", keep)
    assert original_tensor(net, "0.weight") is net[0].parametrizations.weight.original
    assert torch.equal(effective_tensor(net, "0.weight"), before * keep)
    assert torch.equal(keep_mask(net, "0.weight"), keep)
    assert original_tensor(net, "1.1.weight") is net[1][1].weight  # no transform: the attribute
    assert keep_mask(net, "1.1.weight") is None


def test_keep_mask_of_a_pruned_shared_weight_moves_with_it():
    net = _net()
    keep = torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) > 0.5
    set_mask(net, "0.weight", keep)
    share_layer(net, "0.weight", 2)
    assert torch.equal(keep_mask(net, "0.weight"), keep)


def test_swap_module_replaces_a_nested_child():
    net = _net()
    new = nn.Linear(3, 2)
    swap_module(net, "1.1", new)
    assert net[1][1] is new
