"""Linked channel groups: two groups concatenated into one grouped conv whose groups
straddle the concatenation (ShuffleNet's stage widths) are cut together, each piece
losing the same fraction, so the grouped conv keeps equal groups; with a part that may
not be cut (the model's input), every part stays whole and says why.

Tolerance: BatchNorm in eval mode, float32 sums in another order: 1e-5 of the output's scale.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip import codec, profile
from cnnzip.models.shufflenet import channel_shuffle
from cnnzip.models.slim import slim_plan_of
from cnnzip.prune.structured import channel_groups, mask_channels, plan_channels, slim
from cnnzip.prune.structured.groups import partition

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (3, 6, 6)


class Straddled(nn.Module):
    """a (1x1, 4) | b (3x3, 8) concatenated -> bn -> g (1x1, 12 -> 6, 2 groups) -> pool
    -> fc (5). g's group 0 reads a's 4 channels and b's first 2, group 1 b's last 6."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.g = nn.Conv2d(12, 6, 1, groups=2)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], dim=1)  # (N, 12, 6, 6)
        y = F.relu(self.g(F.relu(self.bn(y))))  # (N, 6, 6, 6)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))  # (N, 5)


class FromInput(nn.Module):
    """The image (3) | c (3x3, 5) concatenated -> g (1x1, 8 -> 4, 2 groups): g's group 0
    reads the image and c's first channel, so c is held by the image, which stays."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 5, 3, padding=1)
        self.g = nn.Conv2d(8, 4, 1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(torch.cat([x, self.c(x)], dim=1)).mean((2, 3))  # (N, 4)


class ShuffledPart(nn.Module):
    """c (1x1, 6) shuffled in 3 groups | b (1x1, 3) concatenated -> g (1x1, 9 -> 3, 3
    groups): g's groups 0 and 1 read c's shuffled channels, group 2 b's."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.b = nn.Conv2d(3, 6, 1), nn.Conv2d(3, 3, 1)
        self.g = nn.Conv2d(9, 3, 1, groups=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([channel_shuffle(self.c(x), 3), self.b(x)], dim=1)  # (N, 9, H, W)
        return self.g(y).mean((2, 3))  # (N, 3)


def _randomized(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features))
    return model.eval()


def test_straddling_groups_are_linked_with_shares_by_piece() -> None:
    """Pieces a (4, g's group 0), b[:2] (2, group 0), b[2:] (6, group 1): common size 2,
    shares 2, 1, 3."""
    groups = {g.name: g for g in channel_groups(Straddled(), SHAPE)}
    linked = groups["a+b"]
    assert linked.prunable and linked.size == 12 and linked.parts == ("a", "b")
    assert "a" not in groups and "b" not in groups
    part = partition(linked)
    assert not isinstance(part, str)
    assert part.buckets == ((0, 1, 2, 3), (4, 5), (6, 7, 8, 9, 10, 11))
    assert part.shares == (2, 1, 3)


def test_linked_slim_equals_masked_with_hand_counts(tmp_path) -> None:
    """Half of every group at 6x6 (36 positions): the link loses one step (2, 1, 3
    channels): a keeps 2, b keeps 1 + 3 = 4, g's groups read 2 + 1 and 3; g's own
    group loses 2 of each 3. Parameters: a 2*3+2 = 8, b 4*27+4 = 112, bn 2*6 = 12,
    g 2*3+2 = 8, fc 5*2+5 = 15 -> 155; MACs (6 + 108 + 6) * 36 + 10 = 4330."""
    model = _randomized(Straddled())
    groups = channel_groups(model, SHAPE)
    plan = plan_channels(model, groups, {g.name: 0.5 for g in groups if g.prunable})
    small = slim(model, plan, SHAPE)
    assert (small.a.out_channels, small.b.out_channels, small.g.in_channels) == (2, 4, 6)
    assert small.g.groups == 2 and small.g.out_channels == 2
    assert len([i for i in plan["g"]["in"] if i < 6]) == len([i for i in plan["g"]["in"] if i >= 6])
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        want, got = mask_channels(model, plan)(x), small(x)
    torch.testing.assert_close(got, want, atol=1e-5 * want.abs().max().item(), rtol=0)
    report = profile(small, SHAPE)
    assert (report.params, report.macs) == (155, 4330)
    codec.save(tmp_path / "m.cnnz", small)
    loaded = codec.load(tmp_path / "m.cnnz", model=Straddled())
    assert slim_plan_of(loaded) == plan
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), got)


def test_linked_group_keeps_the_strongest_of_each_piece() -> None:
    """Piece b[2:] (channels 6..11 of the link, b's filters 2..7) loses its 3 weakest."""
    model = _randomized(Straddled())
    with torch.no_grad():
        for i, scale in enumerate([5, 1, 4, 0.1, 3, 0.2, 2, 0.3]):
            model.b.weight[i] *= scale / model.b.weight[i].abs().sum()  # L1 = scale
    groups = channel_groups(model, SHAPE)
    plan = plan_channels(model, groups, {"a+b": 0.5})
    assert plan["b"]["out"] == [0, 2, 4, 6]  # b[:2] keeps filter 0, b[2:] filters 2, 4, 6


def test_a_link_to_the_input_stays_whole_and_says_why() -> None:
    groups = {g.name: g for g in channel_groups(FromInput(), SHAPE)}
    c = groups["c"]
    assert not c.prunable
    assert "grouped conv 'g'" in c.reason and "'input' cannot be cut" in c.reason
    assert not groups["input"].prunable and "input channels" in groups["input"].reason


def test_a_link_with_a_shuffled_part_stays_whole_every_part_saying_why() -> None:
    groups = {g.name: g for g in channel_groups(ShuffledPart(), SHAPE)}
    for name in ("c", "b"):
        assert not groups[name].prunable, name
        assert "'c' cannot be cut (shuffled into 3 groups" in groups[name].reason
