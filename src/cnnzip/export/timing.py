"""Latency of several callables measured against each other, in one process.

Each round calls every function once, in an order shuffled each round (a fixed seed), so
no function always runs first or right after the same neighbour: a fixed order, or one
merely rotated, keeps each function's predecessor and with it whose caches it finds (a
torch model timed right after its identical copy read 1.07x faster than the copy did,
measured with the rotated order in ``bench int8``); the median per function over the
rounds is its latency. ``bench int8`` and the report's speed section use it;
``runtime.bench.median_ms`` keeps one fixed order.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from cnnzip.errors import CnnzipError

__all__ = ["shuffled_median_ms"]


def shuffled_median_ms(
    fns: dict[str, Callable[[], Any]], repeats: int, seed: int = 0
) -> dict[str, float]:
    """Median wall milliseconds of each function over ``repeats`` rounds, after one
    untimed warm-up call each; each round calls them in a new random order."""
    if repeats < 1 or not fns:
        raise CnnzipError(f"timing needs functions and repeats >= 1, got {len(fns)}, {repeats}")
    keys = list(fns)
    for key in keys:  # warm up: caches, lazily prepared weights, oneDNN primitives
        fns[key]()
    times: dict[str, list[float]] = {k: [] for k in keys}
    rng = random.Random(seed)
    for _ in range(repeats):
        for key in rng.sample(keys, len(keys)):
            t0 = time.perf_counter()
            fns[key]()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}
