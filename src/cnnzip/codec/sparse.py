"""Relative-index (gap) storage of a sparse layer, as Deep Compression stores it.

The kept positions of a flattened weight are stored as gaps: the number of
pruned weights skipped before each kept one, in p bits. A gap too large for
p bits is split with filler entries: the symbol ``2**p - 1`` means "skip
2**p - 1 positions, no weight here" (so a filler costs an index entry but no
weight entry); symbols below it are the gap before a kept weight. p is chosen
per layer for the fewest bytes.
"""

from __future__ import annotations

import numpy as np

from cnnzip.codec.bits import write_varints
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.rans import lane_count
from cnnzip.codec.streams import entropy_bits

__all__ = ["MAX_INDEX_BITS", "best_index_bits", "gap_counts", "gap_decode", "gap_encode"]

MAX_INDEX_BITS = 16


def _gaps(positions: np.ndarray) -> np.ndarray:
    """Pruned weights skipped before each kept position (int64, >= 0)."""
    return np.diff(positions.astype(np.int64), prepend=-1) - 1


def gap_encode(positions: np.ndarray, p: int) -> np.ndarray:
    """Symbols in [0, 2**p) for ascending ``positions``; fillers are 2**p - 1."""
    skip = (1 << p) - 1
    gaps = _gaps(positions)
    fillers = gaps // skip  # (n,) fillers before each kept weight
    out = np.full(int(fillers.sum()) + len(gaps), skip, dtype=np.int64)
    out[np.cumsum(fillers + 1) - 1] = gaps % skip
    return out


def gap_decode(symbols: np.ndarray, p: int, size: int, count: int) -> np.ndarray:
    """Kept positions (int64, ascending) from gap symbols, checked against size and count."""
    skip = (1 << p) - 1
    step = np.where(symbols == skip, skip, symbols + 1)  # positions advanced by each entry
    ends = np.cumsum(step) - 1
    positions = ends[symbols != skip]
    if len(positions) != count or (count and int(positions[-1]) >= size):
        raise CnnzFormatError(
            f"relative indices give {len(positions)} weights up to position "
            f"{int(positions[-1]) if count else -1}; expected {count} within {size}"
        )
    return positions


def gap_counts(positions: np.ndarray, p: int) -> np.ndarray:
    """Histogram of ``gap_encode(positions, p)`` without building it, (2**p,)."""
    skip = (1 << p) - 1
    gaps = _gaps(positions)
    counts = np.bincount(gaps % skip, minlength=skip + 1)
    counts[skip] += int((gaps // skip).sum())
    return counts


def best_index_bits(positions: np.ndarray, *, coded: bool = True) -> int:
    """p with the fewest bytes: entropy-coded (estimated: the entropy, the exact table,
    8 bytes per rANS lane) or, with ``coded=False``, fixed p bits per entry."""

    def cost(p: int) -> float:
        counts = gap_counts(positions, p)
        if not coded:
            return float(counts.sum() * p)
        n = int(counts.sum())
        table = len(write_varints(counts[: np.flatnonzero(counts)[-1] + 1])) if n else 0
        return entropy_bits(counts) + 8.0 * table + 64.0 * lane_count(n)

    return min(range(1, MAX_INDEX_BITS + 1), key=cost)
