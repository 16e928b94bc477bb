"""Making a model's transforms permanent leaves its deep copies as they were (torch's
parametrize shares one generated class between a module and its copies)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from cnnzip.prune import magnitude, set_mask
from cnnzip.quantize import share_weights
from cnnzip.transforms import remove_transforms, transforms_of

pytestmark = pytest.mark.usefixtures("one_thread")


def _pruned_and_shared() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    for name in ("0", "2"):
        set_mask(model, f"{name}.weight", magnitude(model.get_submodule(name).weight, 0.5).keep)
    share_weights(model, bits={"linear": 2})
    return model


@pytest.mark.parametrize("removed", ["original", "copy"])
def test_removing_transforms_on_one_leaves_the_other_whole(removed: str) -> None:
    model = _pruned_and_shared()
    twin = copy.deepcopy(model)
    x = torch.randn(4, 8)
    want = model(x).detach()
    gone, kept = (model, twin) if removed == "original" else (twin, model)
    remove_transforms(gone)
    assert transforms_of(gone) == {} and set(transforms_of(kept)) == {"0.weight", "2.weight"}
    assert torch.equal(kept(x), want) and torch.equal(gone(x), want)  # both still compute it
    assert isinstance(gone[0].weight, nn.Parameter)
