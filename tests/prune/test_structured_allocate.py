"""allocate_channels: the plan reaches a MAC/parameter target within one channel step
(checked against LeNet-5's costs computed by hand), a latency target is met by
measuring (a fake timer), and impossible targets are refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from cnnzip.data import Dataset
from cnnzip.models import get_model
from cnnzip.models.slim import SlimPlan
from cnnzip.profiling import profile
from cnnzip.prune import PruneError, one_shot
from cnnzip.prune.structured import allocate as allocate_module
from cnnzip.prune.structured import channel_groups, plan_channels, slim
from cnnzip.prune.structured.allocate import (
    LATENCY_TRIES,
    Allocation,
    _curve,
    _group_costs,
    allocate_channels,
    check_target,
)
from cnnzip.train import TrainConfig, evaluate, fit

SHAPE = (1, 28, 28)
FULL = {"conv1": 20, "conv2": 50, "fc1": 500}  # LeNet-5's prunable widths


def lenet_macs(a: int, b: int, c: int) -> int:
    """LeNet-5 at 28x28 with a, b, c channels left in conv1, conv2, fc1, by hand:
    conv1 24*24 positions x 25 taps x a; conv2 8*8 x 25 x a x b; fc1 (b*4*4) x c; fc2 c x 10."""
    return 24 * 24 * 25 * a + 8 * 8 * 25 * a * b + 16 * b * c + 10 * c


def lenet_params(a: int, b: int, c: int) -> int:
    """Weights and biases of the same: 25a + a, 25ab + b, 16bc + c, 10c + 10."""
    return 26 * a + 25 * a * b + b + 16 * b * c + c + 10 * c + 10


def kept(plan: SlimPlan) -> tuple[int, int, int]:
    """Channels conv1, conv2 and fc1 keep under ``plan`` (absent: all)."""
    out = {m: len(plan[m]["out"]) if "out" in plan.get(m, {}) else n for m, n in FULL.items()}
    return out["conv1"], out["conv2"], out["fc1"]


def one_more(widths: tuple[int, int, int]) -> tuple[int, int, int]:
    """Every pruned layer given one channel back: the next coarser channel step."""
    return tuple(w + (w < f) for w, f in zip(widths, FULL.values(), strict=True))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return get_model("lenet5").eval()


def test_hand_counts_match_the_profiler(lenet: nn.Module) -> None:
    """The references below are LeNet-5's own: 2,293,000 MACs and 431,080 parameters."""
    report = profile(lenet, SHAPE)
    assert (report.macs, report.params) == (lenet_macs(20, 50, 500), lenet_params(20, 50, 500))
    assert report.params == 431_080


@pytest.mark.parametrize(("target", "count"), [("macs", lenet_macs), ("params", lenet_params)])
@pytest.mark.parametrize("value", [0.5, 0.3])
def test_uniform_target_within_one_channel_step(
    lenet: nn.Module, target: str, count: object, value: float
) -> None:
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    chosen = allocate_channels(lenet, SHAPE, **{target: value})
    widths = kept(chosen.plan)
    base = count(20, 50, 500)  # type: ignore[operator]
    assert count(*widths) / base <= value  # type: ignore[operator]
    assert count(*one_more(widths)) / base > value  # type: ignore[operator]
    small = slim(lenet, chosen.plan)
    report = profile(small, SHAPE)
    assert (report.macs, report.params) == (lenet_macs(*widths), lenet_params(*widths))
    assert chosen.macs == (lenet_macs(20, 50, 500), lenet_macs(*widths))
    assert chosen.params == (lenet_params(20, 50, 500), lenet_params(*widths))
    assert sorted((g.before, g.after) for g in chosen.groups) == sorted(
        zip(FULL.values(), widths, strict=True)
    )
    assert all(torch.equal(before[k], v) for k, v in lenet.state_dict().items())  # untouched


def test_the_classifier_is_reported_whole(lenet: nn.Module) -> None:
    chosen = allocate_channels(lenet, SHAPE, macs=0.5)
    assert "fc2" not in chosen.plan or "out" not in chosen.plan["fc2"]
    assert chosen.skipped and all(reason for _, reason in chosen.skipped)
    text = chosen.table()
    assert "left whole" in text and "MACs 2,293,000 ->" in text


def test_keeping_everything_is_the_empty_plan(lenet: nn.Module) -> None:
    chosen = allocate_channels(lenet, SHAPE, params=1.0)
    assert chosen.plan == {} and chosen.params == (431_080, 431_080)


def test_a_target_below_the_last_channels_is_refused(lenet: nn.Module) -> None:
    floor = lenet_macs(1, 1, 1) / lenet_macs(20, 50, 500)  # every group down to one channel
    with pytest.raises(PruneError, match="out of reach"):
        allocate_channels(lenet, SHAPE, macs=floor / 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one target"),
        ({"macs": 0.5, "params": 0.5}, "exactly one target"),
        ({"macs": 0.0}, r"\(0, 1\]"),
        ({"params": 1.5}, r"\(0, 1\]"),
        ({"macs": math.nan}, "finite"),
        ({"latency_ms": -1.0}, "positive"),
        ({"latency_ms": math.inf}, "finite"),
        ({"macs": 0.5, "importance": "l3"}, "l1, l2, bn"),
    ],
)
def test_bad_targets_are_refused(kwargs: dict[str, object], match: str) -> None:
    args = {"macs": None, "params": None, "latency_ms": None, "importance": "l1", **kwargs}
    with pytest.raises(PruneError, match=match):
        check_target(**args)  # type: ignore[arg-type]


def macs_timer(overhead_ms: float = 0.0) -> object:
    """A fake batch-1 timer: 1 ms per 100k MACs (plus a fixed overhead), no clock."""
    return lambda model: overhead_ms + profile(model, SHAPE).macs / 1e5


def test_latency_target_met_by_measuring(lenet: nn.Module) -> None:
    base = lenet_macs(20, 50, 500) / 1e5  # 22.93 "ms"
    chosen = allocate_channels(lenet, SHAPE, latency_ms=base / 2, timer=macs_timer())
    assert isinstance(chosen, Allocation) and chosen.met
    assert chosen.latency_ms is not None and chosen.latency_ms[0] == pytest.approx(base)
    assert chosen.latency_ms[1] <= base / 2
    assert chosen.latency_ms[1] == pytest.approx(lenet_macs(*kept(chosen.plan)) / 1e5)
    assert 1 <= len(chosen.tries) <= LATENCY_TRIES


def test_latency_out_of_reach_keeps_the_fastest_and_says_so(lenet: nn.Module) -> None:
    """A fixed 20 ms overhead no pruning removes: every try fails, the fastest is kept."""
    chosen = allocate_channels(lenet, SHAPE, latency_ms=10.0, timer=macs_timer(20.0))
    assert not chosen.met
    assert len(chosen.tries) == LATENCY_TRIES
    assert f"target 10 ms NOT met after {LATENCY_TRIES} tries" in chosen.table()
    assert chosen.latency_ms is not None
    assert chosen.latency_ms[1] == min(t["latency_ms"] for t in chosen.tries)


@pytest.fixture(scope="module")
def trained_lenet(toy_data: Dataset) -> nn.Module:
    """LeNet-5 after one epoch on toy_data: curves that differ between groups."""
    torch.manual_seed(0)
    model = get_model("lenet5")
    fit(model, toy_data, TrainConfig(epochs=1, batch_size=64), progress=False)
    return model


@pytest.mark.parametrize(("target", "count"), [("macs", lenet_macs), ("params", lenet_params)])
def test_sensitivity_allocation_reaches_the_target(
    trained_lenet: nn.Module, toy_data: Dataset, target: str, count: object
) -> None:
    """With validation data the ratios follow each group's curve; the count is still exact."""
    chosen = allocate_channels(trained_lenet, SHAPE, toy_data.val, max_images=64, **{target: 0.5})
    widths = kept(chosen.plan)
    assert count(*widths) / count(20, 50, 500) <= 0.5  # type: ignore[operator]
    assert (chosen.macs[1], chosen.params[1]) == (lenet_macs(*widths), lenet_params(*widths))
    assert all(0.0 <= g.ratio < 1.0 for g in chosen.groups)


def test_a_group_curve_is_measured_on_the_masked_model(toy_data: Dataset) -> None:
    """fc1's last 250 units made dead (tiny filters, no way to fc2): zeroing up to half of
    fc1's channels, the least important by L1 first, changes no output, so the curve is
    exactly flat there; its weight is the MACs of the layers the group touches."""
    torch.manual_seed(0)
    model = get_model("lenet5")
    fit(model, toy_data, TrainConfig(epochs=1, batch_size=64), progress=False)
    with torch.no_grad():
        model.fc1.weight[250:] *= 1e-3
        model.fc1.bias[250:] = 0
        model.fc2.weight[:, 250:] = 0
    (fc1,) = [g for g in channel_groups(model, SHAPE) if g.name == "fc1"]
    curve = _curve(model, fc1, toy_data.val, "l1", 16 * 50 * 500 + 500 * 10)
    flat = [a for r, a in zip(curve.ratios, curve.accuracy, strict=True) if r <= 0.5]
    assert len(flat) >= 3 and all(a == flat[0] for a in flat)
    assert flat[0] == evaluate(model, toy_data.val)["accuracy"]
    assert curve.weights == 405_000
    costs = _group_costs(model, [fc1], SHAPE, "macs")
    assert costs == {"fc1": 16 * 50 * 500 + 500 * 10}


def test_round_to_keeps_widths_in_whole_steps(lenet: nn.Module) -> None:
    """round_to=4: every pruned width a multiple of 4, the target met, and one more step
    of 4 in every pruned layer would miss it."""
    chosen = allocate_channels(lenet, SHAPE, macs=0.5, round_to=4)
    widths = kept(chosen.plan)
    pruned = [(w, f) for w, f in zip(widths, FULL.values(), strict=True) if w < f]
    assert pruned and all(w % 4 == 0 for w, _ in pruned)
    base = lenet_macs(20, 50, 500)
    assert lenet_macs(*widths) / base <= 0.5
    wider = tuple(w + 4 * (w < f) for w, f in zip(widths, FULL.values(), strict=True))
    assert lenet_macs(*wider) / base > 0.5


SHUFFLE_SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def shufflenet_half() -> tuple[nn.Module, Allocation]:
    """ShuffleNet v1 g=3 at 32x32 and its plan for half the MACs (~10 s: made once)."""
    torch.manual_seed(0)
    model = get_model("shufflenet_v1", groups=3, img_size=32, num_classes=10).eval()
    return model, allocate_channels(model, SHUFFLE_SHAPE, macs=0.5)


def test_grouped_shuffled_groups_report_their_real_widths(
    shufflenet_half: tuple[nn.Module, Allocation],
) -> None:
    """ShuffleNet v1 g=3: each group's reported width is its first conv's out_channels in
    the slim model (shuffled, grouped members counted at their positions); the linked
    stage widths', the sum of its parts' producers'."""
    model, chosen = shufflenet_half
    small = slim(model, chosen.plan)
    assert profile(small, SHUFFLE_SHAPE).macs == chosen.macs[1] <= chosen.macs[0] / 2
    assert any(g.after < g.before for g in chosen.groups)
    linked = [g for g in chosen.groups if "+" in g.name]
    assert len(linked) == 1 and linked[0].after < linked[0].before
    for group in chosen.groups:
        parts = group.name.split("+")
        assert sum(small.get_submodule(n).out_channels for n in parts) == group.after, group


def test_a_linked_groups_jump_is_given_back_by_the_others(
    shufflenet_half: tuple[nn.Module, Allocation], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ShuffleNet v1 g=3: the linked stage widths move an eighth at a time, so the knob's
    last step overshoots half the MACs; the other groups, bisected again with the link
    held, give some of it back: closer to the target, never past it."""
    model, refined = shufflenet_half
    monkeypatch.setattr(
        allocate_module._Planner, "refine", lambda self, lo, hi, plan, *a: ({}, plan)
    )
    monkeypatch.setattr(allocate_module._Planner, "give_back", lambda self, r, plan, *a: plan)
    plain = allocate_channels(model, SHUFFLE_SHAPE, macs=0.5)
    link = [g for g in refined.groups if "+" in g.name]
    assert link == [g for g in plain.groups if "+" in g.name]  # the same eighths kept
    assert (link[0].before - link[0].after) % (link[0].before // 8) == 0
    assert plain.macs[1] < refined.macs[1] <= 0.5 * refined.macs[0]


def test_a_model_with_weight_transforms_is_refused() -> None:
    """A masked (unstructured-pruned) model: structured pruning comes first, said so."""
    model = get_model("lenet5")
    one_shot(model, {"conv2.weight": 0.5, "fc1.weight": 0.8})
    with pytest.raises(PruneError, match=r"conv2.weight, fc1.weight carry weight transforms"):
        allocate_channels(model, SHAPE, macs=0.5)


def test_torchs_own_parametrizations_are_named_as_such() -> None:
    """The user's weight_norm is not a cnnzip stage: the error says what it is and how to
    take it off, not "slim the dense model first"."""
    model = get_model("lenet5")
    nn.utils.parametrizations.weight_norm(model.conv2)
    with pytest.raises(PruneError, match=r"conv2.weight carries torch parametrizations"):
        allocate_channels(model, SHAPE, macs=0.5)


class _DepthwiseResidual(nn.Module):
    """stem (3 -> 16) + BN, a depthwise-separable residual block on its 16 channels,
    conv2 (16 -> 32, stride 2) + BN, pool, fc: the stem's group is 16 channels that cost
    far more MACs apiece than conv2's 32."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.pw = nn.Conv2d(16, 16, 1, bias=False)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn2, self.fc = nn.BatchNorm2d(32), nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))  # (N, 16, H, W)
        x = torch.relu(x + self.pw(torch.relu(self.dw(x))))
        x = torch.relu(self.bn2(self.conv2(x)))  # (N, 32, H/2, W/2)
        return self.fc(x.mean((2, 3)))  # (N, 5)


@pytest.mark.parametrize("round_to", [4, 8])
def test_round_to_steps_are_given_back_up_to_the_target(round_to: int) -> None:
    """At the knob's last step the stem falls 12 -> 8 and conv2 with it (20 or 24 of 32):
    0.36-0.40 of the MACs for a 0.5 target. conv2's steps are given back while the target
    holds, to all 32; the stem's one step back (to 12) would miss it."""
    shape = (3, 16, 16)
    model = _DepthwiseResidual().eval()
    chosen = allocate_channels(model, shape, macs=0.5, round_to=round_to)
    assert {g.name: g.after for g in chosen.groups if g.name in ("stem", "conv2")} == {
        "stem": 8,
        "conv2": 32,
    }
    assert chosen.macs[1] <= 0.5 * chosen.macs[0]
    groups = channel_groups(model, shape)
    wider = plan_channels(model, groups, {"stem": 1 - 12 / 16}, round_to=round_to)
    assert profile(slim(model, wider), shape).macs > 0.5 * chosen.macs[0]
