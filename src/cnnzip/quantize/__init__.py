"""Trained weight sharing: fast 1-D k-means and the ``shared`` weight transform.

from cnnzip import quantize
quantize.share_weights(model, bits={"conv": 8, "linear": 5}, init="linear")
cnnzip.train.fit(model, data, cfg)        # fine-tunes the codebooks
"""

from cnnzip.quantize.kmeans import INITS, KMeans, assign, init_centroids, kmeans_1d
from cnnzip.quantize.shared import (
    MAX_BITS,
    SharedWeight,
    cluster_error,
    default_bits,
    share_layer,
    share_weights,
    shared_of,
    unshareable,
)

__all__ = [
    "INITS",
    "MAX_BITS",
    "KMeans",
    "SharedWeight",
    "assign",
    "cluster_error",
    "default_bits",
    "init_centroids",
    "kmeans_1d",
    "share_layer",
    "share_weights",
    "shared_of",
    "unshareable",
]
