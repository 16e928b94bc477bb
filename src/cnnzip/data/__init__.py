"""Datasets: the IDX reader, Fashion-MNIST/MNIST loading, the user's arrays, a synthetic
set, batching."""

from cnnzip.data.datasets import (
    DEFAULT_VAL_FRACTION,
    Dataset,
    Split,
    data_dirs,
    from_arrays,
    list_datasets,
    load,
    synthetic,
)
from cnnzip.data.idx import read_idx, read_idx_bytes
from cnnzip.data.loader import batches, num_batches

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "Dataset",
    "Split",
    "batches",
    "data_dirs",
    "from_arrays",
    "list_datasets",
    "load",
    "num_batches",
    "read_idx",
    "read_idx_bytes",
    "synthetic",
]
