"""The per-layer pruning report, in the layout of Han et al.'s Tables 2 and 3.

One row per pruned layer (weights, kept, kept %, threshold) plus a total row,
and one row per prune -> retrain step (target sparsity, kept %, accuracies),
so a reader sees both where the weights went and what each step cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch.nn as nn

from cnnzip.prune.masks import get_mask
from cnnzip.transforms import original_tensor

__all__ = ["PruneReport", "PrunedLayer", "Step", "layer_stats"]


@dataclass
class PrunedLayer:
    name: str  # dotted weight name, e.g. "fc1.weight"
    weights: int
    kept: int
    threshold: float | None = None  # smallest |w| kept by the last prune

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.weights if self.weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept_fraction": self.kept_fraction}


@dataclass
class Step:
    step: int  # 0 = before pruning
    target_sparsity: float  # overall, over the prunable weights
    kept_fraction: float  # measured after the step
    val_accuracy: float
    test_accuracy: float | None = None
    layers: dict[str, float] = field(default_factory=dict)  # name -> kept fraction


@dataclass
class PruneReport:
    layers: list[PrunedLayer]
    steps: list[Step] = field(default_factory=list)
    # weights pruning could not handle, kept as they were: (name, reason); see ``unprunable``
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def weights(self) -> int:
        return sum(s.weights for s in self.layers)

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.layers)

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.weights if self.weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "kept": self.kept,
            "kept_fraction": self.kept_fraction,
            "layers": [s.to_dict() for s in self.layers],
            "steps": [asdict(s) for s in self.steps],
            "skipped": [list(s) for s in self.skipped],
        }

    def table(self) -> str:
        """Plain-text tables: layers (Han's Table 2 layout), then steps."""
        lines = [f"{'layer':<24}{'weights':>10}{'kept':>10}{'kept %':>9}{'threshold':>11}"]
        for s in self.layers:
            thr = f"{s.threshold:.4g}" if s.threshold is not None else "-"
            lines.append(
                f"{s.name:<24}{s.weights:>10}{s.kept:>10}{100 * s.kept_fraction:>8.2f}%{thr:>11}"
            )
        lines.append(
            f"{'total':<24}{self.weights:>10}{self.kept:>10}{100 * self.kept_fraction:>8.2f}%"
            f"  ({1 / max(self.kept_fraction, 1e-12):.1f}x fewer)"
        )
        lines.append("")
        lines.append(f"{'step':<6}{'target':>8}{'kept %':>9}{'val acc':>9}{'test acc':>10}")
        for st in self.steps:
            test = f"{st.test_accuracy:.4f}" if st.test_accuracy is not None else "-"
            lines.append(
                f"{st.step:<6}{st.target_sparsity:>8.3f}{100 * st.kept_fraction:>8.2f}%"
                f"{st.val_accuracy:>9.4f}{test:>10}"
            )
        lines += [f"left as it is: {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def layer_stats(
    model: nn.Module, targets: list[str], thresholds: dict[str, float] | None = None
) -> list[PrunedLayer]:
    """Weights and kept counts of ``targets`` as the model stands (no mask = dense)."""
    out = []
    for target in targets:
        mask = get_mask(model, target)
        n = original_tensor(model, target).numel()
        kept = int(mask.mask.sum()) if mask is not None else n
        out.append(PrunedLayer(target, n, kept, (thresholds or {}).get(target)))
    return out
