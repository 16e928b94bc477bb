"""Rules against hand computations: exact magnitude counts, q x std thresholds, global ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnzip.prune import PruneError, global_magnitude, magnitude, std_threshold


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.913, 0.999])
def test_magnitude_keeps_exactly_the_largest(sparsity: float) -> None:
    torch.manual_seed(0)
    w = torch.randn(37, 29)  # 1073 weights: no ratio divides evenly
    out = magnitude(w, sparsity)
    keep = w.numel() - round(sparsity * w.numel())
    assert out.kept == keep and out.keep.shape == w.shape
    ranked = np.sort(np.abs(w.numpy()).ravel())[::-1]
    assert out.threshold == pytest.approx(ranked[keep - 1])
    assert torch.all(w.abs()[out.keep] >= out.threshold)
    assert torch.all(w.abs()[~out.keep] <= out.threshold)


def test_std_threshold_is_q_times_the_layer_std() -> None:
    w = torch.tensor([[0.1, -0.5, 2.0], [-1.5, 0.05, 0.7]])
    values = w.numpy().ravel()
    q = 0.8
    threshold = q * np.std(values, ddof=1)  # torch.std is Bessel-corrected
    expect = np.abs(values) >= threshold
    out = std_threshold(w, q)
    assert out.keep.numpy().ravel().tolist() == expect.tolist()
    assert out.threshold == pytest.approx(np.abs(values)[expect].min())
    assert std_threshold(w, 0.0).kept == 6


def test_global_magnitude_ranks_across_layers() -> None:
    torch.manual_seed(1)
    weights = {"a": torch.randn(50, 20), "b": 0.1 * torch.randn(30, 10), "c": torch.randn(7)}
    out = global_magnitude(weights, 0.75)
    total = sum(w.numel() for w in weights.values())
    assert sum(p.kept for p in out.values()) == total - round(0.75 * total)
    kept = torch.cat([w.abs()[out[k].keep] for k, w in weights.items()])
    dropped = torch.cat([w.abs()[~out[k].keep] for k, w in weights.items()])
    assert kept.min() >= dropped.max()
    assert out["b"].kept < out["a"].kept * 0.3  # the small-valued layer loses most


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_0_1_is_refused(bad: float) -> None:
    with pytest.raises(PruneError, match=r"\[0, 1\)"):
        magnitude(torch.ones(4), bad)
