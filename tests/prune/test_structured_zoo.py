"""Structured pruning of every zoo architecture at a small input: 40% of the channels of
every prunable group removed, the slim model equals the masked full-width one, its counts
are those of its tensors (and of the zoo's own narrower MobileNet), and run directories
and .cnnz files rebuild it exactly from the zoo name.

Tolerance: BatchNorm in eval mode, float32; the slim and masked models sum the same
products in a different order, so outputs agree to 1e-5 of the output's scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnzip import codec, profile
from cnnzip.binary import convert
from cnnzip.models import get_model
from cnnzip.models.slim import axis_sizes, slim_plan_of
from cnnzip.prune.structured import channel_groups, mask_channels, plan_channels, slim
from cnnzip.runs import load_run, save_run

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
SMALL = {"img_size": SIZE, "num_classes": 10}
ZOO = [
    ("alexnet", {**SMALL, "width_mult": 0.25}),
    pytest.param("vgg16", SMALL, marks=pytest.mark.slow),  # 134M params at any size: 9 s
    ("googlenet", SMALL),
    ("resnet18", SMALL),
    ("resnet50", SMALL),
    ("squeezenet1_0", SMALL),
    ("squeezenet1_1", SMALL),
    ("squeezenet1_1", {**SMALL, "bypass": "complex"}),  # sums of concatenations
    ("mobilenet_v1", {**SMALL, "width_mult": 0.25}),
    ("shufflenet_v1", {**SMALL, "groups": 1, "scale": 0.25}),
    ("shufflenet_v1", {**SMALL, "groups": 3, "scale": 0.5}),
    ("shufflenet_v1", {**SMALL, "groups": 8, "scale": 0.5}),
]
ZOO_IDS = [
    case.values[0]
    if hasattr(case, "values")
    else f"{case[0]}{case[1].get('groups', '')}{case[1].get('bypass', '')}"
    for case in ZOO
]
RATIO = 0.4


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine terms (fresh ones are 0/1): a removed
    channel's shift must really be gone in both models for the comparison to mean much."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def _pruned(name: str, kwargs: dict) -> tuple[nn.Module, nn.Module, list]:
    torch.manual_seed(0)
    model = get_model(name, **kwargs).eval()
    _randomize_bn(model)
    groups = channel_groups(model, (3, SIZE, SIZE))
    ratios = {g.name: RATIO for g in groups if g.prunable}
    return model, slim(model, plan_channels(model, groups, ratios)), groups


def _shape_counts(model: nn.Module) -> tuple[int, int]:
    """(params, MACs) from the slim tensors' shapes alone: a conv's MACs are its weight's
    elements times its output positions, a Linear's its weight's elements."""
    positions: dict[nn.Module, int] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o: positions.__setitem__(m, math.prod(o.shape[2:])))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE))
    for h in hooks:
        h.remove()
    macs = sum(m.weight.numel() * positions[m] for m in positions)
    macs += sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return sum(p.numel() for p in model.parameters()), macs


@pytest.mark.parametrize(("name", "kwargs"), ZOO, ids=ZOO_IDS)
def test_slim_zoo_model_equals_masked_and_counts(name: str, kwargs: dict) -> None:
    model, small, groups = _pruned(name, kwargs)
    prunable = [g for g in groups if g.prunable]
    assert prunable, f"{name}: nothing prunable"
    ref = mask_channels(model, slim_plan_of(small))
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        want, got, full = ref(x), small(x), model(x)
    assert got.shape == want.shape == (2, 10)
    scale = want.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(got, want, atol=1e-5 * scale, rtol=0)
    assert not torch.allclose(want, full, atol=1e-5 * scale)  # the pruning did something
    params, macs = _shape_counts(small)
    report = profile(small, (3, SIZE, SIZE))
    assert (report.params, report.macs) == (params, macs)
    full = profile(model, (3, SIZE, SIZE))
    assert report.params < full.params and report.macs < full.macs
    removed: dict[tuple[str, str], int] = {}  # each group loses round(0.4 size) everywhere
    for g in (g for g in prunable if g.shuffle == 1 and not any(m.block for m in g.members)):
        for m in g.members:
            key = (m.module, m.axis)
            removed[key] = removed.get(key, 0) + round(RATIO * g.size) * m.repeat
    for (module, axis), n in removed.items():
        full = axis_sizes(model.get_submodule(module), module)[axis]
        assert axis_sizes(small.get_submodule(module), module)[axis] == full - n, module


def test_classifier_and_input_are_never_pruned() -> None:
    _, small, groups = _pruned("resnet18", SMALL)
    fc = next(g for g in groups if any(m.module == "fc" and m.axis == "out" for m in g.members))
    assert not fc.prunable and "output" in fc.reason
    assert small.fc.out_features == 10 and small.stem.conv.in_channels == 3


@pytest.mark.parametrize("name", ["mobilenet_v1", "alexnet"])
def test_slim_counts_equal_the_zoo_narrower_model(name: str) -> None:
    """Half of every group of width 0.25 is exactly the zoo's width 0.125 (every width
    there is even: MobileNet 8..256 -> 4..128, AlexNet 16..1024 -> 8..512)."""
    torch.manual_seed(0)
    model = get_model(name, **SMALL, width_mult=0.25).eval()
    groups = channel_groups(model, (3, SIZE, SIZE))
    small = slim(model, plan_channels(model, groups, {g.name: 0.5 for g in groups if g.prunable}))
    narrow = get_model(name, **SMALL, width_mult=0.125)
    got, want = profile(small, (3, SIZE, SIZE)), profile(narrow, (3, SIZE, SIZE))
    assert (got.params, got.macs) == (want.params, want.macs)
    assert [p.shape for p in small.parameters()] == [p.shape for p in narrow.parameters()]


@pytest.mark.parametrize("groups", [3, 8])
def test_grouped_shufflenet_prunes_its_bottlenecks_evenly(groups: int) -> None:
    """The bottleneck channels (grouped conv1 -> shuffle -> depthwise -> grouped conv2) are
    cut by whole shuffle columns, as many from each of conv2's groups; the stage channels
    (the stem and each stage's first branch, concatenated with the pooled input, so the
    next grouped conv1's groups straddle them) are one linked group, cut by the same
    fraction everywhere: every stage width keeps equal conv groups."""
    model, small, found = _pruned("shufflenet_v1", {**SMALL, "groups": groups, "scale": 0.5})
    mids = [g for g in found if g.name.endswith("conv1.conv") and g.prunable]
    assert any(g.shuffle == groups for g in mids)
    for g in mids:  # whole shuffle columns, as many from each of conv2's groups
        kept = slim_plan_of(small).get(g.name, {}).get("out", list(range(g.size)))
        per = g.size // groups
        assert len(kept) % groups == 0
        if g.shuffle == groups:
            assert {i % per for i in kept[: len(kept) // groups]} == {i % per for i in kept}
    assert sum(g.name in slim_plan_of(small) for g in mids) >= len(mids) // 2
    (stages,) = [g for g in found if g.parts]
    assert stages.prunable and stages.parts[0] == "stem.conv"
    assert [p.rpartition(".0.")[0] for p in stages.parts[1:]] == ["stage2", "stage3", "stage4"]
    refused = [g for g in found if not g.prunable and g.name not in ("input", "fc")]
    assert all(g.name.endswith("conv1.conv") and "grouped conv" in g.reason for g in refused)
    for stage in ("stage2", "stage3", "stage4"):
        full, cut = (getattr(m, stage)[1].conv1.conv.in_channels for m in (model, small))
        assert cut % groups == 0 and cut <= round(0.7 * full)  # 40% asked, in steps
    for unit in (small.stage3[1], small.stage4[2]):
        mid = unit.dw.conv.out_channels
        assert mid % groups == 0 and unit.conv2.conv.in_channels == mid
        assert unit.conv1.conv.groups == unit.conv2.conv.groups == groups


ROUND_TRIP = [ZOO[i] for i in (2, 3, 5, 8, 9, 10)]  # concat, residual, fire, dw, shuffles


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(("name", "kwargs"), ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_run_and_cnnz_round_trips_are_exact(name: str, kwargs: dict, tmp_path: Path) -> None:
    _, small, _ = _pruned(name, kwargs)
    save_run(tmp_path / "run", small, arch=name, kwargs=kwargs)
    run = load_run(tmp_path / "run")
    assert run.meta["slim"] == slim_plan_of(small)
    _assert_same(small, run.model)
    codec.save(tmp_path / "m.cnnz", small, arch={"name": name, "kwargs": kwargs})
    loaded = codec.load(tmp_path / "m.cnnz")
    assert slim_plan_of(loaded) == slim_plan_of(small)
    _assert_same(small, loaded)
    into = codec.load(tmp_path / "m.cnnz", model=get_model(name, **kwargs))  # full width, cut
    _assert_same(small, into)


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_binarized_slim_model_round_trips(mode: str, tmp_path: Path) -> None:
    """Slim, then binarize: the file rebuilds the binarized full-width arch and cuts it,
    an XNOR block's own input BatchNorm with its conv's input channels."""
    _, small, _ = _pruned("resnet18", SMALL)
    convert(small, mode, log=None)
    arch = {"base": "resnet18", "base_kwargs": SMALL, "mode": mode}
    save_run(tmp_path / "run", small, arch="binarized", kwargs=arch)
    _assert_same(small, load_run(tmp_path / "run").model)
    codec.save(tmp_path / "b.cnnz", small, arch={"name": "binarized", "kwargs": arch})
    loaded = codec.load(tmp_path / "b.cnnz")  # plain: the BWN weights as values
    for name, value in loaded.state_dict().items():
        module, _, tensor = name.rpartition(".")
        assert torch.equal(getattr(small.get_submodule(module), tensor), value), name
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(small.eval()(x), loaded(x))
