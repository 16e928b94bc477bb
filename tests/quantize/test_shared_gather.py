"""The shared weight's gather over kept weights against the plain gather it replaces.

``SharedWeight`` computes ``where(mask, codebook[index], 0)`` and its centroid gradients
with its own autograd function (kept weights only, ``index_add_``); a fine-tuning run
must give bit for bit the codebooks the plain gather and ``where`` gave.
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn as nn

from cnnzip.models import get_model
from cnnzip.prune import magnitude, set_mask
from cnnzip.quantize import SharedWeight, share_weights, shared_of

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_forward(self: SharedWeight, weight: torch.Tensor) -> torch.Tensor:
    """The transform's forward before it had its own backward."""
    w = self.codebook[self.index]
    if self.mask is None:
        return w
    return torch.where(self.mask, w, torch.zeros((), dtype=w.dtype, device=w.device))


def shared_mlp(prune: bool) -> nn.Module:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=(64, 32))
    if prune:
        for name in ("fc1", "fc2"):
            set_mask(model, f"{name}.weight", magnitude(model.get_submodule(name).weight, 0.9).keep)
    share_weights(model, bits={"linear": 4, "fc3.weight": 1})
    return model


def fine_tuned(model: nn.Module, steps: int = 6) -> list[torch.Tensor]:
    """Codebooks after a few Adam steps on fixed random batches."""
    opt = torch.optim.Adam([t.codebook for t in shared_of(model).values()], lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [t.codebook.detach().clone() for t in shared_of(model).values()]


@pytest.mark.parametrize("prune", [True, False])
def test_fine_tuning_gives_the_plain_gathers_codebooks_bit_for_bit(prune: bool) -> None:
    model, reference = shared_mlp(prune), shared_mlp(prune)
    for t in shared_of(reference).values():
        t.forward = types.MethodType(reference_forward, t)
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), reference(x))
    for ours, theirs in zip(fine_tuned(model), fine_tuned(reference), strict=True):
        assert torch.equal(ours, theirs)


def test_gather_follows_index_and_mask_changes() -> None:
    """The kept positions are cached: editing the index or the mask in place remakes them;
    a mask that prunes everything gives zeros and zero gradients."""
    index = torch.tensor([[0, 1], [1, 0]], dtype=torch.int32)
    t = SharedWeight(index, torch.tensor([2.0, -3.0]), torch.tensor([[True, False], [True, True]]))
    assert torch.equal(t(torch.empty(2, 2)), torch.tensor([[2.0, 0.0], [-3.0, 2.0]]))
    t.index.fill_(1)
    t.mask[0, 1] = True
    assert torch.equal(t(torch.empty(2, 2)), torch.full((2, 2), -3.0))
    t.mask.zero_()
    out = t(torch.empty(2, 2))
    out.sum().backward()
    assert torch.equal(out, torch.zeros(2, 2)) and torch.equal(t.codebook.grad, torch.zeros(2))
