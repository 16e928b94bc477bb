"""Nets the channel-group tracer once got wrong (reviews of issue 15): keyword tensor
operands, hard-coded view widths, a shuffled tensor summed with an unshuffled one, a
buffer-only module called twice, tied parameters, a shuffle's group count read from the
width, a train-mode BatchNorm1d, a float64 model and impossible input shapes. Each is
tied correctly or refused by name, never cut wrongly and never a raw Python error."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip import codec
from cnnzip.prune.masks import PruneError
from cnnzip.prune.structured import (
    channel_groups,
    channel_scores,
    mask_channels,
    plan_channels,
    slim,
)
from cnnzip.prune.structured.allocate import allocate_channels

pytestmark = pytest.mark.usefixtures("one_thread")


def _groups(model: nn.Module, shape: tuple[int, int, int]) -> dict:
    return {g.name: g for g in channel_groups(model, shape)}


class KwArgs(nn.Module):
    """a + b through ``torch.add(a, other=b)`` or a cat through ``tensors=``, then c."""

    def __init__(self, cat: bool) -> None:
        super().__init__()
        self.cat = cat
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.c = nn.Conv2d(8 if cat else 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cat:
            y = torch.cat(tensors=[self.a(x), self.b(x)], dim=1)  # (N, 8, H, W)
        else:
            y = torch.add(self.a(x), other=self.b(x))  # (N, 4, H, W)
        return self.c(y).mean((2, 3))


def test_keyword_operands_are_tied_and_concatenated() -> None:
    added = _groups(KwArgs(cat=False), (3, 2, 2))
    assert "b" not in added  # b's filters joined a's group
    assert {(m.module, m.axis) for m in added["a"].members} == {
        ("a", "out"), ("b", "out"), ("c", "in")
    }  # fmt: skip
    torch.manual_seed(0)
    model = KwArgs(cat=False).eval()
    plan = plan_channels(model, list(added.values()), {"a": 0.5})
    assert plan["a"]["out"] == plan["b"]["out"] == plan["c"]["in"]
    x = torch.randn(2, 3, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(slim(model, plan)(x), mask_channels(model, plan)(x))
    cat = _groups(KwArgs(cat=True), (3, 2, 2))
    assert next(m for m in cat["b"].members if m.module == "c").offset == 4


class HardCoded(nn.Module):
    """The PyTorch CIFAR tutorial's ``x.view(-1, 16 * 5 * 5)``, scaled down."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, 3), nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c2(self.c1(x)).view(-1, 6 * 2 * 2))  # (N, 24)


class Shuffle(nn.Module):
    """A channel shuffle of a's 4 channels (literal widths or read from the shape), then
    either c alone or summed with b's unshuffled output (``add``)."""

    def __init__(self, literal: bool = False, add: bool = False) -> None:
        super().__init__()
        self.literal, self.add = literal, add
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)  # (N, 4, H, W)
        n, c, h, w = y.shape
        if self.literal:
            y = y.view(n, 2, 2, h, w).transpose(1, 2).reshape(n, 4, h, w)
        else:
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        if self.add:
            y = y + self.b(x)
        return self.c(y).mean((2, 3))


def test_hard_coded_view_widths_are_refused_by_name() -> None:
    groups = _groups(HardCoded(), (3, 6, 6))
    assert groups["c1"].prunable
    assert not groups["c2"].prunable
    assert (
        "node 'view'" in groups["c2"].reason and "hard-coded channel width" in groups["c2"].reason
    )
    assert _groups(Shuffle(), (3, 2, 2))["a"].prunable  # widths read from the shape
    literal = _groups(Shuffle(literal=True), (3, 2, 2))["a"]
    assert not literal.prunable and "hard-coded channel width" in literal.reason


def test_a_shuffled_tensor_plus_an_unshuffled_one_is_refused() -> None:
    groups = _groups(Shuffle(add=True), (3, 2, 2))
    for name in ("a", "b"):
        assert not groups[name].prunable
        assert "combines tensors whose channels are split differently" in groups[name].reason


class BufferTwice(nn.Module):
    """One BatchNorm without affine parameters (running statistics only) on two convs."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.bn(self.a(x)), self.bn(self.b(x))], 1)  # (N, 8, H, W)
        return self.c(y).mean((2, 3))


def test_a_buffer_only_module_called_twice_is_refused() -> None:
    groups = _groups(BufferTwice(), (3, 2, 2))
    for name in ("a", "b"):
        assert not groups[name].prunable and "calls 'bn' 2 times" in groups[name].reason


class Tied(nn.Module):
    """b and c share one weight (``direct``: the forward reads b's weight itself)."""

    def __init__(self, direct: bool = False) -> None:
        super().__init__()
        self.direct = direct
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.c.weight = self.b.weight
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b(self.a(x)))  # (N, 4, H, W)
        y = F.conv2d(y, self.b.weight) if self.direct else self.c(y)
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("direct", [False, True])
def test_groups_touching_tied_parameters_are_refused(direct: bool) -> None:
    groups = _groups(Tied(direct), (3, 2, 2))
    assert not groups["a"].prunable and not groups["b"].prunable  # b.weight's in and out
    reason = groups["b"].reason
    assert "shares parameters" in reason and "b.weight" in reason
    assert ("the forward's b.weight" if direct else "c.weight") in reason


def test_a_slim_model_that_does_not_run_is_one_prune_error_before_any_copy() -> None:
    """The safety net behind the tracer: a plan whose slim model breaks (here a cut with
    no matching consumer) fails on a meta copy, as one PruneError naming the shape."""
    model = HardCoded()
    x = torch.randn(2, 3, 6, 6)
    small = slim(model, {"c1": {"out": [0, 1]}, "c2": {"in": [0, 1]}}, (3, 6, 6))
    assert small(x).shape == (2, 2)
    with pytest.raises(PruneError, match=r"slimmed HardCoded does not run on inputs of shape"):
        slim(model, {"c2": {"out": [0, 1, 2]}, "fc": {"in": list(range(12))}}, (3, 6, 6))


class Multiplier(nn.Module):
    """A depthwise conv with a channel multiplier of 2: groups 8, 1 in and 2 out each."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(16, 4, 1)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.dw(self.a(x))).mean((2, 3))  # (N, 4)


def test_a_depthwise_multiplier_input_is_left_whole_and_its_outputs_pruned() -> None:
    """Each of dw's 8 groups reads one of a's channels: none can go (the group would
    empty), so a's group says so instead of reporting prunable and removing nothing."""
    groups = _groups(Multiplier(), (3, 4, 4))
    assert not groups["a"].prunable
    assert "grouped convs ['dw'] hold one of these channels per group" in groups["a"].reason
    assert groups["dw"].prunable
    plan = plan_channels(Multiplier(), list(groups.values()), {"dw": 0.5})
    assert len(plan["dw"]["out"]) == 8 and len(plan["b"]["in"]) == 8  # one of 2 per group


def test_round_to_keeps_at_least_one_multiple() -> None:
    model = HardCoded()
    groups = list(_groups(model, (3, 6, 6)).values())
    assert len(plan_channels(model, groups, {"c1": 0.9}, round_to=2)["c1"]["out"]) == 2  # not 1
    assert len(plan_channels(model, groups, {"c1": 0.9})["c1"]["out"]) == 1


def test_round_to_rounds_halves_up_not_to_even() -> None:
    """20 channels at round_to 8: 20 / 8 = 2.5 rounds up to 24, so a ratio of 0.01 keeps
    all 20 (round-half-to-even gave 16, a fifth gone); 0.3 keeps 14 -> 16."""
    model = nn.Sequential(nn.Conv2d(3, 20, 1), nn.ReLU(), nn.Conv2d(20, 2, 1))
    groups = channel_groups(model, (3, 2, 2))
    assert plan_channels(model, groups, {"0": 0.01}, round_to=8) == {}
    assert len(plan_channels(model, groups, {"0": 0.3}, round_to=8)["0"]["out"]) == 16


class FlatNorm(nn.Module):
    """conv (2 channels) -> Flatten (2 x 4 features) -> BatchNorm1d(8) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 2, 1), nn.BatchNorm1d(8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(torch.flatten(self.conv(x), 1)))


def test_bn_importance_after_flatten_sums_every_feature_of_a_channel() -> None:
    """gamma: channel 0's features 3, 0, 0, 0 (3); channel 1's 1, 1, 1, 1 (4): channel 1
    is the stronger, though its first feature alone is the weaker."""
    model = FlatNorm()
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([3.0, 0, 0, 0, 1, 1, 1, 1]))
    group = _groups(model, (3, 2, 2))["conv"]
    assert channel_scores(model, group, "bn").tolist() == [3.0, 4.0]


class CountedGroups(nn.Module):
    """A shuffle whose group count is read from the width: ``view(n, c // 4, -1, h, w)``
    (4 groups at 16 channels, 2 once cut to 8: the slim model would shuffle otherwise)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)  # (N, 16, H, W)
        n, c, h, w = y.shape
        y = y.view(n, c // 4, -1, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.b(y).mean((2, 3))  # (N, 2)


def test_a_shuffle_whose_group_count_follows_the_width_is_refused() -> None:
    group = _groups(CountedGroups(), (3, 2, 2))["a"]
    assert not group.prunable
    assert "group count read from the width" in group.reason and "node 'view'" in group.reason


class TrainBatchNorm1d(nn.Module):
    """conv -> mean -> Linear -> BatchNorm1d -> Linear, left in train mode as after fit():
    at batch 1 train-mode BatchNorm1d refuses to run, so every check must run in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 16, 3, padding=1), nn.Linear(16, 32)
        self.bn, self.out = nn.BatchNorm1d(32), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x)).mean((2, 3))  # (N, 16)
        return self.out(F.relu(self.bn(self.fc(y))))  # (N, 4)


def test_a_train_mode_model_with_batchnorm1d_slims_and_stays_in_train_mode(tmp_path) -> None:
    torch.manual_seed(0)
    model = TrainBatchNorm1d()
    model.bn.running_mean.normal_()
    plan = plan_channels(model, channel_groups(model, (3, 4, 4)), {"conv": 0.5, "fc": 0.5})
    small = slim(model, plan, (3, 4, 4))
    assert model.training and model.bn.training  # the user's modes are left as they were
    assert (small.conv.out_channels, small.bn.num_features) == (8, 16)
    codec.save(tmp_path / "t.cnnz", small.eval())
    loaded = codec.load(tmp_path / "t.cnnz", model=TrainBatchNorm1d())  # a fresh, train-mode one
    x = torch.randn(3, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), small(x))


def test_trace_errors_name_torchs_own_cause_and_print_nothing(capsys) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    assert [g.size for g in channel_groups(net.double(), (3, 8, 8))] == [3, 8, 4]  # its dtype
    with pytest.raises(PruneError, match=r"shape \(2, 8, 8\) \(RuntimeError: Given groups=1"):
        channel_groups(net, (2, 8, 8))
    assert capsys.readouterr().err == ""  # torch's ShapeProp traceback is not printed


@pytest.mark.parametrize("shape", [(3, -1, 8), "abc", (3, 8.5, 8), (1, 3, 8, 8), 3])
def test_impossible_input_shapes_are_one_prune_error(shape: object) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with pytest.raises(PruneError, match="must be the \\(C, H, W\\) of one input"):
        channel_groups(net, shape)
    with pytest.raises(PruneError, match="must be the \\(C, H, W\\) of one input"):
        allocate_channels(net, shape, macs=0.5)


def test_a_spectral_norm_conv_is_left_whole_by_name() -> None:
    """spectral_norm's pre-hook rebuilds ``weight`` from weight_orig, u and v, which a cut
    of ``weight`` alone would not reach: the conv's groups stay whole, the others not."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.utils.spectral_norm(nn.Conv2d(8, 6, 3)),
        nn.ReLU(),
        nn.Conv2d(6, 4, 1),
    )
    groups = _groups(net, (3, 8, 8))
    assert not groups["0"].prunable and "forward pre-hooks (spectral_norm?)" in groups["0"].reason
    assert not any(g.prunable for g in groups.values())  # its output group too


def test_slim_and_allocate_check_their_arguments_before_running() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    plan = plan_channels(net, channel_groups(net, (3, 8, 8)), {"0": 0.5})
    with pytest.raises(PruneError, match=r"\(1, 3, 8, 8\) must be the \(C, H, W\) of one input"):
        slim(net, plan, (1, 3, 8, 8))
    for bad in (0, -5, 2.5, True):
        with pytest.raises(PruneError, match="max_images must be a positive image count"):
            allocate_channels(net, (3, 8, 8), macs=0.5, max_images=bad)


def test_slim_on_a_wrong_input_shape_blames_the_shape_not_the_plan() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    plan = plan_channels(net, channel_groups(net, (3, 8, 8)), {"0": 0.5})
    with pytest.raises(PruneError, match=r"Sequential does not run on one input of shape \(1, 8"):
        slim(net, plan, (1, 8, 8))  # a 1-channel shape for a 3-channel model
