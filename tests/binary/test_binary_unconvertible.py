"""Layers a binary mode cannot convert stay float, are listed with the reason, and the rest
is converted; the model still trains, saves and loads bit-exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from cnnzip import codec
from cnnzip.binary import BWN, XnorConv2d, binary_layers, convert, skipped_layers
from cnnzip.binary.finetune import binarize_run
from cnnzip.data import synthetic
from cnnzip.models import get_model
from cnnzip.prune import set_mask
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig

DW_REASON = (
    "XNOR blocks need groups=1, dilation 1 and one zero padding; "
    "this conv has groups=8, dilation=(1, 1), padding=(1, 1)"
)
RAW_REASON = "DepthwiseNet: not the weight of a Conv2d/Linear layer"


class DepthwiseNet(nn.Module):
    """conv -> depthwise conv -> grouped 1x1 -> conv -> a raw kernel (F.conv2d) -> fc."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1, groups=2)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.kernel = nn.Parameter(0.1 * torch.randn(8, 8, 3, 3))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c2(self.pw(self.dw(self.c1(x))))  # (N, 8, H, W)
        x = F.conv2d(x, self.kernel, padding=1)
        return self.fc(x.mean((2, 3)))


def test_xnor_keeps_grouped_convs_float_and_says_so():
    lines: list[str] = []
    model = convert(DepthwiseNet(), "xnor", log=lines.append)
    assert isinstance(model.c2, XnorConv2d)
    for name in ("dw", "pw"):
        layer = getattr(model, name)
        assert type(layer) is nn.Conv2d and not parametrize.is_parametrized(layer)
    assert binary_layers(DepthwiseNet(), mode="xnor") == ["c2"]
    skipped = skipped_layers(DepthwiseNet(), mode="xnor")
    assert skipped[0] == ("dw", DW_REASON)
    assert skipped[1][0] == "pw" and "groups=2" in skipped[1][1]
    assert skipped[2] == ("kernel", RAW_REASON)
    assert lines == [f"xnor: {name} stays float: {reason}" for name, reason in skipped]


def test_bwn_binarizes_grouped_convs_and_lists_only_the_raw_kernel():
    lines: list[str] = []
    model = convert(DepthwiseNet(), "bwn", log=lines.append)
    assert binary_layers(DepthwiseNet()) == ["dw", "pw", "c2"]
    for name in ("dw", "pw", "c2"):
        assert isinstance(getattr(model, name).parametrizations.weight[0], BWN)
    assert lines == [f"bwn: kernel stays float: {RAW_REASON}"]


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_partly_binarized_model_trains_and_round_trips(tmp_path: Path, mode: str):
    model = convert(DepthwiseNet(), mode, log=None)
    kernel = model.kernel.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(model.kernel, kernel)  # the float kernel trains on
    model.eval()
    codec.save(tmp_path / "m.cnnz", model)
    fresh = convert(DepthwiseNet(), mode, transforms=False, log=None)
    loaded = codec.load(tmp_path / "m.cnnz", model=fresh)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_binarize_run_of_a_mobilenet_lists_its_depthwise_convs_and_reloads(tmp_path: Path):
    kwargs = {"num_classes": 10, "in_chans": 1, "img_size": 28, "width_mult": 0.25}
    torch.manual_seed(0)
    save_run(tmp_path / "float", get_model("mobilenet_v1", **kwargs), arch="mobilenet_v1",
             kwargs=kwargs, data="synthetic")  # fmt: skip
    small = synthetic(n_train=64, n_val=32, n_test=32, seed=0)
    logged: list[str] = []
    model, metrics = binarize_run(
        load_run(tmp_path / "float"), small, tmp_path / "xnor", mode="xnor",
        config=TrainConfig(epochs=1, batch_size=64), log=logged.append,
    )  # fmt: skip
    depthwise = [n for n, m in model.named_modules() if getattr(m, "groups", 1) > 1]
    assert len(depthwise) == 13
    assert [line.split(" stays float")[0] for line in logged] == [f"xnor: {n}" for n in depthwise]
    assert [name for name, _ in metrics["skipped"]] == depthwise
    assert all("groups=" in reason for _, reason in metrics["skipped"])
    assert sum(isinstance(m, XnorConv2d) for m in model.modules()) == 13  # the 1x1 convs
    reloaded = load_run(tmp_path / "xnor").model.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model.eval()(x))


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_a_transformed_weight_stays_as_it_is(mode: str):
    model = DepthwiseNet()
    set_mask(model, "c2.weight", torch.rand(8, 8, 3, 3) > 0.5)
    pruned = model.c2.weight.detach().clone()
    convert(model, mode, log=None)
    assert torch.equal(model.c2.weight, pruned)  # zeros stay zeros, no BWN on top
    assert ("c2", "its weight already carries transforms (a mask, a codebook, BWN)") in (
        skipped_layers(model, mode=mode)
    )
    for _ in range(2):  # converting twice puts one BWN on a weight
        convert(model, "bwn", keep=[], log=None)
    assert len(model.c1.parametrizations.weight) == 1
