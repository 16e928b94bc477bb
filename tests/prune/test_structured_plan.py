"""Slim plans from files are untrusted: each bad one is one error naming the field and the
module, before anything is cut; good ones rebuild on the meta device and compose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnzip import codec
from cnnzip.codec import container
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.errors import CnnzipError, ModelError, RunError
from cnnzip.models import get_model
from cnnzip.models.slim import (
    apply_slim,
    check_slim_plan,
    record_input_shape,
    slim_input_shape_of,
    slim_plan_of,
    valid_input_shape,
)
from cnnzip.prune import Mask
from cnnzip.prune.structured import channel_groups, plan_channels, slim
from cnnzip.runs import load_run, save_run
from cnnzip.transforms import add_transform

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 28, 28)  # LeNet-5
KW = {"img_size": 16, "num_classes": 10, "width_mult": 0.25}  # mobilenet_v1: 0.4 MB


def _small(ratio: float = 0.5) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = get_model("mobilenet_v1", **KW).eval()
    groups = channel_groups(model, (3, 16, 16))
    return model, slim(model, plan_channels(model, groups, {g.name: ratio for g in groups}))


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ([1, 2], "must be an object"),
        ({"a": []}, "must map a module name"),
        ({"a": {"mid": [0]}}, "use out, in"),
        ({"a": {"out": [1, 0]}}, "increasing order"),
        ({"a": {"out": [0, 0]}}, "increasing order"),
        ({"a": {"out": [True]}}, "channel indices"),
        ({"a": {"out": [-1]}}, "channel indices"),
        ({"a": {"out": [2**40]}}, "channel indices"),
        ({"a": {"out": "0"}}, "channel indices"),
    ],
)
def test_malformed_plans_are_refused(plan: object, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        check_slim_plan(plan, "field slim")


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ({"nope": {"out": [0]}}, "has no module 'nope'"),
        ({"features.0.conv": {"out": [0, 99]}}, "keeps out channel 99 of only 8"),
        ({"features.0.norm": {"in": [0]}}, "has no in channels"),
        ({"features.0.act": {"out": [0]}}, "Conv2d, Linear and BatchNorm only"),
        ({"features.1.dw.conv": {"out": [0, 1], "in": [0, 2]}}, "same in and out"),
    ],
)
def test_plans_that_do_not_fit_are_refused_and_change_nothing(plan: dict, match: str) -> None:
    model = get_model("mobilenet_v1", **KW)
    plan = {"fc": {"in": [0, 1]}, **plan}  # a valid entry first: still nothing is cut
    with pytest.raises(ModelError, match=match):
        apply_slim(model, plan)
    assert model.fc.in_features == 256 and slim_plan_of(model) is None


def test_grouped_conv_and_masked_layers_are_refused() -> None:
    grouped = nn.Sequential(nn.Conv2d(4, 4, 1, groups=2))
    with pytest.raises(ModelError, match="grouped conv"):
        apply_slim(grouped, {"0": {"out": [0]}})
    masked = nn.Sequential(nn.Conv2d(4, 4, 1))
    add_transform(masked, "0.weight", Mask(torch.ones(4, 4, 1, 1, dtype=torch.bool)))
    with pytest.raises(ModelError, match="slim the plain model first"):
        apply_slim(masked, {"0": {"out": [0]}})


def test_plan_rebuilds_shapes_on_the_meta_device() -> None:
    _, small = _small()
    with torch.device("meta"):
        skeleton = apply_slim(get_model("mobilenet_v1", **KW), slim_plan_of(small))
    got = {k: v.shape for k, v in skeleton.state_dict().items()}
    assert got == {k: v.shape for k, v in small.state_dict().items()}
    assert all(v.is_meta for v in skeleton.state_dict().values())


def test_slimming_twice_records_the_composed_plan(tmp_path: Path) -> None:
    _, small = _small(0.25)
    groups = channel_groups(small, (3, 16, 16))
    smaller = slim(small, plan_channels(small, groups, {g.name: 0.5 for g in groups}))
    plan = slim_plan_of(smaller)
    assert len(plan["fc"]["in"]) == smaller.fc.in_features
    assert set(plan["fc"]["in"]) < set(slim_plan_of(small)["fc"]["in"])
    save_run(tmp_path, smaller, arch="mobilenet_v1", kwargs=KW)
    loaded = load_run(tmp_path).model.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), smaller(x))


def _edit_run(path: Path, **fields: object) -> None:
    meta = json.loads((path / "run.json").read_text())
    (path / "run.json").write_text(json.dumps({**meta, **fields}))


def test_bad_slim_in_run_json_is_a_run_error_naming_the_field(tmp_path: Path) -> None:
    _, small = _small()
    save_run(tmp_path, small, arch="mobilenet_v1", kwargs=KW)
    _edit_run(tmp_path, slim={"fc": {"in": [3, 1]}})
    with pytest.raises(RunError, match=r"run.json: field slim: module 'fc' in must be"):
        load_run(tmp_path)
    _edit_run(tmp_path, slim={"fc": {"in": [0, 300]}})
    with pytest.raises(RunError, match="field slim: slim plan: module 'fc' keeps in channel 300"):
        load_run(tmp_path)
    _edit_run(tmp_path, slim=None)  # no plan: the full-width arch, and the weights do not fit
    with pytest.raises(RunError, match="does not fit the model"):
        load_run(tmp_path)


def _with_header(data: bytes, **fields: object) -> bytes:
    cf = container.unpack(data)
    header = {k: v for k, v in cf.header.items() if k != "sections"}
    return container.pack({**header, **fields}, cf.sections)


def test_cnnz_records_the_plan_only_for_slim_models(tmp_path: Path) -> None:
    model, small = _small()
    arch = {"name": "mobilenet_v1", "kwargs": KW}
    codec.save(tmp_path / "full.cnnz", model, arch=arch)
    codec.save(tmp_path / "slim.cnnz", small, arch=arch)
    assert "slim" not in container.read(tmp_path / "full.cnnz").header
    assert container.read(tmp_path / "slim.cnnz").header["slim"] == slim_plan_of(small)
    other = get_model("mobilenet_v1", **KW)
    apply_slim(other, {"fc": {"in": [0]}})
    with pytest.raises(CnnzipError, match="slimmed with another channel plan"):
        codec.load(tmp_path / "slim.cnnz", model=other)


@pytest.mark.parametrize(
    ("slim_field", "match"),
    [
        ({"fc": {"in": [5, 5]}}, "header field slim: module 'fc' in must be"),
        ({"fc": {"in": [0, 999]}}, "header field slim does not fit its arch"),
        ("all", "header field slim must be an object"),
    ],
)
def test_bad_slim_in_a_cnnz_header_is_a_format_error(
    tmp_path: Path, slim_field: object, match: str
) -> None:
    _, small = _small()
    data = codec.encode(small, arch={"name": "mobilenet_v1", "kwargs": KW})
    (tmp_path / "bad.cnnz").write_bytes(_with_header(data, slim=slim_field))
    with pytest.raises(CnnzFormatError, match=match):
        codec.load(tmp_path / "bad.cnnz")


def test_a_lying_slim_plan_is_a_format_error_with_the_users_model_too(tmp_path: Path) -> None:
    """Loaded into model= rather than built from the zoo, the same lie is the same error
    type (a damaged or lying file always ends in CnnzFormatError), naming the module."""
    _, small = _small()
    data = codec.encode(small, arch={"name": "mobilenet_v1", "kwargs": KW})
    (tmp_path / "bad.cnnz").write_bytes(_with_header(data, slim={"fc": {"in": [0, 999]}}))
    user = get_model("mobilenet_v1", **KW)
    with pytest.raises(CnnzFormatError, match=r"does not fit the model given: .*'fc'"):
        codec.load(tmp_path / "bad.cnnz", model=user)
    assert user.fc.in_features == get_model("mobilenet_v1", **KW).fc.in_features  # uncut


def test_a_plan_naming_an_xnor_layers_input_norm_is_refused_and_changes_nothing() -> None:
    """conv2.norm is cut with conv2's input channels: a plan naming both would cut it
    twice (out of range on the meta device, where nothing checks indices)."""
    model = get_model("binarized", base="lenet5", mode="xnor")
    before = {k: v.shape for k, v in model.state_dict().items()}
    plan = {"conv2": {"in": list(range(0, 20, 2))}, "conv2.norm": {"out": [18, 19]}}
    with pytest.raises(ModelError, match=r"'conv2\.norm' is the input norm of 'conv2'"):
        apply_slim(model, plan)
    assert {k: v.shape for k, v in model.state_dict().items()} == before
    assert slim_plan_of(model) is None
    kept = apply_slim(model, {"conv2": {"in": [0, 1]}})  # alone, the norm follows conv2
    assert kept.conv2.norm.num_features == 2 and kept.conv2.in_channels == 2


def test_a_cnnz_that_does_not_fit_the_users_model_leaves_it_uncut(tmp_path: Path) -> None:
    _, small = _small()
    codec.save(tmp_path / "slim.cnnz", small, arch={"name": "mobilenet_v1", "kwargs": KW})
    other = get_model("mobilenet_v1", **{**KW, "num_classes": 7})  # fc is (7, 256)
    before = {k: v.shape for k, v in other.state_dict().items()}
    with pytest.raises(ModelError, match="does not fit this model"):
        codec.load(tmp_path / "slim.cnnz", model=other)
    assert {k: v.shape for k, v in other.state_dict().items()} == before
    assert slim_plan_of(other) is None


class _Depthwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.dw(self.a(x))).mean((2, 3))  # (N, 4)


def test_a_depthwise_conv_slimmed_twice_records_a_plan_that_reloads() -> None:
    """First cut names dw's out only; the second both axes, [2, 3] of the 4 left, which
    are channels 5 and 7 of the full width on both axes."""
    torch.manual_seed(0)
    first = {"a": {"out": [1, 3, 5, 7]}, "dw": {"out": [1, 3, 5, 7]}, "b": {"in": [1, 3, 5, 7]}}
    once = slim(_Depthwise(), first)
    twice = slim(
        once, {"a": {"out": [2, 3]}, "dw": {"out": [2, 3], "in": [2, 3]}, "b": {"in": [2, 3]}}
    )
    assert slim_plan_of(twice)["dw"] == {"out": [5, 7], "in": [5, 7]}
    fresh = apply_slim(_Depthwise(), slim_plan_of(twice))
    assert fresh.dw.weight.shape == twice.dw.weight.shape == (2, 1, 3, 3)


def test_a_slim_run_that_cannot_run_is_a_run_error(tmp_path: Path) -> None:
    """conv1 cut to 10 filters but conv2 still reading 20: every tensor fits the plan,
    yet the model cannot run on the run's recorded input shape."""
    good = apply_slim(get_model("lenet5"), {"conv1": {"out": [0, 1]}, "conv2": {"in": [0, 1]}})
    save_run(tmp_path / "good", good, arch="lenet5", kwargs={}, input_shape=[1, 28, 28])
    assert load_run(tmp_path / "good").model.conv2.in_channels == 2
    bad = apply_slim(get_model("lenet5"), {"conv1": {"out": list(range(10))}})
    save_run(tmp_path / "bad", bad, arch="lenet5", kwargs={}, input_shape=[1, 28, 28])
    with pytest.raises(RunError, match=r"field slim: the slim model does not run on one \[1, 28"):
        load_run(tmp_path / "bad")


def test_a_slim_cnnz_records_its_input_shape_and_load_runs_it(tmp_path: Path) -> None:
    """slim(..., input_shape) notes the shape and the .cnnz header's meta records it, so
    load runs the rebuilt model once: a plan that fits every tensor (conv1 cut to 10,
    conv2 still reading 20) but cannot run is a format error, from the zoo name and with
    model= (left uncut). A file without a usable shape cannot be checked, and loads."""
    arch = {"name": "lenet5", "kwargs": {}}
    good = slim(get_model("lenet5"), {"conv1": {"out": [0, 1]}, "conv2": {"in": [0, 1]}}, SHAPE)
    codec.save(tmp_path / "good.cnnz", good, arch=arch, meta={"seed": 1})
    header = container.read(tmp_path / "good.cnnz").header
    assert header["meta"] == {"seed": 1, "input_shape": [1, 28, 28]}
    assert codec.load(tmp_path / "good.cnnz").conv2.in_channels == 2
    bad = apply_slim(get_model("lenet5"), {"conv1": {"out": list(range(10))}})
    codec.save(tmp_path / "unchecked.cnnz", bad, arch=arch, meta={"input_shape": "28x28"})
    assert codec.load(tmp_path / "unchecked.cnnz").conv1.out_channels == 10
    record_input_shape(bad, SHAPE)
    codec.save(tmp_path / "bad.cnnz", bad, arch=arch)
    match = r"header field slim: the slim model does not run on one \[1, 28, 28\] input"
    with pytest.raises(CnnzFormatError, match=match):
        codec.load(tmp_path / "bad.cnnz")

    other = get_model("lenet5")
    with pytest.raises(CnnzFormatError, match=match):
        codec.load(tmp_path / "bad.cnnz", model=other)
    assert other.conv1.out_channels == 20 and slim_plan_of(other) is None


def test_a_slim_run_keeps_its_input_shape_into_its_cnnz(tmp_path: Path) -> None:
    """save_run records the shape a model was slimmed for and load_run notes it on the
    model again, so a .cnnz written from a reloaded slim run still records it; an
    unusable shape in run.json is left out, as in a .cnnz."""
    good = slim(get_model("lenet5"), {"conv1": {"out": [0, 1]}, "conv2": {"in": [0, 1]}}, SHAPE)
    save_run(tmp_path / "run", good, arch="lenet5", kwargs={})
    assert json.loads((tmp_path / "run" / "run.json").read_text())["input_shape"] == [1, 28, 28]
    model = load_run(tmp_path / "run").model
    assert slim_input_shape_of(model) == SHAPE
    codec.save(tmp_path / "slim.cnnz", model, arch={"name": "lenet5", "kwargs": {}})
    assert container.read(tmp_path / "slim.cnnz").header["meta"]["input_shape"] == [1, 28, 28]
    save_run(tmp_path / "odd", good, arch="lenet5", kwargs={}, input_shape="28x28")
    assert slim_input_shape_of(load_run(tmp_path / "odd").model) is None
    dense = save_run(tmp_path / "dense", get_model("lenet5"), arch="lenet5", kwargs={})
    assert "input_shape" not in json.loads((dense / "run.json").read_text())


def test_input_shapes_are_checked_before_they_are_recorded() -> None:
    assert valid_input_shape([1, 28, 28]) == (1, 28, 28)
    assert valid_input_shape((784,)) == (784,)
    for junk in ([], [1, 2, 3, 4], [0, 28, 28], [True], [1.0], "1,28,28", None, [1 << 21]):
        assert valid_input_shape(junk) is None
    with pytest.raises(ModelError, match="input shape"):
        record_input_shape(get_model("lenet5"), (0, 28, 28))
    with pytest.raises(ModelError, match="input shape"):
        record_input_shape(get_model("lenet5"), (1.0, 28, 28))
    noted = record_input_shape(get_model("lenet5"), torch.Size([1, 28, 28]))
    assert slim_input_shape_of(noted) == (1, 28, 28)
    assert slim_input_shape_of(get_model("lenet5")) is None


class _Grouped(nn.Module):
    """a (3 -> 8) -> g (8 -> 12, 4 groups) -> h (12 -> 6) -> head: g cut to one in and one
    out channel per group has the shape of a depthwise conv, though it was not one."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.g = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.h, self.head = nn.Conv2d(12, 6, 1), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.h(self.g(self.a(x))).mean((2, 3)))  # (N, 3)


def test_a_grouped_conv_cut_to_depthwise_shape_then_slimmed_again_reloads(tmp_path: Path) -> None:
    """The second cut (h only) must not rewrite g's recorded full-width in list with its
    out list: the composed plan rebuilds a fresh model to the same shapes and outputs."""
    torch.manual_seed(0)
    model = _Grouped().eval()
    once = slim(model, plan_channels(model, channel_groups(model, (3, 4, 4)), {"a": 0.5, "g": 0.7}))
    assert (once.g.in_channels, once.g.out_channels, once.g.groups) == (4, 4, 4)
    twice = slim(once, plan_channels(once, channel_groups(once, (3, 4, 4)), {"h": 0.5}))
    assert slim_plan_of(twice)["g"] == slim_plan_of(once)["g"]
    codec.save(tmp_path / "g.cnnz", twice)
    loaded = codec.load(tmp_path / "g.cnnz", model=_Grouped())
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), twice(x))


def test_a_second_cut_of_a_grouped_conv_left_depthwise_shaped_is_refused() -> None:
    """Cutting a again halves g's groups (4 -> 2), which the recorded plan cannot say:
    refused by name (it once saved a file that did not reload)."""
    torch.manual_seed(0)
    model = _Grouped().eval()
    once = slim(model, plan_channels(model, channel_groups(model, (3, 4, 4)), {"a": 0.5, "g": 0.7}))
    plan = plan_channels(once, channel_groups(once, (3, 4, 4)), {"a": 0.5})
    with pytest.raises(ModelError, match="'g' was a grouped conv cut to one channel per group"):
        slim(once, plan)
