"""compile_binary chains XNOR convs through packed activations: bit for bit the outputs
of the float-between-layers path (chain=False), on every kernel path."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnzip.binary import BWN, XnorConv2d, convert
from cnnzip.models import get_model
from cnnzip.runtime import available_paths, compile_binary
from cnnzip.runtime.binary import FastXnorConv2d, PackedMaxPool2d
from cnnzip.runtime.xnor import PackedActs
from cnnzip.transforms import add_transform

pytestmark = pytest.mark.usefixtures("one_thread")


def shaken_norm(norm: nn.BatchNorm2d, g: torch.Generator) -> nn.BatchNorm2d:
    """Statistics that move things: negative and zero scales, shifts that cross zero."""
    c = norm.num_features
    with torch.no_grad():
        norm.weight.copy_(torch.randn(c, generator=g) * 2)
        norm.weight[torch.rand(c, generator=g) < 0.2] = 0.0  # zero scale: a constant sign
        norm.bias.copy_(torch.randn(c, generator=g))
        norm.running_mean.copy_(torch.randn(c, generator=g))
        norm.running_var.copy_(torch.rand(c, generator=g) + 0.3)
    return norm


def xnor(cin: int, cout: int, stride: int, pad: int, g: torch.Generator, k: int = 3) -> nn.Module:
    conv = XnorConv2d(cin, cout, k, stride=stride, padding=pad, bias=False, scale_k=False)
    add_transform(conv, "weight", BWN())
    shaken_norm(conv.norm, g)
    return conv


@contextmanager
def kernel_path(path: str) -> Iterator[None]:
    """$CNNZIP_KERNEL = path inside (hypothesis tests cannot take monkeypatch)."""
    before = os.environ.get("CNNZIP_KERNEL")
    os.environ["CNNZIP_KERNEL"] = path
    try:
        yield
    finally:
        os.environ.pop("CNNZIP_KERNEL")
        if before is not None:
            os.environ["CNNZIP_KERNEL"] = before


def assert_same_on_every_path(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """compile_binary(model) against chain=False, bit for bit; returns the chained copy."""
    ref, fast = compile_binary(model, chain=False), compile_binary(model)
    for path in available_paths():
        with kernel_path(path), torch.no_grad():
            assert torch.equal(fast(x), ref(x)), path
    return fast


layer = st.tuples(
    st.integers(1, 90),  # out channels: odd counts, one word and several
    st.sampled_from([1, 2]),  # stride
    st.sampled_from([0, 1]),  # padding
    st.sampled_from(["", "bn", "bn-relu", "pool", "bn-relu-pool", "relu"]),  # after the conv
)


@settings(max_examples=25, deadline=None)
@given(layers=st.lists(layer, min_size=2, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_random_chains_match_the_float_path_bit_for_bit(layers, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Conv2d(3, 11, 3, padding=1)]
    cin, size = 11, 17
    for cout, stride, pad, after in layers:
        if size + 2 * pad < 3:
            break
        mods.append(xnor(cin, cout, stride, pad, g))
        size = (size + 2 * pad - 3) // stride + 1
        if "bn" in after:
            mods.append(shaken_norm(nn.BatchNorm2d(cout), g))
        if "relu" in after:
            mods.append(nn.ReLU())
        if "pool" in after and size >= 3:
            mods.append(nn.MaxPool2d(3, 2, 1) if seed % 2 else nn.MaxPool2d(2))
            size = (size + 2 - 3) // 2 + 1 if seed % 2 else size // 2
        cin = cout
    model = nn.Sequential(*mods, nn.Flatten()).eval()
    x = torch.randn(2, 3, 17, 17, generator=g)
    fast = assert_same_on_every_path(model, x)
    convs = [m for m in fast if isinstance(m, FastXnorConv2d)]
    assert [m.kernel.thresholds is not None for m in convs] == [True] * (len(convs) - 1) + [False]


def test_chain_emits_bits_between_binary_layers_and_pools_bits():
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 9, 3, padding=1),
        xnor(9, 33, 1, 1, g),
        shaken_norm(nn.BatchNorm2d(33), g),
        nn.ReLU(),
        nn.MaxPool2d(2),
        xnor(33, 65, 2, 1, g),
        xnor(65, 7, 1, 0, g),  # its output goes to a float consumer: stays float
        nn.Flatten(),
    ).eval()
    fast = assert_same_on_every_path(model, torch.randn(3, 3, 12, 12, generator=g))
    assert isinstance(fast[4], PackedMaxPool2d) and isinstance(fast[3], nn.Identity)
    assert [fast[i].kernel.thresholds is not None for i in (1, 5, 6)] == [True, True, False]
    with torch.no_grad():
        assert isinstance(fast[1](torch.randn(1, 9, 12, 12)), PackedActs)


def test_layers_with_k_or_shared_outputs_keep_float_between():
    g = torch.Generator().manual_seed(2)
    with_k = xnor(8, 8, 1, 1, g)
    with_k.scale_k = True

    class Fork(nn.Module):  # the first conv's output also feeds an addition
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = xnor(8, 8, 1, 1, g), xnor(8, 8, 1, 1, g)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            return self.b(y) + y

    for model in (nn.Sequential(with_k, xnor(8, 8, 1, 1, g)), Fork()):
        fast = assert_same_on_every_path(model.eval(), torch.randn(1, 8, 6, 6))
        convs = [m for m in fast.modules() if isinstance(m, FastXnorConv2d)]
        assert all(m.kernel.thresholds is None for m in convs)


def test_binary_resnet_blocks_chain_their_two_convs():
    torch.manual_seed(0)
    model = get_model("binary_resnet18", num_classes=10, in_chans=1, img_size=32, width_mult=0.25)
    for name, module in model.named_modules():
        if isinstance(module, XnorConv2d):
            add_transform(model, f"{name}.weight", BWN())
            shaken_norm(module.norm, torch.Generator().manual_seed(len(name)))
    model.eval()
    fast = assert_same_on_every_path(model, torch.randn(2, 1, 32, 32))
    chained = [n for n, m in fast.named_modules() if getattr(m, "kernel", None) is not None
               and m.kernel.thresholds is not None]  # fmt: skip
    assert len(chained) == 8 and all(n.endswith("conv1.conv") for n in chained)  # per block


def test_an_untraceable_model_compiles_without_chains():
    g = torch.Generator().manual_seed(3)

    class Branchy(nn.Module):  # control flow on a tensor value: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = xnor(4, 4, 1, 1, g), xnor(4, 4, 1, 1, g)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x)) if x.sum() > -1e9 else x

    fast = assert_same_on_every_path(Branchy().eval(), torch.randn(1, 4, 5, 5))
    assert fast.a.kernel.thresholds is None


def test_convert_then_compile_chains_a_plain_float_model():
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 3),
    )  # fmt: skip
    convert(model, "xnor", scale_k=False, log=None)
    fast = assert_same_on_every_path(model.eval(), torch.randn(2, 1, 10, 10))
    assert fast[1].kernel.thresholds is not None


def test_a_decision_that_overflows_to_nan_keeps_float_between():
    """dot * ~1e37 overflows to +-inf for large dots; times the next norm's zero scale that is
    NaN (not negative) there and the shift's sign elsewhere: no threshold reproduces it."""
    g = torch.Generator().manual_seed(5)
    first, second = xnor(4, 3, 1, 1, g), xnor(3, 2, 1, 1, g)
    norm = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        norm.weight.fill_(3e38)
        norm.running_var.fill_(1.0)
        second.norm.weight.zero_()
        second.norm.bias.fill_(-1.0)
    fast = assert_same_on_every_path(
        nn.Sequential(first, norm, second).eval(), torch.randn(1, 4, 5, 5, generator=g)
    )
    assert fast[0].kernel.thresholds is None
