"""Canonical Huffman coding, encoded and decoded with whole-array numpy operations.

Code lengths follow from the symbol counts (stored in the file), codes are
canonical, so both sides rebuild the same code from the counts alone.

Decoding without a per-symbol Python loop: for every bit position of a block
we look up which codeword would start there (a binary search over the
left-justified canonical codes), giving ``next[pos] = pos + length``; the
codeword starts are the positions reachable from 0, found by pointer
doubling in log2(n) whole-array steps. The stream carries a bit offset every
``BLOCK`` symbols so memory stays bounded on long streams. Where cnnzip._codec is
built (csrc/codec_huffman.c), a compiled twin packs and decodes the bits instead, with
the same results (cnnzip.codec.native); this NumPy code stays the reference.
"""

from __future__ import annotations

import heapq

import numpy as np

from cnnzip.codec.bits import histogram, pack_codes, windows
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.native import call, extension, narrow

__all__ = ["BLOCK", "MAX_LEN", "code_lengths", "decode", "encode", "encoded_bits"]

MAX_LEN = 24  # longest codeword; a window of 24 bits fits one 32-bit read
BLOCK = 1 << 16  # symbols between stored bit offsets


def _huffman_lengths(counts: np.ndarray) -> np.ndarray:
    present = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(present) == 1:
        lengths[present] = 1
        return lengths
    # heap of (count, tiebreak, symbols under this node): deterministic for equal counts
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(present)]
    heapq.heapify(heap)
    tiebreak = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        lengths[s1] += 1
        lengths[s2] += 1
        heapq.heappush(heap, (c1 + c2, tiebreak, s1 + s2))
        tiebreak += 1
    return lengths


def code_lengths(counts: np.ndarray, max_len: int = MAX_LEN) -> np.ndarray:
    """Huffman code length of each symbol (0 = absent), at most ``max_len`` bits.

    Lengths over the limit (only for extremely skewed counts) are avoided by
    halving the counts until the code fits, a standard near-optimal fix.
    """
    counts = np.asarray(counts, dtype=np.int64)
    while True:
        lengths = _huffman_lengths(counts)
        if lengths.max(initial=0) <= max_len:
            return lengths
        counts = np.where(counts > 0, np.maximum(counts >> 1, 1), 0)


def _canonical(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(symbols sorted by (length, symbol), their canonical codes)."""
    present = np.flatnonzero(lengths)
    order = present[np.lexsort((present, lengths[present]))]
    lens = lengths[order]
    codes = np.zeros(len(order), dtype=np.int64)
    code = 0
    for i in range(1, len(order)):  # <= alphabet size iterations, on small ints
        code = (code + 1) << int(lens[i] - lens[i - 1])
        codes[i] = code
    return order, codes


def encoded_bits(counts: np.ndarray) -> int:
    """Size of the coded stream in bits, without encoding it."""
    return int((code_lengths(counts) * np.asarray(counts, dtype=np.int64)).sum())


def encode(symbols: np.ndarray, counts: np.ndarray) -> bytes:
    """Block bit offsets (uint32 LE, one per block after the first), then the bits."""
    lengths = code_lengths(counts)
    order, codes = _canonical(lengths)
    code_of = np.zeros(len(lengths), dtype=np.int64)
    code_of[order] = codes
    ext = extension()
    if ext is not None:  # the compiled twin: no per-symbol arrays
        symbols = narrow(symbols, len(lengths))
        bits = np.empty(_coded_bytes(symbols, lengths), dtype=np.uint8)
        offsets = np.empty(max(-(-len(symbols) // BLOCK) - 1, 0), dtype=np.uint32)
        call(ext.huff_encode, symbols, code_of, lengths, BLOCK, bits, offsets)
        return offsets.astype("<u4").tobytes() + bits.tobytes()
    sym_lengths = lengths[symbols]
    data, _ = pack_codes(code_of[symbols], sym_lengths)
    block_bits = np.cumsum(sym_lengths)[BLOCK - 1 : -1 : BLOCK] if len(symbols) else []
    return np.asarray(block_bits, dtype="<u4").tobytes() + data


def _coded_bytes(symbols: np.ndarray, lengths: np.ndarray) -> int:
    """Bytes of ``symbols`` coded with code ``lengths``, from their histogram."""
    return (int((histogram(symbols, len(lengths)) * lengths).sum()) + 7) // 8


def _decode_block(
    data: bytes,
    start: int,
    stop: int,
    m: int,
    lj_codes: np.ndarray,
    order: np.ndarray,
    lengths: np.ndarray,
    width: int,
    last: bool,
) -> np.ndarray:
    """``m`` symbols whose bits fill [start, stop) exactly: up to the next block's first
    bit, or for the ``last`` block up to the final byte's zero padding."""
    size = stop - start
    pos = np.arange(start, stop, dtype=np.int64)
    w = windows(data, pos, width)  # (size,) the next `width` bits at each position
    rank = np.searchsorted(lj_codes, w, side="right") - 1  # codeword starting there
    rank = np.maximum(rank, 0)
    length = lengths[order[rank]]
    nxt = np.minimum(np.arange(size, dtype=np.int64) + length, size)  # (size,) next start
    nxt = np.append(nxt, size)  # sentinel: the end points to itself
    reached = np.zeros(size + 1, dtype=bool)
    reached[0] = True
    for _ in range(max(m - 1, 0).bit_length()):  # after r rounds: the first 2**r starts
        reached[nxt[reached]] = True
        nxt = nxt[nxt]
    starts = np.flatnonzero(reached[:size])[:m]
    if len(starts) < m or int(starts[-1] + length[starts[-1]]) > size:
        raise CnnzFormatError("Huffman stream ends before all its symbols")
    spare = size - int(starts[-1] + length[starts[-1]])  # bits after the last codeword
    if spare >= (8 if last else 1) or (
        spare and int(windows(data, np.array([stop - spare]), spare)[0])
    ):
        raise CnnzFormatError(
            "Huffman stream does not end where its symbols do (bits to spare: corrupt data)"
        )
    return order[rank[starts]]


def decode(data: bytes, n: int, counts: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    """The ``n`` symbols ``encode`` wrote, as ``dtype`` (int64; uint8 or uint16 are decoded
    straight into by the compiled coder where it is built)."""
    if n == 0:
        return np.zeros(0, dtype=dtype)
    lengths = code_lengths(counts)
    order, codes = _canonical(lengths)
    width = int(lengths.max())
    lj_codes = codes << (width - lengths[order])  # left-justified, ascending
    n_blocks = (n + BLOCK - 1) // BLOCK
    head = 4 * (n_blocks - 1)
    if len(data) < head:
        raise CnnzFormatError("Huffman stream shorter than its block table")
    total = 8 * (len(data) - head)
    bounds = np.concatenate(
        [[0], np.frombuffer(data, dtype="<u4", count=n_blocks - 1).astype(np.int64), [total]]
    )
    spans = np.diff(bounds)
    if np.any(spans < 0) or np.any(spans > BLOCK * MAX_LEN) or bounds[-2] > total:
        raise CnnzFormatError(
            "Huffman block offsets are out of order, too far apart or past the end"
        )
    ext = extension()
    if ext is not None and dtype in (np.uint8, np.uint16):
        out = np.empty(n, dtype=dtype)
        ranks = (lj_codes, lengths[order], order)  # codeword by rank: left-justified, bits, symbol
        call(ext.huff_decode, memoryview(data)[head:], bounds, BLOCK, n, *ranks, width, out)
        return out
    body = data[head:]
    out = [
        _decode_block(
            body,
            int(bounds[b]),
            int(bounds[b + 1]),
            min(BLOCK, n - b * BLOCK),
            lj_codes,
            order,
            lengths,
            width,
            b == n_blocks - 1,
        )
        for b in range(n_blocks)
    ]
    return np.concatenate(out).astype(dtype, copy=False)
