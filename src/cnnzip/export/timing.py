"""Latency of several callables measured against each other, in one process.

Each round calls every function once, in an order rotated by one each round, so no
function always runs first (cold caches after another's) or right after the same
neighbour; the median per function over the rounds is its latency. ``bench int8`` and the
report's speed section use it; ``runtime.bench.median_ms`` keeps one fixed order.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from cnnzip.errors import CnnzipError

__all__ = ["rotated_median_ms"]


def rotated_median_ms(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall milliseconds of each function over ``repeats`` rounds, after one
    untimed warm-up call each; the calling order rotates by one every round."""
    if repeats < 1 or not fns:
        raise CnnzipError(f"timing needs functions and repeats >= 1, got {len(fns)}, {repeats}")
    keys = list(fns)
    for key in keys:  # warm up: caches, lazily prepared weights, oneDNN primitives
        fns[key]()
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            fns[key]()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}
