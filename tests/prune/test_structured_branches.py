"""Residual branches removed whole: a group whose every consumer is added to a skip
connection may lose all its channels; the slim model then computes the masked one's
outputs with the branch's layers gone (``Removed``), reloads from its plan, traces to
a graph without them, and ``allocate_channels(branches=k)`` removes k of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from torch.utils.data import DataLoader, TensorDataset

from cnnzip import codec
from cnnzip.cli import main
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.data import Split, StreamSplit
from cnnzip.errors import ModelError, RunError
from cnnzip.export import export_onnx
from cnnzip.models import get_model
from cnnzip.models.slim import Removed, apply_slim, record_input_shape, slim_plan_of
from cnnzip.profiling import profile
from cnnzip.prune import PruneError
from cnnzip.prune.structured import allocate as allocate_module
from cnnzip.prune.structured import channel_groups, mask_channels, plan_channels, slim
from cnnzip.prune.structured.allocate import allocate_channels
from cnnzip.prune.structured.latency import GroupSpeed
from cnnzip.runs import load_run, save_run
from cnnzip.train import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (3, 12, 12)
RESNET = {"in_chans": 1, "num_classes": 10, "img_size": 28, "width_mult": 0.25}


class Net(nn.Module):
    """stem -> a plain residual block (r1 -> r2, + x) -> a shuffled grouped block
    (g1 -> shuffle -> dw -> g2, + x) -> a block ending in a pool before its sum -> a
    concatenated block (c1, cat with x) -> a plain conv -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.r1, self.rb1 = nn.Conv2d(12, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.r2, self.rb2 = nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.g1, self.gb1 = nn.Conv2d(12, 18, 1, groups=3, bias=False), nn.BatchNorm2d(18)
        self.dw = nn.Conv2d(18, 18, 3, padding=1, groups=18, bias=False)
        self.g2, self.gb2 = nn.Conv2d(18, 12, 1, groups=3, bias=False), nn.BatchNorm2d(12)
        self.p1, self.p2 = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 12, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.c1 = nn.Conv2d(12, 4, 1)
        self.last = nn.Conv2d(16, 10, 3, stride=2)
        self.fc = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))  # (N, 12, 12, 12)
        x = torch.relu(x + self.rb2(self.r2(torch.relu(self.rb1(self.r1(x))))))
        y = torch.relu(self.gb1(self.g1(x)))  # (N, 18, H, W)
        n, c, h, w = y.shape
        y = y.view(n, 3, c // 3, h, w).transpose(1, 2).reshape(n, c, h, w)
        x = torch.relu(x + self.gb2(self.g2(self.dw(y))))
        x = x + self.pool(self.p2(self.p1(x)))  # pooled before the sum: not a branch
        x = torch.cat([x, self.c1(x)], 1)  # (N, 16, H, W)
        x = torch.relu(self.last(x))  # (N, 10, 5, 5)
        return self.fc(x.mean((2, 3)))


def _net() -> nn.Module:
    torch.manual_seed(0)
    model = Net()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics and shifts that show in the outputs
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.normal_()
    return model.eval()


def _plan(model: nn.Module) -> dict:
    groups = channel_groups(model, SHAPE)
    return plan_channels(model, groups, {"r1": 1.0, "g1": 1.0, "stem": 0.25})


def test_only_the_groups_inside_residual_branches_are_removable() -> None:
    groups = {g.name: g for g in channel_groups(_net(), SHAPE)}
    assert {n for n, g in groups.items() if g.removable} == {"r1", "g1"}
    assert groups["g1"].shuffle == 3 and groups["p1"].prunable  # p1: a pool before the sum


class InPlace(Net):
    """Net with torchvision's ``out += identity``: torch.fx records it as a sum, but run
    eagerly it writes into ``out``, which a removed branch's (1, C, 1, 1) cannot take."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        out = self.rb2(self.r2(torch.relu(self.rb1(self.r1(x)))))
        out += x
        return self.fc(torch.relu(self.last(torch.cat([out, self.c1(out)], 1))).mean((2, 3)))


def test_a_forward_summing_in_place_keeps_its_branches() -> None:
    groups = {g.name: g for g in channel_groups(InPlace().eval(), SHAPE)}
    assert groups["r1"].prunable and not groups["r1"].removable
    with pytest.raises(PruneError, match=r"from 0 to 0,.*out \+= x, has none"):
        allocate_channels(InPlace().eval(), SHAPE, macs=0.5, branches=1)


@pytest.mark.parametrize("train", [False, True])
def test_a_removed_branch_computes_the_masked_models_outputs(train: bool) -> None:
    model = _net()
    plan = _plan(model)
    assert plan["r1"]["out"] == [] and plan["dw"] == {"out": [], "in": []}
    small, masked = slim(model, plan, SHAPE), mask_channels(model, plan)
    for name in ("r1", "rb1", "r2", "g1", "gb1", "dw", "g2"):
        assert isinstance(small.get_submodule(name), Removed), name
    assert small.r2.bias is not None and small.g2.bias is None  # r2's bias is all it adds
    x = torch.randn(4, *SHAPE)
    small.train(train)
    masked.train(train)  # training: the BatchNorms after the branch see its constant
    torch.testing.assert_close(small(x), masked(x), rtol=1e-5, atol=1e-5)


def test_a_removed_branch_counts_by_hand() -> None:
    """r1's branch removed alone: r1 (8 x 12 x 3 x 3), rb1 (8 gamma, 8 beta) and r2's
    weights (12 x 8 x 3 x 3) go, r2's 12 biases stay; both convs' MACs go (12 x 12
    positions each)."""
    model = _net()
    plan = plan_channels(model, channel_groups(model, SHAPE), {"r1": 1.0})
    before, after = profile(model, SHAPE), profile(slim(model, plan, SHAPE), SHAPE)
    assert before.params - after.params == 8 * 12 * 9 + 8 + 8 + 12 * 8 * 9
    assert before.macs - after.macs == 2 * (12 * 8 * 9) * 12 * 12
    assert after.uncounted == [] and {"r1", "rb1", "r2"} <= {r.name for r in after.layers}


def test_a_second_slim_leaves_the_groups_at_removed_layers_whole() -> None:
    """In a slim model the groups a removed branch's constant is added to are refused by
    name (a second plan would have to cut the constant too); the removed layers' empty
    outputs are no group; the rest stay prunable and slim again."""
    model = _net()
    small = slim(model, _plan(model), SHAPE)
    groups = {g.name: g for g in channel_groups(small, SHAPE)}
    assert set(groups) == {"input", "stem", "p1", "c1", "last", "fc"}
    assert not groups["stem"].prunable
    assert groups["stem"].reason.count("removed branch's constant") == 2  # r2, g2
    assert groups["c1"].prunable and groups["p1"].prunable
    plan = plan_channels(small, list(groups.values()), {"p1": 0.5})
    again, want = slim(small, plan, SHAPE), mask_channels(small, plan)
    assert again.p1.out_channels == 2 and slim_plan_of(again)["r1"]["out"] == []
    x = torch.randn(2, *SHAPE)
    torch.testing.assert_close(again(x), want(x), rtol=1e-5, atol=1e-5)


def test_a_traced_slim_model_holds_no_removed_layer() -> None:
    """Tracing (TorchScript here, ONNX alike) in eval mode finds the removed branches'
    layers dead: 9 convs and a Linear of the original, 5 convs after (stem, p1, p2, c1,
    last)."""
    model = _net()
    small = slim(model, _plan(model), SHAPE)
    x = torch.randn(1, *SHAPE)
    with torch.no_grad():
        graph = torch.jit.freeze(torch.jit.trace(small, x)).graph
    kinds = [n.kind() for n in graph.nodes()]
    assert sum("conv" in k for k in kinds) == 5
    assert "aten::expand" not in kinds and "aten::new_zeros" not in kinds  # nothing reads x
    torch.testing.assert_close(small(x), mask_channels(model, _plan(model))(x))


def test_a_slim_model_without_branches_reloads_exactly(tmp_path: Path) -> None:
    model = _net()
    small = slim(model, _plan(model), SHAPE)
    codec.save(tmp_path / "s.cnnz", small, arch=None)
    loaded = codec.load(tmp_path / "s.cnnz", model=_net()).eval()
    assert slim_plan_of(loaded) == slim_plan_of(small)
    for (name, a), (other, b) in zip(
        small.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == other and torch.equal(a, b), name
    x = torch.randn(2, *SHAPE)  # same tensors; the loaded ones' strides may differ
    torch.testing.assert_close(small(x), loaded(x), rtol=1e-6, atol=1e-6)


def test_a_slim_model_without_branches_exports_to_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = _net()
    small = slim(model, _plan(model), SHAPE)
    onnx = pytest.importorskip("onnx")
    export_onnx(small, SHAPE, tmp_path / "s.onnx")  # checked against torch in onnxruntime
    ops = [n.op_type for n in onnx.load(str(tmp_path / "s.onnx")).graph.node]
    assert ops.count("Conv") == 5  # stem, p1, p2, c1, last: the branches' convs are gone


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (nn.Conv2d(4, 6, 3, stride=2, padding=1), (2, 4, 9, 7)),
        (nn.Conv2d(4, 6, 3, stride=1, padding=0, dilation=2), (1, 4, 9, 9)),
        (nn.Conv2d(4, 6, (1, 5), stride=(2, 1), padding=(0, 2)), (1, 4, 8, 8)),
        (nn.Conv2d(4, 6, 3, padding="same"), (1, 4, 5, 6)),
        (nn.Linear(4, 6), (3, 4)),
    ],
)
def test_removed_keeps_the_layers_output_shape(conv: nn.Module, shape: tuple[int, ...]) -> None:
    """What a removed layer returns has the shape torch's layer gives, zero channels
    wide, or its bias broadcast (train mode: every position; eval: one to broadcast)."""
    x = torch.randn(shape)
    want = conv(x).shape
    empty = Removed(conv, 0)(x[:, :0])
    assert empty.shape == (want[0], 0, *want[2:])
    constant = Removed(conv, 6, nn.Parameter(conv.bias.detach())).train()(x[:, :0])
    assert constant.shape == want
    assert torch.equal(constant.movedim(1, 0).reshape(6, -1)[:, 0], conv.bias)
    assert Removed(conv, 6).eval()(x[:, :0]).shape == (1, 6) + (1,) * (len(shape) - 2)


def test_allocate_removes_the_asked_branches_and_meets_the_target() -> None:
    model = _net()
    chosen = allocate_channels(model, SHAPE, macs=0.6, branches=1)
    removed = [g.name for g in chosen.groups if g.after == 0]
    assert len(removed) == 1 and removed[0] in {"r1", "g1"}
    assert chosen.macs[1] <= 0.6 * chosen.macs[0]
    with_both = allocate_channels(model, SHAPE, macs=1.0, branches=2)
    assert {g.name for g in with_both.groups if g.after == 0} == {"r1", "g1"}
    assert set(with_both.plan) == set(_branches_only(model))  # nothing else cut


def _branches_only(model: nn.Module) -> dict:
    return plan_channels(model, channel_groups(model, SHAPE), {"r1": 1.0, "g1": 1.0})


def test_allocate_ranks_branches_by_accuracy_with_data(toy_data) -> None:
    """With validation data the branches whose removal costs the least accuracy per MAC
    it saves go: checked against each branch zeroed alone, evaluated here."""
    torch.manual_seed(0)
    model = get_model("resnet18", **RESNET).eval()
    val = Split(toy_data.val.x[:64], toy_data.val.y[:64])  # what max_images=64 takes
    groups = channel_groups(model, (1, 28, 28))
    base, macs = evaluate(model, val)["accuracy"], profile(model, (1, 28, 28)).macs
    cost = {}
    for g in (g for g in groups if g.removable):
        plan = plan_channels(model, groups, {g.name: 1.0})
        saved = macs - profile(slim(model, plan, (1, 28, 28)), (1, 28, 28)).macs
        cost[g.name] = (base - evaluate(mask_channels(model, plan), val)["accuracy"]) / saved
    want = sorted(cost, key=lambda n: (cost[n], n))[:2]
    chosen = allocate_channels(model, (1, 28, 28), val, macs=0.9, branches=2, max_images=64)
    assert sorted(g.name for g in chosen.groups if g.after == 0) == sorted(want)
    assert chosen.macs[1] <= 0.9 * chosen.macs[0]


@pytest.mark.parametrize("bad", [3, -1, True, 1.5, "1"])
def test_impossible_branch_counts_are_refused(bad: object) -> None:
    with pytest.raises(PruneError, match=f"branches {bad!r} must be a whole number from 0 to 2"):
        allocate_channels(_net(), SHAPE, macs=0.5, branches=bad)


def test_prune_structured_branches_through_the_cli(tmp_path: Path) -> None:
    """``cnnzip prune RUN --structured --branches 2``: the run it writes reloads with two
    branches removed (load_run rebuilds the Removed layers from the plan)."""
    torch.manual_seed(0)
    save_run(tmp_path / "src", get_model("resnet18", **RESNET), arch="resnet18", kwargs=RESNET)
    args = ["prune", str(tmp_path / "src"), "--structured", "--macs", "0.8", "--branches",
            "2", "--uniform", "--epochs", "1", "--limit", "128", "--data", "synthetic",
            "-o", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    loaded = load_run(tmp_path / "out").model
    assert sum(isinstance(m, Removed) for m in loaded.modules()) == 2 * 3  # conv1, bn1, conv2


class Sums(nn.Module):
    """Three sums that are not a branch beside a skip: two conv paths added to each
    other, a path plus a scalar, and a path through an in-place ReLU added to x."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 3, padding=1)
        self.s1, self.s2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 3, padding=1)
        self.i1, self.i2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.a2(torch.relu(self.a1(x))) + self.b2(torch.relu(self.b1(x)))
        x = self.s2(torch.relu(self.s1(x))) + 0.5
        x = x + self.act(self.i2(torch.relu(self.i1(x))))
        return self.fc(x.mean((2, 3)))


def test_sums_without_a_full_skip_or_through_in_place_ops_are_not_branches() -> None:
    """Removed, each would leave a (1, C, 1, 1) constant where the sum needs a full
    tensor, or an in-place ReLU writing into the removed layer's bias."""
    groups = {g.name: g for g in channel_groups(Sums().eval(), SHAPE)}
    assert all(groups[n].prunable for n in ("a1", "b1", "s1", "i1"))
    assert not any(g.removable for g in groups.values())


def test_a_bottleneck_branch_takes_its_unread_reduction_with_it() -> None:
    """ResNet-50: removing a block's 3x3 channels leaves its 1x1 reduction read by no
    one: it goes too (conv1, its norm), instead of running and being stored."""
    torch.manual_seed(0)
    model = get_model("resnet50", **RESNET).eval()
    groups = channel_groups(model, (1, 28, 28))
    plan = plan_channels(model, groups, {"layer2.1.conv2.conv": 1.0})
    small = slim(model, plan, (1, 28, 28))
    for name in ("conv1.conv", "conv1.norm", "conv2.conv", "conv2.norm", "conv3.conv"):
        assert isinstance(small.get_submodule(f"layer2.1.{name}"), Removed), name
    block = model.layer2[1]
    saved = sum(p.numel() for m in (block.conv1, block.conv2) for p in m.parameters())
    saved += block.conv3.conv.weight.numel()
    assert profile(model, (1, 28, 28)).params - profile(small, (1, 28, 28)).params == saved
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(small(x), mask_channels(model, plan)(x), rtol=1e-5, atol=1e-5)


def test_removed_layers_take_the_models_mode() -> None:
    model = _net()
    assert not any(m.training for m in slim(model.eval(), _plan(model), SHAPE).modules())
    assert all(m.training for m in slim(model.train(), _plan(model), SHAPE).modules())
    with pytest.raises(PruneError, match=r"removes layers whole .* pass the input shape"):
        slim(model, _plan(model))  # unchecked, and its .cnnz could not be loaded


LENET = (1, 28, 28)
BAD = {"fc1": {"in": []}}  # LeNet-5's fc1 made a constant: no skip to broadcast it


def test_a_plan_emptying_a_layer_outside_a_branch_is_refused(tmp_path: Path) -> None:
    """A plan from a file (or a hand-made one) may empty any layer: the slim model must
    compute the masked one's outputs, checked with the weights, or one clear error."""
    match = "empties layers outside a residual branch"
    with pytest.raises(ModelError, match=match):
        slim(get_model("lenet5"), BAD, LENET)
    bad = record_input_shape(apply_slim(get_model("lenet5"), BAD), LENET)
    codec.save(tmp_path / "bad.cnnz", bad, arch={"name": "lenet5", "kwargs": {}})
    with pytest.raises(CnnzFormatError, match=match):
        codec.load(tmp_path / "bad.cnnz")
    mine = get_model("lenet5")
    with pytest.raises(CnnzFormatError, match=match):
        codec.load(tmp_path / "bad.cnnz", model=mine)
    assert isinstance(mine.fc1, nn.Linear) and slim_plan_of(mine) is None  # left uncut
    save_run(tmp_path / "run", bad, arch="lenet5", kwargs={})
    with pytest.raises(RunError, match=match):
        load_run(tmp_path / "run")
    unchecked = apply_slim(get_model("lenet5"), BAD)  # no input shape recorded
    codec.save(tmp_path / "shapeless.cnnz", unchecked, arch={"name": "lenet5", "kwargs": {}})
    with pytest.raises(CnnzFormatError, match="needs the input shape"):
        codec.load(tmp_path / "shapeless.cnnz")


def _constant(model: nn.Module, name: str, value: float) -> None:
    with torch.no_grad():
        for conv in name.split():
            model.get_submodule(conv).weight.fill_(value)


def test_without_data_branches_go_by_importance_per_weight_per_mac() -> None:
    """r1's filters 0.03 each (108 weights a channel, 248,832 MACs saved), g1's and dw's
    0.02 (4 + 9 weights, 44,064 MACs): per weight per MAC r1 loses least (1.2e-7 against
    4.5e-7), though its raw L1 norms per MAC (1.3e-5) exceed g1's (5.9e-6)."""
    model = _net()
    _constant(model, "r1", 0.03)
    _constant(model, "g1 dw", 0.02)
    chosen = allocate_channels(model, SHAPE, macs=1.0, branches=1)
    assert [g.name for g in chosen.groups if g.after == 0] == ["r1"]


def test_by_latency_branches_go_by_importance_per_millisecond(monkeypatch) -> None:
    """With a latency table, what a branch saves is its measured time: g1 said to save
    100 ms, r1 0.001 ms, g1 goes (by MACs r1 would, as above)."""
    model = _net()
    _constant(model, "r1", 0.03)
    _constant(model, "g1 dw", 0.02)
    table = {"r1": 0.001, "g1": 100.0}

    def fake_table(model, groups, *args, **kwargs):
        return {g.name: GroupSpeed(g.name, table.get(g.name, 1.0), 1000) for g in groups}

    monkeypatch.setattr(allocate_module, "latency_table", fake_table)
    chosen = allocate_channels(model, SHAPE, macs=1.0, branches=1, by_latency=True)
    assert [g.name for g in chosen.groups if g.after == 0] == ["g1"]


class Padded(nn.Module):
    """c1 -> c2 (3x3, zero padding) -> + x: emptying c1's inputs leaves c2 a constant
    input whose padded borders differ from its inside; same shapes, other values."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(self.c1(x))


def test_check_removed_compares_values_and_refuses_empty_outputs() -> None:
    model = Padded().eval()
    with pytest.raises(ModelError, match="outputs differ"):
        slim(model, {"c1": {"in": []}}, SHAPE)  # constant through a padded conv
    with pytest.raises(ModelError, match="or are empty"):
        slim(_net(), {"fc": {"out": []}}, SHAPE)  # (N, 0) logits


def test_a_branch_beside_a_smaller_operand_or_batch_statistics_is_not_removable() -> None:
    """x.mean((2, 3), keepdim=True) + branch: no full-size skip; and a BatchNorm without
    running statistics normalises a constant to zero by its batch."""

    class Small(Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn0(self.stem(x)))
            x = x.mean((2, 3), keepdim=True) + self.rb2(self.r2(torch.relu(self.rb1(self.r1(x)))))
            return self.fc(self.last(torch.cat([x, self.c1(x)], 1)).mean((2, 3)))

    assert not channel_groups(Small().eval(), SHAPE)[1].removable
    model = Net()
    model.rb2 = nn.BatchNorm2d(12, track_running_stats=False)
    groups = {g.name: g for g in channel_groups(model.eval(), SHAPE)}
    assert not groups["r1"].removable and groups["g1"].removable


def test_branches_ranked_on_the_users_own_dataloader(toy_data) -> None:
    """A validation DataLoader of the user's own (a stream, never held in memory) ranks
    the branches as the same images in memory do."""
    torch.manual_seed(0)
    model = get_model("resnet18", **RESNET).eval()
    x, y = toy_data.val.x[:64], toy_data.val.y[:64]
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    streamed = allocate_channels(model, (1, 28, 28), StreamSplit(loader), macs=0.9, branches=2)
    in_memory = allocate_channels(model, (1, 28, 28), Split(x, y), macs=0.9, branches=2)
    assert streamed.plan == in_memory.plan
    assert sum(g.after == 0 for g in streamed.groups) == 2
