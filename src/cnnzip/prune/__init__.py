"""Pruning (Deep Compression stage 1): masks, rules, schedules, sensitivity, automatic ratios.

from cnnzip import prune
targets = prune.prunable(model)                      # every Conv/Linear weight
sens = prune.analyze(model, data.val, targets)       # each layer alone, no retraining
ratios = prune.allocate(sens.curves, 0.92)           # per-layer ratios, exact overall count
report = prune.iterative(model, data, prune.growing_plan(ratios, steps=3))
print(report.table())
"""

from cnnzip.prune import structured  # channel pruning: cnnzip.prune.structured.slim(...)
from cnnzip.prune.auto import allocate, budget_sparsity, sparsity_path
from cnnzip.prune.masks import (
    Mask,
    MaskKeeper,
    PruneError,
    apply_masks,
    enforce_masks,
    get_mask,
    prunable,
    remove_masks,
    set_mask,
    unprunable,
)
from cnnzip.prune.report import PrunedLayer, PruneReport, Step, layer_stats
from cnnzip.prune.rules import Pruned, check_sparsity, global_magnitude, magnitude, std_threshold
from cnnzip.prune.schedules import (
    RETRAIN,
    GradualPruning,
    cubic_sparsity,
    growing_plan,
    iterative,
    one_shot,
)
from cnnzip.prune.sensitivity import (
    DEFAULT_RATIOS,
    FLAT,
    MAX_IMAGES,
    STOP_BELOW,
    Curve,
    Sensitivity,
    analyze,
    cached,
    plot,
)

__all__ = [
    "DEFAULT_RATIOS",
    "FLAT",
    "MAX_IMAGES",
    "RETRAIN",
    "STOP_BELOW",
    "Curve",
    "GradualPruning",
    "Mask",
    "MaskKeeper",
    "PruneError",
    "PruneReport",
    "Pruned",
    "PrunedLayer",
    "Sensitivity",
    "Step",
    "allocate",
    "analyze",
    "apply_masks",
    "budget_sparsity",
    "cached",
    "check_sparsity",
    "cubic_sparsity",
    "enforce_masks",
    "get_mask",
    "global_magnitude",
    "growing_plan",
    "iterative",
    "layer_stats",
    "magnitude",
    "one_shot",
    "plot",
    "prunable",
    "remove_masks",
    "set_mask",
    "sparsity_path",
    "std_threshold",
    "structured",
    "unprunable",
]
