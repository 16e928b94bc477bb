"""1-D k-means for weight sharing, fast because it works on sorted values.

In one dimension every k-means cluster is a contiguous run of the sorted
values, so after one sort (O(n log n)) and one prefix sum, a Lloyd iteration
costs O(k log n): the cluster boundaries are the midpoints between centroids,
found with a binary search, and each cluster's sum is a difference of two
prefix sums. 37.7M weights (AlexNet fc6) cluster in a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnzip.errors import CnnzipError

__all__ = ["INITS", "KMeans", "assign", "init_centroids", "kmeans_1d"]

INITS = ("linear", "density", "random")


@dataclass(frozen=True)
class KMeans:
    """Result: ``centroids`` (k,) float32 ascending, ``labels`` (n,) int32 into them."""

    centroids: np.ndarray
    labels: np.ndarray
    iterations: int


def init_centroids(
    sorted_values: np.ndarray, k: int, init: str = "linear", seed: int = 0
) -> np.ndarray:
    """Deep Compression's three initialisations, ascending float64 (k,).

    linear: evenly spaced between min and max (keeps the rare large weights,
    which matter most); density: evenly spaced along the CDF (quantiles);
    random (Forgy): k of the values, drawn with ``seed``.
    """
    s = sorted_values
    n = len(s)
    if init == "linear":
        return np.linspace(float(s[0]), float(s[-1]), k)
    if init == "density":
        return s[((np.arange(k) + 0.5) * n / k).astype(np.int64)].astype(np.float64)
    if init == "random":
        pick = np.random.default_rng(seed).choice(n, size=k, replace=n < k)
        return np.sort(s[pick].astype(np.float64))
    raise CnnzipError(f"unknown centroid initialisation {init!r}; choose one of {INITS}")


def _boundaries(centroids: np.ndarray) -> np.ndarray:
    """Midpoints between neighbouring centroids (k-1,): the 1-D Voronoi cells."""
    return (centroids[:-1] + centroids[1:]) / 2


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (ascending ``centroids``) for every value, int32."""
    return np.searchsorted(_boundaries(centroids.astype(np.float64)), values).astype(np.int32)


def kmeans_1d(
    values: np.ndarray,
    k: int,
    *,
    init: str = "linear",
    max_iter: int = 300,
    seed: int = 0,
) -> KMeans:
    """Lloyd's k-means on a 1-D array, exact (converges to a fixed point of Lloyd's map).

    Empty clusters keep their centroid. Returns float32 centroids, since they
    become the shared weights of a float32 layer.
    """
    values = np.asarray(values, dtype=np.float32).ravel()
    if k < 1 or values.size == 0:
        raise CnnzipError(f"k-means needs k >= 1 and some values (k={k}, n={values.size})")
    s = np.sort(values).astype(np.float64)  # (n,), float64 once: searchsorted would cast per call
    prefix = np.concatenate([[0.0], np.cumsum(s, dtype=np.float64)])  # (n + 1,)
    c = init_centroids(s, k, init, seed)
    it, ends_before = 0, None
    for it in range(1, max_iter + 1):  # noqa: B007  (the count is reported)
        ends = np.concatenate([np.searchsorted(s, _boundaries(c)), [len(s)]])  # (k,)
        if ends_before is not None and np.array_equal(ends, ends_before):
            break  # same clusters as last time: the centroids are a fixed point
        ends_before = ends
        starts = np.concatenate([[0], ends[:-1]])
        counts = ends - starts
        sums = prefix[ends] - prefix[starts]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        c = np.sort(new)  # an empty cluster's kept centroid may fall out of order
    centroids = c.astype(np.float32)
    return KMeans(centroids=centroids, labels=assign(values, centroids), iterations=it)
