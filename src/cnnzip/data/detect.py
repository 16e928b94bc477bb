"""Which on-disk format a PATH holds, and opening it.

``--data`` takes a registered name or a PATH; a PATH is told apart by its contents,
not by a flag, so a user points at what they have. The order is fixed so a folder
that matches two formats is read one way always: an ``.npz`` file, then a folder of
IDX files, of CIFAR binaries, then of class sub-folders of images.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from torch.utils.data import Subset

from cnnzip.data.arrays import ArraySet, check_labels, check_pair, read_npz
from cnnzip.data.cifar import find_cifar, is_pickled_cifar, read_cifar
from cnnzip.data.datasets import (
    _FILES,
    DEFAULT_VAL_FRACTION,
    Dataset,
    Normalization,
    _find_file,
    from_arrays,
)
from cnnzip.data.folders import FolderSet, ImageFolder, find_image_folder, read_image_folder
from cnnzip.data.idx import read_idx
from cnnzip.data.loader import STREAM_SAMPLE, from_loaders, measure_stream
from cnnzip.errors import DataError

__all__ = ["FORMATS", "OnDisk", "detect_format", "load_path", "open_path"]

# an image folder without test/ keeps for test the files whose class/name hashes (crc32) below
# this share of 2**32: decided per file, not by shuffling the file count, so images added
# after training never move an existing one and ``eval`` of a finished run scores the
# very images its training never saw
TEST_SHARE = 1 / 6

FORMATS = ("npz", "idx", "cifar", "image-folder")
_EXPECTED = (
    "an .npz file with x_train, y_train, x_test, y_test; "
    "a folder of IDX files (train-images-idx3-ubyte[.gz] and the three others); "
    "a CIFAR-10/100 binary folder (data_batch_*.bin + test_batch.bin, or train.bin + test.bin); "
    "or an image folder with one sub-folder of PNG/JPEG files per class"
)


@dataclass(frozen=True)
class OnDisk:
    """What ``open_path`` found: the format's name and its data (arrays held in
    memory, or lazy Datasets for an image folder)."""

    format: str
    data: ArraySet | FolderSet

    @property
    def classes(self) -> tuple[str, ...]:
        return self.data.classes

    @property
    def names(self) -> tuple[str, ...] | None:
        """The class names when the data names them (None: an .npz without ``classes``,
        whose names are only its label numbers)."""
        return self.data.classes if self.data.named else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.input_shape


def _is_idx(folder: Path) -> bool:
    return all(_find_file(folder, stem) for stem in _FILES.values())


def detect_format(path: str | Path) -> str:
    """One of ``FORMATS`` for ``path``, or a DataError saying what was expected."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz"
        raise DataError(f"{path}: a file cnnzip cannot read as data; expected {_EXPECTED}")
    if _is_idx(path):
        return "idx"
    if find_cifar(path):
        return "cifar"
    if find_image_folder(path):
        return "image-folder"
    if is_pickled_cifar(path):
        raise DataError(
            f"{path}: CIFAR's pickled python version, which cnnzip never reads (unpickling "
            "runs code); download the binary version (cifar-10-binary.tar.gz or "
            "cifar-100-binary.tar.gz) and point at its folder"
        )
    raise DataError(f"{path}: not a dataset cnnzip can detect; expected {_EXPECTED}")


def _read_idx_folder(folder: Path) -> ArraySet:
    """The four IDX files of an MNIST-style folder, 10 classes, checked per split."""
    raw = {key: read_idx(_find_file(folder, stem)) for key, stem in _FILES.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        check_pair(f"{folder} ({split})", raw[f"{split}_x"], raw[f"{split}_y"])
    return ArraySet(
        x_train=raw["train_x"],
        y_train=check_labels(f"{folder / _FILES['train_y']}", raw["train_y"], 10),
        x_test=raw["test_x"],
        y_test=check_labels(f"{folder / _FILES['test_y']}", raw["test_y"], 10),
        classes=tuple(str(i) for i in range(10)),
    )


def open_path(path: str | Path, *, size: int | None = None) -> OnDisk:
    """Detect the format of ``path`` and read it; ``size`` resizes an image folder's
    images to size x size. The other formats have one stored size, so there ``size``
    may only repeat it: silently training at another size than asked would mislead."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "image-folder":
        return OnDisk(fmt, read_image_folder(path, size=size))
    readers = {"npz": read_npz, "idx": _read_idx_folder, "cifar": read_cifar}
    found = OnDisk(fmt, readers[fmt](path))
    if size is not None and list(found.input_shape).count(size) < 2:
        raise DataError(
            f"{path}: size={size} (--input) resizes image folders only; this {fmt} data "
            f"is stored as {found.input_shape}: drop the size or resize the arrays yourself"
        )
    return found


def file_key(path: Path) -> int:
    """crc32 of an image's ``class/file`` path: what decides, for that file alone, whether
    it is a test image of a folder without test/ (below ``TEST_SHARE`` of 2**32)."""
    return zlib.crc32(f"{path.parent.name}/{path.name}".encode())


def _cut_test(train: ImageFolder) -> tuple[Subset, Subset]:
    """(train, test) of a folder that has no test/: the images whose ``file_key`` is below
    ``TEST_SHARE`` of 2**32 (about a sixth). A folder so small that none (or all) is
    keeps the one lowest (or highest) key on its side instead, so both splits hold one."""
    if len(train) < 2:
        raise DataError(
            f"{train.root}: one image cannot be cut into training and test images; add images"
        )
    keys = [file_key(path) for path, _ in train.samples]
    by_key = sorted(range(len(keys)), key=keys.__getitem__)
    n_test = sum(key < TEST_SHARE * 2**32 for key in keys)
    n_test = min(max(n_test, 1), len(keys) - 1)
    return Subset(train, sorted(by_key[n_test:])), Subset(train, sorted(by_key[:n_test]))


def _folder_dataset(
    found: FolderSet,
    name: str,
    val_fraction: float,
    seed: int,
    workers: int,
    stats: Normalization | None,
) -> Dataset:
    """Streamed splits of an image folder, every batch normalised with ``stats``, by
    default measured on ``STREAM_SAMPLE`` training images (before the validation cut, so
    they do not depend on ``val_fraction``); the class count is given, so nothing is read
    to infer it."""
    train, test = (found.train, found.test) if found.test else _cut_test(found.train)
    return from_loaders(
        train=train,
        test=test,
        val=found.val,
        num_classes=len(found.classes),
        val_fraction=val_fraction,
        seed=seed,
        workers=workers,
        stats=stats or measure_stream(train, name, STREAM_SAMPLE, workers),
        name=name,
    )


def load_path(
    path: str | Path,
    *,
    size: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    workers: int = 0,
    stats: Normalization | None = None,
    augment: bool | None = None,
) -> Dataset:
    """A ``Dataset`` from whatever ``path`` holds (``open_path``): arrays in memory
    through ``from_arrays``, an image folder streamed through ``from_loaders``. Without a
    val split, ``val_fraction`` of train is cut with ``seed``; an image folder without
    test/ keeps about a sixth of its images for test, chosen per file by name
    (``file_key``). Inputs are normalised per channel with ``stats`` (default:
    measured on train). ``augment`` (``Dataset.with_augment``): by default training crops
    and flips colour images of 32 px or more. The class names are kept where the data
    names them (``Dataset.classes``)."""
    found = open_path(path, size=size)
    name = str(path)
    if isinstance(found.data, FolderSet):
        data = _folder_dataset(found.data, name, val_fraction, seed, workers, stats)
    else:
        data = _arrays_dataset(found.data, name, val_fraction, seed, stats)
    return replace(data, classes=found.names).with_augment(augment)


def _arrays_dataset(
    data: ArraySet, name: str, val_fraction: float, seed: int, stats: Normalization | None
) -> Dataset:
    """Arrays read from disk, in memory (``from_arrays``)."""
    return from_arrays(
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        data.x_val,
        data.y_val,
        val_fraction=val_fraction,
        seed=seed,
        num_classes=data.num_classes,
        stats=stats,
        name=name,
    )
