"""Property tests: every codec layer gives back exactly what it was given, for any input.

Hypothesis draws the inputs (bounded counts and deadlines keep the file to a few
seconds); each round trip must be bit-exact, and re-encoding what was decoded must
give the same bytes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cnnzip.codec import container
from cnnzip.codec.bits import read_varints, write_varints
from cnnzip.codec.sparse import MAX_INDEX_BITS, gap_counts, gap_decode, gap_encode
from cnnzip.codec.streams import decode_stream, encode_stream

FEW = settings(max_examples=60, deadline=2000)

index_bits = st.integers(1, MAX_INDEX_BITS)


@st.composite
def kept_positions(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """Ascending kept positions of a flattened layer of ``size`` weights (any may be kept)."""
    size = draw(st.integers(1, 5000))
    kept = draw(st.sets(st.integers(0, size - 1), max_size=300))
    return np.array(sorted(kept), dtype=np.int64), size


@FEW
@given(kept_positions(), index_bits)
def test_gaps_decode_to_the_kept_positions(layer: tuple[np.ndarray, int], p: int) -> None:
    positions, size = layer
    symbols = gap_encode(positions, p)
    assert symbols.min(initial=0) >= 0 and symbols.max(initial=0) < 1 << p
    decoded = gap_decode(symbols, p, size, len(positions))
    assert np.array_equal(decoded, positions)
    assert np.array_equal(gap_counts(positions, p), np.bincount(symbols, minlength=1 << p))


@FEW
@given(st.lists(st.integers(0, 2**64 - 1), max_size=50))
@example([2**49 - 1, 2**56 - 1, 2**63 - 2**14, 2**64 - 1])  # a float log2 gave 8, 9, 11, 11 bytes
def test_varints_round_trip_in_the_fewest_bytes(values: list[int]) -> None:
    data = write_varints(np.array(values, dtype=np.uint64))
    assert len(data) == sum(max(1, -(-v.bit_length() // 7)) for v in values)  # LEB128's length
    decoded, used = read_varints(data + b"\x80 tail", len(values), max_bytes=10)
    assert decoded.tolist() == values and used == len(data)


@st.composite
def streams(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """(symbols, alphabet) with at least two distinct symbols: short lists hypothesis
    shrinks, or long skewed streams (many rANS lanes) drawn from a seed."""
    alphabet = draw(st.sampled_from([2, 3, 16, 255, 256, 257, 4096, 1 << 16]))
    if draw(st.booleans()):
        symbols = draw(st.lists(st.integers(0, alphabet - 1), min_size=2, max_size=200))
        symbols = np.array(symbols, dtype=np.int64)
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        n = draw(st.integers(2, 40_000))
        symbols = rng.geometric(draw(st.floats(0.01, 0.9)), size=n) % alphabet
    symbols[:2] = [0, alphabet - 1]  # two distinct symbols, and the alphabet's ends
    return symbols, alphabet


def _round_trip(symbols: np.ndarray, alphabet: int, coder: str) -> str:
    """Encode, decode and re-encode ``symbols``; returns the coder that was used."""
    coded = encode_stream(symbols, alphabet, coder)
    decoded = decode_stream(coded.describe(), coded.table + coded.data)
    assert np.array_equal(decoded, symbols)
    again = encode_stream(decoded, alphabet, coded.coder)
    assert (again.table, again.data) == (coded.table, coded.data)
    return coded.coder


@FEW
@given(streams(), st.sampled_from(["raw", "huffman", "rans"]))
def test_every_coder_decodes_its_stream_exactly(stream: tuple[np.ndarray, int], coder: str) -> None:
    assert _round_trip(*stream, coder) == coder


@FEW
@given(streams())
def test_the_chosen_coder_decodes_its_stream_exactly(stream: tuple[np.ndarray, int]) -> None:
    assert _round_trip(*stream, "auto") in ("raw", "huffman", "rans")


@FEW
@given(st.integers(0, 2**16 - 1), st.integers(0, 100_000))
def test_a_constant_stream_is_stored_in_no_bytes(symbol: int, n: int) -> None:
    symbols = np.full(n, symbol, dtype=np.int64)
    assert _round_trip(symbols, 1 << 16, "auto") == "const"
    assert encode_stream(symbols, 1 << 16).nbytes == 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@FEW
@given(
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "sections"), json_values, max_size=4),
    st.lists(st.binary(max_size=40), max_size=6),
    st.booleans(),
)
def test_the_container_gives_back_its_header_and_sections(
    header: dict, sections: list[bytes], deflate: bool
) -> None:
    data = container.pack(header, sections, compress_header=deflate)
    cf = container.unpack(data)
    assert cf.sections == sections and cf.file_bytes == len(data)
    assert {k: v for k, v in cf.header.items() if k != "sections"} == header
    assert container.pack(cf.header, cf.sections, compress_header=deflate) == data
