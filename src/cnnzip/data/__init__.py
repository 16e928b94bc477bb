"""Datasets: the IDX reader, Fashion-MNIST/MNIST loading, a synthetic set, batching."""

from cnnzip.data.datasets import Dataset, Split, data_dirs, list_datasets, load, synthetic
from cnnzip.data.idx import read_idx, read_idx_bytes
from cnnzip.data.loader import batches, num_batches

__all__ = [
    "Dataset",
    "Split",
    "batches",
    "data_dirs",
    "list_datasets",
    "load",
    "num_batches",
    "read_idx",
    "read_idx_bytes",
    "synthetic",
]
