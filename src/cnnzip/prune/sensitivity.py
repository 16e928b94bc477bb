"""Sensitivity analysis: prune one layer alone at a sweep of ratios, measure, restore.

No retraining, so it takes seconds; the curves say which layers tolerate
pruning (Han et al. Fig. 6) and feed the automatic per-layer ratios. Results
are cached in the run directory (``sensitivity.json``) under a key hashed
from the weights, the validation data, the layers and the ratios, so a rerun
with the same inputs is free and anything changed is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnzip.data import Split, StreamSplit
from cnnzip.fileio import atomic_path, atomic_write_text
from cnnzip.prune.rules import magnitude
from cnnzip.train import evaluate
from cnnzip.transforms import effective_tensor, original_tensor

__all__ = ["CACHE", "DEFAULT_RATIOS", "Curve", "Sensitivity", "analyze", "cached", "plot"]

CACHE = "sensitivity.json"
# dense where layers break: most of the action is above 80%
DEFAULT_RATIOS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)


@dataclass
class Curve:
    """One layer's curve: validation accuracy and loss at each ratio, that layer alone pruned."""

    name: str
    weights: int
    ratios: list[float]
    accuracy: list[float]
    loss: list[float]


@dataclass
class Sensitivity:
    key: str
    curves: list[Curve]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "curves": [asdict(c) for c in self.curves]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sensitivity:
        return cls(key=d["key"], curves=[Curve(**c) for c in d["curves"]])

    def table(self) -> str:
        """Layers as rows, ratios as columns, validation accuracy in the cells."""
        ratios = self.curves[0].ratios if self.curves else []
        head = f"{'layer':<24}{'weights':>9} " + "".join(f"{r:>7.3g}" for r in ratios)
        rows = [
            f"{c.name:<24}{c.weights:>9} " + "".join(f"{a:>7.4f}" for a in c.accuracy)
            for c in self.curves
        ]
        return "\n".join([head, *rows])


@torch.no_grad()
def analyze(
    model: nn.Module,
    split: Split | StreamSplit,
    targets: Sequence[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
) -> Sensitivity:
    """Each target pruned alone by magnitude at each ratio; the model is left as it was."""
    curves = []
    for target in targets:
        weight = original_tensor(model, target)
        saved = weight.clone()
        acc, loss = [], []
        try:
            for ratio in ratios:
                weight.copy_(saved)
                weight.mul_(magnitude(effective_tensor(model, target), ratio).keep)
                res = evaluate(model, split)
                acc.append(res["accuracy"])
                loss.append(res["loss"])
        finally:
            weight.copy_(saved)
        curves.append(Curve(target, weight.numel(), [float(r) for r in ratios], acc, loss))
    return Sensitivity(key="", curves=curves)


def _key(model: nn.Module, split: Split, targets: Sequence[str], ratios: Sequence[float]) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(split.x.contiguous().numpy().tobytes())
    h.update(split.y.contiguous().numpy().tobytes())
    h.update(json.dumps([list(targets), [float(r) for r in ratios]]).encode())
    return h.hexdigest()[:16]


def cached(
    run_dir: str | Path,
    model: nn.Module,
    split: Split | StreamSplit,
    targets: Sequence[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
) -> Sensitivity:
    """``analyze``, read from RUN/sensitivity.json when the same inputs made it. Streamed
    data (a user's torch Dataset) cannot be fingerprinted without reading it all: no cache."""
    if not isinstance(split, Split):
        return analyze(model, split, targets, ratios)
    path = Path(run_dir) / CACHE
    key = _key(model, split, targets, ratios)
    if path.is_file():
        try:
            old = Sensitivity.from_dict(json.loads(path.read_text()))
            if old.key == key:
                return old
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a stale or damaged cache is recomputed and rewritten
    sens = analyze(model, split, targets, ratios)
    sens.key = key
    atomic_write_text(path, json.dumps(sens.to_dict(), indent=1) + "\n")
    return sens


def plot(sens: Sensitivity, path: str | Path) -> None:
    """Accuracy against ratio, one line per layer (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in sens.curves:
        ax.plot([100 * r for r in c.ratios], c.accuracy, marker=".", label=c.name)
    ax.set_xlabel("weights pruned (%), this layer alone")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
