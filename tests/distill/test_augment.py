"""Pixel jitter: every output image is one shift of its input, all shifts occur, runs repeat."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.data import synthetic
from cnnzip.distill import jitter
from cnnzip.train import TrainConfig, fit


def _shifted_copies(img: torch.Tensor, p: int) -> dict[tuple[int, int], torch.Tensor]:
    """All (2p+1)^2 shifts of one image (C, H, W), edges repeated, by plain slicing."""
    padded = F.pad(img[None], (p,) * 4, mode="replicate")[0]
    h, w = img.shape[1:]
    return {
        (dy, dx): padded[:, dy : dy + h, dx : dx + w]
        for dy in range(2 * p + 1)
        for dx in range(2 * p + 1)
    }


def test_each_image_is_one_of_the_shifts_and_all_shifts_occur():
    torch.manual_seed(0)
    x = torch.randn(300, 2, 7, 9)
    out = jitter(x, 2)
    assert out.shape == x.shape
    seen = set()
    for img, got in zip(x, out, strict=True):
        matches = [s for s, c in _shifted_copies(img, 2).items() if torch.equal(c, got)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 25


def test_zero_pixels_is_identity():
    x = torch.randn(3, 1, 5, 5)
    assert jitter(x, 0) is x


@pytest.mark.slow
def test_fit_applies_augment_deterministically():
    data = synthetic(n_train=128, n_val=32, n_test=32, shape=(1, 8, 8))
    calls = []

    def augment(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return jitter(x, 1)

    def train() -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        fit(model, data, TrainConfig(epochs=2, batch_size=32), augment=augment, progress=False)
        return model[1].weight.detach().clone()

    first = train()
    assert calls == [32] * 8  # every training batch, never validation
    assert torch.equal(first, train())
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    fit(plain, data, TrainConfig(epochs=2, batch_size=32), progress=False)
    assert not torch.equal(first, plain[1].weight)
