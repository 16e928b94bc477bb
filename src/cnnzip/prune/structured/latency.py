"""Per-group latency tables: how much time each channel group's layers save per MAC.

Halving MACs uniformly does not halve latency: at batch 1 a 3x3 depthwise conv or a
BatchNorm is memory-bound, a narrow layer loses its kernel's blocking, and some layers
barely shrink in time. ``latency_table`` measures, once, what cutting each prunable
group alone saves: the group loses ``TABLE_RATIO`` of its channels (the plan's own
rounding), and its member layers (the convs, Linears and BatchNorms that lose channels)
and the parameterless modules its channels flow through (activations, pooling: their
time shrinks with the group, though no weight of theirs is cut; a module called more
than once, like torchvision's shared ``relu``, is left out: its calls carry other
groups, and timing one would credit the wrong group) are timed alone, full width and
cut, each on the very tensor it receives in the model (same shape and memory format,
so a channels-last model is measured channels-last), at
batch 1 and one thread. Timing layers alone rather than the whole model twice keeps a
small group's saving above the noise of a 40 ms forward. The allocation
(``allocate_channels(..., by_latency=True)``) then cuts more where the ratio ms saved /
MACs saved is highest, at the same MAC budget.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from cnnzip.models.running import eval_mode, example_input, is_channels_last
from cnnzip.models.slim import apply_slim
from cnnzip.profiling import profile
from cnnzip.profiling.latency import num_threads
from cnnzip.prune.masks import PruneError
from cnnzip.prune.structured.apply import plan_channels
from cnnzip.prune.structured.groups import ChannelGroup

__all__ = ["TABLE_RATIO", "GroupSpeed", "latency_table"]

TABLE_RATIO = 0.5  # each group alone loses this share of its channels in the table
TABLE_RUNS = 15  # timed calls per layer (the median is kept)


@dataclass(frozen=True)
class GroupSpeed:
    """What cutting one group alone by TABLE_RATIO saves: layer time and MACs."""

    name: str
    ms_saved: float  # summed over the group's member layers, batch 1, one thread
    macs_saved: int

    @property
    def ms_per_mmac(self) -> float:
        """Milliseconds saved per million MACs saved; 0 when no MAC is saved (a group
        too narrow to cut: its timing noise must not rank it first) or no time is."""
        if self.macs_saved <= 0:
            return 0.0
        return max(self.ms_saved, 0.0) / (self.macs_saved / 1e6)


def _layer_inputs(model: nn.Module, names: set[str], shape: tuple[int, ...]) -> dict[str, tuple]:
    """The positional inputs each named module receives in one batch-1 forward."""
    seen: dict[str, tuple] = {}
    modules = dict(model.named_modules())

    def keep(name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(_module: nn.Module, args: tuple) -> None:
            seen.setdefault(name, args)  # the first call's (a module called once)

        return hook

    hooks = [modules[n].register_forward_pre_hook(keep(n)) for n in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input(model, (1, *shape)))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _ms(module: nn.Module, args: tuple, runs: int) -> float:
    """Median time (ms) of ``module(*args)`` over ``runs`` calls after two warm-ups."""
    times = []
    with eval_mode(module), torch.no_grad():
        for i in range(runs + 2):
            start = time.perf_counter()
            module(*args)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _members_ms(model: nn.Module, names: set[str], shape: tuple[int, ...], runs: int) -> float:
    """The named layers' summed batch-1 time, each on the input it gets in ``model``."""
    inputs = _layer_inputs(model, names, shape)
    modules = dict(model.named_modules())
    return sum(_ms(modules[n], inputs[n], runs) for n in names if n in inputs)


def latency_table(
    model: nn.Module,
    groups: list[ChannelGroup],
    shape: tuple[int, ...],
    importance: str = "l1",
    *,
    round_to: int = 1,
    runs: int = TABLE_RUNS,
) -> dict[str, GroupSpeed]:
    """Per prunable group: ms and MACs saved when it alone loses TABLE_RATIO of its
    channels (module docstring), at one thread. ``model`` is left as it was."""
    if runs < 1:
        raise PruneError(f"latency table: runs must be >= 1, got {runs}")
    base_macs = profile(model, shape).macs
    table: dict[str, GroupSpeed] = {}
    with num_threads(1):
        for group in (g for g in groups if g.prunable):
            names = {m.module for m in group.members} | set(group.passes)
            plan = plan_channels(
                model, [group], {group.name: TABLE_RATIO}, importance, round_to=round_to
            )
            small = apply_slim(copy.deepcopy(model), plan)  # cut tensors are contiguous
            if is_channels_last(model):
                small = small.to(memory_format=torch.channels_last)
            full_ms = _members_ms(model, names, shape, runs)
            cut_ms = _members_ms(small, names, shape, runs)
            saved = base_macs - profile(small, shape).macs
            table[group.name] = GroupSpeed(group.name, full_ms - cut_ms, saved)
    return table
