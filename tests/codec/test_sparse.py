"""Relative-index (gap) storage against hand examples and brute force."""

from __future__ import annotations

import numpy as np
import pytest

from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.sizes import best_index_bits
from cnnzip.codec.sparse import gap_counts, gap_decode, gap_encode


def test_gaps_with_fillers_by_hand() -> None:
    # p = 3: symbols 0..6 are gaps, 7 means "skip 7, no weight"; gap 16 = 7 + 7 + 2
    positions = np.array([0, 3, 20])
    symbols = gap_encode(positions, 3)
    assert symbols.tolist() == [0, 2, 7, 7, 2]
    assert gap_decode(symbols, 3, 21, 3).tolist() == [0, 3, 20]


@pytest.mark.parametrize("p", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("density", [0.001, 0.08, 0.9])
def test_round_trip_and_counts(p: int, density: float) -> None:
    rng = np.random.default_rng(p)
    size = 50_000
    positions = np.flatnonzero(rng.random(size) < density)
    symbols = gap_encode(positions, p)
    assert np.array_equal(gap_decode(symbols, p, size, len(positions)), positions)
    assert np.array_equal(gap_counts(positions, p), np.bincount(symbols, minlength=1 << p))


def test_fixed_width_choice_is_the_brute_force_minimum() -> None:
    positions = np.flatnonzero(np.random.default_rng(0).random(20_000) < 0.1)
    best = best_index_bits(positions, coded=False)
    costs = {p: len(gap_encode(positions, p)) * p for p in range(1, 17)}
    assert costs[best] == min(costs.values())


def test_decode_refuses_positions_past_the_tensor() -> None:
    symbols = gap_encode(np.array([5, 90]), 4)
    with pytest.raises(CnnzFormatError):
        gap_decode(symbols, 4, 50, 2)
    with pytest.raises(CnnzFormatError):
        gap_decode(symbols, 4, 100, 3)
