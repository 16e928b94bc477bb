"""Teachers: the per-sample cache returns exactly what the teachers would compute."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnzip.data import synthetic
from cnnzip.distill import Teachers


class Counting(nn.Module):
    """A linear teacher that counts the rows it has been run on."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(12, 4)
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.fc(x)


def test_cache_hits_by_content_whatever_the_order_and_misses_new_rows():
    members = [Counting(0), Counting(1)]
    cached, plain = Teachers(members, cache=True), Teachers(members)
    x = torch.randn(6, 12)
    want = plain.logits(x)  # (M, N, K)
    assert want.shape == (2, 6, 4)
    assert torch.equal(cached.logits(x), want)
    rows_after_first = [m.rows for m in members]
    perm = torch.randperm(6)
    assert torch.equal(cached.logits(x[perm]), want[:, perm])  # a reshuffled epoch
    assert [m.rows for m in members] == rows_after_first  # ... ran no teacher
    fresh = torch.randn(2, 12)
    mixed = torch.cat([x[:3], fresh])
    assert torch.equal(cached.logits(mixed), plain.logits(mixed))
    assert cached.cached == 8
    # the miss ran only the two new rows (plain ran all 5 once more)
    assert [m.rows for m in members] == [r + 2 + 5 for r in rows_after_first]


def test_a_changed_pixel_is_a_new_sample():
    teachers = Teachers([Counting(0)], cache=True)
    x = torch.randn(1, 12)
    first = teachers.logits(x)
    y = x.clone()
    y[0, 5] += 1e-6
    assert not torch.equal(teachers.logits(y), first)
    assert teachers.cached == 2


def test_ensemble_accuracy_uses_mean_probabilities():
    data = synthetic(n_train=8, n_val=8, n_test=64, num_classes=4, shape=(1, 2, 6))
    members = [Counting(0), Counting(1), Counting(2)]
    flat = [nn.Sequential(nn.Flatten(), m) for m in members]
    with torch.no_grad():
        probs = torch.stack([m(data.test.x).softmax(1) for m in flat]).mean(0)
    want = float((probs.argmax(1) == data.test.y).float().mean())
    assert Teachers(flat).accuracy(data.test, batch_size=10) == want
