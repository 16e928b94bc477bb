"""Reader for the *binary* version of CIFAR-10 and CIFAR-100.

CIFAR-10: ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``, each
record one label byte then 3072 pixel bytes (3 x 32 x 32, channel planes).
CIFAR-100: ``train.bin`` and ``test.bin``, each record a coarse and a fine label byte
then the 3072 pixel bytes; the fine label (100 classes) is the one used.

The pickled "python version" is never read: unpickling a downloaded file runs
whatever code it holds. Every file's length must be a whole number of records, so a
truncated download is caught here instead of as shifted labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzip.data.arrays import ArraySet, check_labels
from cnnzip.errors import DataError

__all__ = ["find_cifar", "is_pickled_cifar", "read_cifar"]

SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32
# variant -> (train files pattern, test file, label bytes per record, classes, names file)
_VARIANTS = {
    "cifar-10": ("data_batch_*.bin", "test_batch.bin", 1, 10, "batches.meta.txt"),
    "cifar-100": ("train.bin", "test.bin", 2, 100, "fine_label_names.txt"),
}


def find_cifar(folder: Path) -> str | None:
    """ "cifar-10" or "cifar-100" when ``folder`` holds that variant's binary files."""
    for variant, (train, test, *_) in _VARIANTS.items():
        if sorted(folder.glob(train)) and (folder / test).is_file():
            return variant
    return None


def is_pickled_cifar(folder: Path) -> bool:
    """True for the "python version" (``data_batch_1`` / ``train`` and a ``batches.meta`` /
    ``meta`` pickle), so the user is told to fetch the binary one instead."""
    pickles = ("data_batch_1", "batches.meta"), ("train", "meta")
    return any(all((folder / name).is_file() for name in names) for names in pickles)


def _read_records(path: Path, label_bytes: int, num_classes: int) -> tuple[np.ndarray, ...]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one binary batch file."""
    record = label_bytes + PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records; "
            "the file is truncated or not the binary version (download the '*-binary.tar.gz')"
        )
    rows = raw.reshape(-1, record)
    labels = check_labels(str(path), rows[:, label_bytes - 1], num_classes)
    return rows[:, label_bytes:].reshape(-1, *SHAPE), labels


def _class_names(folder: Path, names_file: str, num_classes: int) -> tuple[str, ...]:
    """Names from the set's own text file when present and complete, else "0".."N-1"."""
    path = folder / names_file
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) == num_classes:
            return tuple(names)
    return tuple(str(i) for i in range(num_classes))


def read_cifar(folder: str | Path) -> ArraySet:
    """Read a CIFAR-10 or CIFAR-100 binary folder (the variant is told by its file names)."""
    folder = Path(folder)
    variant = find_cifar(folder)
    if variant is None:
        raise DataError(
            f"{folder}: no CIFAR binary files (expected data_batch_*.bin and test_batch.bin "
            "for CIFAR-10, or train.bin and test.bin for CIFAR-100)"
        )
    train_glob, test_name, label_bytes, num_classes, names_file = _VARIANTS[variant]
    parts = [_read_records(p, label_bytes, num_classes) for p in sorted(folder.glob(train_glob))]
    x_test, y_test = _read_records(folder / test_name, label_bytes, num_classes)
    return ArraySet(
        x_train=np.concatenate([x for x, _ in parts]),
        y_train=np.concatenate([y for _, y in parts]),
        x_test=x_test,
        y_test=y_test,
        classes=_class_names(folder, names_file, num_classes),
    )
