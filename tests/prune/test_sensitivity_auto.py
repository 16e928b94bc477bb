"""Sensitivity curves on a toy model, their cache, and the automatic per-layer ratios."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnzip.data import Dataset
from cnnzip.models import get_model
from cnnzip.prune import (
    Curve,
    PruneError,
    allocate,
    analyze,
    budget_sparsity,
    cached,
    one_shot,
    prunable,
    sensitivity,
)
from cnnzip.train import TrainConfig, evaluate, fit

RATIOS = (0.0, 0.5, 0.9, 0.99)


def test_sensitivity_table_shape_and_behaviour(trained: nn.Module, toy_data: Dataset) -> None:
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    dense = evaluate(trained, toy_data.val)["accuracy"]
    sens = analyze(trained, toy_data.val, prunable(trained), RATIOS)
    assert [c.name for c in sens.curves] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert [c.weights for c in sens.curves] == [784 * 32, 32 * 16, 16 * 10]
    for c in sens.curves:
        assert c.ratios == list(RATIOS) and len(c.accuracy) == len(c.loss) == len(RATIOS)
        assert c.accuracy[0] == dense  # ratio 0 is the dense model
        assert c.accuracy[-1] < dense - 0.05  # 99% of any one layer hurts
        assert c.loss[-1] > c.loss[0]
    for k, v in trained.state_dict().items():  # each layer was restored
        assert torch.equal(v, before[k]), k
    assert sens.table().count("\n") == 3


def test_sensitivity_is_cached_in_the_run_directory(
    trained: nn.Module, toy_data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = prunable(trained)
    first = cached(tmp_path, trained, toy_data.val, targets, RATIOS)
    assert (tmp_path / "sensitivity.json").is_file()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("recomputed although nothing changed")

    monkeypatch.setattr(sensitivity, "analyze", boom)
    assert cached(tmp_path, trained, toy_data.val, targets, RATIOS) == first
    with pytest.raises(AssertionError, match="recomputed"):  # other ratios: a new key
        cached(tmp_path, trained, toy_data.val, targets, (0.0, 0.7))


def curve(name: str, weights: int, drops: list[float]) -> Curve:
    ratios = [0.0, 0.25, 0.5, 0.75, 0.9, 0.99]
    return Curve(name, weights, ratios, [0.9 - d for d in drops], [0.0] * len(ratios))


FLAT = [0, 0, 0.001, 0.002, 0.004, 0.01]
STEEP = [0, 0.01, 0.05, 0.2, 0.4, 0.8]


@pytest.mark.parametrize("sparsity", [0.1, 0.37, 0.5, 0.8, 0.93])
def test_allocate_meets_the_target_exactly(sparsity: float) -> None:
    curves = [curve("a", 10007, FLAT), curve("b", 3001, STEEP), curve("c", 97, STEEP)]
    ratios = allocate(curves, sparsity)
    total = sum(c.weights for c in curves)
    removed = sum(round(ratios[c.name] * c.weights) for c in curves)
    assert abs(removed - round(sparsity * total)) <= 1
    assert all(0 <= round(ratios[c.name] * c.weights) <= round(0.99 * c.weights) for c in curves)


def test_allocate_prefers_the_insensitive_layer() -> None:
    ratios = allocate([curve("sensitive", 5000, STEEP), curve("robust", 5000, FLAT)], 0.5)
    # robust goes to 90% (cost 0.004 for 4500 weights) before sensitive starts
    assert ratios["robust"] == pytest.approx(0.9) and ratios["sensitive"] == pytest.approx(0.1)


def test_allocate_refuses_an_unreachable_target() -> None:
    with pytest.raises(PruneError, match="sweep reaches only"):
        allocate([curve("a", 1000, FLAT)], 0.995)


def test_allocate_leaves_a_small_layer_one_weight() -> None:
    """round(0.99 * 9) is all 9 weights: the tiny, free-to-prune layer keeps one."""
    curves = [curve("tiny", 9, [0.0] * 6), curve("big", 1000, FLAT)]
    ratios = allocate(curves, 0.9)
    assert round(ratios["tiny"] * 9) == 8 and ratios["tiny"] < 1.0
    assert round(ratios["tiny"] * 9) + round(ratios["big"] * 1000) == round(0.9 * 1009)


def test_allocate_says_why_a_tiny_model_cannot_reach_the_target() -> None:
    with pytest.raises(PruneError, match=r"reaches only 2 .*keeps at least one weight"):
        allocate([curve("a", 3, FLAT)], 0.9)


class UnusedConv(nn.Module):
    """A user's net with a conv defined but never called: pruning it costs nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Conv2d(1, 1, 3)
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.stem(x)).flatten(1))


def test_auto_ratios_on_a_net_with_an_unused_conv(toy_data: Dataset) -> None:
    torch.manual_seed(0)
    model = UnusedConv()
    fit(model, toy_data, TrainConfig(epochs=1, batch_size=32), progress=False)
    sens = analyze(model, toy_data.val, prunable(model))
    ratios = allocate(sens.curves, 0.9)
    pruned = one_shot(model, ratios)
    assert ratios["unused.weight"] == pytest.approx(8 / 9)
    assert all(p.keep.sum() >= 1 for p in pruned.values())


def test_auto_ratios_beat_uniform_without_retraining(trained: nn.Module, toy_data: Dataset) -> None:
    """On the toy model the classifier (fc3) is small and sensitive: the automatic ratios
    spare it and lose less accuracy than one uniform ratio at the same overall sparsity."""
    targets = prunable(trained)
    sens = analyze(trained, toy_data.val, targets, (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99))
    ratios = allocate(sens.curves, 0.9)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    results = {}
    for name, r in {"auto": ratios, "uniform": dict.fromkeys(targets, 0.9)}.items():
        model = get_model("lenet300", hidden=[32, 16])
        model.load_state_dict(state)
        one_shot(model, r)
        results[name] = evaluate(model, toy_data.test)["accuracy"]
    assert ratios["fc3.weight"] < 0.9 < ratios["fc1.weight"]
    assert results["auto"] > results["uniform"]


def test_budget_sparsity_by_hand() -> None:
    # 1000 prunable weights, 50 dense params (200 bytes); 700 bytes leave room for 100 kept
    assert budget_sparsity(1000, 50, 700) == pytest.approx(0.9)
    assert budget_sparsity(1000, 50, 10**9) == 0.0
    with pytest.raises(PruneError, match="cannot hold"):
        budget_sparsity(1000, 50, 200)
