"""The user's arrays at the door: converted when the meaning is clear, refused otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cnnzip.data import DEFAULT_VAL_FRACTION, Split, from_arrays, load
from cnnzip.data.datasets import default_val_size, val_size_of
from cnnzip.errors import DataError


def arrays(n: int = 24, shape: tuple[int, ...] = (6, 6), seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = np.arange(n, dtype=np.int32) % 3
    return x, y


def test_split_takes_uint8_numpy_without_channel_axis_and_int32_labels() -> None:
    x, y = arrays()
    split = Split(x=x, y=y)
    assert split.x.dtype == torch.float32 and split.x.shape == (24, 1, 6, 6)
    assert split.y.dtype == torch.int64
    assert torch.equal(split.x[:, 0], torch.from_numpy(x).float() / 255)


def test_float_inputs_are_kept_as_float32() -> None:
    x = np.linspace(-2, 2, 24 * 36).reshape(24, 1, 6, 6)  # float64
    split = Split(x=x, y=np.zeros(24, dtype=np.uint8))
    assert split.x.dtype == torch.float32 and split.x.shape == (24, 1, 6, 6)
    assert torch.allclose(split.x.double(), torch.from_numpy(x), atol=1e-6)


def test_channels_last_rgb_is_moved_to_channels_first() -> None:
    x, y = arrays(shape=(6, 5, 3))
    split = Split(x=x, y=y)
    assert split.x.shape == (24, 3, 6, 5)
    assert torch.equal(split.x[:, 2], torch.from_numpy(x[..., 2]).float() / 255)


@pytest.mark.parametrize(("shape", "want"), [((6, 6, 1), (1, 6, 6)), ((7, 5, 4), (4, 7, 5))])
def test_grey_and_rgba_channels_last_tensors_are_moved(shape: tuple, want: tuple) -> None:
    x, y = arrays(shape=shape)
    assert Split(x=torch.from_numpy(x), y=torch.from_numpy(y)).x.shape == (24, *want)


def test_channels_first_is_kept() -> None:
    x, y = arrays(shape=(3, 6, 6))
    assert Split(x=x, y=y).x.shape == (24, 3, 6, 6)


def test_ambiguous_layout_is_refused_for_numpy_and_channels_first_for_tensors() -> None:
    x, y = arrays(shape=(3, 4, 3))
    with pytest.raises(DataError, match=r"axis 1 and axis 3 could both be the channels"):
        Split(x=x, y=y)
    assert Split(x=torch.from_numpy(x), y=torch.from_numpy(y)).x.shape == (24, 3, 4, 3)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((10, 4, 4), np.uint8), np.zeros(9, np.int64), r"10 inputs but 9 labels"),
        (np.zeros((3, 4, 4), np.uint8), np.array([0.0, 1.0, 1.0]), r"labels are torch.float64"),
        (np.zeros((3, 4, 4), np.uint8), np.array([0, -1, 1]), r"include -1"),
        (np.zeros((3, 4, 4), np.uint8), np.zeros((3, 1), np.int64), r"one label per input"),
        (np.zeros((3, 4, 4), np.int16), np.zeros(3, np.int64), r"uint8 \(0\.\.255\) or float"),
        (np.full((3, 4, 4), np.nan), np.zeros(3, np.int64), r"NaN or infinite"),
        (np.zeros((3, 4), np.uint8), np.zeros(3, np.int64), r"shape \(3, 4\); expected"),
        (np.array(["a", "b"]), np.zeros(2, np.int64), r"must be numbers"),
    ],
)
def test_bad_arrays_are_refused_with_one_clear_error(x, y, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Split(x=x, y=y)


def test_from_arrays_cuts_a_deterministic_validation_fraction() -> None:
    x, y = arrays(n=48)
    xt, yt = arrays(n=12, seed=1)
    a = from_arrays(x, y, xt, yt, val_fraction=0.25, seed=3)
    b = from_arrays(x, y, xt, yt, val_fraction=0.25, seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (36, 12, 12)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert a.num_classes == 3 and a.input_shape == (1, 6, 6)
    assert abs(float(a.train.x.mean()) - 0) < 0.5  # normalised with train statistics


def test_from_arrays_default_fraction_is_one_twelfth() -> None:
    x, y = arrays(n=120)
    data = from_arrays(x, y, x[:6], y[:6])
    assert (len(data.train), len(data.val)) == (110, 10)


def test_from_arrays_keeps_a_given_validation_split_and_class_count() -> None:
    x, y = arrays(shape=(6, 6, 3))
    data = from_arrays(x, y, x, y, x[:5], y[:5], num_classes=10, normalize=False)
    assert (len(data.train), len(data.val)) == (24, 5)
    assert data.num_classes == 10 and data.input_shape == (3, 6, 6)
    assert (data.mean, data.std) == ((0.0,) * 3, (1.0,) * 3)  # per channel


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 2}, r"train labels reach 2 but num_classes=2"),
        ({"val_fraction": 1.5}, r"val_fraction=1\.5 must be a number in \(0, 1\)"),
        ({"x_val": np.zeros((2, 6, 6), np.uint8)}, r"pass both x_val and y_val, or neither"),
        ({"x_test": np.zeros((24, 5, 5), np.uint8)}, r"differ in shape"),
        ({"x_test": [[0, 1]]}, r"x_test are a list; pass a numpy array or a torch tensor"),
        ({"y_test": np.zeros(3, np.int64)}, r"test split: 24 inputs but 3 labels"),
        ({"y_train": np.ones(24, np.int64)}, r"every training label is the same"),
        (
            {"x_train": np.zeros((0, 6, 6), np.uint8), "y_train": np.zeros(0, np.int64)},
            r"train split: x_train holds no images",
        ),
    ],
)
def test_from_arrays_refuses_inconsistent_input(kwargs: dict, message: str) -> None:
    x, y = arrays()
    args = {"x_train": x, "y_train": y, "x_test": x, "y_test": y, **kwargs}
    with pytest.raises(DataError, match=message):
        from_arrays(**args)


def write_idx_set(folder: Path, idx_bytes, n: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for split in ("train", "t10k"):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))


def test_load_takes_a_validation_fraction(tmp_path: Path, idx_bytes) -> None:
    write_idx_set(tmp_path, idx_bytes, n=120)
    data = load("mnist", root=tmp_path, val_fraction=0.25)
    assert (len(data.train), len(data.val)) == (90, 30)
    limited = load("mnist", root=tmp_path, val_fraction=0.25, limit=60)
    assert (len(limited.train), len(limited.val)) == (45, 15)


def test_a_fraction_of_one_twelfth_is_the_val_size_split(tmp_path: Path, idx_bytes) -> None:
    """The same permutation cut at the same count: bit-identical to val_size (and so to
    Fashion-MNIST's 5,000 of 60,000, which is 1/12)."""
    write_idx_set(tmp_path, idx_bytes, n=120)
    by_size = load("mnist", root=tmp_path, val_size=10, seed=4)
    by_fraction = load("mnist", root=tmp_path, val_fraction=1 / 12, seed=4)
    for a, b in ((by_size.train, by_fraction.train), (by_size.val, by_fraction.val)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert val_size_of(60_000, DEFAULT_VAL_FRACTION) == 5000 == default_val_size(60_000)


def test_load_refuses_both_val_size_and_val_fraction(tmp_path: Path, idx_bytes) -> None:
    write_idx_set(tmp_path, idx_bytes, n=20)
    with pytest.raises(DataError, match=r"pass val_size or val_fraction, not both"):
        load("mnist", root=tmp_path, val_size=2, val_fraction=0.1)


class Lazy:
    """A duck-typed stand-in for inputs (indexable, with a length), as some users pass."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: object) -> torch.Tensor:
        return torch.zeros(4, 1, 2, 2)


def test_a_lazy_input_object_is_kept_but_its_length_is_checked() -> None:
    lazy = Lazy(3)
    assert Split(x=lazy, y=np.arange(3)).x is lazy
    with pytest.raises(DataError, match=r"3 inputs but 2 labels"):
        Split(x=lazy, y=np.arange(2))
