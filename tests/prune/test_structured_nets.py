"""Structured pruning of hand-written nets whose groups, widths, parameters and MACs are
computed by hand: a residual add, a concatenation, a depthwise conv; and the nets the
tracer must refuse (a channel-mixing op, a module called twice), by name.

Tolerance: BatchNorm in eval mode, float32 sums in another order: 1e-5 of the output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip import codec, profile
from cnnzip.models.shufflenet import channel_shuffle
from cnnzip.models.slim import slim_plan_of
from cnnzip.prune.masks import PruneError
from cnnzip.prune.structured import (
    Member,
    channel_groups,
    channel_scores,
    mask_channels,
    plan_channels,
    slim,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Residual(nn.Module):
    """conv1 -> bn1 -> relu = x; conv2 -> bn2 -> relu -> conv3 -> bn3, added to x; fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv3, self.bn3 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 8, 4, 4)
        y = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(x)))))
        return self.fc(F.relu(x + y).flatten(1))  # (N, 128) -> (N, 5)


class Concat(nn.Module):
    """a (1x1, 4) | b (3x3, 6) concatenated -> bn -> c (1x1, 7) -> head (1x1, 5) -> pool."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.c, self.head = nn.Conv2d(10, 7, 1), nn.Conv2d(7, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)  # (N, 10, H, W)
        y = F.relu(self.c(F.relu(self.bn(y))))  # (N, 7, H, W)
        return F.adaptive_avg_pool2d(self.head(y), 1).flatten(1)  # (N, 5)


class Depthwise(nn.Module):
    """pw1 (8) -> bn1 -> dw 3x3 -> bn2 -> pw2 (6) -> pool -> fc (4)."""

    def __init__(self) -> None:
        super().__init__()
        self.pw1, self.bn1 = nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2, self.pw2 = nn.BatchNorm2d(8), nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.dw(F.relu(self.bn1(self.pw1(x))))))
        x = F.adaptive_avg_pool2d(F.relu(self.pw2(x)), 1)  # (N, 6, 1, 1)
        return self.fc(x.view(x.size(0), -1))  # (N, 4)


def _randomized(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n) * 0.3)
            m.running_var.copy_(torch.rand(n) + 0.5)
            m.weight.data.copy_(torch.rand(n) + 0.5)
            m.bias.data.copy_(torch.randn(n))  # large shifts: must vanish with their channel
    return model.eval()


# (net, input, groups by name -> (size, prunable), slim params, slim MACs), hand-computed at
# half of every group removed:
# Residual at 4x4 (16 positions): conv1 4*3*9=108, conv2 and conv3 4*4*9=144, three BNs of
#   8 affine parameters on 4 channels each, fc 5*(4*16)+5=325 -> 745 parameters;
#   MACs 108*16 + 144*16 * 2 + 320 = 6656.
# Concat at 6x6 (36): a 2*3+2=8, b 3*3*9+3=84, bn 2*5=10, c (7 - round(3.5) = 3) 3*5+3=18,
#   head 5*3+5=20 -> 140; MACs (6 + 81 + 15 + 15) * 36 = 4212.
# Depthwise at 5x5 (25): pw1 4*3=12, bn1 8, dw 4*9=36, bn2 8, pw2 3*4+3=15, fc 4*3+4=16
#   -> 95; MACs (12 + 36 + 12) * 25 + 12 = 1512.
CASES = [
    (Residual, (3, 4, 4), {"conv1": (8, True), "conv2": (8, True), "fc": (5, False)}, 745, 6656),
    (Concat, (3, 6, 6), {"a": (4, True), "b": (6, True), "c": (7, True)}, 140, 4212),
    (Depthwise, (3, 5, 5), {"pw1": (8, True), "pw2": (6, True), "fc": (4, False)}, 95, 1512),
]


@pytest.mark.parametrize(("net", "shape", "expect", "params", "macs"), CASES)
def test_hand_nets_slim_equals_masked_with_hand_counts(net, shape, expect, params, macs) -> None:
    model = _randomized(net())
    groups = channel_groups(model, shape)
    found = {g.name: (g.size, g.prunable) for g in groups if g.name in expect}
    assert found == expect
    plan = plan_channels(model, groups, {g.name: 0.5 for g in groups if g.prunable})
    small = slim(model, plan)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        want, got = mask_channels(model, plan)(x), small(x)
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, atol=1e-5 * scale, rtol=0)
    report = profile(small, shape)
    assert (report.params, report.macs) == (params, macs)
    assert slim_plan_of(small) == plan and slim_plan_of(model) is None  # original untouched


def test_residual_add_ties_every_producer_and_consumer() -> None:
    groups = {g.name: g for g in channel_groups(Residual(), (3, 4, 4))}
    tied = set(groups["conv1"].members)
    assert tied == {
        Member("conv1", "out", 0, 8),
        Member("bn1", "out", 0, 8),
        Member("conv2", "in", 0, 8),
        Member("conv3", "out", 0, 8),
        Member("bn3", "out", 0, 8),
        Member("fc", "in", 0, 128, 16),  # each channel is 4*4 features after flatten
    }


def test_concat_offsets_reach_both_producers() -> None:
    groups = {g.name: g for g in channel_groups(Concat(), (3, 6, 6))}
    assert set(groups["b"].members) == {
        Member("b", "out", 0, 6),
        Member("bn", "out", 4, 6),
        Member("c", "in", 4, 6),
    }
    model = _randomized(Concat())
    plan = plan_channels(model, list(groups.values()), {"a": 0.5, "b": 0.5})
    assert len(plan["c"]["in"]) == 2 + 3 and plan["bn"]["out"] == plan["c"]["in"]
    assert set(plan["c"]["in"]) <= set(range(10)) and any(i >= 4 for i in plan["c"]["in"])


def test_depthwise_conv_keeps_its_groups_equal_to_channels() -> None:
    model = _randomized(Depthwise())
    groups = channel_groups(model, (3, 5, 5))
    small = slim(model, plan_channels(model, groups, {"pw1": 0.25}))
    assert small.dw.groups == small.dw.in_channels == small.dw.out_channels == 6
    assert small.dw.weight.shape == (6, 1, 3, 3) and small.bn2.running_mean.shape == (6,)


def test_importance_picks_the_weakest_channels() -> None:
    model = _randomized(Depthwise())
    groups = {g.name: g for g in channel_groups(model, (3, 5, 5))}
    with torch.no_grad():
        model.pw1.weight.copy_(torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 1, 1))
        model.bn1.weight.copy_(torch.tensor([8.0, 1, 7, 2, 6, 3, 5, 4]))
        model.bn2.weight.fill_(0.0)
    # l1: pw1's rows (3 i each) plus dw's filters; make dw uniform so pw1 decides
    with torch.no_grad():
        model.dw.weight.fill_(1.0)
    l1 = channel_scores(model, groups["pw1"], "l1")
    torch.testing.assert_close(l1, 3 * torch.arange(8.0) + 9)
    bn = channel_scores(model, groups["pw1"], "bn")  # |gamma| of bn1 and bn2
    torch.testing.assert_close(bn, torch.tensor([8.0, 1, 7, 2, 6, 3, 5, 4]))
    assert plan_channels(model, list(groups.values()), {"pw1": 0.5})["pw1"]["out"] == [4, 5, 6, 7]
    plan = plan_channels(model, list(groups.values()), {"pw1": 0.5}, "bn")
    assert plan["pw1"]["out"] == [0, 2, 4, 6]
    with pytest.raises(PruneError, match="no affine BatchNorm"):
        channel_scores(model, groups["pw2"], "bn")


class Rolled(nn.Module):
    """A channel-mixing op between two convs: must be refused, never cut wrongly."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(torch.roll(self.a(x), 1, dims=1)))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.b(self.a(x))))


def test_unknown_ops_and_shared_modules_are_refused_by_name() -> None:
    rolled = {g.name: g for g in channel_groups(Rolled(), (3, 4, 4))}
    assert not rolled["a"].prunable and "'roll'" in rolled["a"].reason
    assert rolled["b"].prunable and not rolled["c"].prunable  # c is the output
    twice = {g.name: g for g in channel_groups(Twice(), (3, 4, 4))}
    assert not twice["a"].prunable and "calls 'b' 2 times" in twice["a"].reason
    assert sum(g.prunable for g in twice.values()) == 0


def test_plan_ratios_are_checked() -> None:
    model = Concat()
    groups = channel_groups(model, (3, 6, 6))
    with pytest.raises(PruneError, match="no channel group 'zz'"):
        plan_channels(model, groups, {"zz": 0.5})
    with pytest.raises(PruneError, match="'a' cannot lose all its channels: only a residual"):
        plan_channels(model, groups, {"a": 1.0})
    with pytest.raises(PruneError, match=r"ratio 1.5 must be a number in \[0, 1\)"):
        plan_channels(model, groups, {"a": 1.5})
    for bad in ("0.5", None, True):
        with pytest.raises(PruneError, match=r"ratio .* must be a number in \[0, 1\)"):
            plan_channels(model, groups, {"a": bad})
    for bad in (2.5, 0, True, "8"):
        with pytest.raises(PruneError, match="round_to must be a positive whole channel count"):
            plan_channels(model, groups, {"a": 0.5}, round_to=bad)
    numpy_ints = plan_channels(model, groups, {"b": np.float32(0.5)}, round_to=np.int64(2))
    assert numpy_ints == plan_channels(model, groups, {"b": 0.5}, round_to=2)
    assert plan_channels(model, groups, {"a": 0.99})["a"]["out"] != []  # one channel kept
    assert len(plan_channels(model, groups, {"b": 0.5}, round_to=2)["b"]["out"]) == 4  # 3 rounded
    assert plan_channels(model, groups, {"head": 0.5}) == {}  # unprunable: ignored


def test_hand_net_cnnz_round_trip_into_the_users_model(tmp_path) -> None:
    model = _randomized(Residual())
    groups = channel_groups(model, (3, 4, 4))
    small = slim(model, plan_channels(model, groups, {"conv1": 0.5, "conv2": 0.25}))
    codec.save(tmp_path / "r.cnnz", small)
    loaded = codec.load(tmp_path / "r.cnnz", model=Residual())
    for k, v in small.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(small(x), loaded(x))


class Shuffled(nn.Module):
    """conv1 (6 -> mid, 3 groups) -> channel shuffle (3) -> depthwise -> conv2 (-> 6, 3 groups)."""

    def __init__(self, mid: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(6, mid, 1, groups=3)
        self.dw = nn.Conv2d(mid, mid, 3, padding=1, groups=mid)
        self.c2 = nn.Conv2d(mid, 6, 1, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.dw(channel_shuffle(self.c1(x), 3)))  # (N, 6, H, W)


def test_shuffle_between_grouped_convs_cuts_whole_columns_evenly() -> None:
    """mid 18: column c (channels c, 6 + c, 12 + c) lands at shuffled positions 3c..3c+2,
    two columns in each of conv2's groups of 6: half removed is one column per group.
    Slim: c1 9 * 2 + 9 = 27, dw 9 * 9 + 9 = 90, c2 6 * 3 + 6 = 24 -> 141 parameters;
    MACs (18 + 81 + 18) * 16 = 1872."""
    torch.manual_seed(0)
    model = Shuffled(18).eval()
    groups = {g.name: g for g in channel_groups(model, (6, 4, 4))}
    assert groups["c1"].prunable and groups["c1"].shuffle == 3
    plan = plan_channels(model, list(groups.values()), {"c1": 0.5})
    kept = plan["c1"]["out"]
    assert len(kept) == 9 and [i % 6 for i in kept[:3]] == [i % 6 for i in kept[3:6]]
    assert sorted({i % 6 // 2 for i in kept[:3]}) == [0, 1, 2]  # one column per conv2 group
    small = slim(model, plan)
    x = torch.randn(2, 6, 4, 4)
    with torch.no_grad():
        want, got = mask_channels(model, plan)(x), small(x)
    torch.testing.assert_close(got, want, atol=1e-5 * want.abs().max().item(), rtol=0)
    report = profile(small, (6, 4, 4))
    assert (report.params, report.macs) == (141, 1872)


def test_shuffle_whose_columns_straddle_every_group_is_left_whole() -> None:
    """mid 12: columns 1 and 2 straddle conv2's groups and group 1 holds no whole column."""
    group = next(g for g in channel_groups(Shuffled(12), (6, 4, 4)) if g.name == "c1")
    assert not group.prunable and "grouped conv 'c2' (3 groups) cannot keep" in group.reason


class Reduced(nn.Module):
    """conv -> mean over H, W -> fc (a pooling); ``over_channels``: mean over C (mixing)."""

    def __init__(self, over_channels: bool = False) -> None:
        super().__init__()
        self.over_channels = over_channels
        self.conv, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (N, 6, 3, 3)
        if self.over_channels:
            y = y * y.mean(1, keepdim=True)  # every channel reads all the others
        return self.fc(y.mean((2, 3)))  # (N, 2)


def test_spatial_mean_is_a_pooling_and_channel_mean_is_refused() -> None:
    model = _randomized(Reduced())
    groups = channel_groups(model, (3, 5, 5))
    assert next(g for g in groups if g.name == "conv").prunable
    plan = plan_channels(model, groups, {"conv": 0.5})
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(slim(model, plan)(x), mask_channels(model, plan)(x))
    mixed = channel_groups(Reduced(over_channels=True), (3, 5, 5))
    conv = next(g for g in mixed if g.name == "conv")
    assert not conv.prunable and "reduces over the batch or channel dim" in conv.reason


class CatAdd(nn.Module):
    """cat([a (4), b (6)]) + c (10): c's filters split into a 4-group and a 6-group."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 1), nn.Conv2d(3, 10, 1)
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], dim=1) + self.c(x)  # (N, 10, H, W)
        return self.head(F.relu(y)).mean((2, 3))  # (N, 2)


def test_sum_of_a_concatenation_splits_the_other_operands_group() -> None:
    """Half of each: a 2 * 3 + 2 = 8, b 3 * 3 + 3 = 12, c 5 * 3 + 5 = 20, head 2 * 5 + 2
    = 12 -> 52 parameters; MACs (6 + 9 + 15 + 10) * 4 positions = 160."""
    model = _randomized(CatAdd())
    groups = {g.name: g for g in channel_groups(model, (3, 2, 2))}
    assert set(groups["a"].members) == {
        Member("a", "out", 0, 4), Member("c", "out", 0, 4), Member("head", "in", 0, 4)
    }  # fmt: skip
    assert set(groups["b"].members) == {
        Member("b", "out", 0, 6), Member("c", "out", 4, 6), Member("head", "in", 4, 6)
    }  # fmt: skip
    plan = plan_channels(model, list(groups.values()), {"a": 0.5, "b": 0.5})
    small = slim(model, plan)
    x = torch.randn(2, 3, 2, 2)
    with torch.no_grad():
        want = mask_channels(model, plan)(x)
        torch.testing.assert_close(small(x), want, atol=1e-5 * want.abs().max().item(), rtol=0)
    report = profile(small, (3, 2, 2))
    assert (report.params, report.macs) == (52, 160)


def test_a_wrong_input_shape_is_one_prune_error() -> None:
    with pytest.raises(PruneError, match=r"Concat does not run on one input of shape \(1, 6, 6\)"):
        channel_groups(Concat(), (1, 6, 6))
