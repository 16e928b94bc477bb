"""Pruned layers as CSR products (cnnzip.runtime.sparse) against the dense layers."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import cnnzip
from cnnzip.binary import XnorLinear
from cnnzip.cli import main
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.prune import set_mask
from cnnzip.runs import load_run, save_run
from cnnzip.runtime import sparse
from cnnzip.runtime.sparse import SparseConv2d, SparseLinear, sparsify


def pruned(layer: nn.Module, density: float) -> nn.Module:
    with torch.no_grad():
        layer.weight.mul_(torch.rand(layer.weight.shape) < density)
    return layer.eval()


@pytest.mark.parametrize("bias", [True, False])
def test_sparse_linear_equals_the_dense_layer(bias):
    torch.manual_seed(0)
    layer = pruned(nn.Linear(50, 7, bias=bias), 0.2)
    x = torch.randn(3, 4, 50)  # leading dims kept
    with torch.no_grad():
        torch.testing.assert_close(SparseLinear(layer)(x), layer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("stride", "padding", "bias"), [(1, 0, True), (2, 1, False), (1, 2, True)])
def test_sparse_conv_equals_the_dense_layer(stride, padding, bias):
    torch.manual_seed(0)
    layer = pruned(nn.Conv2d(5, 6, 3, stride=stride, padding=padding, bias=bias), 0.3)
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(SparseConv2d(layer)(x), layer(x), rtol=1e-5, atol=1e-6)


def test_sparsify_keeps_only_what_measured_faster(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(
        pruned(nn.Conv2d(2, 4, 3, padding=1), 0.2),
        pruned(nn.Conv2d(4, 4, 3, padding=1, groups=2), 0.2),  # grouped: not supported
        nn.Flatten(),
        pruned(nn.Linear(4 * 6 * 6, 10), 0.1),
        nn.Linear(10, 3),  # dense: not a candidate
    ).eval()
    x = torch.randn(2, 2, 6, 6)
    fc_density = float((model[3].weight != 0).sum()) / model[3].weight.numel()
    with torch.no_grad():
        want = model(x)
    # timings by fiat: sparse twins "take" 1 ms for the conv, 0 ms for the linear
    monkeypatch.setattr(
        sparse, "_best_ms", lambda layer, x, repeats: float(isinstance(layer, SparseConv2d))
        if isinstance(layer, SparseConv2d | SparseLinear) else 0.5
    )  # fmt: skip
    choices = {c.name: c for c in sparsify(model, x)}
    assert sorted(choices) == ["0", "3"]
    assert not choices["0"].sparse and choices["3"].sparse
    assert choices["3"].density == fc_density and model[3].values.numel() < 1440 * 0.2
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[3], SparseLinear)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)


def test_twins_keep_dtype_layout_and_unbatched_input():
    torch.manual_seed(0)
    fc = pruned(nn.Linear(12, 5, bias=False), 0.3).double()
    conv = pruned(nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), bias=False), 0.3)
    x64, img = torch.randn(6, 12, dtype=torch.float64), torch.randn(3, 7, 6)
    with torch.no_grad():
        torch.testing.assert_close(SparseLinear(fc)(x64), fc(x64))
        y = SparseConv2d(conv)(img[None])
        assert y.is_contiguous() and y.view(1, -1).shape == (1, conv(img[None]).numel())
        torch.testing.assert_close(SparseConv2d(conv)(img), conv(img), rtol=1e-5, atol=1e-6)


def test_a_sparsified_model_copies_moves_saves_and_profiles_like_the_dense_one(tmp_path):
    torch.manual_seed(0)
    kwargs = {"hidden": [64, 32]}
    dense = get_model("lenet300", **kwargs).eval()
    pruned(dense.fc1, 0.05)
    model = copy.deepcopy(dense)
    model.fc1 = SparseLinear(dense.fc1)
    x = torch.randn(4, 784)
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model)(x), dense(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.double()(x.double()), dense.double()(x.double()))
    model.float(), dense.float()
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in dense.state_dict().items()
    }  # the dense layer's keys: saves and loads as the original
    save_run(tmp_path / "run", model, arch="lenet300", kwargs=kwargs)
    with torch.no_grad():
        torch.testing.assert_close(load_run(tmp_path / "run").model(x), dense(x))
    report = cnnzip.profile(model, (784,))
    assert report.macs == cnnzip.profile(dense, (784,)).macs and not report.uncounted
    assert report.nonzero_macs == cnnzip.profile(dense, (784,)).nonzero_macs


def test_subclasses_and_keyword_calls_are_handled(monkeypatch):
    class KeywordCall(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = pruned(nn.Linear(20, 6), 0.1)
            self.xnor = pruned(XnorLinear(6, 4), 0.1)  # BN -> sign -> linear: not a plain product

        def forward(self, x):
            return self.xnor(self.fc(input=x))

    monkeypatch.setattr(
        sparse, "_best_ms", lambda layer, x, repeats: 0.0 if hasattr(layer, "crow") else 1.0
    )
    model = KeywordCall().train()
    choices = sparsify(model, torch.randn(3, 20))
    assert [(c.name, c.sparse) for c in choices] == [("fc", True)]
    assert isinstance(model.xnor, XnorLinear) and model.training and model.xnor.training


def test_max_density_and_repeats_are_checked():
    with pytest.raises(CnnzipError, match="max_density"):
        sparsify(nn.Linear(2, 2), torch.randn(1, 2), max_density=0.0)
    with pytest.raises(CnnzipError, match=r"repeats >= 1, got 0\.5 and 0"):
        sparsify(pruned(nn.Linear(2, 2), 0.0), torch.randn(1, 2), repeats=0)


def test_bench_sparse_through_the_cli(tmp_path):
    torch.manual_seed(0)
    kwargs = {"hidden": [64, 32]}
    model = get_model("lenet300", **kwargs)
    set_mask(model, "fc1.weight", torch.rand(64, 784) < 0.05)
    save_run(tmp_path / "run", model, arch="lenet300", kwargs=kwargs)
    result = CliRunner().invoke(
        main, ["bench", "sparse", str(tmp_path / "run"), "--batch", "8", "--runs", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    r = json.loads(result.output.strip().splitlines()[-1])
    assert r["theoretical_speedup"] == r["macs"] / r["nonzero_macs"] > 5
    (row,) = r["batches"]
    assert row["batch"] == 8 and row["speedup"] == row["dense_ms"] / row["sparse_ms"]
    assert [c["name"] for c in row["layers"]] == ["fc1"]  # fc2, fc3 are dense
