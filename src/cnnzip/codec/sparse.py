"""Relative-index (gap) storage of a sparse layer, as Deep Compression stores it.

The kept positions of a flattened weight are stored as gaps: the number of
pruned weights skipped before each kept one, in p bits. A gap too large for
p bits is split with filler entries: the symbol ``2**p - 1`` means "skip
2**p - 1 positions, no weight here" (so a filler costs an index entry but no
weight entry); symbols below it are the gap before a kept weight. p is chosen
per layer for the fewest bytes (cnnzip.codec.sizes.best_index_bits).
"""

from __future__ import annotations

import numpy as np

from cnnzip.codec.errors import CnnzFormatError

__all__ = [
    "MAX_INDEX_BITS",
    "const_gap_positions",
    "gap_counts",
    "gap_decode",
    "gap_encode",
]

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


def _index_dtype(size: int) -> type[np.signedinteger]:
    return np.int32 if size < 1 << 31 else np.int64


def _check(positions: np.ndarray | range, ends_at: int, size: int, count: int) -> None:
    if len(positions) != count or ends_at >= size:
        raise CnnzFormatError(
            f"relative indices give {len(positions)} weights up to position {ends_at}; "
            f"expected {count} within {size} (and no filler after the last weight)"
        )


def gap_decode(symbols: np.ndarray, p: int, size: int, count: int) -> np.ndarray:
    """Kept positions (ascending, int32 below 2**31) from gap symbols, checked against
    size and count. The total advance is bounded before the cumulative sum is taken."""
    skip = (1 << p) - 1
    filler = symbols == skip
    n_fill = int(np.count_nonzero(filler))
    advance = int(symbols.sum(dtype=np.int64)) + len(symbols) - n_fill  # filler: skip, else s+1
    trailing = len(symbols) > 0 and bool(filler[-1])
    _check(range(len(symbols) - n_fill), advance - 1 + (size if trailing else 0), size, count)
    ends = symbols.astype(_index_dtype(size))
    ends += ~filler  # positions advanced by each entry
    np.cumsum(ends, out=ends)
    ends -= 1
    return ends[~filler]


def const_gap_positions(symbol: int, p: int, n: int, size: int, count: int) -> range:
    """Kept positions of a constant gap stream, as a range: nothing materialised."""
    if symbol == (1 << p) - 1:  # fillers only: no weight follows them
        _check(range(0), size if n else -1, size, count)
        return range(0)
    positions = range(symbol, n * (symbol + 1), symbol + 1)
    _check(positions, positions[-1] if n else -1, size, count)
    return positions


def gap_counts(positions: np.ndarray | range, p: int) -> np.ndarray:
    """Histogram of ``gap_encode(positions, p)`` without building it, (2**p,)."""
    skip = (1 << p) - 1
    if isinstance(positions, range):  # gaps: the start once, step - 1 every other time
        gaps = np.array([positions.start, positions.step - 1][: len(positions)], dtype=np.int64)
        times = np.array([1, len(positions) - 1][: len(gaps)], dtype=np.int64)
    else:
        gaps = _gaps(positions)
        times = np.ones(len(gaps), dtype=np.int64)
    counts = np.bincount(gaps % skip, weights=times, minlength=skip + 1).astype(np.int64)
    counts[skip] += int((gaps // skip * times).sum())
    return counts
