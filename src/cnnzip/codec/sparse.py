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
    "GapHistogram",
    "const_gap_positions",
    "gap_counts",
    "gap_decode",
    "gap_encode",
    "gap_histogram",
]

MAX_INDEX_BITS = 16
SMALL_GAP = 1 << 16  # gaps below are counted by bincount; the rare larger ones by np.unique
CHUNK = 1 << 16  # positions handled per step: int64 temporaries stay under 1 MB
GapHistogram = tuple[np.ndarray, np.ndarray]  # (distinct gaps, how often each occurs)


def _chunks(positions: np.ndarray) -> list[np.ndarray]:
    """The gaps of ``positions`` a ``CHUNK`` at a time (int64 each)."""
    out = []
    for a in range(0, len(positions), CHUNK):
        before = positions[a - 1] if a else -1
        chunk = positions[a : a + CHUNK].astype(np.int64)
        out.append(np.diff(chunk, prepend=before) - 1)
    return out


def gap_encode(positions: np.ndarray, p: int, dtype: type = np.int64) -> np.ndarray:
    """Symbols in [0, 2**p) for ascending ``positions``; fillers are 2**p - 1. Built a
    chunk at a time into ``dtype`` (uint16 holds every p): no int64 array of them all."""
    skip = (1 << p) - 1
    parts = []
    for gaps in _chunks(np.asarray(positions)):
        fillers = gaps // skip  # (m,) fillers before each kept weight
        out = np.full(int(fillers.sum()) + len(gaps), skip, dtype=dtype)
        out[np.cumsum(fillers + 1) - 1] = gaps % skip
        parts.append(out)
    return np.concatenate([np.zeros(0, dtype), *parts]) if len(parts) != 1 else parts[0]


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


def gap_histogram(positions: np.ndarray | range) -> GapHistogram:
    """How often each gap occurs in ``positions``: computed once, it gives the symbol
    counts at every p (``gap_counts``) without another pass over the positions."""
    if isinstance(positions, range):  # gaps: the start once, step - 1 every other time
        gaps = np.array([positions.start, positions.step - 1][: len(positions)], dtype=np.int64)
        return gaps, np.array([1, len(positions) - 1][: len(gaps)], dtype=np.int64)
    small = np.zeros(SMALL_GAP, dtype=np.int64)
    large = []
    for gaps in _chunks(np.asarray(positions)):
        fits = gaps < SMALL_GAP
        small += np.bincount(gaps[fits], minlength=SMALL_GAP)
        large.append(gaps[~fits])
    values, times = np.unique(np.concatenate([np.zeros(0, np.int64), *large]), return_counts=True)
    present = np.flatnonzero(small)
    return np.concatenate([present, values]), np.concatenate([small[present], times])


def gap_counts(positions: np.ndarray | range | GapHistogram, p: int) -> np.ndarray:
    """Histogram of ``gap_encode(positions, p)`` without building it, (2**p,); from the
    positions or their ``gap_histogram``."""
    skip = (1 << p) - 1
    gaps, times = positions if isinstance(positions, tuple) else gap_histogram(positions)
    counts = np.bincount(gaps % skip, weights=times, minlength=skip + 1).astype(np.int64)
    counts[skip] += int((gaps // skip * times).sum())
    return counts
