"""The exact bytes the codec writes, pinned: a refactor of the codec must not change a file.

Each model is built from a fixed seed, trained a few steps where it matters, and
encoded; its sha256 was recorded before the codec was split into format and
per-transform storage hooks (issue 12). A change here is a format change: say so
in BENCHMARKS.md and bump the constants on purpose.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn as nn

from cnnzip.binary import convert
from cnnzip.codec import encode
from cnnzip.models import get_model
from cnnzip.prune import Mask
from cnnzip.quantize import share_weights
from cnnzip.transforms import add_transform


def _steps(model: nn.Module, shape: tuple[int, ...], n: int = 3) -> None:
    """A few SGD steps on synthetic data, so the weights are trained, not just initialised."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(n):
        x, y = torch.randn(16, *shape), torch.randint(0, 10, (16,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _prune(model: nn.Module, names: list[str], quantile: float) -> None:
    for name in names:
        w = model.get_submodule(name).weight.detach()
        add_transform(model, f"{name}.weight", Mask(w.abs() > w.abs().quantile(quantile)))


def _deep_compression() -> bytes:
    """LeNet-5 trained, pruned (fc layers 90%, convs 50%) and shared at 5/3 bits."""
    torch.manual_seed(0)
    model = get_model("lenet5")
    _steps(model, (1, 28, 28))
    _prune(model, ["conv1", "conv2"], 0.5)
    _prune(model, ["fc1", "fc2"], 0.9)
    _steps(model, (1, 28, 28))
    share_weights(model, bits={"conv": 5, "linear": 3})
    return encode(model, arch={"name": "lenet5", "kwargs": {}}, meta={"seed": 0})


def _sparse_unshared() -> bytes:
    """LeNet-300 (30, 20 hidden) pruned but not shared: sparse float32 values, p fixed."""
    torch.manual_seed(1)
    model = get_model("lenet300", hidden=(30, 20))
    _prune(model, ["fc1", "fc2", "fc3"], 0.8)
    _steps(model, (1, 28, 28))
    arch = {"name": "lenet300", "kwargs": {"hidden": [30, 20]}}
    return encode(model, arch=arch, index_bits=4)


def _bwn() -> bytes:
    """LeNet-5 under BWN (sign bits and alpha per channel), float16 dense tensors."""
    torch.manual_seed(2)
    model = get_model("lenet5")
    _steps(model, (1, 28, 28))
    convert(model, "bwn", log=None)
    return encode(model, arch={"name": "lenet5", "kwargs": {}}, dense_dtype="float16")


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(12, 12)
        self.b = nn.Linear(12, 12)
        self.b.weight = self.a.weight
        self.norm = nn.BatchNorm1d(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.norm(self.a(x)))


def _tied_float16() -> bytes:
    """A tied weight (stored once, an alias) and float16 dense tensors, a big running var."""
    torch.manual_seed(3)
    model = _Tied()
    model.norm.running_var.fill_(1e5)  # beyond float16: stays float32
    return encode(model, dense_dtype="float16")


GOLDEN = {
    _deep_compression: "4813c8b6fbd1b2f05d8aa90b2b9247638e8bda05a4994b9c8b6ec490a74b1738",
    _sparse_unshared: "e0b2aca39c98031cd3bc7815ca4ebe200f59c01609241167e03bc066ec0c10b9",
    _bwn: "9b489d8f273d7812795a3b8050edf97728387303ba025ecfe9b5837b25b0c460",
    _tied_float16: "95770c17792468005c3ca41211b5fb5bf9d7a903084cf1bd975eec3d33eb0f3a",
}


@pytest.mark.parametrize("make", list(GOLDEN), ids=lambda f: f.__name__.strip("_"))
def test_bytes_are_unchanged(make) -> None:
    assert hashlib.sha256(make()).hexdigest() == GOLDEN[make]
