"""The sweep's cost bounds (a validation subset, curves stopped once broken) against the
full sweep, and its progress line."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch.nn as nn

import cnnzip.prune
from cnnzip.data import Dataset, Split
from cnnzip.prune import DEFAULT_RATIOS, MAX_IMAGES, allocate, analyze, prunable, sensitivity
from cnnzip.recipes import compress
from cnnzip.recipes.loader import parse_recipe
from cnnzip.recipes.stages import RecipeError
from cnnzip.train import evaluate

GRID = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)


def _grid_position(ratio: float) -> float:
    """Where ``ratio`` lies on the sweep's grid, in grid steps (0.85 -> 7.0, 0.875 -> 7.5)."""
    return float(np.interp(ratio, GRID, np.arange(len(GRID))))


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9])
def test_bounded_allocation_is_within_one_grid_step_of_the_full_sweep(
    trained: nn.Module, toy_data: Dataset, sparsity: float
) -> None:
    targets = prunable(trained)
    full = analyze(trained, toy_data.val, targets, GRID, max_images=None, stop_below=None)
    bounded = analyze(trained, toy_data.val, targets, GRID, max_images=96)
    assert any(c.measured for c in bounded.curves)  # the stop did skip some passes
    want, got = allocate(full.curves, sparsity), allocate(bounded.curves, sparsity)
    for name in targets:
        assert abs(_grid_position(got[name]) - _grid_position(want[name])) <= 1.0, name


def test_a_curve_stops_once_accuracy_falls_below_the_fraction(
    trained: nn.Module, toy_data: Dataset
) -> None:
    targets = prunable(trained)
    full = analyze(
        trained, toy_data.val, targets, GRID, max_images=None, stop_below=None, flat=None
    )
    stopped = analyze(
        trained, toy_data.val, targets, GRID, max_images=None, stop_below=0.9, flat=None
    )
    coarse = [*range(0, len(GRID), 2)]  # every other ratio first (15 ratios: the last is even)
    for f, s in zip(full.curves, stopped.curves, strict=True):
        broken = [i for i in coarse if f.accuracy[i] < 0.9 * f.accuracy[0]]
        k = broken[0] if broken else len(GRID) - 1  # the last ratio measured
        assert s.measured == (None if k == len(GRID) - 1 else k + 1), f.name
        assert s.accuracy[: k + 1] == f.accuracy[: k + 1] and s.loss[: k + 1] == f.loss[: k + 1]
        assert s.accuracy[k + 1 :] == [f.accuracy[k]] * (len(GRID) - k - 1)  # repeated
        assert len(s.accuracy) == len(s.loss) == len(GRID)
    assert any(c.measured for c in stopped.curves)


def test_points_between_close_neighbours_are_interpolated(
    trained: nn.Module, toy_data: Dataset
) -> None:
    targets = prunable(trained)
    full = analyze(
        trained, toy_data.val, targets, GRID, max_images=None, stop_below=None, flat=None
    )
    thin = analyze(
        trained, toy_data.val, targets, GRID, max_images=None, stop_below=None, flat=0.02
    )
    skipped = 0
    for f, s in zip(full.curves, thin.curves, strict=True):
        for i in range(len(GRID)):
            a = f.accuracy
            if i % 2 == 0 or abs(a[i - 1] - a[i + 1]) > 0.02:  # measured
                assert s.accuracy[i] == a[i] and s.loss[i] == f.loss[i], (f.name, i)
                continue
            skipped += 1
            t = (GRID[i] - GRID[i - 1]) / (GRID[i + 1] - GRID[i - 1])
            assert s.accuracy[i] == pytest.approx(a[i - 1] + t * (a[i + 1] - a[i - 1]))
    assert skipped > 0  # the toy curves have flat stretches
    assert sum(c.measured or len(GRID) for c in thin.curves) == 3 * len(GRID) - skipped


def test_only_the_first_max_images_are_evaluated(
    trained: nn.Module, toy_data: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def counting(model: nn.Module, split: Split) -> dict[str, float]:
        seen.append(len(split))
        return evaluate(model, split)

    monkeypatch.setattr(sensitivity, "evaluate", counting)
    sens = analyze(trained, toy_data.val, ["fc3.weight"], (0.0, 0.5), max_images=40)
    assert seen == [40, 40]
    first = Split(toy_data.val.x[:40], toy_data.val.y[:40])
    assert sens.curves[0].accuracy[0] == evaluate(trained, first)["accuracy"]


def test_progress_names_each_layer_with_an_eta(
    trained: nn.Module, toy_data: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    targets = prunable(trained)
    analyze(trained, toy_data.val, targets, (0.0, 0.5), progress=True)
    err = capsys.readouterr().err
    assert "sensitivity 1/3 fc1.weight" in err
    assert "sensitivity 3/3 fc3.weight (~" in err and "s left)" in err  # ETA from two layers
    analyze(trained, toy_data.val, targets, (0.0, 0.5))  # not a terminal: quiet
    assert capsys.readouterr().err == ""


def test_a_recipe_sets_the_sweeps_images_and_ratios(
    trained: nn.Module, toy_data: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[float, ...], int | None]] = []

    def spy(model: nn.Module, split: Split, targets: list[str], ratios: tuple, **kw: Any) -> Any:
        calls.append((tuple(ratios), kw["max_images"]))
        return analyze(model, split, targets, ratios, **kw)

    monkeypatch.setattr(cnnzip.prune, "analyze", spy)
    body = {"sparsity": 0.5, "epochs": 0, "sweep_images": 50, "sweep_ratios": [0.0, 0.5, 0.9]}
    recipe = parse_recipe({"stages": [{"prune": body}]}, "r.yaml")
    compress(copy.deepcopy(trained), toy_data, recipe, log=lambda _: None)
    assert calls == [((0.0, 0.5, 0.9), 50)]
    default = parse_recipe({"stages": [{"prune": {"epochs": 0}}]}, "r.yaml")
    compress(copy.deepcopy(trained), toy_data, default, log=lambda _: None)
    assert calls[1] == (DEFAULT_RATIOS, MAX_IMAGES)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"sweep_ratios": [0.5, 0.9]}, r"sweep_ratios \[0.5, 0.9\] must grow from 0.0"),
        ({"sweep_ratios": [0.0, 0.9, 0.5]}, "must grow from 0.0 and stay below 1"),
        ({"sweep_ratios": [0.0, 1.0]}, "must grow from 0.0 and stay below 1"),
        ({"sweep_images": 0}, r"sweep_images 0 must be >= 1 \(or null: all\)"),
    ],
)
def test_bad_sweep_options_are_refused(body: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"stages": [{"prune": body}]}, "r.yaml")


def test_sweep_ratios_must_be_a_list_of_numbers() -> None:
    with pytest.raises(RecipeError, match="sweep_ratios"):
        parse_recipe({"stages": [{"prune": {"sweep_ratios": [0.0, "half"]}}]}, "r.yaml")
