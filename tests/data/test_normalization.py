"""Per-channel normalisation: measured on (a fixed-seed sample of) the training images,
given instead where known (the statistics a model was trained with), validated, applied to
arrays in memory and to every streamed batch of an image folder; the named sets keep their
one-channel statistics and their tensors bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzip.data import Normalization, batches, from_arrays, from_loaders, load, load_path
from cnnzip.data import datasets as ds
from cnnzip.data.loader import measure_stream
from cnnzip.errors import DataError

RNG = np.random.default_rng(0)


def _rgb(n: int, side: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 images whose channels differ in brightness, and two classes."""
    x = RNG.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    x[..., 1] //= 4  # a dark green channel
    return x, np.arange(n) % 2


def _numpy_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of (N, H, W, C) uint8 images scaled to [0, 1]."""
    pixels = x.astype(np.float64) / 255.0
    return pixels.mean((0, 1, 2)).tolist(), pixels.std((0, 1, 2)).tolist()


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        ((0.5,), (0.0,), "must be > 0"),
        ((0.5, 0.5), (0.2,), "same length"),
        ((), (), "one finite number per channel"),
        ((math.nan,), (1.0,), "one finite number per channel"),
        ((0.5,), (math.inf,), "one finite number per channel"),
        (("0.5",), (1.0,), "one finite number per channel"),
        ((True,), (1.0,), "one finite number per channel"),
        (0.5, (1.0,), "one finite number per channel"),
    ],
)
def test_impossible_statistics_are_refused(mean, std, match: str) -> None:
    with pytest.raises(DataError, match=match):
        Normalization(mean, std)


def test_json_round_trip_and_bad_json() -> None:
    stats = Normalization((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert Normalization.from_json(stats.to_json()) == stats
    assert stats.to_json() == {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    for bad in ([0.1], {"mean": [0.1]}, {"mean": [0.1], "std": [1.0], "x": 1}):
        with pytest.raises(DataError, match="normalization must be"):
            Normalization.from_json(bad)


def test_measured_per_channel_as_numpy_computes_it() -> None:
    x, _ = _rgb(10)
    stats = Normalization.measure(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0)
    mean, std = _numpy_stats(x)
    # float32 inputs (7 significant digits) summed in float64
    assert stats.mean == pytest.approx(mean, rel=1e-6) and stats.std == pytest.approx(std, rel=1e-6)
    assert stats.mean[1] < stats.mean[0] / 2  # per channel, not one number for all


def test_apply_is_per_channel_and_checks_the_channel_count() -> None:
    stats = Normalization((0.5, 0.0), (0.25, 2.0))
    x = torch.ones(1, 2, 1, 1)
    assert stats.apply(x).flatten().tolist() == [2.0, 0.5]
    with pytest.raises(DataError, match=r"1 channel\(s\) but the data has 2"):
        Normalization((0.5,), (0.25,)).apply(x)


def test_from_arrays_measures_train_before_the_validation_cut() -> None:
    x, y = _rgb(24)
    quarter = from_arrays(x, y, x[:4], y[:4], val_fraction=0.25)
    half = from_arrays(x, y, x[:4], y[:4], val_fraction=0.5)
    mean, std = _numpy_stats(x)  # all 24 training images
    assert quarter.mean == pytest.approx(mean) and quarter.std == pytest.approx(std)
    assert (quarter.mean, quarter.std) == (half.mean, half.std)  # whatever the cut
    raw = torch.from_numpy(x[:4]).permute(0, 3, 1, 2).float() / 255  # (4, 3, 6, 6)
    assert torch.allclose(quarter.test.x[:, 2], (raw[:, 2] - mean[2]) / std[2], atol=1e-6)


def test_from_arrays_measures_a_fixed_seed_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ds, "MEASURE_SAMPLE", 5)
    monkeypatch.setattr(ds, "MEASURE_CHUNK", 2)  # summed over chunks of 2, 2 and 1
    x, y = _rgb(20)
    data = from_arrays(x, y, x[:4], y[:4])
    picked = torch.randperm(20, generator=torch.Generator().manual_seed(0))[:5].numpy()
    mean, std = _numpy_stats(x[picked])
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)


def test_given_statistics_are_used_and_checked() -> None:
    x, y = _rgb(12)
    stats = Normalization((0.5, 0.25, 0.5), (0.5, 0.125, 0.25))
    data = from_arrays(x, y, x[:4], y[:4], stats=stats)
    assert data.normalization == stats
    raw = torch.from_numpy(x[:4]).permute(0, 3, 1, 2).float() / 255  # (4, 3, 6, 6)
    assert torch.allclose(data.test.x[:, 1], (raw[:, 1] - 0.25) / 0.125)
    with pytest.raises(DataError, match="arrays: the normalization has 1 channel"):
        from_arrays(x, y, x[:4], y[:4], stats=Normalization((0.5,), (0.5,)))


def test_constant_channel_is_one_clear_error() -> None:
    x, y = _rgb(8)
    x[..., 2] = 7
    with pytest.raises(DataError, match=r"arrays: training inputs have std .* constant channel"):
        from_arrays(x, y, x, y)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_named_sets_keep_their_one_channel_statistics_and_tensors(tmp_path: Path) -> None:
    x, y = RNG.integers(0, 256, (30, 5, 5), dtype=np.uint8), np.arange(30) % 10
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", y)
    data = load("mnist", root=tmp_path)
    pixels = x.astype(np.float32) / 255.0  # the formula of every earlier cnnzip
    mean, std = float(pixels.mean()), float(pixels.std())
    assert (data.mean, data.std) == ((mean,), (std,))
    expected = (torch.from_numpy(pixels).unsqueeze(1) - mean) / std  # (30, 1, 5, 5)
    assert torch.equal(data.test.x, expected)
    again = load("mnist", root=tmp_path, stats=data.normalization)
    assert torch.equal(again.test.x, data.test.x) and torch.equal(again.train.x, data.train.x)
    with pytest.raises(DataError, match="mnist: the normalization has 3 channel"):
        load("mnist", root=tmp_path, stats=Normalization.identity(3))


def _folder(root: Path, n: int = 6) -> np.ndarray:
    """n RGB images per class a and b under root/train, two under root/test; the train ones."""
    x, _ = _rgb(2 * n + 4)
    for i, image in enumerate(x):
        split, label = ("train", "ab"[i % 2]) if i < 2 * n else ("test", "ab"[i % 2])
        (root / split / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / split / label / f"{i}.png")
    return x


def test_an_image_folder_is_normalised_batch_by_batch(tmp_path: Path) -> None:
    x = _folder(tmp_path)
    data = load_path(tmp_path, val_fraction=0.25)
    mean, std = _numpy_stats(x[:12])  # every training image (fewer than the sample)
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)
    streamed = torch.cat([xb for xb, _ in batches(data.test, 3)])
    raw = torch.cat([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1)[None]
                     for p, _ in data.test.source.samples]).float() / 255  # fmt: skip
    assert torch.allclose(streamed, data.normalization.apply(raw))
    assert abs(float(streamed.mean())) < 0.5  # normalised, not in [0, 1]
    given = Normalization((0.0, 0.0, 0.0), (0.5, 0.5, 0.5))
    data = load_path(tmp_path, stats=given)
    assert data.normalization == given
    assert torch.allclose(torch.cat([xb for xb, _ in batches(data.test, 3)]), raw * 2)


def test_a_stream_is_measured_on_a_bounded_fixed_seed_sample() -> None:
    x, y = _rgb(10)
    reads: list[int] = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            reads.append(i)
            return x[i], int(y[i])

    stats = measure_stream(Counting(), "counting", limit=4)
    picked = torch.randperm(10, generator=torch.Generator().manual_seed(0))[:4].tolist()
    assert reads == picked
    mean, std = _numpy_stats(x[picked])
    assert stats.mean == pytest.approx(mean) and stats.std == pytest.approx(std)


def test_the_users_loaders_are_kept_as_they_are() -> None:
    x = torch.rand(8, 3, 4, 4)
    pairs = torch.utils.data.TensorDataset(x, torch.arange(8) % 2)
    data = from_loaders(train=pairs, test=pairs, val=pairs)
    assert data.normalization is None and data.stats == Normalization.identity(3)
    assert torch.equal(next(batches(data.test, 8))[0], x)
