"""Regression tests of the review of issue 13's data handling: big-endian and oversized
on-disk arrays, worker errors, the layout of streamed batches, the DataLoader seed, the
default augmentation and the stable test cut of an image folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

from cnnzip.data import batches, from_arrays, from_loaders, load_path
from cnnzip.data.augment import default_augment
from cnnzip.data.detect import TEST_SHARE, file_key
from cnnzip.errors import DataError
from cnnzip.train import TrainConfig, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def _grey(n: int, side: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side), dtype=np.uint8), np.arange(n) % 2


def test_a_big_endian_npz_loads_as_its_native_twin(tmp_path: Path) -> None:
    x, y = _grey(24)
    x = x.astype(np.float32) / 255
    arrays = {"x_train": x[:16], "y_train": y[:16], "x_test": x[16:], "y_test": y[16:]}
    np.savez(tmp_path / "native.npz", **arrays)
    np.savez(
        tmp_path / "big.npz", **{k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()}
    )
    native, big = load_path(tmp_path / "native.npz"), load_path(tmp_path / "big.npz")
    assert torch.equal(big.train.x, native.train.x) and torch.equal(big.test.y, native.test.y)


def test_an_idx_folder_of_float_images_loads(tmp_path: Path, idx_bytes) -> None:
    """IDX floats are big-endian (code 0x0D): they load with their values."""
    x, y = _grey(30)
    images = x.astype(np.float32) / 255
    files = {
        "train-images-idx3-ubyte": idx_bytes(images[:20].astype(">f4"), 0x0D),
        "train-labels-idx1-ubyte": idx_bytes(y[:20].astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(images[20:].astype(">f4"), 0x0D),
        "t10k-labels-idx1-ubyte": idx_bytes(y[20:].astype(np.uint8)),
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    data = load_path(tmp_path)
    stats = data.stats
    raw_test = data.test.x * stats.std[0] + stats.mean[0]  # (10, 1, 6, 6) back to pixels
    assert torch.allclose(raw_test[:, 0], torch.from_numpy(images[20:]), atol=1e-6)


def _npz_with_header(path: Path, shape: tuple[int, ...], payload: bytes) -> None:
    """An .npz whose x_train.npy header claims ``shape`` (float32) over ``payload``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    x, y = _grey(8)
    np.savez(path, y_train=y, x_test=x, y_test=y)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x_train.npy", header.getvalue() + payload)


@pytest.mark.parametrize(
    ("shape", "why"),
    [((10**9, 1000, 1000), "more than the 4,294,967,296 bytes allowed"),
     ((1000, 28, 28), "but its member holds")],
)  # fmt: skip
def test_an_npz_header_claiming_more_than_its_member_is_refused(
    tmp_path: Path, shape: tuple[int, ...], why: str
) -> None:
    path = tmp_path / "liar.npz"
    _npz_with_header(path, shape, b"\0" * 64)
    with pytest.raises(DataError, match="array x_train claims") as err:
        load_path(path)
    assert str(err.value).startswith(f"{path}: ") and why in str(err.value)


def _folder(root: Path, n: int, side: int = 6, corrupt: int | None = None) -> Path:
    x, y = _grey(n, side)
    for i in range(n):
        (root / f"c{y[i]}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(root / f"c{y[i]}" / f"{i}.png")
    if corrupt is not None:  # header intact, pixels cut short
        bad = root / f"c{y[corrupt]}" / f"{corrupt}.png"
        bad.write_bytes(bad.read_bytes()[:60])
    return root


def test_a_worker_error_names_the_corrupt_image(tmp_path: Path) -> None:
    """With --workers the error a worker raises reaches the user as its own message,
    both from the statistics measurement and from training batches."""
    root = _folder(tmp_path / "imgs", 12, corrupt=5)
    bad = f"{root / 'c1' / '5.png'}: cannot decode image"
    with pytest.raises(DataError) as err:
        load_path(root, workers=1)
    assert str(err.value).startswith(bad), str(err.value)
    data = load_path(root, workers=1, stats=from_arrays(*_grey(4), *_grey(4)).stats)
    with pytest.raises(DataError) as err:
        for split in (data.train, data.val, data.test):
            list(batches(split, 4))
    assert str(err.value).startswith(bad), str(err.value)


class _Samples(TorchDataset):
    """(x, y) samples as the user's Dataset returns them: ``make(i)`` is input i."""

    def __init__(self, make, n: int) -> None:
        self.make, self.n = make, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[object, int]:
        return self.make(i), i % 2


def test_channels_last_samples_batch_as_channels_first() -> None:
    x = np.random.default_rng(0).integers(0, 256, (12, 6, 5, 3), dtype=np.uint8)  # (N, H, W, C)
    data = from_loaders(_Samples(lambda i: x[i], 12), _Samples(lambda i: x[i], 12), val=None)
    (got, y), *_ = batches(data.test, 12)
    assert got.shape == (12, 3, 6, 5) and y.tolist() == [i % 2 for i in range(12)]
    assert torch.equal(got, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)


def test_pil_samples_are_refused_in_one_line() -> None:
    img = Image.new("L", (6, 6))
    data = from_loaders(_Samples(lambda i: img, 12), _Samples(lambda i: img, 12), num_classes=2)
    with pytest.raises(DataError, match=r"^samples must be tensors or arrays; convert PIL images"):
        list(batches(data.test, 4))


def test_dropout_trains_alike_in_memory_and_streamed() -> None:
    """The streamed DataLoader no longer draws its seed from the global RNG, so the
    dropout masks and the loss curve are those of the same tensors in memory."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 4, 4, generator=gen), torch.arange(48) % 3
    parts = (x[:32], y[:32], x[32:40], y[32:40], x[40:], y[40:])
    memory = from_arrays(*parts[:2], *parts[4:], *parts[2:4], normalize=False)
    tds = [TensorDataset(parts[i], parts[i + 1]) for i in (0, 4, 2)]
    streamed = from_loaders(*tds, num_classes=3)
    cfg = TrainConfig(epochs=2, batch_size=8, seed=3)
    losses = []
    for data in (memory, streamed):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Dropout(0.5), nn.Linear(16, 3))
        history = fit(model, data, cfg, progress=False).history
        losses.append([h["train_loss"] for h in history])
    assert losses[0] == losses[1]


@pytest.mark.parametrize(
    ("shape", "on"), [((3, 32, 32), True), ((1, 32, 32), False), ((1, 64, 64), False)]
)
def test_grey_images_are_not_augmented_by_default(shape: tuple[int, ...], on: bool) -> None:
    assert default_augment(shape) is on


def test_adding_an_image_never_moves_the_test_cut(tmp_path: Path) -> None:
    """The test images of a folder without test/ are decided per file, so a file added
    after training neither joins the training images' side nor pushes others across."""
    root = _folder(tmp_path / "imgs", 40)

    def test_files() -> set[str]:
        cut = load_path(root).test
        return {str(cut.source.dataset.samples[i][0]) for i in cut.source.indices}

    before = test_files()
    assert before == {str(p) for p in root.glob("*/*.png") if file_key(p) < TEST_SHARE * 2**32}
    assert 0 < len(before) < 20  # about a sixth of 40
    Image.fromarray(_grey(1)[0][0]).save(root / "c0" / "extra.png")
    assert test_files() - before <= {str(root / "c0" / "extra.png")} and before <= test_files()
