"""Entropy coders against references: hand-made Huffman codes, the Shannon bound, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from cnnzip.codec import huffman, rans
from cnnzip.codec.bits import pack_codes, read_varints, unpack_fixed, write_varints
from cnnzip.codec.streams import decode_stream, decode_streams, encode_stream, entropy_bits


def _geometric(n: int, q: float, alphabet: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).geometric(q, size=n) % alphabet


def test_varints_match_leb128_by_hand() -> None:
    # 300 = 0b1_0010_1100 -> low 7 bits 0x2C with the continuation bit, then 0x02
    assert write_varints(np.array([0, 127, 300])) == bytes([0x00, 0x7F, 0xAC, 0x02])
    values = np.array([0, 1, 127, 128, 2**21 - 1, 2**21, 2**40])
    data = write_varints(values) + b"\xff tail"
    decoded, used = read_varints(data, len(values))
    assert np.array_equal(decoded, values) and used == len(write_varints(values))


def test_bit_packing_is_msb_first() -> None:
    data, nbits = pack_codes(np.array([0b101, 1, 0, 0b11]), np.array([3, 1, 2, 2]))
    assert nbits == 8 and data == bytes([0b10110011])
    assert unpack_fixed(pack_codes(np.arange(16), np.full(16, 4))[0], 16, 4).tolist() == list(
        range(16)
    )


def test_huffman_lengths_are_optimal_on_a_hand_example() -> None:
    # counts 1,1,2,4: the textbook tree gives lengths 3,3,2,1 (cost 14 bits)
    assert huffman.code_lengths(np.array([1, 1, 2, 4])).tolist() == [3, 3, 2, 1]
    assert huffman.encoded_bits(np.array([1, 1, 2, 4])) == 14
    lengths = huffman.code_lengths(np.bincount(_geometric(5000, 0.3, 40)))
    present = lengths[lengths > 0]
    assert np.sum(2.0**-present) == pytest.approx(1.0)  # a complete prefix code


def test_huffman_length_limit_keeps_a_prefix_code() -> None:
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])  # Fibonacci counts force one level per symbol
    lengths = huffman.code_lengths(np.array(fib), max_len=24)
    assert lengths.max() == 24 and np.sum(2.0 ** -lengths.astype(float)) <= 1.0


@pytest.mark.parametrize("coder", ["raw", "huffman", "rans"])
@pytest.mark.parametrize(
    ("n", "alphabet", "q"),
    [(2, 2, 0.5), (700, 3, 0.2), (5000, 64, 0.05), (70_000, 32, 0.3)],
)
def test_round_trip(coder: str, n: int, alphabet: int, q: float) -> None:
    symbols = _geometric(n, q, alphabet, seed=n)
    symbols[:2] = [0, 1]  # two distinct symbols at least (one is coded as const)
    coded = encode_stream(symbols, alphabet, coder)
    assert coded.coder == coder
    assert np.array_equal(decode_stream(coded.describe(), coded.table + coded.data), symbols)


def test_constant_and_empty_streams_cost_nothing() -> None:
    for symbols in (np.full(1000, 3), np.zeros(0, dtype=np.int64)):
        coded = encode_stream(symbols, 8)
        assert coded.coder == "const" and coded.nbytes == 0
        assert np.array_equal(decode_stream(coded.describe(), b""), symbols)


@pytest.mark.parametrize("q", [0.02, 0.15, 0.5])
def test_rans_is_within_half_a_percent_of_the_entropy_plus_lanes(q: float) -> None:
    symbols = _geometric(20_000, q, 64, seed=1)
    counts = np.bincount(symbols, minlength=64)
    data = rans.encode(symbols, counts)
    lanes = rans.lane_count(len(symbols))  # each: ~1 byte of its state, a word count
    assert len(data) <= 1.005 * entropy_bits(counts) / 8 + 3 * lanes


@pytest.mark.parametrize("seed", range(5))
def test_a_small_skewed_stream_codes_within_3_percent_of_its_entropy(seed: int) -> None:
    # 1500 symbols at ~0.7 bit each (~135 bytes, one lane): its fixed cost must stay under ~4 bytes
    symbols = _geometric(1500, 0.85, 8, seed=seed)
    counts = np.bincount(symbols, minlength=8)
    assert 0.6 < entropy_bits(counts) / 1500 < 0.8
    data = rans.encode(symbols, counts)
    assert np.array_equal(rans.decode(data, 1500, counts), symbols)
    assert len(data) <= 1.03 * entropy_bits(counts) / 8


def test_auto_picks_the_smallest_and_stays_within_3_percent() -> None:
    for q in (0.05, 0.3, 0.7):
        symbols = _geometric(30_000, q, 32, seed=2)
        best = encode_stream(symbols, 32)
        sizes = [encode_stream(symbols, 32, c).nbytes for c in ("raw", "huffman", "rans")]
        assert best.nbytes == min(sizes)
        assert len(best.data) <= 1.03 * best.entropy_bits / 8


def test_rans_decodes_many_streams_together() -> None:
    streams = [_geometric(n, 0.2, 16, seed=n) for n in (3, 2048, 2049, 9000)]
    items = []
    for s in streams:
        counts = np.bincount(s, minlength=16)
        items.append((rans.encode(s, counts), len(s), counts))
    for got, want in zip(rans.decode_many(items), streams, strict=True):
        assert np.array_equal(got, want)


def test_huffman_spans_several_blocks() -> None:
    symbols = _geometric(huffman.BLOCK * 2 + 17, 0.4, 12, seed=3)
    coded = encode_stream(symbols, 12, "huffman")
    (got,) = decode_streams([(coded.describe(), coded.table + coded.data)])
    assert np.array_equal(got, symbols)


def test_entropy_bits_matches_the_formula() -> None:
    # p = (1/2, 1/4, 1/4): H = 1.5 bits per symbol
    assert entropy_bits(np.array([2, 1, 1])) == pytest.approx(4 * 1.5)
