"""Impossible convolutions and empty batches in the runtime's convs, against torch's conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.binary import XnorConv2d, XnorLinear
from cnnzip.errors import CnnzipError
from cnnzip.runtime import compile_binary
from cnnzip.runtime.bench import bench_layers
from cnnzip.runtime.sparse import SparseConv2d, SparseLinear
from cnnzip.runtime.xnor import (
    BinaryConvKernel,
    available_paths,
    pack_signs,
    set_threads,
    unpack_signs,
)


def binary_kernel(stride: int = 1, padding: int = 0, cin: int = 3) -> BinaryConvKernel:
    w = torch.randn(4, cin, 3, 3, generator=torch.Generator().manual_seed(0))
    return BinaryConvKernel(pack_signs(w), cin, torch.ones(4), torch.zeros(4), stride, padding)


@pytest.mark.parametrize(
    ("stride", "padding", "message"),
    [
        (0, 0, r"stride must be an integer in \[1, 65536\], got 0"),
        (-1, 1, "stride must be"),
        (1, -1, "padding must be"),
        (2**40, 0, "stride must be an integer in .* got 1099511627776"),
        (2**16 + 1, 0, "stride must be"),
        (1, 2**20, "padding must be an integer in .* got 1048576"),
        (1.5, 0, "stride must be an integer in .* got 1.5"),
        (True, 0, "stride must be an integer in .* got True"),
        (1, 1.0, "padding must be"),
    ],
)
def test_binary_conv_refuses_impossible_settings_at_construction(stride, padding, message) -> None:
    with pytest.raises(CnnzipError, match=message):
        binary_kernel(stride, padding)


@pytest.mark.parametrize("path", available_paths())
@pytest.mark.parametrize(("stride", "padding"), [(2**16, 1), (2, 2**4), (1, 0)])
def test_binary_conv_at_extreme_valid_settings_matches_torch(path, stride, padding) -> None:
    x = torch.randn(2, 3, 9, 7, generator=torch.Generator().manual_seed(1)).sign()
    kernel = binary_kernel(stride, padding)
    padded = F.pad(x, (padding,) * 4, value=1.0)  # the binary convs pad with +1
    want = F.conv2d(padded, unpack_signs(kernel.words, 3), stride=stride)
    assert torch.equal(kernel(x, path=path), want)


def test_binary_conv_refuses_a_channel_count_that_is_no_int() -> None:
    good = binary_kernel()
    with pytest.raises(CnnzipError, match="in_chans must be an integer"):
        BinaryConvKernel(good.words, 3.0, good.scale, good.bias)


@pytest.mark.parametrize("path", available_paths())
def test_binary_conv_refuses_an_output_over_the_budget_before_allocating(path) -> None:
    with pytest.raises(CnnzipError, match=r"padded input \(1, 3, 131080, 131080\) would hold"):
        binary_kernel(padding=2**16)(torch.randn(1, 3, 8, 8), path=path)
    wide = BinaryConvKernel(
        pack_signs(torch.ones(2**12, 1, 1, 1)), 1, torch.ones(2**12), torch.zeros(2**12)
    )
    with pytest.raises(CnnzipError, match=r"output \(1, 4096, 1024, 1024\) would hold 4294967296"):
        wide(torch.randn(1, 1, 2**10, 2**10), path=path)


def test_binary_conv_refuses_inconsistent_weights() -> None:
    good = binary_kernel()
    with pytest.raises(CnnzipError, match="do not hold 65 input channels"):
        BinaryConvKernel(good.words, 65, good.scale, good.bias)
    with pytest.raises(CnnzipError, match=r"must both be \(4,\)"):
        BinaryConvKernel(good.words, 3, torch.ones(3), good.bias)


@pytest.mark.parametrize("path", available_paths())
@pytest.mark.parametrize(("hw", "padding"), [((2, 2), 0), ((5, 1), 0), ((0, 4), 1)])
def test_binary_conv_refuses_inputs_smaller_than_its_kernel(path, hw, padding) -> None:
    x = torch.randn(1, 3, *hw)
    with pytest.raises(RuntimeError):  # torch refuses the same input
        F.conv2d(x, torch.ones(4, 3, 3, 3), padding=padding)
    with pytest.raises(CnnzipError, match="smaller than the 3x3 kernel"):
        binary_kernel(padding=padding)(x, path=path)


@pytest.mark.parametrize("path", available_paths())
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1)])
def test_binary_conv_of_an_empty_batch_is_empty_like_torch(path, stride, padding) -> None:
    x = torch.randn(0, 3, 9, 7)
    want = F.conv2d(x, torch.ones(4, 3, 3, 3), stride=stride, padding=padding)
    out = binary_kernel(stride, padding)(x, path=path)
    assert out.shape == want.shape and out.shape[:2] == (0, 4)
    assert out.dtype == torch.float32


def test_compiled_xnor_linear_takes_an_empty_batch() -> None:
    model = nn.Sequential(XnorLinear(8, 5)).eval()
    out = compile_binary(model)(torch.randn(0, 8))
    assert out.shape == model(torch.randn(0, 8)).shape == (0, 5)


def test_sparse_conv_refuses_impossible_settings_and_inputs() -> None:
    for bad in ({"stride": (1, 0)}, {"stride": 1.5}, {"padding": 2**17}):
        with pytest.raises(CnnzipError, match="must be an integer in"):
            SparseConv2d(nn.Conv2d(3, 4, 3, **bad))
    with pytest.raises(CnnzipError, match=r"unfolded input .* would hold"):
        SparseConv2d(nn.Conv2d(3, 4, 3, padding=2**16))(torch.randn(1, 3, 8, 8))
    with pytest.raises(CnnzipError, match=r"output \(1, 4096, 1024, 1024\) would hold"):
        SparseConv2d(nn.Conv2d(1, 2**12, 1))(torch.randn(1, 1, 2**10, 2**10))
    with pytest.raises(CnnzipError, match="smaller than the 3x3 kernel"):
        SparseConv2d(nn.Conv2d(3, 4, 3, padding=0))(torch.randn(2, 3, 2, 5))


def test_sparse_conv_at_a_huge_stride_matches_torch() -> None:
    conv = nn.Conv2d(3, 4, 3, stride=2**16, padding=1).eval()
    x = torch.randn(2, 3, 9, 7)
    torch.testing.assert_close(SparseConv2d(conv)(x), conv(x))


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1)])
def test_sparse_twins_of_an_empty_batch_match_torch(stride, padding) -> None:
    conv = nn.Conv2d(3, 4, 3, stride=stride, padding=padding).eval()
    x = torch.randn(0, 3, 9, 7)
    assert torch.equal(SparseConv2d(conv)(x), conv(x))
    linear = nn.Linear(6, 2)
    x = torch.randn(0, 6)
    assert torch.equal(SparseLinear(linear)(x), linear(x))


def test_compile_binary_refuses_a_conv_with_two_strides() -> None:
    model = nn.Sequential(XnorConv2d(3, 4, 3, stride=(1, 2))).eval()
    with pytest.raises(CnnzipError, match=r"one stride along both axes, got \(1, 2\)"):
        compile_binary(model)


@pytest.mark.parametrize(("threads", "repeats"), [(0, 3), (1, 0)])
def test_bench_layers_refuses_impossible_counts(threads: int, repeats: int) -> None:
    with pytest.raises(CnnzipError, match="need threads >= 1 and repeats >= 1"):
        bench_layers(((8, 4),), threads=threads, repeats=repeats)


@pytest.mark.parametrize("threads", [0, 2**40])
def test_thread_counts_beyond_a_c_int_are_refused(threads: int) -> None:
    with pytest.raises(CnnzipError, match=r"thread count must be in 1\.\.1024"):
        set_threads(threads)
    with pytest.raises(CnnzipError, match=r"thread count must be in 1\.\.1024"):
        binary_kernel()(torch.randn(1, 3, 5, 5), threads=threads)
