"""Latency-aware channel allocation: the per-group latency table (MACs saved counted by
hand on LeNet-5, the layers timed on the inputs they really get, channels-last kept) and
the allocation that cuts more where a table says time falls more per MAC, at the same
MAC budget."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from cnnzip.data import Dataset, Split
from cnnzip.models import get_model
from cnnzip.profiling import profile
from cnnzip.prune import PruneError
from cnnzip.prune.structured import allocate as allocate_module
from cnnzip.prune.structured import channel_groups
from cnnzip.prune.structured import latency as latency_module
from cnnzip.prune.structured.allocate import POWER_SPAN, _powers, allocate_channels
from cnnzip.prune.structured.latency import (
    TABLE_RATIO,
    GroupSpeed,
    _layer_inputs,
    latency_table,
)
from cnnzip.recipes import load_recipe
from cnnzip.recipes.stages import StageRun, run_channels

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 28, 28)


def lenet_macs(a: int, b: int, c: int) -> int:
    """LeNet-5's MACs with a, b, c channels in conv1, conv2, fc1 (test_structured_allocate)."""
    return 24 * 24 * 25 * a + 8 * 8 * 25 * a * b + 16 * b * c + 10 * c


@pytest.fixture(scope="module")
def lenet() -> nn.Module:
    torch.manual_seed(0)
    return get_model("lenet5").eval()


def test_table_counts_each_group_cut_alone_by_hand(lenet: nn.Module) -> None:
    before = {k: v.clone() for k, v in lenet.state_dict().items()}
    table = latency_table(lenet, channel_groups(lenet, SHAPE), SHAPE, runs=2)
    base = lenet_macs(20, 50, 500)
    assert TABLE_RATIO == 0.5
    assert {n: v.macs_saved for n, v in table.items()} == {
        "conv1": base - lenet_macs(10, 50, 500),
        "conv2": base - lenet_macs(20, 25, 500),
        "fc1": base - lenet_macs(20, 50, 250),
    }
    assert all(v.ms_saved == v.ms_saved and abs(v.ms_saved) < 1e3 for v in table.values())
    assert all(torch.equal(v, before[k]) for k, v in lenet.state_dict().items())


def test_table_refuses_no_runs(lenet: nn.Module) -> None:
    with pytest.raises(PruneError, match="runs must be >= 1"):
        latency_table(lenet, channel_groups(lenet, SHAPE), SHAPE, runs=0)


def test_layers_are_timed_on_the_inputs_they_get_channels_last() -> None:
    """Each member layer gets the tensor the model hands it: its shape, and channels-last
    in a channels-last model (a fresh NCHW input would time a layout conversion)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 1))
    model = model.eval().to(memory_format=torch.channels_last)
    seen = _layer_inputs(model, {"1", "3"}, (3, 10, 10))
    assert seen["1"][0].shape == seen["3"][0].shape == (1, 16, 8, 8)
    assert seen["3"][0].is_contiguous(memory_format=torch.channels_last)
    assert not seen["3"][0].is_contiguous()
    table = latency_table(model, channel_groups(model, (3, 10, 10)), (3, 10, 10), runs=2)
    full = profile(model, (3, 10, 10)).macs
    assert table["0"].macs_saved == full - (8 * 8 * 27 * 8 + 8 * 8 * 8 * 8)  # 16 -> 8 channels


def test_the_table_times_the_modules_channels_flow_through(
    lenet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's pooling and activation modules shrink with it (LeNet-5's conv1 channels
    flow through pool1 and act1): the table times them beside the cut layers."""
    groups = {g.name: g for g in channel_groups(lenet, SHAPE)}
    assert groups["conv1"].passes == ("pool1", "act1")
    assert groups["conv2"].passes == ("pool2", "act2")
    timed: list[set[str]] = []
    monkeypatch.setattr(
        latency_module, "_members_ms", lambda m, names, *a: timed.append(names) or 0.0
    )
    latency_table(lenet, [groups["conv1"]], SHAPE, runs=1)
    assert timed == [{"conv1", "pool1", "act1", "conv2"}] * 2  # full, then cut


class SharedRelu(nn.Module):
    """conv1 -> relu -> conv2 -> relu -> pool: one ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 4, 3)
        self.relu, self.pool = nn.ReLU(), nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv2(self.relu(self.conv1(x))))).flatten(1)


def test_a_module_called_twice_is_no_groups_pass() -> None:
    """The shared ReLU carries conv1's channels in one call and conv2's in the other:
    timing its first call would credit conv1's group with both, so neither lists it."""
    groups = {g.name: g for g in channel_groups(SharedRelu(), SHAPE)}
    assert groups["conv1"].passes == ()
    assert groups["conv2"].passes == ("pool",)


def speeds(rates: dict[str, float]) -> dict[str, GroupSpeed]:
    """A table whose ms per million MACs saved are ``rates`` (1 MMAC saved each)."""
    return {n: GroupSpeed(n, r, 1_000_000) for n, r in rates.items()}


def test_powers_follow_the_median_rate_within_the_span() -> None:
    got = _powers(speeds({"a": 1.0, "b": 2.0, "c": 4.0, "d": 100.0, "e": 0.0}))
    assert got == pytest.approx(
        {"a": 2.0, "b": 1.0, "c": 0.5, "d": 1 / POWER_SPAN, "e": POWER_SPAN}
    )
    assert _powers(speeds({"a": 0.0, "b": -1.0})) == {"a": 1.0, "b": 1.0}  # nothing: uniform
    assert GroupSpeed("narrow", 0.3, 0).ms_per_mmac == 0.0  # noise, no MAC saved
    assert GroupSpeed("g", 0.3, 2_000_000).ms_per_mmac == pytest.approx(0.15)


def fake_table(rates: dict[str, float]) -> object:
    return lambda *args, **kwargs: speeds(rates)


@pytest.mark.parametrize("fast", ["conv1", "fc1"])
def test_by_latency_cuts_the_faster_group_more_at_the_same_budget(
    lenet: nn.Module, monkeypatch: pytest.MonkeyPatch, fast: str
) -> None:
    rates = {"conv1": 1.0, "conv2": 1.0, "fc1": 1.0, fast: 8.0}
    monkeypatch.setattr(allocate_module, "latency_table", fake_table(rates))
    uniform = allocate_channels(lenet, SHAPE, macs=0.5)
    skewed = allocate_channels(lenet, SHAPE, macs=0.5, by_latency=True)
    assert skewed.macs[1] <= 0.5 * skewed.macs[0]
    assert skewed.ratios[fast] > uniform.ratios[fast]
    others = [n for n in rates if n != fast]
    assert all(skewed.ratios[fast] > skewed.ratios[n] for n in others)


def test_by_latency_with_data_weighs_groups_by_time(
    lenet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sensitivity curves the groups weigh the time they save, not their MACs: a
    group saving no time (weight 1 ns) is left whole, the target still met."""
    table = {"conv1": GroupSpeed("conv1", 0.0, 10), "conv2": GroupSpeed("conv2", 5.0, 10),
             "fc1": GroupSpeed("fc1", 5.0, 10)}  # fmt: skip
    monkeypatch.setattr(allocate_module, "latency_table", lambda *a, **k: table)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(64, *SHAPE, generator=g), torch.randint(0, 10, (64,), generator=g))
    data = Dataset("synthetic", split, split, split, 10)
    chosen = allocate_channels(lenet, SHAPE, data.val, macs=0.6, by_latency=True)
    assert chosen.macs[1] <= 0.6 * chosen.macs[0]
    assert chosen.ratios["conv1"] == 0.0 < min(chosen.ratios["conv2"], chosen.ratios["fc1"])


def test_a_channels_stage_with_by_latency_follows_the_table(
    lenet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``by_latency: true`` in a recipe's channels stage reaches the table as the API's
    flag does: at the same MAC target fc1, where time falls most per MAC, loses most;
    without it the uniform plan cuts every group alike (to whole channels)."""
    monkeypatch.setattr(
        allocate_module, "latency_table", fake_table({"conv1": 1.0, "conv2": 1.0, "fc1": 8.0})
    )
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(16, *SHAPE, generator=g), torch.randint(0, 10, (16,), generator=g))
    run = StageRun(Dataset("synthetic", split, split, split, 10), log=lambda line: None)
    ratios = {}
    for flag in (False, True):
        model = copy.deepcopy(lenet)
        options = {"sensitivity": False, "epochs": 0, "by_latency": flag}
        recipe = load_recipe(
            "slim-deep-compression", {f"channels.{k}": v for k, v in options.items()}
        )
        done = run_channels(model, recipe.stage("channels"), run)
        ratios[flag] = {group["name"]: group["ratio"] for group in done["groups"]}
    assert max(ratios[False].values()) - min(ratios[False].values()) < 0.05  # whole channels
    assert ratios[True]["fc1"] > max(ratios[True]["conv1"], ratios[True]["conv2"])
