"""Datasets held in memory as normalised tensors.

The datasets cnnzip trains on (Fashion-MNIST, MNIST, a synthetic one for
tests) fit in memory many times over, so a dataset is three tensor splits and
batches are cut by indexing (see ``loader``), which is far faster than a
per-sample DataLoader on 2 cores.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnzip.data.idx import read_idx
from cnnzip.errors import DataError

__all__ = ["Dataset", "Split", "data_dirs", "list_datasets", "load", "synthetic"]


@dataclass(frozen=True)
class Split:
    """One split: inputs (N, C, H, W) float32, normalised; labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits plus what a model needs to know."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: float
    std: float

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample."""
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]


# name -> Debian default folder and how a user gets the files
_SOURCES: dict[str, tuple[str, str]] = {
    "fashion-mnist": (
        "/usr/share/datasets/fashion-mnist",
        "apt-get install dataset-fashion-mnist (Debian), or download the four "
        "*-ubyte.gz files of zalandoresearch/fashion-mnist into a folder and set CNNZIP_DATA",
    ),
    "mnist": (
        "/usr/share/datasets/mnist",
        "download the four *-ubyte.gz files of MNIST into a folder and set CNNZIP_DATA",
    ),
}
_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def list_datasets() -> list[str]:
    """Names ``load`` accepts (plus ``synthetic``)."""
    return [*sorted(_SOURCES), "synthetic"]


def data_dirs(name: str, root: str | Path | None = None) -> list[Path]:
    """Folders searched for ``name``: those of ``root`` if given, else of $CNNZIP_DATA if
    set, else the Debian folder. A location the user named is the only one searched, so
    one that lacks the set is an error instead of a silent fallback to another copy."""
    base = root or os.environ.get("CNNZIP_DATA")
    if base:
        return [Path(base), Path(base) / name]
    return [Path(_SOURCES[name][0])]


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_raw(name: str, root: str | Path | None) -> dict[str, np.ndarray]:
    """The four IDX arrays of ``name`` from the first searched folder that has them all."""
    gaps = []
    for folder in data_dirs(name, root):
        paths = {key: _find_file(folder, stem) for key, stem in _FILES.items()}
        if all(paths.values()):
            return {key: read_idx(path) for key, path in paths.items()}  # type: ignore[arg-type]
        missing = [_FILES[key] for key, path in paths.items() if path is None]
        if not folder.is_dir():
            gaps.append(f"{folder} does not exist")
        elif len(missing) < len(_FILES):
            gaps.append(f"{folder} lacks {', '.join(missing)} (raw or .gz)")
        else:
            gaps.append(f"{folder} holds none of its four files")
    raise DataError(f"{name} not found: {'; '.join(gaps)}. To get it: {_SOURCES[name][1]}")


def _check_pair(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """One split's files: matching counts, images (N, H, W) with sane pixels, usable labels."""
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{name}: images {images.shape} and labels {labels.shape} do not match "
            "(expected (N, H, W) images and N labels)"
        )
    if min(images.shape) < 1:
        raise DataError(f"{name}: images of shape {images.shape} hold no pixels")
    _check_pixels(name, images)
    _check_labels(name, labels, num_classes)


def _check_pixels(name: str, images: np.ndarray) -> None:
    """Integer images are 8-bit grey levels (0..255); float ones must be finite in float32."""
    if images.dtype.kind == "u" and images.dtype.itemsize == 1:
        return  # uint8: in range by construction
    if images.dtype.kind in "iu":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DataError(f"{name}: pixel values {low}..{high} are outside 0..255")
    elif not np.isfinite(images.astype(np.float32)).all():
        raise DataError(f"{name}: images hold NaN or infinite pixels (or values beyond float32)")


def _check_labels(name: str, labels: np.ndarray, num_classes: int) -> None:
    """Integer labels in [0, num_classes), at least two classes.

    A split with a single class is refused: on a one-class test set a model that
    always answers that class scores 100%, and a one-class training set teaches
    nothing; such a file is nearly always truncated or mislabelled. The check is
    on the files, before ``limit``, so a tiny ``limit`` still works.
    """
    if labels.dtype.kind not in "iu":
        raise DataError(
            f"{name}: labels are stored as {labels.dtype.name}; they must be integers "
            "(IDX type 0x08 to 0x0C)"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{name}: labels {low}..{high} are outside 0..{num_classes - 1}")
    if low == high:
        raise DataError(
            f"{name}: every label is {low}; a split needs at least two classes "
            "(is the label file truncated or the wrong one?)"
        )


def _check_splits(name: str, raw: dict[str, np.ndarray], num_classes: int) -> None:
    """Both splits valid and of one image size, so nothing fails after an epoch."""
    _check_pair(f"{name} train", raw["train_x"], raw["train_y"], num_classes)
    _check_pair(f"{name} test", raw["test_x"], raw["test_y"], num_classes)
    train_hw, test_hw = raw["train_x"].shape[1:], raw["test_x"].shape[1:]
    if train_hw != test_hw:
        raise DataError(
            f"{name}: training images are {train_hw[0]}x{train_hw[1]} but test images "
            f"{test_hw[0]}x{test_hw[1]}; both splits must have one image size"
        )


def _to_split(images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> Split:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, H, W)
    return Split(x=(x - mean) / std, y=torch.from_numpy(labels.astype(np.int64)))


def default_val_size(n_train: int) -> int:
    """Validation images taken from ``n_train`` training images: the conventional 5,000 of
    a full-size set (Fashion-MNIST's 60,000 -> 55,000 / 5,000), a tenth of a smaller one
    so a user's folder of a few thousand images still loads, and at least one while
    one image is left to train on."""
    if n_train >= 50_000:
        return 5000
    return min(max(1, n_train // 10), n_train - 1)


def _split_train_val(
    x: np.ndarray, y: np.ndarray, val_size: int, seed: int
) -> tuple[np.ndarray, ...]:
    """A fixed-seed random train/validation split, so every run validates on the same images."""
    if not 0 <= val_size < len(y):
        raise DataError(
            f"val_size={val_size} must be in [0, {len(y)}): the training split has {len(y)} "
            "images; leave val_size unset for a tenth of them"
        )
    order = np.random.default_rng(seed).permutation(len(y))
    val, train = order[:val_size], order[val_size:]
    return x[train], y[train], x[val], y[val]


def load(
    name: str = "fashion-mnist",
    *,
    root: str | Path | None = None,
    val_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> Dataset:
    """Load an IDX image-classification dataset, normalised with its training mean and std.

    The files are looked for in ``root`` if given, else $CNNZIP_DATA, else the
    Debian folder (``data_dirs``), and checked before anything trains on them. The
    validation split is ``val_size`` training images chosen with ``seed`` (default:
    ``default_val_size`` of the training split before ``limit``); the
    test split is the official one. ``limit`` keeps only the first ``limit``
    training and test images (for quick tests).
    """
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1 image, got {limit}")
    if name == "synthetic":
        return synthetic(seed=seed)
    if name not in _SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    raw = _read_raw(name, root)
    num_classes = 10
    _check_splits(name, raw, num_classes)
    train_x, train_y, test_x, test_y = raw["train_x"], raw["train_y"], raw["test_x"], raw["test_y"]
    if val_size is None:
        val_size = default_val_size(len(train_y))
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
        test_x, test_y = test_x[:limit], test_y[:limit]
        val_size = min(val_size, len(train_y) // 5)
    # statistics of the whole official training set, as is conventional
    pixels = raw["train_x"].astype(np.float32) / 255.0
    mean, std = float(pixels.mean()), float(pixels.std())
    if not (math.isfinite(std) and std > 0):
        raise DataError(f"{name}: training pixels have std {std}; cannot normalise them")
    tx, ty, vx, vy = _split_train_val(train_x, train_y, val_size, seed)
    return Dataset(
        name=name,
        train=_to_split(tx, ty, mean, std),
        val=_to_split(vx, vy, mean, std),
        test=_to_split(test_x, test_y, mean, std),
        num_classes=num_classes,
        mean=mean,
        std=std,
    )


def synthetic(
    *,
    n_train: int = 1024,
    n_val: int = 256,
    n_test: int = 256,
    num_classes: int = 10,
    shape: tuple[int, int, int] = (1, 28, 28),
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """A learnable toy dataset: one random prototype image per class plus Gaussian noise.

    For tests that need real learning in seconds without any files.
    """
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.randn((num_classes, *shape), generator=gen)  # (K, C, H, W)

    def make(n: int) -> Split:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        x = prototypes[y] + noise * torch.randn((n, *shape), generator=gen)
        return Split(x=x, y=y)

    return Dataset(
        name="synthetic",
        train=make(n_train),
        val=make(n_val),
        test=make(n_test),
        num_classes=num_classes,
        mean=0.0,
        std=1.0,
    )
