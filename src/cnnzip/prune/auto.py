"""Per-layer pruning ratios chosen automatically from the sensitivity curves.

The cost of pruning a layer further is the validation accuracy it loses
(measured alone, no retraining) per weight removed. Greedy equalisation of
that marginal cost: repeatedly take, over all layers, the cheapest next
stretch of a curve (from its current point to any later one, so a bump in a
noisy curve does not stall it), until exactly the target number of weights
is removed. Big redundant layers go first; small sensitive ones (conv1, the
classifier) keep most of their weights, as in Han et al.'s hand-tuned tables.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnzip.codec.sizes import FLOAT32_BYTES, fixed_bytes, sparse_bytes
from cnnzip.prune.masks import PruneError
from cnnzip.prune.rules import check_sparsity
from cnnzip.prune.sensitivity import Curve

__all__ = ["BYTES_PER_KEPT", "allocate", "budget_sparsity", "max_sparsity", "sparsity_path"]

# Size model of a pruned weight (cnnzip.codec.sizes): a float32 value plus an 8-bit
# relative index (Deep Compression's sparse format, filler entries ignored). Biases
# and other unpruned parameters stay dense float32.
BYTES_PER_KEPT = sparse_bytes(1, fixed_bytes(1, 8))
BYTES_PER_DENSE = FLOAT32_BYTES


def _removable(ratio: float, weights: int) -> int:
    """Weights a sweep ratio removes from a layer, leaving at least one.

    ``round(0.995 * 9)`` is all 9 weights of a small layer; a layer with none
    left is no layer (and a ratio of 1.0 is not a sparsity), so it keeps one.
    """
    return min(round(ratio * weights), max(weights - 1, 0))


def _drops(curve: Curve) -> tuple[list[int], list[float]]:
    """(weights removed, accuracy lost) at each ratio; the loss made monotone (running min)."""
    pairs = sorted(zip(curve.ratios, curve.accuracy, strict=True))
    if pairs[0][0] != 0.0:
        raise PruneError(f"the sensitivity curve of {curve.name} must start at ratio 0")
    removed, lost, best = [], [], pairs[0][1]
    for ratio, acc in pairs:
        best = min(best, acc)
        removed.append(_removable(ratio, curve.weights))
        lost.append(pairs[0][1] - best)
    return removed, lost


def allocate(curves: Sequence[Curve], sparsity: float) -> dict[str, float]:
    """Per-layer ratios that remove exactly ``round(sparsity * total)`` weights.

    Every layer keeps at least one weight, so each ratio is below 1; a target
    that would need more is refused with the count the sweep can reach.
    """
    check_sparsity(sparsity)
    total = sum(c.weights for c in curves)
    need = round(sparsity * total)
    table = {c.name: _drops(c) for c in curves}
    reachable = sum(removed[-1] for removed, _ in table.values())
    if need > reachable:
        raise PruneError(
            f"sparsity {sparsity} needs {need} of {total} weights pruned but the sensitivity "
            f"sweep reaches only {reachable} (each layer keeps at least one weight); "
            "sweep larger ratios or ask for a lower sparsity"
        )
    pos = dict.fromkeys(table, 0)  # index into each curve
    done = dict.fromkeys(table, 0)  # weights removed per layer
    while need > 0:
        _, gain, name, j = min(
            ((lost[k] - lost[pos[n]]) / (removed[k] - done[n]), -(removed[k] - done[n]), n, k)
            for n, (removed, lost) in table.items()
            for k in range(pos[n] + 1, len(removed))
            if removed[k] > done[n]
        )
        step = min(-gain, need)  # the last stretch may stop part-way
        done[name] += step
        need -= step
        pos[name] = j
    return {c.name: done[c.name] / c.weights for c in curves}


def max_sparsity(curves: Sequence[Curve]) -> float:
    """The largest overall sparsity the sweep's ratios reach."""
    removed = sum(_removable(max(c.ratios), c.weights) for c in curves)
    return removed / sum(c.weights for c in curves)


def sparsity_path(curves: Sequence[Curve], sparsities: Sequence[float]) -> list[dict[str, float]]:
    """``allocate`` at each reachable overall sparsity (growing): a prune -> retrain search path."""
    return [allocate(curves, s) for s in sorted(sparsities) if s <= max_sparsity(curves)]


def budget_sparsity(prunable: int, dense: int, budget: int) -> float:
    """The overall sparsity that fits ``budget`` bytes under the size model above."""
    fixed = BYTES_PER_DENSE * dense
    if budget < fixed + BYTES_PER_KEPT:
        raise PruneError(
            f"a budget of {budget} bytes cannot hold the {dense} unpruned parameters "
            f"({fixed} bytes) plus any weight; give at least {fixed + BYTES_PER_KEPT}"
        )
    kept = min((budget - fixed) // BYTES_PER_KEPT, prunable)
    return max(0.0, 1.0 - kept / prunable)
