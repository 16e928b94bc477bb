"""Shared fixtures: tiny datasets and the real Fashion-MNIST folder when present."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnzip.data import Dataset, data_dirs, synthetic


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: two spin against each other on a shared 2-core
    machine (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_data() -> Dataset:
    """A learnable 10-class dataset of 28x28 grey images, in memory."""
    return synthetic(n_train=512, n_val=128, n_test=256, noise=1.5, seed=0)


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """The folder holding Fashion-MNIST; `make test` installs it, so it must be there."""
    for folder in data_dirs("fashion-mnist"):
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    pytest.fail("Fashion-MNIST is missing: run `make data` (apt-get install dataset-fashion-mnist)")


def encode_idx(array: np.ndarray, code: int = 0x08) -> bytes:
    """Encode ``array`` as IDX by hand: the reference the reader is tested against."""
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@pytest.fixture
def idx_bytes() -> Callable[..., bytes]:
    return encode_idx
