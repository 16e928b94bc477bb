"""The compiled coders (cnnzip._codec) against the NumPy reference they replace.

Every compiled function must give the reference's bytes, symbols and floats bit for
bit, on random streams, on empty and one-symbol streams, and on corrupt input, where
both must fail with CnnzFormatError (never a crash or a read past the buffer). The
choice of coder, now made from exact sizes with one encoding, must be the one the
reference made by encoding the two best estimates.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cnnzip.codec import container, decode_state, encode, huffman, rans
from cnnzip.codec import model as codec_model
from cnnzip.codec.bits import histogram
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.native import extension, reference_only
from cnnzip.codec.sizes import coder_bytes
from cnnzip.codec.sparse import gap_encode
from cnnzip.codec.streams import decode_stream, encode_stream
from cnnzip.prune import Mask
from cnnzip.quantize import share_weights
from cnnzip.transforms import add_transform

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(extension() is None, reason="cnnzip._codec is not built"),
]
FEW = settings(max_examples=40, deadline=None)


def both(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """(compiled result, reference result); an error counts as its type, for comparison."""
    out = []
    for ref in (False, True):
        try:
            if ref:
                with reference_only():
                    out.append(fn())
            else:
                out.append(fn())
        except CnnzFormatError:
            out.append(CnnzFormatError)
    return out[0], out[1]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


@st.composite
def symbol_streams(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(symbols, counts): short drawn lists, or long skewed streams (many lanes) from a seed;
    one or several distinct symbols."""
    alphabet = draw(st.sampled_from([1, 2, 3, 32, 256, 257, 4096]))
    if draw(st.booleans()):
        symbols = np.array(
            draw(st.lists(st.integers(0, alphabet - 1), min_size=0, max_size=100)), np.int64
        )
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        n = draw(st.integers(1, 6000))
        p = rng.dirichlet(np.full(alphabet, draw(st.sampled_from([0.05, 0.5, 5.0]))))
        symbols = rng.choice(alphabet, size=n, p=p).astype(np.int64)
    return symbols, np.bincount(symbols, minlength=alphabet)


def corrupt(data: bytes, draw: st.DrawFn) -> bytes:
    """``data`` truncated, extended or with one byte changed."""
    how = draw(st.sampled_from(["cut", "grow", "flip"]))
    if how == "cut" or not data:
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "grow":
        return data + bytes(draw(st.lists(st.integers(0, 255), min_size=1, max_size=3)))
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


@FEW
@given(symbol_streams(), st.data())
@example((np.zeros(0, np.int64), np.array([0, 0])), None)  # empty
@example((np.zeros(1, np.int64), np.array([1, 0])), None)  # one symbol
def test_rans_matches_the_reference(stream: tuple, data: Any) -> None:
    symbols, counts = stream
    coded, reference = both(lambda: rans.encode(symbols, counts))
    assert coded == reference
    for dtype in (np.uint16, np.uint8) if len(counts) <= 256 else (np.uint16,):
        out, ref = both(lambda: rans.decode(coded, len(symbols), counts, dtype))  # noqa: B023
        assert same(out, ref) and np.array_equal(out, symbols)
    if data is not None:  # corrupt: both fail, or both decode the same symbols
        bad = corrupt(coded, data.draw)
        out, ref = both(lambda: rans.decode(bad, len(symbols), counts))
        assert same(out, ref)


@FEW
@given(symbol_streams(), st.data())
def test_huffman_matches_the_reference(stream: tuple, data: Any) -> None:
    symbols, counts = stream
    coded, reference = both(lambda: huffman.encode(symbols, counts))
    assert coded == reference
    dtype = np.uint8 if len(counts) <= 256 else np.uint16
    out, ref = both(lambda: huffman.decode(coded, len(symbols), counts, dtype))
    assert same(out, ref) and np.array_equal(out, symbols)
    bad = corrupt(coded, data.draw)
    out, ref = both(lambda: huffman.decode(bad, len(symbols), counts, dtype))
    assert same(out, ref)


def test_huffman_blocks_match_the_reference() -> None:
    """Several 2**16-symbol blocks: their stored bit offsets, and a lying one."""
    rng = np.random.default_rng(1)
    symbols = rng.choice(40, size=3 * huffman.BLOCK + 17, p=rng.dirichlet(np.ones(40)))
    counts = np.bincount(symbols, minlength=40)
    coded, reference = both(lambda: huffman.encode(symbols, counts))
    assert coded == reference
    out, ref = both(lambda: huffman.decode(coded, len(symbols), counts, np.uint8))
    assert same(out, ref) and np.array_equal(out, symbols)
    lying = bytearray(coded)
    lying[4] ^= 1  # the second block's offset, one byte up
    out, ref = both(lambda: huffman.decode(bytes(lying), len(symbols), counts, np.uint8))
    assert out is ref is CnnzFormatError


def brute_force_choice(symbols: np.ndarray, alphabet: int) -> tuple[str, bytes]:
    """The reference's rule: code the two best estimates, keep the smaller (first on ties)."""
    counts = np.bincount(symbols, minlength=alphabet)
    with reference_only():
        every = {c: encode_stream(symbols, alphabet, c) for c in ("raw", "huffman", "rans")}
    last = int(np.flatnonzero(counts)[-1]) + 1
    sizes = coder_bytes(counts[:last], alphabet, len(every["rans"].table))
    best = sorted(sizes, key=sizes.__getitem__)[:2]
    name = min(best, key=lambda c: every[c].nbytes)
    return name, every[name].table + every[name].data


@FEW
@given(symbol_streams())
def test_stream_coder_choice_is_the_references(stream: tuple) -> None:
    symbols, counts = stream
    alphabet = len(counts)
    coded, reference = both(lambda: encode_stream(symbols, alphabet))
    assert coded == reference
    if coded.coder != "const":
        assert (coded.coder, coded.table + coded.data) == brute_force_choice(symbols, alphabet)
    desc = coded.describe()
    out, ref = both(lambda: decode_stream(desc, coded.table + coded.data))
    assert same(out, ref) and np.array_equal(out, symbols)


@st.composite
def sparse_layers(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    """(kept positions, tensor size, p), with long runs of pruned weights (fillers)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = draw(st.integers(1, 20000))
    keep = rng.random(size) < draw(st.sampled_from([0.0, 0.001, 0.1, 0.9, 1.0]))
    return np.flatnonzero(keep), size, draw(st.integers(1, 16))


def scatter(gaps: np.ndarray, p: int, size: int, count: int, values: np.ndarray, codes: Any):
    """model._coded's expansion: compiled, or the reference positions + gather."""
    entry = {"name": "w", "shape": [size], "index_bits": p, "count": count, "encoding":
             "shared", "k": len(values), "gaps": {"coder": "huffman"},
             "codes": {"coder": "raw"}}  # fmt: skip
    cf = container.CnnzFile({}, [values.astype("<f4").tobytes()], 0)
    entry["codebook"] = 0
    return codec_model._coded(cf, entry, [gaps, codes]).numpy()


@FEW
@given(sparse_layers(), st.data())
def test_expansion_matches_the_reference(layer: tuple, data: Any) -> None:
    positions, size, p = layer
    k = data.draw(st.sampled_from([1, 3, 256]))
    rng = np.random.default_rng(0)
    values = rng.standard_normal(k).astype(np.float32)
    codes = rng.integers(0, k, len(positions)).astype(np.uint8 if k <= 256 else np.uint16)
    gaps = gap_encode(positions, p, np.uint16)
    out, ref = both(lambda: scatter(gaps, p, size, len(positions), values, codes))
    expected = np.zeros(size, np.float32)
    expected[positions] = values[codes]
    assert same(out, ref) and np.array_equal(out, expected)
    if len(gaps):  # a corrupt symbol or count: both fail, or both agree
        bad = gaps.copy()
        bad[data.draw(st.integers(0, len(bad) - 1))] = data.draw(st.integers(0, (1 << p) - 1))
        count = len(positions) + data.draw(st.sampled_from([0, -1, 1]))
        if count >= 0:
            some = np.resize(codes, count)  # the header ties the codes' n to the count
            out, ref = both(lambda: scatter(bad, p, size, count, values, some))
            assert same(out, ref)


def pruned_shared(width: int) -> nn.Module:
    """A two-layer MLP, pruned to 90% and shared (8-bit first layer, 5-bit second)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    for name in ("0", "2"):
        w = model.get_submodule(name).weight.detach()
        add_transform(model, f"{name}.weight", Mask(w.abs() > w.abs().quantile(0.9)))
    share_weights(model, bits={"0.weight": 8, "2.weight": 5})
    return model


def test_model_files_and_tensors_match_the_reference() -> None:
    model = pruned_shared(300)
    data, reference = both(lambda: encode(model))
    assert data == reference
    state, ref = both(lambda: decode_state(container.unpack(data)))
    assert state.keys() == ref.keys()
    assert all(torch.equal(state[k], ref[k]) for k in state)


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of the memory NumPy and Python allocate while ``fn`` runs."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_save_and_load_memory_stays_near_the_weights() -> None:
    """A 2048 x 2048 layer (16 MB of float32): encoding allocates at most the weight
    bytes beyond the model, decoding the weights it returns and 15% more (before the
    compiled coders and chunked gaps: 1.97x and 1.25x)."""
    model = pruned_shared(2048)
    weight_bytes = 4 * (2048 * 2048 + 2048 + 2048 * 10 + 10)  # float32 weights and biases
    data = encode(model)
    cf = container.unpack(data)
    assert peak_bytes(lambda: encode(model)) <= 1.0 * weight_bytes
    assert peak_bytes(lambda: decode_state(cf)) <= 1.15 * weight_bytes


@FEW
@given(symbol_streams())
def test_histogram_matches_the_reference(stream: tuple) -> None:
    symbols, counts = stream
    narrow = symbols.astype(np.uint8 if len(counts) <= 256 else np.uint16)
    out, ref = both(lambda: histogram(narrow, len(counts)))
    assert same(out, ref) and np.array_equal(out, counts)
    if len(symbols) and counts[-1] > 0:  # the last symbol is outside a smaller alphabet
        out, ref = both(lambda: histogram(narrow, len(counts) - 1))
        assert out is ref is CnnzFormatError
