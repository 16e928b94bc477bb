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
from cnnzip.data.loader import (
    StreamSplit,
    as_split,
    batches,
    first_input,
    from_loaders,
    num_batches,
    steps,
)

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "Dataset",
    "Split",
    "StreamSplit",
    "as_split",
    "batches",
    "data_dirs",
    "first_input",
    "from_arrays",
    "from_loaders",
    "list_datasets",
    "load",
    "num_batches",
    "read_idx",
    "read_idx_bytes",
    "steps",
    "synthetic",
]
