"""Data input cost: one LeNet-5 epoch on Fashion-MNIST from memory, a DataLoader, a PNG folder.

Each row trains a fresh LeNet-5 (seed 0) for one epoch, batch 128, and validates, on
the same images:

(a) the in-memory path: ``cz.data.load('fashion-mnist')``, tensors indexed per batch;
(b) a torch ``DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)`` over (a)'s
    tensors, as a user would write it, through ``cz.data.from_loaders``;
(c) a PNG image-folder export of the same images (train/<class>/, test/<class>/; written
    once under --cache and reused), opened with ``cz.data.load_path`` and decoded lazily
    with 0 and 2 DataLoader workers.

Also timed: opening the folder (``load_path``: every file's header is read, and the
channel statistics are measured on a bounded sample). Target: (b) within 1.15x of (a).

    .venv/bin/python benchmarks/data_input.py [--threads 1] [--cache DIR] [--quick]

Prints a markdown table (for BENCHMARKS.md), then a JSON line of the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from cnnzip import data as cz_data
from cnnzip.data.arrays import ArraySet
from cnnzip.errors import DataError
from cnnzip.models import get_model
from cnnzip.train import TrainConfig, fit

TARGET = 1.15  # (b) / (a), seconds per epoch
VAL_FRACTION = 1 / 12  # Fashion-MNIST's 5,000 of 60,000, for (a) and (c) alike
QUICK = 512  # training images of a --quick run (and a quarter as many test images)
CFG = TrainConfig(epochs=1, batch_size=128, seed=0)
T = TypeVar("T")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest when busy)")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cnnzip-bench" / "fashion-mnist-png",
        help="folder the PNG export is written to once and reused from",
    )
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="for (c)")
    p.add_argument("--quick", action="store_true", help=f"smoke run on {QUICK} images")
    return p.parse_args()


def epoch_seconds(data: cz_data.Dataset) -> float:
    """Seconds of one epoch (training and validation) of a fresh LeNet-5 on ``data``."""
    torch.manual_seed(0)
    model = get_model("lenet5", in_chans=data.input_shape[0], img_size=data.input_shape[1])
    return fit(model, data, CFG, progress=False).history[0]["seconds"]


def as_user_loaders(data: cz_data.Dataset) -> cz_data.Dataset:
    """(b): the in-memory tensors of ``data`` behind DataLoaders a user would write."""

    def loader(split: cz_data.Split, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(TensorDataset(split.x, split.y), batch_size=batch_size, shuffle=shuffle)

    return cz_data.from_loaders(
        train=loader(data.train, CFG.batch_size, shuffle=True),
        val=loader(data.val, CFG.eval_batch_size, shuffle=False),
        test=loader(data.test, CFG.eval_batch_size, shuffle=False),
        num_classes=data.num_classes,
    )


def raw_fashion_mnist(limit: int | None) -> ArraySet:
    """The uint8 images and labels of Fashion-MNIST as stored (the first ``limit``)."""
    for folder in cz_data.data_dirs("fashion-mnist"):
        try:
            found = cz_data.open_path(folder).data
            break
        except DataError:  # not this candidate folder
            continue
    else:
        raise SystemExit("Fashion-MNIST not found: run `make data` or set CNNZIP_DATA")
    n_test = None if limit is None else max(1, limit // 4)
    return ArraySet(
        x_train=found.x_train[:limit],
        y_train=found.y_train[:limit],
        x_test=found.x_test[:n_test],
        y_test=found.y_test[:n_test],
        classes=found.classes,
    )


def export_pngs(raw: ArraySet, cache: Path) -> Path:
    """The images of ``raw`` as cache/<n_train>-<n_test>/{train,test}/<label>/<i>.png,
    written once: into a temporary folder renamed when complete, so an interrupted
    export is never taken for a finished one."""
    folder = cache / f"{len(raw.y_train)}-{len(raw.y_test)}"
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cache, prefix=".partial-"))
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        for label in np.unique(y):
            (partial / split / str(label)).mkdir(parents=True)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):  # image: (28, 28) uint8
            Image.fromarray(image).save(partial / split / str(label) / f"{i:05d}.png")
    try:
        partial.rename(folder)
    except OSError:  # another run finished the same export first
        shutil.rmtree(partial)
    return folder


def timed(make: Callable[[], T]) -> tuple[T, float]:
    """``make()`` and the seconds it took."""
    start = time.perf_counter()
    value = make()
    return value, time.perf_counter() - start


def table(rows: list[tuple[str, float]], open_seconds: float, n_images: int) -> str:
    base = rows[0][1]
    lines = ["| input | seconds / epoch | vs (a) |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |" for name, seconds in rows]
    ratio = rows[1][1] / base
    verdict = "met" if ratio <= TARGET else "missed"
    lines += [
        "",
        f"Opening the {n_images:,}-image folder (header scan + statistics sample): "
        f"{open_seconds:.2f} s.",
        f"Target (b) within {TARGET:.2f}x of (a): {ratio:.2f}x, {verdict}.",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    limit = QUICK if args.quick else None
    memory = cz_data.load("fashion-mnist", limit=limit, val_fraction=VAL_FRACTION)
    epoch_seconds(cz_data.load("fashion-mnist", limit=256))  # warm-up: torch's first calls
    raw = raw_fashion_mnist(limit)
    folder, export_seconds = timed(lambda: export_pngs(raw, args.cache))
    rows = [
        ("(a) in memory", epoch_seconds(memory)),
        ("(b) DataLoader(TensorDataset), from_loaders", epoch_seconds(as_user_loaders(memory))),
    ]
    opens = []
    for workers in args.workers:
        opened, seconds = timed(
            lambda w=workers: cz_data.load_path(folder, val_fraction=VAL_FRACTION, workers=w)
        )
        opens.append(seconds)
        rows.append((f"(c) PNG folder, {workers} workers", epoch_seconds(opened)))
    open_seconds = opens[0]  # the first open: the files' headers not yet read this run
    n_images = len(raw.y_train) + len(raw.y_test)
    print(f"LeNet-5, one epoch, batch {CFG.batch_size}, {args.threads} thread(s), "
          f"{len(memory.train):,} train + {len(memory.val):,} val images\n")  # fmt: skip
    print(table(rows, open_seconds, n_images))
    summary = {
        "threads": args.threads,
        "train_images": len(memory.train),
        "seconds_per_epoch": dict(rows),
        "open_seconds": open_seconds,
        "export_seconds": export_seconds,
        "folder": str(folder),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
