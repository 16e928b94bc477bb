"""When to prune: one-shot, iterative prune -> retrain, and gradual pruning during training.

Iterative pruning (Han et al.) alternates a magnitude prune with retraining
at a lower learning rate, the sparsity growing each step along Zhu & Gupta's
cubic curve (fast at first, while many weights are redundant, then slow).
Gradual pruning runs the same curve inside one training run as a callback.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace

import torch.nn as nn

from cnnzip.data import Dataset
from cnnzip.prune.masks import (
    MaskKeeper,
    PruneError,
    apply_masks,
    set_mask,
    unprunable,
)
from cnnzip.prune.report import PruneReport, Step, layer_stats
from cnnzip.prune.rules import Pruned, magnitude
from cnnzip.train import TrainConfig, TrainState, cross_entropy, evaluate, fit
from cnnzip.train.loop import LossFn
from cnnzip.transforms import effective_tensor

__all__ = [
    "RETRAIN",
    "GradualPruning",
    "cubic_sparsity",
    "growing_plan",
    "iterative",
    "one_shot",
]

# Retraining defaults. Han et al. retrain at 1/10 of the training lr (SGD that
# continues); a fresh Adam at 1e-4 recovered too little in 3 epochs per step
# (LeNet-300-100 at 92%: -1.49 pp), the training lr 1e-3 with a cosine decay
# per step recovered all of it (+0.15 pp), so that is the default.
RETRAIN = TrainConfig(epochs=3, lr=1e-3, optimizer="adam", lr_schedule="cosine")


def cubic_sparsity(
    step: int, *, final: float, initial: float = 0.0, start: int = 0, n: int = 1, interval: int = 1
) -> float:
    """Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 for t = t0, t0 + dt, ...

    Between pruning steps the sparsity holds its last value; before t0 the model
    is dense (0.0) and after t0 + n dt it stays at s_f.
    """
    if step < start:
        return 0.0
    k = min((step - start) // interval, n)  # pruning steps taken so far
    return final + (initial - final) * (1.0 - k / n) ** 3


def growing_plan(ratios: dict[str, float], steps: int) -> list[dict[str, float]]:
    """Per-layer ratios for each of ``steps`` prunes, growing to ``ratios`` on the cubic curve."""
    fractions = [cubic_sparsity(i, final=1.0, n=steps) for i in range(1, steps + 1)]
    return [{t: r * f for t, r in ratios.items()} for f in fractions]


def one_shot(model: nn.Module, ratios: dict[str, float]) -> dict[str, Pruned]:
    """Prune each target to its ratio by magnitude (of the weight as used, mask applied)."""
    out = {}
    for target, ratio in ratios.items():
        out[target] = magnitude(effective_tensor(model, target), ratio)
        set_mask(model, target, out[target].keep)
    return out


def _overall(ratios: dict[str, float], sizes: dict[str, int]) -> float:
    return sum(round(r * sizes[t]) for t, r in ratios.items()) / sum(sizes.values())


def iterative(
    model: nn.Module,
    data: Dataset,
    plan: Sequence[dict[str, float]],
    *,
    config: TrainConfig = RETRAIN,
    max_val_drop: float | None = None,
    progress: bool | None = None,
    loss_fn: LossFn = cross_entropy,
) -> PruneReport:
    """Prune to each entry of ``plan`` (target -> ratio) in turn, retraining after each.

    With ``max_val_drop`` (a fraction), a step whose validation accuracy falls
    more than that below the dense model's is undone and the search stops: the
    plan is then a path of growing sparsity and the result its last safe point.
    ``loss_fn`` is the retraining loss, e.g. ``cnnzip.distill.make_loss`` to learn from a teacher.
    """
    if not plan:
        raise PruneError("the pruning plan is empty: give at least one step of per-layer ratios")
    targets = list(plan[0])
    apply_masks(model, targets)  # every snapshot below then has the same state_dict keys
    sizes = {s.name: s.weights for s in layer_stats(model, targets)}
    report = PruneReport(layers=[], skipped=unprunable(model))  # layers: at the end
    report.steps.append(_measure(model, data, 0, 0.0, targets))
    base_val = report.steps[0].val_accuracy
    thresholds: dict[str, float] = {}
    for i, ratios in enumerate(plan, start=1):
        before = copy.deepcopy(model.state_dict()) if max_val_drop is not None else None
        pruned = one_shot(model, ratios)
        cfg = replace(config, seed=config.seed + i)  # a fresh batch order per step
        fit(model, data, cfg, loss_fn=loss_fn, callbacks=[MaskKeeper()], progress=progress)
        step = _measure(model, data, i, _overall(ratios, sizes), targets)
        if before is not None and base_val - step.val_accuracy > max_val_drop:
            model.load_state_dict(before)
            break
        report.steps.append(step)
        thresholds = {t: p.threshold for t, p in pruned.items()}
    report.layers = layer_stats(model, targets, thresholds)
    return report


def _measure(model: nn.Module, data: Dataset, i: int, target: float, targets: list[str]) -> Step:
    stats = layer_stats(model, targets)
    kept = sum(s.kept for s in stats) / sum(s.weights for s in stats)
    return Step(
        step=i,
        target_sparsity=target,
        kept_fraction=kept,
        val_accuracy=evaluate(model, data.val)["accuracy"],
        test_accuracy=evaluate(model, data.test)["accuracy"],
        layers={s.name: s.kept_fraction for s in stats},
    )


class GradualPruning(MaskKeeper):
    """Zhu & Gupta's gradual pruning inside ``fit``: every ``interval`` steps from ``start``,
    each layer is pruned by magnitude to its point on the cubic curve towards ``ratios``.

    Stateless beyond TrainState.step, so a resumed run prunes as an uninterrupted
    one (the masks themselves are in the checkpoint). Call ``prepare`` (or
    ``apply_masks``) before ``fit`` so the optimizer holds the masked parameters.
    """

    def __init__(
        self,
        ratios: dict[str, float],
        *,
        n: int,
        interval: int,
        start: int = 0,
        initial: float = 0.0,
    ) -> None:
        self.ratios, self.n, self.interval = ratios, n, interval
        self.start, self.initial = start, initial

    def prepare(self, model: nn.Module) -> GradualPruning:
        apply_masks(model, self.ratios)
        return self

    def sparsity(self, step: int, final: float) -> float:
        return cubic_sparsity(
            step,
            final=final,
            initial=min(self.initial, final),
            start=self.start,
            n=self.n,
            interval=self.interval,
        )

    def on_step_end(self, state: TrainState) -> None:
        t = state.step - 1  # the step just taken; t0 prunes after the first step at t0
        end = self.start + self.n * self.interval
        if self.start <= t <= end and (t - self.start) % self.interval == 0:
            one_shot(state.model, {k: self.sparsity(t, r) for k, r in self.ratios.items()})
        super().on_step_end(state)
