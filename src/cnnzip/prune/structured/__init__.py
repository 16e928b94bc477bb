"""Structured pruning: whole channels removed, the result a physically smaller dense model.

    groups = channel_groups(model, (3, 224, 224))        # coupled channels, traced
    plan = plan_channels(model, groups, {g.name: 0.5 for g in groups if g.prunable})
    small = slim(model, plan)                             # real smaller tensors
    reference = mask_channels(model, plan)                # same outputs, channels zeroed

A group inside a residual branch (``ChannelGroup.removable``) may take ratio 1: the
branch is removed whole, its layers replaced by cnnzip.models.slim.Removed
(``allocate_channels(..., branches=k)`` chooses k of them).

The plan (cnnzip.models.slim.SlimPlan) is plain JSON; save_run and .cnnz files record
it, so the slim model is rebuilt from its architecture without pickle.
"""

from cnnzip.models.slim import SlimPlan, apply_slim, slim_plan_of
from cnnzip.prune.structured.apply import (
    IMPORTANCES,
    channel_scores,
    mask_channels,
    plan_channels,
    slim,
)
from cnnzip.prune.structured.groups import ChannelGroup, Member, channel_groups, trace

__all__ = [
    "IMPORTANCES",
    "ChannelGroup",
    "Member",
    "SlimPlan",
    "apply_slim",
    "channel_groups",
    "channel_scores",
    "mask_channels",
    "plan_channels",
    "slim",
    "slim_plan_of",
    "trace",
]
