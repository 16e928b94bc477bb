"""Streaming, counted: a map-style Dataset and an image folder are read sample by sample
as the training loop needs them (each sample once per epoch, the test split only when
evaluated), never materialised up front; and an image folder trains exactly as the same
pixels held in memory."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from cnnzip.data import from_arrays, from_loaders, load_path, open_path
from cnnzip.data.folders import ImageFolder
from cnnzip.train import Callback, TrainConfig, TrainState, evaluate, fit

CFG = TrainConfig(epochs=2, batch_size=16, seed=1)


def tiny_model(in_features: int, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, num_classes)
    )


class Counted(TorchDataset):
    """uint8 (H, W) images with labels 0, 1, 2, ...; ``reads`` lists every index read."""

    def __init__(self, n: int, side: int = 6) -> None:
        gen = torch.Generator().manual_seed(n)
        self.x = torch.randint(0, 256, (n, side, side), generator=gen, dtype=torch.uint8)
        self.y = torch.arange(n) % 3
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads.append(i)
        return self.x[i], int(self.y[i])


class ReadsPerEpoch(Callback):
    """The reads of ``log`` (a growing list of what was read) made during each epoch, and
    ``before``: how many were made before the first epoch."""

    def __init__(self, log: list) -> None:
        self.log, self.start, self.before, self.epochs = log, 0, -1, []

    def on_epoch_start(self, state: TrainState) -> None:
        self.start = len(self.log)
        self.before = self.start if self.before < 0 else self.before

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        self.epochs.append(Counter(self.log[self.start :]))


def test_a_map_style_dataset_is_read_once_per_epoch_and_test_once() -> None:
    """48 training samples (44 train + 4 val, the 1/12 cut) and 16 test: each epoch reads
    each of the 48 exactly once (the last batch of 44 / 16 is partial, not dropped); the
    test split is read only by ``evaluate``, each sample once. Before training exactly two
    samples are read: one for the data's input shape (cached), one as the batch ``fit``
    tries the model on."""
    train, test = Counted(48), Counted(16)
    data = from_loaders(train=train, test=test, num_classes=3)
    assert train.reads == [] and test.reads == []  # nothing read to build the Dataset
    counter = ReadsPerEpoch(train.reads)
    model = tiny_model(36, 3)
    fit(model, data, CFG, callbacks=[counter], progress=False)
    assert counter.epochs == [Counter(range(48))] * 2
    assert counter.before == 2 and len(train.reads) == 2 + 2 * 48 and test.reads == []
    evaluate(model, data.test, batch_size=5)
    assert Counter(test.reads) == Counter(range(16))


def _write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """One grey PNG per image, folder/c<label>/<i>.png, ``i`` zero-padded so that the
    folder's read order (class, then file name) is the arrays' order within a class."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"c{label}" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)


def _grey_folder(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train/ (2 classes x 9) and test/ (2 x 3) of 6x6 grey PNGs; returns the arrays of each
    split in the folder's read order."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, per_class in (("train", 9), ("test", 3)):
        labels = np.repeat([0, 1], per_class)
        images = rng.integers(0, 256, (len(labels), 6, 6), dtype=np.uint8)
        _write_pngs(root / split, images, labels)
        arrays[split] = (images, labels)  # written class by class: already in read order
    return arrays


def test_an_image_folder_is_decoded_once_per_epoch(tmp_path: Path, monkeypatch) -> None:
    """Opening reads headers only; before the first epoch at most each of the 18 training
    images once (the sample its channel statistics are measured on, bounded whatever the
    folder's size) and two shape probes, no test image; then every epoch decodes each
    training image (15 train + 3 val) exactly once, and evaluating each test image once."""
    _grey_folder(tmp_path)
    reads: list[Path] = []
    real = ImageFolder.__getitem__

    def counted(self: ImageFolder, index: int) -> tuple[torch.Tensor, int]:
        reads.append(self.samples[index][0])
        return real(self, index)

    monkeypatch.setattr(ImageFolder, "__getitem__", counted)
    data = load_path(tmp_path, val_fraction=1 / 6)
    train_files = Counter((tmp_path / "train").rglob("*.png"))
    counter = ReadsPerEpoch(reads)
    model = tiny_model(36, 2)
    fit(model, data, CFG, callbacks=[counter], progress=False)
    up_front = Counter(reads[: counter.before])
    assert set(up_front) <= set(train_files) and counter.before <= 18 + 2
    assert counter.epochs == [train_files] * 2
    before_eval = len(reads)
    evaluate(model, data.test)
    assert Counter(reads[before_eval:]) == Counter((tmp_path / "test").rglob("*.png"))


def test_an_image_folder_trains_as_the_same_pixels_in_memory(tmp_path: Path) -> None:
    """The folder's ImageFolder splits streamed through ``from_loaders`` against its
    pixels through ``from_arrays``. Tolerance 0 (bit-identical): the PNGs hold the arrays
    losslessly, both paths scale uint8 by 1/255 in float32 and cut the same validation
    samples (one permutation of ``seed``), and the folder's map-style Dataset is batched
    with the in-memory path's global batches, so the same float32 values meet the same
    ops in the same order. Neither side is normalised (identity statistics), so no
    statistic summed in another order can differ in its last bit."""
    arrays = _grey_folder(tmp_path)
    folder = open_path(tmp_path).data
    streamed = from_loaders(
        train=folder.train, test=folder.test, num_classes=2, val_fraction=1 / 6, seed=2
    )
    in_memory = from_arrays(
        *arrays["train"], *arrays["test"], val_fraction=1 / 6, seed=2, normalize=False
    )
    curves = []
    for data in (in_memory, streamed):
        model = tiny_model(36, 2)
        history = fit(model, data, CFG, progress=False).history
        curves.append([(h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in history])
        curves[-1].append(tuple(evaluate(model, data.test).values()))
    assert curves[0] == curves[1]
