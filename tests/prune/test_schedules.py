"""Schedules: Zhu & Gupta's cubic curve against the formula; gradual and iterative pruning."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cnnzip.data import Dataset
from cnnzip.models import get_model
from cnnzip.prune import (
    RETRAIN,
    GradualPruning,
    PruneError,
    cubic_sparsity,
    get_mask,
    growing_plan,
    iterative,
)
from cnnzip.train import TrainConfig, fit


def zhu_gupta(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """The paper's formula, written out independently (t on the pruning grid)."""
    return s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3


@pytest.mark.parametrize(
    ("s_i", "s_f", "t0", "n", "dt"), [(0.0, 0.9, 0, 10, 1), (0.2, 0.95, 100, 4, 25)]
)
def test_cubic_sparsity_matches_the_formula(
    s_i: float, s_f: float, t0: int, n: int, dt: int
) -> None:
    kw = {"final": s_f, "initial": s_i, "start": t0, "n": n, "interval": dt}
    for t in range(t0, t0 + n * dt + 1, dt):
        assert cubic_sparsity(t, **kw) == pytest.approx(zhu_gupta(t, s_i, s_f, t0, n, dt))
    assert cubic_sparsity(t0 - 1, **kw) == 0.0  # dense before t0
    assert cubic_sparsity(t0 + n * dt + 1000, **kw) == pytest.approx(s_f)
    if dt > 1:  # held between pruning steps
        assert cubic_sparsity(t0 + dt + 1, **kw) == cubic_sparsity(t0 + dt, **kw)


def test_growing_plan_follows_the_cubic_curve_to_the_ratios() -> None:
    plan = growing_plan({"a": 0.9, "b": 0.5}, steps=3)
    assert [p["a"] for p in plan] == pytest.approx(
        [0.9 * (1 - (2 / 3) ** 3), 0.9 * (1 - (1 / 3) ** 3), 0.9]
    )
    assert plan[-1] == {"a": 0.9, "b": 0.5}


def test_gradual_pruning_reaches_each_layer_ratio_exactly(toy_data: Dataset) -> None:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=[32, 16])
    ratios = {"fc1.weight": 0.9, "fc2.weight": 0.6, "fc3.weight": 0.3}
    gradual = GradualPruning(ratios, n=5, interval=2, start=1).prepare(model)
    fit(model, toy_data, TrainConfig(epochs=2, batch_size=64), callbacks=[gradual], progress=False)
    for target, ratio in ratios.items():
        mask = get_mask(model, target).mask
        assert int((~mask).sum()) == round(ratio * mask.numel())


def test_iterative_prunes_and_retrains_with_a_report(toy_data: Dataset) -> None:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=[32, 16])
    fit(model, toy_data, TrainConfig(epochs=3, batch_size=32), progress=False)
    ratios = {"fc1.weight": 0.95, "fc2.weight": 0.5}
    cfg = replace(RETRAIN, epochs=1, batch_size=32, lr=1e-3)
    report = iterative(model, toy_data, growing_plan(ratios, 2), config=cfg, progress=False)
    assert [s.step for s in report.steps] == [0, 1, 2]
    assert report.steps[0].kept_fraction == 1.0
    kept = [round(0.05 * 784 * 32), round(0.5 * 32 * 16)]
    assert [s.kept for s in report.layers] == kept
    assert report.kept_fraction == pytest.approx(sum(kept) / (784 * 32 + 32 * 16))
    assert report.steps[-1].kept_fraction == pytest.approx(report.kept_fraction)
    assert all(s.threshold is not None and s.threshold > 0 for s in report.layers)
    assert report.steps[-1].val_accuracy > 0.7  # still learns the toy task at 5% of fc1
    assert "total" in report.table() and "fc1.weight" in report.table()


def test_max_val_drop_undoes_the_step_that_breaks_the_model(toy_data: Dataset) -> None:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=[32, 16])
    fit(model, toy_data, TrainConfig(epochs=3, batch_size=32), progress=False)
    plan = [{"fc1.weight": 0.5}, {"fc1.weight": 0.995}]  # the second leaves 125 weights of 25088
    cfg = replace(RETRAIN, epochs=0)  # no retraining: the big prune must hurt
    report = iterative(model, toy_data, plan, config=cfg, max_val_drop=0.02, progress=False)
    assert [s.step for s in report.steps] == [0, 1]  # the last step was undone
    assert report.steps[1].val_accuracy >= report.steps[0].val_accuracy - 0.02
    assert int(get_mask(model, "fc1.weight").mask.sum()) == 784 * 32 // 2
    assert report.layers[0].kept == 784 * 32 // 2


def test_an_empty_plan_is_refused(toy_data: Dataset) -> None:
    with pytest.raises(PruneError, match="plan is empty"):
        iterative(get_model("lenet300", hidden=[32, 16]), toy_data, [])
