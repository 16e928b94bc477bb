"""Bytes as stored: the one size model of the .cnnz format.

Every "bytes as stored" figure in cnnzip comes from here: the coder estimates
that pick a stream's coder (cnnzip.codec.streams), the index width p of a
sparse layer (``best_index_bits``), the stages ``cnnzip.codec.inspect`` reports
and the weight bytes ``cnnzip.profile`` reports (``layout_bytes``, the stored
size of a transform kind's layout).

Before entropy coding (inspect's "pruned" and "shared" stages, profile's weight
bytes) every stream is at a fixed width, each section rounded up to whole bytes:

- sparse: a float32 value per kept weight, its gap symbols at the fixed p that
  makes them smallest (fillers included);
- shared: b = ceil(log2 k) bits per kept weight, the same gaps and the
  float32 codebook;
- binary: one bit a weight and a float32 alpha per output channel;
- dense: every value at its dtype.

A layer kept whole (no mask, or a mask of all ones) has no index bytes: its gap
stream is constant, as the codec writes it.

An rANS stream costs its table, about its entropy (+0.2%) and
``RANS_LANE_BYTES`` a lane (cnnzip.codec.rans: ~2.5 bytes, rounded up).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cnnzip.codec import huffman
from cnnzip.codec.bits import write_varints
from cnnzip.codec.layouts import Layout
from cnnzip.codec.rans import lane_count
from cnnzip.codec.sparse import MAX_INDEX_BITS, gap_counts, gap_histogram

__all__ = [
    "FLOAT32_BYTES",
    "RANS_LANE_BYTES",
    "best_index_bits",
    "binary_bytes",
    "coder_bytes",
    "entropy_bits",
    "fixed_bytes",
    "index_bytes",
    "layout_bytes",
    "raw_width",
    "shared_bytes",
    "sparse_bytes",
    "width",
]

FLOAT32_BYTES = 4
RANS_LANE_BYTES = 3
# best_index_bits charges a lane 5 bytes more than it costs: the margin chose p in every
# file written so far, so it stays (files are byte-identical for the same model).
P_CHOICE_LANE_MARGIN = 5


def entropy_bits(counts: np.ndarray) -> float:
    """n * H(p) of the empirical distribution: the Shannon bound for this stream, in bits."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    return float((c * np.log2(n / c)).sum()) if n else 0.0


def raw_width(alphabet: int) -> int:
    """Bits of a symbol stored raw: ceil(log2(alphabet)), at least 1."""
    return max(1, int(alphabet - 1).bit_length())


def width(k: int) -> int:
    """Bits of a cluster index into a codebook of ``k`` centres (b of the paper)."""
    return raw_width(k)


def fixed_bytes(n: int, bits: int) -> int:
    """Bytes of ``n`` entries at ``bits`` bits each, rounded up to a whole byte."""
    return math.ceil(n * bits / 8)


def coder_bytes(counts: np.ndarray, alphabet: int, table_bytes: int) -> dict[str, int]:
    """Estimated bytes of a stream with symbol ``counts`` under each coder (raw exact,
    Huffman exact, rANS estimated): how ``encode_stream`` picks the two to try."""
    n = int(counts.sum())
    rans = int(entropy_bits(counts) / 8 * 1.002) + RANS_LANE_BYTES * lane_count(n)
    return {
        "raw": fixed_bytes(n, raw_width(alphabet)),
        "huffman": table_bytes + fixed_bytes(huffman.encoded_bits(counts), 1),
        "rans": table_bytes + rans,
    }


def best_index_bits(positions: np.ndarray | range, *, coded: bool = True) -> int:
    """p with the fewest bytes for the gaps of ``positions``: entropy-coded (the rANS
    estimate with its exact table) or, with ``coded=False``, fixed p bits per entry."""

    hist = gap_histogram(positions)  # once: every p's counts follow from it

    def cost(p: int) -> float:
        counts = gap_counts(hist, p)
        if not coded:
            return float(counts.sum() * p)
        n = int(counts.sum())
        table = len(write_varints(counts[: np.flatnonzero(counts)[-1] + 1])) if n else 0
        lane = RANS_LANE_BYTES + P_CHOICE_LANE_MARGIN
        return entropy_bits(counts) + 8.0 * table + 8.0 * lane * lane_count(n)

    return min(range(1, MAX_INDEX_BITS + 1), key=cost)


def index_bytes(positions: np.ndarray | range, size: int) -> int:
    """Bytes of the relative indices of ``positions`` in a tensor of ``size`` weights
    before entropy coding: the gap symbols, fillers included, at the fixed width p that
    makes them smallest; none where every weight is kept (a constant gap stream)."""
    if len(positions) == size:
        return 0
    p = best_index_bits(positions, coded=False)
    return fixed_bytes(int(gap_counts(gap_histogram(positions), p).sum()), p)


def sparse_bytes(kept: int, index: int) -> int:
    """A pruned, unshared layer: float32 kept values plus ``index`` bytes of indices."""
    return FLOAT32_BYTES * kept + index


def shared_bytes(kept: int, k: int, index: int) -> int:
    """A shared layer: b-bit cluster indices, ``index`` bytes of positions, the codebook."""
    return fixed_bytes(kept, width(k)) + index + FLOAT32_BYTES * k


def binary_bytes(weights: int, channels: int) -> int:
    """A BWN layer: one sign bit a weight, a float32 alpha per output channel."""
    return fixed_bytes(weights, 1) + FLOAT32_BYTES * channels


def layout_bytes(layout: Layout, original: torch.Tensor) -> int:
    """Bytes before entropy coding of ``original`` stored as ``layout``."""
    if layout.encoding == "binary":
        return binary_bytes(original.numel(), original.shape[0])
    mask = layout.mask
    kept = original.numel() if mask is None else int(mask.sum())
    flat = None if mask is None else mask.detach().cpu().reshape(-1).numpy()
    index = 0 if flat is None else index_bytes(np.flatnonzero(flat), original.numel())
    if layout.encoding == "shared":
        return shared_bytes(kept, layout.codebook.numel(), index)
    return sparse_bytes(kept, index)
