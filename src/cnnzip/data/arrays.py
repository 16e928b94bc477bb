"""Datasets a user keeps as arrays on disk: an ``.npz`` with ``x_train, y_train,
x_test, y_test`` and optionally ``x_val, y_val``.

The file is opened with ``allow_pickle=False``: an ``.npz`` may come from anywhere,
and unpickling one runs whatever code it holds. ``ArraySet`` is also what the
CIFAR reader returns, so every on-disk format that fits in memory ends as one type.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from cnnzip.data.idx import MAX_BYTES
from cnnzip.errors import DataError

__all__ = ["ArraySet", "check_labels", "check_pair", "read_npz"]

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")


@dataclass(frozen=True)
class ArraySet:
    """Raw splits as read from disk (images as stored, labels int64) plus class names;
    normalising and cutting a validation split are left to the caller."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    named: bool = True  # False: ``classes`` are only the label numbers, no names given

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample as stored (no channel axis is added here)."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def check_labels(source: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` as int64 after checking they are 1-D integers in [0, num_classes):
    an out-of-range label would otherwise surface as a CUDA assert or an IndexError
    mid-epoch, far from the file that caused it."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{source}: labels must be a 1-D integer array, got {labels.dtype.name} "
            f"of shape {labels.shape}"
        )
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise DataError(
                f"{source}: labels {low}..{high} are outside 0..{num_classes - 1}; "
                "fix the labels or the class list"
            )
    return labels.astype(np.int64)


def check_pair(source: str, x: np.ndarray, y: np.ndarray) -> None:
    """One split: as many samples as labels, and at least one sample of at least 2-D."""
    if x.ndim < 3 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise DataError(
            f"{source}: inputs {x.shape} and labels {y.shape} do not match "
            "(expected N >= 1 samples of shape (H, W), (C, H, W) or (H, W, C) and N labels)"
        )


def _claimed_bytes(member: IO[bytes]) -> int:
    """The bytes the .npy header at the start of ``member`` says its array holds."""
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0}
    readers[(2, 0)] = np.lib.format.read_array_header_2_0
    if version not in readers:
        raise ValueError(f".npy format version {version[0]}.{version[1]} (1.0 or 2.0 expected)")
    shape, _, dtype = readers[version](member)
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow


def _check_headers(path: Path, limit: int = MAX_BYTES) -> None:
    """Every array's .npy header read before its data: a claimed size over ``limit``, or
    over what the zip member holds, is refused instead of attempting the allocation (a
    few bytes of header can claim terabytes)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as member:
                    claimed = _claimed_bytes(member)
            except (ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"{path}: array {key} has a corrupt .npy header ({exc})") from None
            if claimed > min(limit, info.file_size):
                why = f"more than the {limit:,} bytes allowed" if claimed > limit else (
                    f"but its member holds {info.file_size:,}")  # fmt: skip
                raise DataError(
                    f"{path}: array {key} claims {claimed:,} bytes, {why}: the file is corrupt "
                    "or not one np.savez wrote"
                )


def _read_keys(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file, refusing pickled objects with one clear error."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz (zip) archive; write one with np.savez")
    try:
        _check_headers(path)
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except MemoryError:
        raise DataError(f"{path}: its arrays do not fit in memory") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: holds pickled Python objects, which cnnzip never loads "
                "(unpickling runs code); save plain numeric arrays with np.savez"
            ) from None
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc}); the file is corrupt") from None


def _classes(path: Path, arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Class names from an optional ``classes`` string array, else "0".."max label"."""
    if "classes" in arrays:
        return tuple(str(name) for name in arrays["classes"].reshape(-1))
    labels = [arrays[key] for key in ("y_train", "y_test", "y_val") if key in arrays]
    high = max((int(y.max()) for y in labels if y.size and y.dtype.kind in "iu"), default=-1)
    return tuple(str(i) for i in range(high + 1))


def read_npz(path: str | Path) -> ArraySet:
    """Read and check an ``.npz`` of train/test (and optional val) arrays."""
    path = Path(path)
    arrays = _read_keys(path)
    missing = [key for key in REQUIRED if key not in arrays]
    if ("x_val" in arrays) != ("y_val" in arrays):
        missing.append("y_val" if "x_val" in arrays else "x_val")
    if missing:
        raise DataError(
            f"{path}: missing key(s) {', '.join(missing)}; an .npz dataset needs "
            f"{', '.join(REQUIRED)} (and optionally both x_val and y_val); it has "
            f"{', '.join(sorted(arrays)) or 'none'}"
        )
    splits = ["train", "test"] + (["val"] if "x_val" in arrays else [])
    for split in splits:
        check_pair(f"{path} ({split})", arrays[f"x_{split}"], arrays[f"y_{split}"])
        if arrays[f"x_{split}"].shape[1:] != arrays["x_train"].shape[1:]:
            raise DataError(
                f"{path}: x_{split} samples are {arrays[f'x_{split}'].shape[1:]} but x_train "
                f"samples {arrays['x_train'].shape[1:]}; every split needs one sample shape"
            )
    classes = _classes(path, arrays)
    labels = {
        split: check_labels(f"{path} (y_{split})", arrays[f"y_{split}"], len(classes))
        for split in splits
    }
    return ArraySet(
        x_train=arrays["x_train"],
        y_train=labels["train"],
        x_test=arrays["x_test"],
        y_test=labels["test"],
        classes=classes,
        x_val=arrays.get("x_val"),
        y_val=labels.get("val"),
        named="classes" in arrays,
    )
