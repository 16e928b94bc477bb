"""1-D k-means against a brute-force Lloyd's and the definitions of its initialisations."""

from __future__ import annotations

import numpy as np
import pytest

from cnnzip.errors import CnnzipError
from cnnzip.quantize import assign, init_centroids, kmeans_1d


def _lloyd_reference(values: np.ndarray, centroids: np.ndarray, iters: int) -> np.ndarray:
    """Textbook Lloyd's with a full (n, k) distance matrix."""
    c = centroids.astype(np.float64)
    for _ in range(iters):
        labels = np.argmin(np.abs(values[:, None] - c[None, :]), axis=1)
        for j in range(len(c)):
            if np.any(labels == j):
                c[j] = values[labels == j].mean()
        c.sort()
    return c


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_matches_brute_force_lloyd(init: str) -> None:
    values = np.random.default_rng(0).standard_t(3, size=3000).astype(np.float32)
    result = kmeans_1d(values, 16, init=init, seed=1)
    start = init_centroids(np.sort(values).astype(np.float64), 16, init, seed=1)
    reference = _lloyd_reference(values.astype(np.float64), start, result.iterations)
    assert np.allclose(result.centroids, reference, rtol=1e-5, atol=1e-6)


def test_result_is_a_fixed_point_with_nearest_labels() -> None:
    values = np.random.default_rng(1).normal(size=20_000).astype(np.float32)
    result = kmeans_1d(values, 32)
    brute = np.argmin(np.abs(values[:, None] - result.centroids[None, :]), axis=1)
    distance = np.abs(values - result.centroids[result.labels])
    assert np.allclose(distance, np.abs(values - result.centroids[brute]))  # ties may differ
    for j in np.unique(result.labels):
        assert result.centroids[j] == pytest.approx(values[result.labels == j].mean(), rel=1e-4)


def test_initialisations_follow_their_definitions() -> None:
    s = np.sort(np.random.default_rng(2).exponential(size=1000))
    assert np.allclose(init_centroids(s, 5, "linear"), np.linspace(s[0], s[-1], 5))
    density = init_centroids(s, 4, "density")  # quantiles at 1/8, 3/8, 5/8, 7/8
    assert np.allclose(density, s[[125, 375, 625, 875]])
    assert np.isin(init_centroids(s, 8, "random", seed=3), s).all()
    with pytest.raises(CnnzipError, match="initialisation"):
        init_centroids(s, 4, "kmeans++")


def test_more_clusters_than_values_and_assign() -> None:
    result = kmeans_1d(np.array([1.0, 5.0, 5.0], dtype=np.float32), 8)
    assert set(result.centroids[result.labels].tolist()) == {1.0, 5.0}
    assert assign(np.array([0.9, 3.1]), np.array([1.0, 5.0])).tolist() == [0, 1]
