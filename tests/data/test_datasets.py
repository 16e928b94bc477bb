"""Dataset loading: the real Fashion-MNIST, the search order, errors, splits, batching."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnzip.data import batches, load, num_batches, read_idx, synthetic
from cnnzip.data.datasets import default_val_size
from cnnzip.errors import DataError


@pytest.mark.slow
def test_fashion_mnist_shapes_normalisation_and_split(fmnist_dir: Path) -> None:
    data = load("fashion-mnist", root=fmnist_dir)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    # the validation images are the first 5,000 of a seed-0 permutation, as ever
    images = read_idx(fmnist_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(fmnist_dir / "train-labels-idx1-ubyte.gz")
    val = np.random.default_rng(0).permutation(60000)[:5000]
    assert torch.equal(data.val.y, torch.from_numpy(labels[val].astype(np.int64)))
    pixels = data.val.x[:, 0] * data.std[0] + data.mean[0]  # one channel
    assert torch.allclose(pixels, torch.from_numpy(images[val] / 255.0).float(), atol=1e-5)
    assert data.input_shape == (1, 28, 28)
    # published statistics of the Fashion-MNIST training images
    assert data.mean == pytest.approx((0.2860,), abs=1e-3)
    assert data.std == pytest.approx((0.3530,), abs=1e-3)
    pixels = torch.cat([data.train.x, data.val.x])
    assert float(pixels.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(pixels.std()) == pytest.approx(1.0, abs=1e-3)
    assert torch.bincount(data.test.y).tolist() == [1000] * 10


@pytest.mark.slow
def test_split_is_fixed_by_seed(fmnist_dir: Path) -> None:
    a = load("fashion-mnist", root=fmnist_dir, limit=1000, seed=0)
    b = load("fashion-mnist", root=fmnist_dir, limit=1000, seed=0)
    c = load("fashion-mnist", root=fmnist_dir, limit=1000, seed=1)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.val.x, c.val.x)
    assert len(a.train) + len(a.val) == 1000 and len(a.test) == 1000


@pytest.mark.parametrize(
    ("n", "val"),
    [(60000, 5000), (50000, 5000), (49999, 4999), (5000, 500), (600, 60), (9, 1), (2, 1), (1, 0)],
)
def test_default_val_size_adapts_to_the_training_split(n: int, val: int) -> None:
    assert default_val_size(n) == val


def test_a_small_folder_loads_with_a_tenth_for_validation(tmp_path: Path, idx_bytes) -> None:
    write_fake_dataset(tmp_path, idx_bytes, n=600)  # failed with "val_size=5000 must be in"
    data = load("mnist", root=tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (540, 60, 600)
    with pytest.raises(DataError, match=r"val_size=600 must be in \[0, 600\).*leave val_size"):
        load("mnist", root=tmp_path, val_size=600)


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


def test_named_folders_never_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idx_bytes
) -> None:
    write_fake_dataset(tmp_path / "env", idx_bytes)  # a valid set elsewhere must not be used
    monkeypatch.setenv("CNNZIP_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"not found: .*absent does not exist"):
        load("mnist", root=tmp_path / "absent")
    write_fake_dataset(tmp_path / "partial", idx_bytes)
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="partial lacks t10k-labels-idx1-ubyte"):
        load("mnist", root=tmp_path / "partial")
    monkeypatch.setenv("CNNZIP_DATA", str(tmp_path / "absent"))  # no fallback to Debian's
    with pytest.raises(DataError, match="not found"):
        load("fashion-mnist")


def _labels(values: list[float], dtype: str = "u1") -> np.ndarray:
    return np.array(values * 2, dtype=f">{dtype}")  # 20 labels, like write_fake_dataset


def _images(value: float, dtype: str = "u1", side: int = 28) -> np.ndarray:
    images = np.full((20, side, side), 7, dtype=f">{dtype}")
    images[3, 4, 5] = value
    return images


# (file to replace, its new content, IDX type code, expected message)
BAD_CONTENT = [
    ("train-labels-idx1-ubyte", _labels(list(range(-1, 9)), "i1"), 0x09, r"labels -1\.\.8"),
    ("t10k-labels-idx1-ubyte", _labels(list(range(1, 11))), 0x08, r"labels 1\.\.10 are outside"),
    ("train-labels-idx1-ubyte", _labels([1.7] * 10, "f4"), 0x0D, "must be integers"),
    ("t10k-labels-idx1-ubyte", _labels([float("nan")] * 10, "f8"), 0x0E, "must be integers"),
    ("train-images-idx3-ubyte", _images(float("nan"), "f4"), 0x0D, "NaN or infinite"),
    ("t10k-images-idx3-ubyte", _images(float("inf"), "f8"), 0x0E, "NaN or infinite"),
    ("train-images-idx3-ubyte", _images(300, "i4"), 0x0C, r"pixel values 7\.\.300"),
    ("train-images-idx3-ubyte", _images(-3, "i2"), 0x0B, r"pixel values -3\.\.7"),
    ("t10k-images-idx3-ubyte", _images(0, side=20), 0x08, "28x28 but test images 20x20"),
    ("t10k-labels-idx1-ubyte", _labels([4] * 10), 0x08, "every label is 4"),
    ("train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8), 0x08, "do not match"),
]


@pytest.mark.parametrize(("stem", "array", "code", "message"), BAD_CONTENT)
def test_bad_content_is_refused_at_load(
    tmp_path: Path, idx_bytes, stem: str, array: np.ndarray, code: int, message: str
) -> None:
    write_fake_dataset(tmp_path, idx_bytes)
    for old in tmp_path.glob(f"{stem}*"):
        old.unlink()
    (tmp_path / stem).write_bytes(idx_bytes(array, code))
    with pytest.raises(DataError, match=message):
        load("mnist", root=tmp_path, val_size=5)


def test_constant_images_and_bad_limit_are_refused(tmp_path: Path, idx_bytes) -> None:
    write_fake_dataset(tmp_path, idx_bytes)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(_images(7))))
    with pytest.raises(DataError, match="std 0"):
        load("mnist", root=tmp_path, val_size=5)
    for name in ("mnist", "synthetic"):
        with pytest.raises(DataError, match="limit must be >= 1"):
            load(name, root=tmp_path, limit=-5)


def test_signed_and_wide_types_load_when_valid(tmp_path: Path, idx_bytes) -> None:
    write_fake_dataset(tmp_path, idx_bytes)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        idx_bytes(_labels(list(range(10)), "i4"), 0x0C)
    )
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(_images(255, "i2"), 0x0B))
    data = load("mnist", root=tmp_path, val_size=5)
    assert len(data.train) == 15 and data.train.y.dtype == torch.int64
    assert sorted(torch.cat([data.train.y, data.val.y]).tolist()) == sorted(list(range(10)) * 2)


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
    with pytest.raises(DataError, match="batch_size must be >= 1, got 0"):
        next(batches(data.train, 0))
