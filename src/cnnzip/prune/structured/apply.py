"""Channel importance, the plan of kept channels, and the slim and masked models.

``plan_channels`` turns per-group ratios into a SlimPlan (cnnzip.models.slim): every
member of a group loses the same channels, at their offsets. ``slim`` cuts a copy;
``mask_channels`` zeroes the same channels in a full-width copy instead, the reference
a slim model must equal.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
import torch.nn as nn

from cnnzip.models.slim import (
    SlimPlan,
    apply_slim,
    axis_sizes,
    check_plan_fits,
    check_removed,
    is_depthwise,
    is_grouped,
    meta_copy,
    record_input_shape,
    run_error,
)
from cnnzip.prune.masks import PruneError
from cnnzip.prune.structured.groups import (
    ChannelGroup,
    Member,
    checked_shape,
    consumers,
    partition,
)

__all__ = [
    "IMPORTANCES",
    "channel_scores",
    "check_slim_runs",
    "mask_channels",
    "plan_channels",
    "slim",
]

IMPORTANCES = ("l1", "l2", "bn")


def _rows(tensor: torch.Tensor, member: Member) -> torch.Tensor:
    """(channels, fan_in): the member's channels of an "out" tensor, in group order."""
    first = member.positions()  # a channel spans ``repeat`` features (BatchNorm1d after Flatten)
    index = [p + r for p in first for r in range(member.repeat)]
    index = torch.tensor(index, dtype=torch.long, device=tensor.device)
    return tensor.detach().index_select(0, index).reshape(len(first), -1)


def channel_scores(model: nn.Module, group: ChannelGroup, importance: str = "l1") -> torch.Tensor:
    """(size,) importance of each channel of ``group``: the L1 or L2 norm of its filters
    summed over the group's producers (every conv or Linear holding it as "out"), or
    "bn", network slimming's |gamma| summed over the group's BatchNorms."""
    if importance not in IMPORTANCES:
        raise PruneError(f"importance must be one of {', '.join(IMPORTANCES)}, got {importance!r}")
    modules = dict(model.named_modules())
    scores = torch.zeros(group.size)
    found = False
    for member in (m for m in group.members if m.axis == "out"):
        module = modules[member.module]
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if (importance == "bn") != is_bn or (is_bn and module.weight is None):
            continue
        rows = _rows(module.weight, member).float().cpu()  # (held, fan_in)
        p = {"l1": 1, "l2": 2, "bn": 1}[importance]
        scores[member.first : member.first + len(rows)] += rows.norm(p=p, dim=1)
        found = True
    if not found:
        raise PruneError(
            f"channel group {group.name!r} has no "
            + ("affine BatchNorm: score it by l1 or l2" if importance == "bn" else "producer")
        )
    return scores


def _keep_count(size: int, ratio: float, round_to: int) -> int:
    """Channels kept of ``size`` when removing ``ratio`` of them: a multiple of
    ``round_to``, at least one such multiple (a group narrower than ``round_to`` stays
    whole). Halves round up, never to even: 20 channels at round_to 8 keep 24 -> all 20,
    not 16 (a fifth gone for a ratio of 0.01)."""
    keep = size - round(ratio * size)
    if round_to > 1:
        keep = math.floor(keep / round_to + 0.5) * round_to
    return min(size, max(min(round_to, size), keep))


def _check_ratios(groups: list[ChannelGroup], ratios: dict[str, float]) -> None:
    """Every ratio names a group and lies in [0, 1); 1 (all channels) only for a group
    that is a residual branch's inner channels (``ChannelGroup.removable``)."""
    by_name = {g.name: g for g in groups}
    for name, ratio in ratios.items():
        if name not in by_name:
            raise PruneError(
                f"no channel group {name!r}; the groups are named by their first layer, "
                f"e.g. {next(iter(sorted(by_name)), 'conv1')!r}"
            )
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio <= 1:
            raise PruneError(
                f"group {name!r}: ratio {ratio!r} must be a number in [0, 1) (1: a residual "
                "branch removed whole)"
            )
        if ratio == 1 and not by_name[name].removable:
            raise PruneError(
                f"group {name!r} cannot lose all its channels: only a residual branch's "
                "can (its consumers' outputs added to a skip connection); give a ratio below 1"
            )


def plan_channels(
    model: nn.Module,
    groups: list[ChannelGroup],
    ratios: dict[str, float],
    importance: str = "l1",
    *,
    round_to: int = 1,
    scores: dict[str, list[float]] | None = None,
) -> SlimPlan:
    """The plan removing ``ratios[name]`` of each prunable group's channels, the least
    important first (ties: the later channel goes); unprunable groups are skipped. A
    ratio of 1 removes a residual branch's group whole (``ChannelGroup.removable``; its
    layers become cnnzip.models.slim.Removed).
    ``scores`` (group name -> ``channel_scores`` as a list) spares a planner that asks
    for many plans of one model recomputing them (a copy of each weight) every time.
    ``round_to`` rounds the kept count of plain groups only: a group that a grouped conv
    or a channel shuffle constrains loses as many channels from each of its conv groups
    or shuffle columns, which decides its count."""
    _check_ratios(groups, ratios)
    if isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise PruneError(f"round_to must be a positive whole channel count, got {round_to!r}")
    round_to = int(round_to)  # numpy's too
    removed: dict[tuple[str, str], set[int]] = {}
    for group in groups:
        ratio = ratios.get(group.name, 0.0)
        if not group.prunable or ratio == 0.0:
            continue
        ranked = scores[group.name] if scores else channel_scores(model, group, importance).tolist()
        _remove(removed, group, _removed(group, ranked, ratio, round_to))
    _remove_dead(model, groups, removed)
    return _plan(model, removed)


def _remove(
    removed: dict[tuple[str, str], set[int]], group: ChannelGroup, channels: list[int]
) -> None:
    """Note ``channels`` of ``group`` as removed from every member, at their positions."""
    for member in group.members:
        gone = removed.setdefault((member.module, member.axis), set())
        at = dict(zip(member.channels(), member.positions(), strict=True))
        for p in (at[c] for c in channels if c in at):  # a channel: ``repeat`` features
            gone.update(range(p, p + member.repeat))


def _remove_dead(
    model: nn.Module, groups: list[ChannelGroup], removed: dict[tuple[str, str], set[int]]
) -> None:
    """Remove whole the prunable groups whose every consumer lost all its outputs (a
    removed branch's first layers: ResNet-50's 1x1 reduction before its removed 3x3),
    until none is left: nothing would read them, yet they would run and be stored."""
    modules = dict(model.named_modules())

    def unread(group: ChannelGroup) -> bool:
        users = consumers(group.members)
        return bool(users) and all(
            len(removed.get((name, "out"), ())) == axis_sizes(modules[name], name)["out"]
            for name in users
        )

    dead: list[str] = []
    while True:
        found = [g for g in groups if g.prunable and g.name not in dead and unread(g)]
        if not found:
            return
        for group in found:
            _remove(removed, group, list(range(group.size)))
            dead.append(group.name)


def _removed(group: ChannelGroup, scores: list[float], ratio: float, round_to: int) -> list[int]:
    """The group's channels to remove: the weakest units, as many from every bucket (see
    ``partition``); an unconstrained group is one bucket of single channels."""
    if ratio == 1:  # a removed residual branch (checked removable)
        return list(range(group.size))
    part = partition(group)
    assert not isinstance(part, str)  # prunable groups have a partition
    width = len(part.units[0])
    if part.single_channels(group.size):
        k, shares = group.size - _keep_count(group.size, ratio, round_to), (1,)
    else:  # a grouped conv's groups, a shuffle or a link: round_to does not apply
        wanted = round(ratio * group.size / (sum(part.shares) * width))
        keep = sum(map(len, part.buckets)) == len(part.units)  # else straddlers stay
        k = min(
            wanted, *((len(b) - keep) // n for b, n in zip(part.buckets, part.shares, strict=True))
        )
        shares = part.shares
    out = []
    for bucket, share in zip(part.buckets, shares, strict=True):  # best first; ties: earlier
        order = sorted(bucket, key=lambda u: (-sum(scores[i] for i in part.units[u]), u))
        count = k * share
        out += [i for u in order[len(order) - count :] if count for i in part.units[u]]
    return sorted(out)


def _plan(model: nn.Module, removed: dict[tuple[str, str], set[int]]) -> SlimPlan:
    """Kept indices of every module axis that loses any."""
    modules = dict(model.named_modules())
    plan: SlimPlan = {}
    for (name, axis), gone in sorted(removed.items()):
        if gone:
            size = axis_sizes(modules[name], name)[axis]
            plan.setdefault(name, {})[axis] = [i for i in range(size) if i not in gone]
    return plan


def slim(model: nn.Module, plan: SlimPlan, input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """A physically smaller deep copy of ``model`` cut to ``plan``; the original untouched.
    With ``input_shape`` (C, H, W) a shapes-only copy runs once first (``check_slim_runs``)
    and the copy records it (``record_input_shape``: its .cnnz lets load run the check)."""
    check_plan_fits(model, plan)
    if input_shape is None and any([] in axes.values() for axes in plan.values()):
        raise PruneError(
            "this plan removes layers whole (residual branches): pass the input shape, "
            "slim(model, plan, input_shape), so that the slim model is checked and its "
            ".cnnz can be loaded"
        )
    if input_shape is None:
        return apply_slim(copy.deepcopy(model), plan)
    input_shape = checked_shape(input_shape)
    error = run_error(meta_copy(model), input_shape)
    if error is not None:  # the shape is wrong, not the plan
        raise PruneError(
            f"{type(model).__name__} does not run on one input of shape {input_shape} "
            f"({error}); pass the (C, H, W) of its images"
        )
    check_slim_runs(apply_slim(meta_copy(model), plan), input_shape)
    small = apply_slim(copy.deepcopy(model), plan)
    check_removed(small, input_shape, "slim plan")  # removed layers: the masked outputs
    return record_input_shape(small, input_shape)


def check_slim_runs(small: nn.Module, input_shape: tuple[int, ...]) -> None:
    """One forward of ``small`` (best a meta copy: no compute) on a (1, *input_shape)
    input: the safety net behind the tracer, for a forward that hard-codes a width in a
    way the trace could not see, refused as one PruneError before any training."""
    error = run_error(small, input_shape)
    if error is not None:
        raise PruneError(
            f"the slimmed {type(small).__name__} does not run on inputs of shape "
            f"{tuple(input_shape)} ({error}); its forward likely hard-codes a channel "
            "count: read it from x.shape or use x.flatten(1), or leave that layer unpruned"
        )


def _complement(kept: list[int], size: int) -> torch.Tensor:
    return torch.tensor(sorted(set(range(size)) - set(kept)), dtype=torch.long)


def _zero_grouped_inputs(module: nn.Conv2d, gone: torch.Tensor) -> None:
    """Input channel p of a grouped conv is column p % (in/g) of its group's output rows."""
    per_in = module.in_channels // module.groups
    per_out = module.out_channels // module.groups
    for p in gone.tolist():
        b = p // per_in
        module.weight[b * per_out : (b + 1) * per_out, p % per_in] = 0.0


def mask_channels(model: nn.Module, plan: SlimPlan) -> nn.Module:
    """A full-width deep copy with the plan's removed channels zeroed: producers' filters
    and biases, BatchNorm's gamma *and beta* (so a removed channel's BN shift does not
    flow on, as it does not in the slim model) and the consumers' input weights (so
    nothing of a removed channel reaches a kept one, whatever flowed into it). Its
    outputs are what the slim model must compute."""
    masked = copy.deepcopy(model)
    modules = check_plan_fits(masked, plan)
    with torch.no_grad():
        for name, axes in plan.items():
            module = modules[name]
            sizes = axis_sizes(module, name)
            for axis, kept in axes.items():
                gone = _complement(kept, sizes[axis])
                if axis == "in" and is_grouped(module):
                    _zero_grouped_inputs(module, gone)
                    continue
                if axis == "in" and not is_depthwise(module):
                    module.weight[:, gone] = 0.0  # (out, in, ...): input columns
                    continue
                if module.weight is not None:  # filters, depthwise kernels or gamma
                    module.weight[gone] = 0.0
                if module.bias is not None:
                    module.bias[gone] = 0.0
    return masked
