"""Dataset loading: the real Fashion-MNIST, the search order, errors, splits, batching."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnzip.data import batches, load, num_batches, synthetic
from cnnzip.errors import DataError


def test_fashion_mnist_shapes_and_normalisation(fmnist_dir: Path) -> None:
    data = load("fashion-mnist", root=fmnist_dir)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    assert data.input_shape == (1, 28, 28)
    # published statistics of the Fashion-MNIST training images
    assert data.mean == pytest.approx(0.2860, abs=1e-3)
    assert data.std == pytest.approx(0.3530, abs=1e-3)
    pixels = torch.cat([data.train.x, data.val.x])
    assert float(pixels.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(pixels.std()) == pytest.approx(1.0, abs=1e-3)
    assert torch.bincount(data.test.y).tolist() == [1000] * 10


def test_split_is_fixed_by_seed(fmnist_dir: Path) -> None:
    a = load("fashion-mnist", root=fmnist_dir, limit=1000, seed=0)
    b = load("fashion-mnist", root=fmnist_dir, limit=1000, seed=0)
    c = load("fashion-mnist", root=fmnist_dir, limit=1000, seed=1)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.val.x, c.val.x)
    assert len(a.train) + len(a.val) == 1000 and len(a.test) == 1000


def write_fake_dataset(folder: Path, idx_bytes, n: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for split in ("train", "t10k"):
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))  # raw works too


def test_search_order_root_then_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idx_bytes
) -> None:
    write_fake_dataset(tmp_path / "env" / "mnist", idx_bytes, n=30)
    write_fake_dataset(tmp_path / "root", idx_bytes, n=20)
    monkeypatch.setenv("CNNZIP_DATA", str(tmp_path / "env"))
    assert len(load("mnist", root=tmp_path / "root", val_size=5).test) == 20
    assert len(load("mnist", val_size=5).test) == 30  # $CNNZIP_DATA/mnist


def test_missing_dataset_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNZIP_DATA", str(tmp_path))
    with pytest.raises(DataError, match="CNNZIP_DATA"):
        load("mnist", root=tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load("cifar")


def test_mismatched_labels_are_refused(tmp_path: Path, idx_bytes) -> None:
    write_fake_dataset(tmp_path, idx_bytes, n=20)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(DataError, match="do not match"):
        load("mnist", root=tmp_path, val_size=5)


def test_batches_cover_each_sample_once_and_shard_global_batches() -> None:
    data = synthetic(n_train=103, n_val=8, n_test=8)
    single = list(batches(data.train, 10, shuffle=True, seed=3, epoch=2))
    assert len(single) == num_batches(103, 10) == 11
    seen = torch.cat([y for _, y in single])
    assert sorted(seen.tolist()) == sorted(data.train.y.tolist())
    ranks = [list(batches(data.train, 10, shuffle=True, seed=3, epoch=2, rank=r, world_size=2))
             for r in range(2)]  # fmt: skip
    for b, (x, _) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][b][0], ranks[1][b][0]]), x)
    other_epoch = next(batches(data.train, 10, shuffle=True, seed=3, epoch=3))[1]
    assert not torch.equal(other_epoch, single[0][1])
