"""Datasets: the IDX reader, Fashion-MNIST/MNIST loading, the user's arrays and torch
Datasets/DataLoaders, data on disk by path (npz, CIFAR binary, image folders, IDX), a
synthetic set, batching, per-channel normalisation and training augmentation."""

from cnnzip.data.augment import crop_flip, random_crop, random_flip
from cnnzip.data.datasets import (
    DEFAULT_VAL_FRACTION,
    Dataset,
    Normalization,
    Split,
    data_dirs,
    from_arrays,
    list_datasets,
    load,
    synthetic,
)
from cnnzip.data.detect import FORMATS, detect_format, load_path, open_path
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
    "FORMATS",
    "Dataset",
    "Normalization",
    "Split",
    "StreamSplit",
    "as_split",
    "batches",
    "crop_flip",
    "data_dirs",
    "detect_format",
    "first_input",
    "from_arrays",
    "from_loaders",
    "list_datasets",
    "load",
    "load_path",
    "num_batches",
    "open_path",
    "random_crop",
    "random_flip",
    "read_idx",
    "read_idx_bytes",
    "steps",
    "synthetic",
]
