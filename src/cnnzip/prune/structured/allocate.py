"""Per-group channel ratios that reach a target: MACs, parameters or measured latency.

Which channels a group keeps is ``plan_channels``'s business (their importance);
this module decides how many. One global knob ``s`` in [0, 1) maps to per-group
ratios, and bisection finds the smallest ``s`` whose slim model meets the target,
counted exactly (cnnzip.profiling on a shapes-only meta copy, no timing):

- without data, every prunable group loses the fraction ``s`` of its channels
  (uniform);
- with validation data, each group is pruned alone (channels zeroed, no
  retraining) at a short grid of ratios, on at most ``MAX_IMAGES`` images and
  stopping once accuracy falls below ``STOP_BELOW`` of the unpruned one (the
  bounded-cost settings of cnnzip.prune.sensitivity). The curves go to
  cnnzip.prune.allocate, weighted by the MACs (or parameters) each group's
  layers cost, so ``s`` is the overall share removed under Han et al.'s
  greedy equalisation of accuracy lost per unit saved: robust groups give
  more.

Channel counts are integers, so the result is the first plan at or below the
target: within one channel step of it; where groups move in larger steps (measured
ratios, ``round_to``, grouped convs), steps are given back one at a time while the
target holds (``_Planner.give_back``). A latency target is met by measuring:
the MAC fraction is scaled by target / measured and the plan re-measured, at
most ``LATENCY_TRIES`` times; the first plan that meets it is kept (each round
prunes further, so it is the least pruned one found), else the fastest one
measured, marked as not met.
"""

from __future__ import annotations

import copy
import math
import numbers
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from cnnzip.data import Split, StreamSplit
from cnnzip.models.slim import SlimPlan, apply_slim, meta_copy
from cnnzip.profiling import measure_latency, profile
from cnnzip.prune.auto import allocate, max_sparsity
from cnnzip.prune.masks import PruneError
from cnnzip.prune.sensitivity import MAX_IMAGES, STOP_BELOW, Curve
from cnnzip.prune.structured import (
    IMPORTANCES,
    ChannelGroup,
    channel_groups,
    channel_scores,
    mask_channels,
    plan_channels,
    slim,
)
from cnnzip.prune.structured.apply import check_slim_runs
from cnnzip.prune.structured.groups import Partition, checked_shape, partition
from cnnzip.prune.structured.latency import GroupSpeed, latency_table
from cnnzip.train import evaluate
from cnnzip.transforms import transforms_of

__all__ = [
    "GROUP_RATIOS",
    "LATENCY_TRIES",
    "Allocation",
    "GroupChoice",
    "allocate_channels",
    "check_target",
]

GROUP_RATIOS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)  # each group alone, no retraining
BISECT_STEPS = 20  # 2**-20 of the knob: finer than one channel of any zoo layer
GIVE_BACK_STEPS = 256  # rounding steps given back after the bisection, at most
LATENCY_TRIES = 4  # measure -> rescale -> re-measure rounds for a latency target
TARGETS = ("macs", "params", "latency_ms")
POWER_SPAN = 4.0  # by latency: a group's ratio is s ** k, k within [1/4, 4]

Timer = Callable[[nn.Module], float]  # a model's batch-1 latency in ms


@dataclass(frozen=True)
class GroupChoice:
    """One channel group: its channels before and after, and the ratio removed."""

    name: str
    before: int
    after: int

    @property
    def ratio(self) -> float:
        return 1.0 - self.after / self.before


@dataclass
class Allocation:
    """What ``allocate_channels`` chose, and what it costs before and after."""

    plan: SlimPlan
    target: str  # "macs", "params" or "latency_ms"
    value: float
    groups: list[GroupChoice]
    skipped: list[tuple[str, str]]  # groups left whole: (name, reason)
    macs: tuple[int, int]  # (before, after), per image
    params: tuple[int, int]
    latency_ms: tuple[float, float] | None = None  # measured, for a latency target
    met: bool = True  # a latency target can be out of reach; counts always are met
    tries: list[dict[str, float]] = field(default_factory=list)  # the latency search

    @property
    def ratios(self) -> dict[str, float]:
        return {g.name: g.ratio for g in self.groups}

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "value": self.value,
            "macs": list(self.macs),
            "params": list(self.params),
            "latency_ms": None if self.latency_ms is None else list(self.latency_ms),
            "met": self.met,
            "groups": [{**vars(g), "ratio": g.ratio} for g in self.groups],
            "skipped": [list(s) for s in self.skipped],
            "tries": self.tries,
        }

    def table(self) -> str:
        """One row per pruned group, then the groups left whole and the totals."""
        rows = [f"{'group':<32}{'before':>8}{'after':>8}{'removed':>9}"]
        rows += [
            f"{g.name:<32}{g.before:>8}{g.after:>8}{100 * g.ratio:>8.1f}%"
            + (" (removed whole)" if g.after == 0 else "")
            for g in self.groups
        ]
        rows += [f"{name:<32} left whole: {reason}" for name, reason in self.skipped]
        rows.append(
            f"MACs {self.macs[0]:,} -> {self.macs[1]:,} ({_times(self.macs)}), "
            f"params {self.params[0]:,} -> {self.params[1]:,} ({_times(self.params)})"
        )
        if self.latency_ms is not None:
            rows.append(
                f"latency {self.latency_ms[0]:.3f} -> {self.latency_ms[1]:.3f} ms at batch 1, "
                f"target {self.value:g} ms {'met' if self.met else 'NOT met'} "
                f"after {len(self.tries)} tries"
            )
        return "\n".join(rows)


def _times(pair: tuple[int, int]) -> str:
    return f"{pair[0] / max(pair[1], 1):.2f}x fewer"


def check_target(
    macs: float | None, params: float | None, latency_ms: float | None, importance: str
) -> tuple[str, float]:
    """Exactly one target, in range: ``macs``/``params`` a fraction to keep in (0, 1],
    ``latency_ms`` a positive finite time. Returns (its name, its value)."""
    given = [
        (n, v) for n, v in zip(TARGETS, (macs, params, latency_ms), strict=True) if v is not None
    ]
    if len(given) != 1:
        named = ", ".join(f"{n}={v}" for n, v in given) or "none"
        raise PruneError(
            f"give exactly one target: macs, params or latency_ms (given: {named}; in a "
            "recipe, clear the built-in one with -s channels.macs=null)"
        )
    name, value = given[0]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise PruneError(f"{name} must be a finite number, got {value!r}")
    if name != "latency_ms" and not 0.0 < value <= 1.0:
        raise PruneError(f"{name} {value} is the fraction to keep: give one in (0, 1], e.g. 0.5")
    if name == "latency_ms" and value <= 0:
        raise PruneError(f"latency_ms {value} must be a positive time in milliseconds")
    if importance not in IMPORTANCES:
        raise PruneError(f"importance {importance!r} must be one of {', '.join(IMPORTANCES)}")
    return name, float(value)


def allocate_channels(
    model: nn.Module,
    input_shape: tuple[int, ...],
    data: Split | StreamSplit | None = None,
    *,
    macs: float | None = None,
    params: float | None = None,
    latency_ms: float | None = None,
    importance: str = "l1",
    round_to: int = 1,
    timer: Timer | None = None,
    max_images: int | None = MAX_IMAGES,
    by_latency: bool = False,
    branches: int = 0,
) -> Allocation:
    """Choose how many channels each coupled group keeps so that the slim model keeps
    at most ``macs`` (or ``params``) of the original's, or measures at most
    ``latency_ms`` at batch 1 (``timer``: how, default the median of cz.profile's
    measurement). ``data`` (a validation split) makes the ratios follow each group's
    sensitivity; without it they are uniform. ``by_latency`` measures a per-group latency
    table once (cnnzip.prune.structured.latency, one thread, in ``model``'s memory format)
    and cuts more where time falls most per MAC: with data each group weighs its layers'
    time instead of their MACs; without, group g's ratio is s ** k_g with k_g the
    median ms-per-MAC saving over g's, within [1/4, 4]. ``branches`` residual branches
    (groups whose consumers' outputs are added to a skip connection) are removed whole
    first, the least important per MAC they cost (``_branch_order``), and the width
    search runs on the rest: fewer layers, not only thinner ones, which is what
    latency at batch 1 needs where every layer pays a fixed cost. ``model`` is left
    as it was."""
    target, value = check_target(macs, params, latency_ms, importance)
    bad = isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    if max_images is not None and bad:
        raise PruneError(f"max_images must be a positive image count or None, got {max_images!r}")
    _check_dense(model)
    shape = checked_shape(input_shape)
    groups = channel_groups(model, shape)
    prunable = [g for g in groups if g.prunable]
    skipped = [(g.name, g.reason or "not prunable") for g in groups if not g.prunable]
    if not prunable:
        raise PruneError(
            "no channel group of the model can be pruned safely: "
            + "; ".join(f"{n}: {r}" for n, r in skipped[:3])
        )
    _check_branches(branches, prunable)
    speeds = (
        latency_table(model, prunable, shape, importance, round_to=round_to) if by_latency else None
    )
    ratios_at = _knob(model, prunable, shape, data, importance, max_images, target, speeds)
    plans = _Planner(model, prunable, shape, ratios_at, importance, round_to, data is not None)
    if branches:
        split = None if data is None else _first(data, max_images)
        plans.remove(_branch_order(plans, split, branches, speeds))
    if target == "latency_ms":
        return _latency(plans, value, timer or _median_ms(shape), skipped)
    plan = plans.search(target, value)
    return plans.allocation(plan, target, value, skipped)


def _check_branches(count: int, groups: list[ChannelGroup]) -> None:
    """``count`` residual branches can be removed: a whole number up to the model's."""
    found = [g.name for g in groups if g.removable]
    ok = isinstance(count, numbers.Integral) and not isinstance(count, bool)
    if not ok or not 0 <= count <= len(found):
        listed = f": {', '.join(found[:4])}{', ...' if len(found) > 4 else ''}" if found else ""
        raise PruneError(
            f"branches {count!r} must be a whole number from 0 to {len(found)}, the residual "
            f"branches this model has{listed} (groups whose consumers are added to a skip "
            "connection by out + x; a forward summing in place, out += x, has none)"
        )


def _branch_order(
    plans: _Planner,
    split: Split | StreamSplit | None,
    count: int,
    speeds: dict[str, GroupSpeed] | None = None,
) -> list[str]:
    """The ``count`` residual branches to remove: those losing the least per MAC their
    removal saves (per millisecond of the latency table, ``speeds``, when given: at
    batch 1 a small late branch costs more time per MAC than a wide early one). What
    they lose: with validation data, accuracy (the branch zeroed alone, mask_channels:
    the slim model's outputs); without, their channels' mean importance per weight (an
    L1 norm grows with a layer's fan-in, so raw norms would send the narrow early
    branches first whatever their weights)."""
    base = evaluate(plans.model, split)["accuracy"] if split is not None else 0.0

    def lost_per_saving(group: ChannelGroup) -> float:
        plan = plans.plan_of({group.name: 1.0})  # with the layers left unread (ResNet-50)
        if speeds is not None:
            saved = max(speeds[group.name].ms_saved, 1e-6)
        else:
            saved = max(1, plans.base[0] - plans.counts(plan)[0])
        if split is not None:
            return (base - evaluate(mask_channels(plans.model, plan), split)["accuracy"]) / saved
        return _per_weight(plans, group) / saved

    removable = [g for g in plans.groups if g.removable]
    ranked = sorted(removable, key=lambda g: (lost_per_saving(g), g.name))
    return [g.name for g in ranked[:count]]


def _per_weight(plans: _Planner, group: ChannelGroup) -> float:
    """The group's mean channel score (plans.importance) per weight a score sums over:
    L1 / n, L2 / sqrt(n), BN |gamma| / BatchNorms; n the producers' weights per channel."""
    modules = dict(plans.model.named_modules())
    is_bn = plans.importance == "bn"
    n = sum(
        modules[m.module].weight[0].numel()
        for m in group.members
        if m.axis == "out"
        and isinstance(modules[m.module], nn.modules.batchnorm._BatchNorm) == is_bn
        and getattr(modules[m.module], "weight", None) is not None
    )
    mean = statistics.fmean(plans.scores[group.name])
    return mean / math.sqrt(n) if plans.importance == "l2" else mean / max(n, 1)


def _check_dense(model: nn.Module) -> None:
    """Structured pruning comes first: a weight transform (a mask, a codebook, a binary
    weight) would have to be cut along with its tensor, and its stored size counted."""
    found = transforms_of(model)
    foreign = sorted(name for name, ours in found.items() if not ours)
    if foreign:  # torch's own parametrizations (weight_norm, spectral_norm, orthogonal)
        raise PruneError(
            f"{', '.join(foreign[:3])} {'carry' if len(foreign) > 1 else 'carries'} torch "
            "parametrizations (weight_norm, spectral_norm, ...) that a channel cut cannot "
            "reach; remove them (torch.nn.utils.parametrize.remove_parametrizations) or "
            "prune channels before adding them"
        )
    transformed = sorted(found)
    if transformed:
        raise PruneError(
            f"structured pruning needs plain weights, but {', '.join(transformed[:3])} "
            f"{'carry' if len(transformed) > 1 else 'carries'} weight transforms (masks, "
            "codebooks, binary); slim the dense model first, then prune, share or binarize "
            "it (the slim-deep-compression recipe's order)"
        )


def _knob(
    model: nn.Module,
    groups: list[ChannelGroup],
    shape: tuple[int, ...],
    data: Split | StreamSplit | None,
    importance: str,
    max_images: int | None,
    target: str,
    speeds: dict[str, GroupSpeed] | None = None,
) -> Callable[[float], dict[str, float]]:
    """The map from the global knob s in [0, 1) to per-group ratios: uniform (skewed
    toward the groups saving the most time per MAC when given ``speeds``), or
    cnnzip.prune.allocate on each group's sensitivity curve (module docstring)."""
    if data is None and speeds is not None:
        powers = _powers(speeds)
        return lambda s: {name: s**k for name, k in powers.items()}
    if data is None:
        return lambda s: dict.fromkeys((g.name for g in groups), s)
    split = _first(data, max_images)
    if speeds is not None:  # a group weighs the nanoseconds its layers save (>= 1)
        weights = {n: max(1, round(1e6 * v.ms_saved)) for n, v in speeds.items()}
    else:
        weights = _group_costs(model, groups, shape, "params" if target == "params" else "macs")
    curves = [_curve(model, g, split, importance, weights[g.name]) for g in groups]
    top = max_sparsity(curves)  # all the grid removes: no group goes past its top ratio
    return lambda s: allocate(curves, s * top) if s > 0 else dict.fromkeys(weights, 0.0)


def _powers(speeds: dict[str, GroupSpeed]) -> dict[str, float]:
    """k_g = median(ms per MAC) / g's, within [1/POWER_SPAN, POWER_SPAN]: s ** k_g rises
    faster (is cut more) where time falls more per MAC, and every group still goes from
    0 at s = 0 to its last channels as s -> 1, so bisection reaches every target."""
    rates = {n: v.ms_per_mmac for n, v in speeds.items()}
    ref = statistics.median(rates.values())
    if ref <= 0:  # nothing measurable: uniform
        return dict.fromkeys(rates, 1.0)
    return {n: min(POWER_SPAN, max(1 / POWER_SPAN, ref / max(r, 1e-12))) for n, r in rates.items()}


def _first(split: Split | StreamSplit, max_images: int | None) -> Split | StreamSplit:
    """The first ``max_images`` of an in-memory split (a stream is measured in full)."""
    if max_images is None or not isinstance(split, Split) or len(split) <= max_images:
        return split
    return Split(split.x[:max_images], split.y[:max_images])


def _group_costs(
    model: nn.Module, groups: list[ChannelGroup], shape: tuple[int, ...], what: str
) -> dict[str, int]:
    """MACs (or parameters) of the layers each group touches: its weight in the
    allocation (at least 1, so every curve counts)."""
    report = profile(model, shape)
    cost = {row.name: row.macs if what == "macs" else row.params for row in report.layers}
    return {
        g.name: max(1, sum(cost.get(n, 0) for n in {m.module for m in g.members})) for g in groups
    }


@torch.no_grad()
def _curve(
    model: nn.Module,
    group: ChannelGroup,
    split: Split | StreamSplit,
    importance: str,
    weight: int,
) -> Curve:
    """Validation accuracy with this group's channels zeroed (mask_channels: the slim
    model's exact outputs) at each GROUP_RATIOS, until it breaks (STOP_BELOW)."""
    acc: list[float] = []
    loss: list[float] = []
    for ratio in GROUP_RATIOS:
        if acc and acc[-1] < STOP_BELOW * acc[0]:
            acc.append(acc[-1])  # past the break it would only fall further
            loss.append(loss[-1])
            continue
        plan = plan_channels(model, [group], {group.name: ratio}, importance)
        res = evaluate(mask_channels(model, plan), split)
        acc.append(res["accuracy"])
        loss.append(res["loss"])
    return Curve(group.name, weight, list(GROUP_RATIOS), acc, loss)


class _Planner:
    """Plans from the knob, and their exact counts on a shapes-only copy of the model."""

    def __init__(
        self,
        model: nn.Module,
        groups: list[ChannelGroup],
        shape: tuple[int, ...],
        ratios_at: Callable[[float], dict[str, float]],
        importance: str,
        round_to: int,
        stepped: bool = False,
    ) -> None:
        self.model, self.groups, self.shape = model, groups, shape
        self.ratios_at, self.importance, self.round_to = ratios_at, importance, round_to
        self.stepped = stepped or round_to > 1 or not all(map(_single_channel_steps, groups))
        self.meta = meta_copy(model)
        self.base = self.counts({})
        self.scores = {g.name: channel_scores(model, g, importance).tolist() for g in groups}
        self.removed: dict[str, float] = {}  # residual branches removed whole: ratio 1

    def remove(self, names: list[str]) -> None:
        """Every plan from now on removes these groups (residual branches) whole."""
        self.removed = dict.fromkeys(names, 1.0)
        self.stepped = True  # the knob's plans now jump where a branch goes

    def plan(self, s: float, held: dict[str, float] | None = None) -> SlimPlan:
        """The plan at knob ``s``, the groups in ``held`` at their given ratios and the
        removed branches whole."""
        return self.plan_of({**self.ratios_at(s), **(held or {}), **self.removed})

    def plan_of(
        self, ratios: dict[str, float], groups: list[ChannelGroup] | None = None
    ) -> SlimPlan:
        """``plan_channels`` of ``ratios`` over ``groups`` (default all), scores reused."""
        return plan_channels(self.model, groups or self.groups, ratios, self.importance,
                             round_to=self.round_to, scores=self.scores)  # fmt: skip

    def counts(self, plan: SlimPlan) -> tuple[int, int]:
        """(MACs, params) of the model slimmed by ``plan``, counted on meta tensors."""
        small = apply_slim(copy.deepcopy(self.meta), plan)
        check_slim_runs(small, self.shape)  # one clear error, not the profiler's
        report = profile(small, self.shape)
        return report.macs, report.params

    def fraction(self, plan: SlimPlan, target: str) -> float:
        macs, params = self.counts(plan)
        return macs / self.base[0] if target == "macs" else params / self.base[1]

    def search(self, target: str, value: float) -> SlimPlan:
        """The plan of the smallest knob whose ``target`` fraction is at most ``value``."""
        base = self.plan(0.0)  # nothing but the removed branches (if any)
        if self.fraction(base, target) <= value:
            return base
        hi_plan = self.plan(_TOP)
        reachable = self.fraction(hi_plan, target)
        if reachable > value:
            raise PruneError(
                f"{target} {value} is out of reach: with every prunable group cut as far "
                f"as it may go (its last channels, or its top ratio when allocated by "
                f"sensitivity) the model keeps {reachable:.3f} of its {target}; "
                "ask for a larger fraction"
            )
        lo, hi, hi_plan = self.bisect(0.0, _TOP, hi_plan, target, value)
        ratios, plan = self.refine(lo, hi, hi_plan, target, value)
        return self.give_back(ratios, plan, target, value) if self.stepped else plan

    def bisect(
        self,
        lo: float,
        hi: float,
        hi_plan: SlimPlan,
        target: str,
        value: float,
        held: dict[str, float] | None = None,
    ) -> tuple[float, float, SlimPlan]:
        """The smallest knob in (lo, hi] whose plan meets the target, to BISECT_STEPS."""
        for _ in range(BISECT_STEPS):
            mid = (lo + hi) / 2
            plan = self.plan(mid, held)
            if self.fraction(plan, target) <= value:
                hi, hi_plan = mid, plan
            else:
                lo = mid
        return lo, hi, hi_plan

    def refine(
        self, lo: float, hi: float, hi_plan: SlimPlan, target: str, value: float
    ) -> tuple[dict[str, float], SlimPlan]:
        """Where the knob's last step moved a linked group, it moved by a whole step of
        its pieces (ShuffleNet's stage widths: an eighth of their channels at once) and
        the plan lands well past the target: hold the linked groups that moved at their
        ratios and bisect the others again from 0, so that they give back what the jump
        overshot. Plans without a linked group are left as found. Returns the ratios
        and their plan."""
        lo_plan = self.plan(lo)
        moved = {
            g.name
            for g in self.groups
            if g.parts and _choice(g, lo_plan).after != _choice(g, hi_plan).after
        }
        if not moved:
            return self.ratios_at(hi), hi_plan
        held = {n: r for n, r in self.ratios_at(hi).items() if n in moved}
        _, knob, plan = self.bisect(0.0, hi, hi_plan, target, value, held)
        return {**self.ratios_at(knob), **held}, plan

    def give_back(
        self, ratios: dict[str, float], plan: SlimPlan, target: str, value: float
    ) -> SlimPlan:
        """Where the plan moves in steps of more than a channel (``stepped``), the knob's
        last step can move a group a long way: a sensitivity curve's ratios are the
        measured ones (0.1, 0.2, ...), and ``round_to`` or a grouped conv's units move
        a group by whole steps; the plan then lands well past the target (0.5 of the
        MACs asked, 0.32 kept). So, while the target holds, one group at a time takes
        one of its steps back, the group cut furthest beyond its ratio's share first."""
        ratios = {**ratios, **self.removed}
        for _ in range(GIVE_BACK_STEPS):
            kept = {g.name: _choice(g, plan).after for g in self.groups}
            cut = sorted(
                (g for g in self.groups if 0.0 < ratios.get(g.name, 0.0) < 1.0),
                key=lambda g: kept[g.name] / g.size - (1.0 - ratios[g.name]),
            )
            for group in cut:
                back = self._step_back(group, ratios[group.name])
                if back is None:
                    continue
                trial = {**ratios, group.name: back}
                trial_plan = self.plan_of(trial)
                if self.fraction(trial_plan, target) <= value:
                    ratios, plan = trial, trial_plan
                    break
            else:
                return plan
        return plan

    def _step_back(self, group: ChannelGroup, ratio: float) -> float | None:
        """The largest ratio below ``ratio`` at which ``group`` keeps more channels than
        at ``ratio``: one step of its rounding back (None: it keeps all already)."""

        def kept(r: float) -> int:
            return _choice(group, self.plan_of({group.name: r}, [group])).after

        now, lo, hi = kept(ratio), 0.0, ratio
        if kept(0.0) == now:
            return None
        for _ in range(BISECT_STEPS):  # kept(lo) > now >= kept(hi)
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if kept(mid) > now else (lo, mid)
        return lo

    def allocation(
        self, plan: SlimPlan, target: str, value: float, skipped: list[tuple[str, str]]
    ) -> Allocation:
        macs, params = self.counts(plan)
        return Allocation(
            plan=plan,
            target=target,
            value=value,
            groups=[_choice(g, plan) for g in self.groups],
            skipped=skipped,
            macs=(self.base[0], macs),
            params=(self.base[1], params),
        )


def _single_channel_steps(group: ChannelGroup) -> bool:
    part = partition(group)
    return isinstance(part, Partition) and part.single_channels(group.size)


_TOP = 1.0 - 1e-9  # the knob's top: every group down to its last channel(s)


def _choice(group: ChannelGroup, plan: SlimPlan) -> GroupChoice:
    """Channels the group keeps under ``plan``: each channel's position (shuffled, offset
    or in one part of a link) found among the kept indices of a producer holding it (an
    "out" member)."""
    where: dict[int, tuple[str, int]] = {}
    for member in (m for m in group.members if m.axis == "out"):
        for c, p in zip(member.channels(), member.positions(), strict=True):
            where.setdefault(c, (member.module, p))
    kept = {name: set(axes["out"]) for name, axes in plan.items() if "out" in axes}
    after = sum(name not in kept or p in kept[name] for name, p in where.values())
    return GroupChoice(group.name, group.size, after)


def _median_ms(shape: tuple[int, ...]) -> Timer:
    return lambda model: measure_latency(model, shape, runs=20, warmup=3).median_ms


def _latency(
    plans: _Planner, target_ms: float, timer: Timer, skipped: list[tuple[str, str]]
) -> Allocation:
    """Measure, assume latency follows MACs, prune toward the target, re-measure: at most
    LATENCY_TRIES rounds, stopping at the first plan that meets the target (module
    docstring); else the fastest one measured, not met."""
    base_ms = timer(plans.model)
    fraction, tries = 1.0, []
    best: tuple[float, SlimPlan] | None = None
    measured = base_ms
    for _ in range(LATENCY_TRIES):
        if measured <= target_ms and best is not None:
            break
        fraction = min(1.0, fraction * target_ms / measured)
        plan = plans.search("macs", _clamp(plans, fraction))
        measured = timer(slim(plans.model, plan, plans.shape))
        tries.append({"macs": fraction, "latency_ms": measured})
        if best is None or measured < best[0]:
            best = (measured, plan)
    assert best is not None
    result = plans.allocation(best[1], "latency_ms", target_ms, skipped)
    result.latency_ms = (base_ms, best[0])
    result.met = best[0] <= target_ms
    result.tries = tries
    return result


def _clamp(plans: _Planner, fraction: float) -> float:
    """The MAC fraction, no lower than what the groups can reach."""
    return max(fraction, plans.fraction(plans.plan(_TOP), "macs"))
