"""Sensitivity analysis: prune one layer alone at a sweep of ratios, measure, restore.

No retraining, so a small model takes seconds; the curves say which layers tolerate
pruning (Han et al. Fig. 6) and feed the automatic per-layer ratios. Results
are cached in the run directory (``sensitivity.json``) under a key hashed
from the weights, the validation data, the layers and the ratios, so a rerun
with the same inputs is free and anything changed is recomputed.

The sweep costs layers x ratios validation passes (SqueezeNet 1.1: 26 x 15), so it
is bounded three ways. It measures on the first ``max_images`` (1,000) validation
images. Each curve is measured at every other ratio (and the last) first, stopping
once accuracy falls below ``stop_below`` (a quarter) of the unpruned accuracy: the
ratios grow, so the skipped ones would only fall further and are recorded at the last
measured point. Then each ratio in between is measured only where its two neighbours
differ by more than ``flat`` (1 pp) and is otherwise interpolated: flat stretches cost
half, the knee is measured in full. What is lost: the tail of a broken curve (flat in
the plot; the allocator, which takes each curve's running minimum anyway, sees no
further cost there) and up to ``flat`` of detail where a curve is flat.
``Curve.measured`` says how many points were measured. A terminal shows one line of
progress per layer with an ETA.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset, Subset
from tqdm import tqdm

from cnnzip.data import Split, StreamSplit
from cnnzip.fileio import atomic_path, atomic_write_text
from cnnzip.models.running import state_digest
from cnnzip.prune.rules import magnitude
from cnnzip.train import evaluate
from cnnzip.train.loop import _eta
from cnnzip.transforms import effective_tensor, original_tensor

__all__ = [
    "CACHE",
    "DEFAULT_RATIOS",
    "FLAT",
    "MAX_IMAGES",
    "STOP_BELOW",
    "Curve",
    "Sensitivity",
    "analyze",
    "cached",
    "plot",
]

CACHE = "sensitivity.json"
# dense where layers break: most of the action is above 80%
DEFAULT_RATIOS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
MAX_IMAGES = 1000  # validation images per pass: accuracy to about +-1.5 pp at 90%
STOP_BELOW = 0.25  # a curve stops below this fraction of the unpruned accuracy
FLAT = 0.01  # a point between measured neighbours this close in accuracy is interpolated


@dataclass
class Curve:
    """One layer's curve: validation accuracy and loss at each ratio, that layer alone pruned."""

    name: str
    weights: int
    ratios: list[float]
    accuracy: list[float]
    loss: list[float]
    measured: int | None = None  # points measured; the rest repeat the last (None: all)


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
    *,
    max_images: int | None = MAX_IMAGES,
    stop_below: float | None = STOP_BELOW,
    flat: float | None = FLAT,
    progress: bool | None = None,
) -> Sensitivity:
    """Each target pruned alone by magnitude at each ratio; the model is left as it was.

    ``max_images`` (None: all), ``stop_below`` (None: to the last ratio) and ``flat``
    (None: no interpolation) bound the cost (module docstring); ``progress=None``
    shows a line per layer only on a terminal.
    """
    split = _subset(split, max_images)
    bar = tqdm(
        total=len(targets),
        disable=None if progress is None else not progress,
        leave=False,
        unit="layer",
    )
    curves: list[Curve] = []
    seconds: list[float] = []
    for i, target in enumerate(targets):
        bar.set_description(
            f"sensitivity {i + 1}/{len(targets)} {target}{_eta(seconds, len(targets) - i)}"
        )
        start = time.perf_counter()
        curves.append(_curve(model, split, target, ratios, stop_below, flat))
        seconds.append(time.perf_counter() - start)
        bar.update(1)
    bar.close()
    return Sensitivity(key="", curves=curves)


def _subset(split: Split | StreamSplit, max_images: int | None) -> Split | StreamSplit:
    """The first ``max_images`` of ``split`` (a validation split is already shuffled);
    a stream that cannot be cut (a DataLoader, an iterable Dataset) is read in full."""
    if max_images is None:
        return split
    if isinstance(split, Split):
        if len(split) <= max_images or not isinstance(split.x, torch.Tensor):
            return split
        return Split(split.x[:max_images], split.y[:max_images])
    source = split.source
    if isinstance(source, IterableDataset) or not isinstance(source, TorchDataset):
        return split
    if len(split) <= max_images:
        return split
    return StreamSplit(Subset(source, range(max_images)), workers=split.workers, norm=split.norm)


def _curve(
    model: nn.Module,
    split: Split | StreamSplit,
    target: str,
    ratios: Sequence[float],
    stop_below: float | None,
    flat: float | None,
) -> Curve:
    """One layer's curve, its weight restored afterwards: every other ratio (and the last)
    first, until the curve breaks; then each point between two measured ones, unless
    they are within ``flat`` of each other (interpolated). See the module docstring."""
    weight = original_tensor(model, target)
    saved = weight.clone()
    points: dict[int, tuple[float, float]] = {}  # ratio index -> (accuracy, loss)

    def measure(i: int) -> None:
        weight.copy_(saved)
        weight.mul_(magnitude(effective_tensor(model, target), ratios[i]).keep)
        res = evaluate(model, split)
        points[i] = (res["accuracy"], res["loss"])

    try:
        for i in _coarse(len(ratios)):
            if _broken(points, stop_below):
                break
            measure(i)
        for i in range(1, max(points, default=0)):
            if i not in points and (flat is None or _step(points, i) > flat):
                measure(i)
    finally:
        weight.copy_(saved)
    acc, loss = _fill(points, ratios)
    measured = None if len(points) == len(ratios) else len(points)
    return Curve(target, weight.numel(), [float(r) for r in ratios], acc, loss, measured)


def _coarse(n: int) -> list[int]:
    """The ratio indices measured first: every other one, and the last."""
    return sorted({*range(0, n, 2), n - 1}) if n else []


def _broken(points: dict[int, tuple[float, float]], stop_below: float | None) -> bool:
    """Has the last measured accuracy fallen below ``stop_below`` of the unpruned one?"""
    if not points or stop_below is None:
        return False
    return points[max(points)][0] < stop_below * points[0][0]


def _step(points: dict[int, tuple[float, float]], i: int) -> float:
    """The accuracy change across point ``i``, between its two measured neighbours."""
    return abs(points[i - 1][0] - points[i + 1][0])


def _fill(
    points: dict[int, tuple[float, float]], ratios: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Accuracy and loss at every ratio: measured, interpolated in the ratio between two
    measured neighbours, or past the last measured point (a broken curve) repeated."""
    acc, loss = [], []
    for i in range(len(ratios)):
        if i in points:
            a, c = points[i]
        elif i + 1 in points:
            t = (ratios[i] - ratios[i - 1]) / (ratios[i + 1] - ratios[i - 1])
            (a0, c0), (a1, c1) = points[i - 1], points[i + 1]
            a, c = a0 + t * (a1 - a0), c0 + t * (c1 - c0)
        else:
            a, c = points[max(points)]
        acc.append(a)
        loss.append(c)
    return acc, loss


def _key(
    model: nn.Module,
    split: Split,
    targets: Sequence[str],
    ratios: Sequence[float],
    stop_below: float | None,
    flat: float | None,
) -> str:
    h = hashlib.sha256(state_digest(model).encode())
    h.update(split.x.contiguous().numpy().tobytes())
    h.update(split.y.contiguous().numpy().tobytes())
    h.update(json.dumps([list(targets), [float(r) for r in ratios], stop_below, flat]).encode())
    return h.hexdigest()[:16]


def cached(
    run_dir: str | Path,
    model: nn.Module,
    split: Split | StreamSplit,
    targets: Sequence[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    *,
    max_images: int | None = MAX_IMAGES,
    stop_below: float | None = STOP_BELOW,
    flat: float | None = FLAT,
    progress: bool | None = None,
) -> Sensitivity:
    """``analyze``, read from RUN/sensitivity.json when the same inputs made it. Streamed
    data (a user's torch Dataset) cannot be fingerprinted without reading it all: no cache."""
    split = _subset(split, max_images)  # the key hashes only the images measured
    if not isinstance(split, Split):
        return analyze(
            model, split, targets, ratios, stop_below=stop_below, flat=flat, progress=progress
        )
    path = Path(run_dir) / CACHE
    key = _key(model, split, targets, ratios, stop_below, flat)
    if path.is_file():
        try:
            old = Sensitivity.from_dict(json.loads(path.read_text()))
            if old.key == key:
                return old
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a stale or damaged cache is recomputed and rewritten
    sens = analyze(
        model, split, targets, ratios, stop_below=stop_below, flat=flat, progress=progress
    )
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
