"""On-disk formats a user brings (image folder, CIFAR binary, npz, IDX folder): each
written tiny in tmp_path, read back exactly, and each bad input refused with one
DataError naming the file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzip.data.arrays import read_npz
from cnnzip.data.cifar import read_cifar
from cnnzip.data.datasets import Normalization
from cnnzip.data.detect import detect_format, load_path, open_path
from cnnzip.data.folders import read_image_folder
from cnnzip.data.loader import batches
from cnnzip.errors import DataError
from cnnzip.train.loop import TrainConfig, evaluate, fit

RNG = np.random.default_rng(0)


def _pixels(n: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ---------- image folders


def _write_folder(root: Path, images: dict[str, list[np.ndarray]]) -> None:
    """One PNG per array, in root/<class>/<i>.png (HW grey or HWC RGB)."""
    for name, arrays in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(root / name / f"{i}.png")


def test_rgb_folder_reads_back_exactly(tmp_path):
    cats, dogs = _pixels(2, 5, 4, 3), _pixels(3, 5, 4, 3)
    _write_folder(tmp_path, {"dog": list(dogs), "cat": list(cats)})
    found = read_image_folder(tmp_path)
    assert found.classes == ("cat", "dog")  # sorted folder names
    assert found.input_shape == (3, 5, 4) and found.test is None
    assert len(found.train) == 5
    x, y = found.train[3]
    assert y == 1 and x.dtype == torch.uint8
    assert np.array_equal(x.numpy(), dogs[1].transpose(2, 0, 1))


def test_grey_folder_with_splits(tmp_path):
    train, test = _pixels(4, 6, 6), _pixels(2, 6, 6)
    _write_folder(tmp_path / "train", {"a": list(train[:2]), "b": list(train[2:])})
    _write_folder(tmp_path / "test", {"a": [test[0]], "b": [test[1]]})
    found = read_image_folder(tmp_path)
    assert found.input_shape == (1, 6, 6) and found.val is None
    x, y = found.test[1]
    assert y == 1 and np.array_equal(x.numpy()[0], test[1])


def test_resize_makes_mixed_sizes_one(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 5, 5)[0]], "b": [_pixels(1, 7, 3)[0]]})
    found = read_image_folder(tmp_path, size=4)
    assert found.input_shape == (1, 4, 4)
    assert found.train[1][0].shape == (1, 4, 4)


def test_folder_is_read_lazily(tmp_path, monkeypatch):
    _write_folder(tmp_path, {"a": list(_pixels(3, 4, 4)), "b": list(_pixels(3, 4, 4))})
    decoded = _count_decodes(monkeypatch)
    found = read_image_folder(tmp_path)
    assert decoded == []  # opening reads headers only
    found.train[0]
    assert len(decoded) == 1


def test_mixed_sizes_without_resize_names_the_file(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 5, 5)[0]], "b": [_pixels(1, 7, 3)[0]]})
    with pytest.raises(
        DataError, match=r"b/0\.png: image is 7x3 \(HxW\) but .*a/0\.png is 5x5.*--input"
    ):
        read_image_folder(tmp_path)


def test_empty_class_folder_is_refused(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 4, 4)[0]]})
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"/b: class folder holds no PNG/JPEG"):
        read_image_folder(tmp_path)


def test_corrupt_png_names_the_file(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 4, 4)[0]], "b": [_pixels(1, 4, 4)[0]]})
    (tmp_path / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"b/bad\.png: not a readable PNG/JPEG"):
        read_image_folder(tmp_path)


def test_truncated_png_fails_on_read_naming_the_file(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 32, 32)[0]], "b": [_pixels(1, 32, 32)[0]]})
    path = tmp_path / "b" / "0.png"
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data cut
    found = read_image_folder(tmp_path)
    with pytest.raises(DataError, match=r"b/0\.png: cannot decode image"):
        found.train[1]


def test_grey_and_rgb_mixed_read_as_rgb(tmp_path):
    grey, rgb = _pixels(1, 4, 4)[0], _pixels(1, 4, 4, 3)[0]
    _write_folder(tmp_path, {"a": [grey], "b": [rgb]})
    found = read_image_folder(tmp_path)
    assert found.input_shape == (3, 4, 4)
    assert np.array_equal(found.train[0][0].numpy(), np.stack([grey] * 3))


def test_one_rgb_test_image_makes_every_split_rgb(tmp_path):
    _write_folder(tmp_path / "train", {"a": [_pixels(1, 4, 4)[0]], "b": [_pixels(1, 4, 4)[0]]})
    _write_folder(tmp_path / "test", {"a": [_pixels(1, 4, 4, 3)[0]], "b": [_pixels(1, 4, 4)[0]]})
    found = read_image_folder(tmp_path)
    assert found.input_shape == (3, 4, 4) and found.train[0][0].shape == (3, 4, 4)


def test_jpeg_files_are_read(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(_pixels(1, 8, 8, 3)[0]).save(tmp_path / name / "x.JPG", quality=95)
    found = read_image_folder(tmp_path)
    assert len(found.train) == 2 and found.train[1][0].shape == (3, 8, 8)


def test_16_bit_png_is_refused_not_clipped(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 4, 4)[0]], "b": [_pixels(1, 4, 4)[0]]})
    wide = (np.arange(16, dtype=np.uint16) * 4000).reshape(4, 4)
    Image.fromarray(wide).save(tmp_path / "b" / "wide.png")
    with pytest.raises(DataError, match=r"b/wide\.png: a I;16 .*re-save it as 8 bits"):
        read_image_folder(tmp_path)


def test_hidden_files_and_folders_are_skipped(tmp_path):
    _write_folder(tmp_path, {"a": [_pixels(1, 4, 4)[0]], "b": [_pixels(1, 4, 4)[0]]})
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".cache").mkdir()
    found = read_image_folder(tmp_path)
    assert found.classes == ("a", "b") and len(found.train) == 2


def test_splits_with_different_classes_are_refused(tmp_path):
    _write_folder(tmp_path / "train", {"a": [_pixels(1, 4, 4)[0]], "b": [_pixels(1, 4, 4)[0]]})
    _write_folder(tmp_path / "test", {"a": [_pixels(1, 4, 4)[0]], "c": [_pixels(1, 4, 4)[0]]})
    with pytest.raises(DataError, match=r"test: class folders a, c differ"):
        read_image_folder(tmp_path)


# ---------- CIFAR binary


def _write_cifar10(folder: Path, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """batches[:-1] as data_batch_1.. and the last as test_batch.bin."""
    folder.mkdir(exist_ok=True)
    names = [f"data_batch_{i + 1}.bin" for i in range(len(batches) - 1)] + ["test_batch.bin"]
    for name, (x, y) in zip(names, batches, strict=True):
        rows = np.concatenate([y[:, None].astype(np.uint8), x.reshape(len(y), -1)], axis=1)
        (folder / name).write_bytes(rows.tobytes())


def test_cifar10_reads_back_exactly(tmp_path):
    parts = [(_pixels(n, 3, 32, 32), RNG.integers(0, 10, n)) for n in (2, 3, 2)]
    _write_cifar10(tmp_path, parts)
    (tmp_path / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    data = read_cifar(tmp_path)
    assert np.array_equal(data.x_train, np.concatenate([parts[0][0], parts[1][0]]))
    assert np.array_equal(data.y_train, np.concatenate([parts[0][1], parts[1][1]]))
    assert np.array_equal(data.x_test, parts[2][0]) and np.array_equal(data.y_test, parts[2][1])
    assert data.classes[3] == "c3" and data.input_shape == (3, 32, 32)


def test_cifar100_uses_fine_labels(tmp_path):
    x, coarse, fine = _pixels(2, 3, 32, 32), np.array([1, 2]), np.array([57, 99])
    rows = np.concatenate([coarse[:, None], fine[:, None], x.reshape(2, -1)], axis=1)
    for name in ("train.bin", "test.bin"):
        (tmp_path / name).write_bytes(rows.astype(np.uint8).tobytes())
    data = read_cifar(tmp_path)
    assert data.num_classes == 100 and data.y_train.tolist() == [57, 99]
    assert np.array_equal(data.x_test, x)


def test_cifar_wrong_length_names_the_file(tmp_path):
    parts = [(_pixels(2, 3, 32, 32), np.array([0, 1]))] * 2
    _write_cifar10(tmp_path, parts)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"data_batch_1\.bin: 6141 bytes is not a whole number"):
        read_cifar(tmp_path)


def test_cifar_label_out_of_range_names_the_file(tmp_path):
    _write_cifar10(tmp_path, [(_pixels(1, 3, 32, 32), np.array([12]))] * 2)
    with pytest.raises(DataError, match=r"data_batch_1\.bin: labels 12\.\.12 are outside 0\.\.9"):
        read_cifar(tmp_path)


# ---------- npz


def _npz_arrays(**extra: np.ndarray) -> dict[str, np.ndarray]:
    arrays = {
        "x_train": _pixels(4, 5, 5),
        "y_train": np.array([0, 1, 2, 1], dtype=np.int16),
        "x_test": _pixels(2, 5, 5),
        "y_test": np.array([2, 0], dtype=np.uint8),
    }
    return {**arrays, **extra}


def test_npz_reads_back_exactly(tmp_path):
    arrays = _npz_arrays(x_val=_pixels(1, 5, 5), y_val=np.array([1]))
    np.savez(tmp_path / "d.npz", **arrays)
    data = read_npz(tmp_path / "d.npz")
    for key, value in arrays.items():
        assert np.array_equal(getattr(data, key), value), key
    assert data.y_train.dtype == np.int64 and data.classes == ("0", "1", "2")


def test_npz_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays(classes=np.array(["a", "b", "c", "d"])))
    assert read_npz(tmp_path / "d.npz").classes == ("a", "b", "c", "d")


def test_npz_missing_key_names_file_and_key(tmp_path):
    arrays = _npz_arrays()
    del arrays["y_test"]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=r"d\.npz: missing key\(s\) y_test"):
        read_npz(tmp_path / "d.npz")


def test_npz_pickled_objects_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays(y_test=np.array([1, "x"], dtype=object)))
    with pytest.raises(DataError, match=r"d\.npz: holds pickled Python objects"):
        read_npz(tmp_path / "d.npz")


def test_file_that_is_not_an_npz(tmp_path):
    (tmp_path / "d.npz").write_text("not a zip")
    with pytest.raises(DataError, match=r"d\.npz: not an \.npz \(zip\) archive"):
        read_npz(tmp_path / "d.npz")


def test_npz_labels_out_of_range(tmp_path):
    names = np.array(["a", "b"])
    np.savez(tmp_path / "d.npz", **_npz_arrays(classes=names))
    with pytest.raises(DataError, match=r"d\.npz \(y_train\): labels 0\.\.2 are outside 0\.\.1"):
        read_npz(tmp_path / "d.npz")


def test_npz_negative_label(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays(y_test=np.array([-1, 0])))
    with pytest.raises(DataError, match=r"y_test\): labels -1\.\.0 are outside"):
        read_npz(tmp_path / "d.npz")


def test_npz_length_mismatch(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays(y_train=np.array([0, 1])))
    with pytest.raises(DataError, match=r"d\.npz \(train\): inputs \(4, 5, 5\) and labels \(2,\)"):
        read_npz(tmp_path / "d.npz")


# ---------- detection


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_detects_each_format(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays())
    _write_cifar10(tmp_path / "cifar", [(_pixels(1, 3, 32, 32), np.array([3]))] * 2)
    _write_folder(tmp_path / "imgs", {"a": [_pixels(1, 4, 4)[0]], "b": [_pixels(1, 4, 4)[0]]})
    idx = tmp_path / "idx"
    idx.mkdir()
    x, y = _pixels(3, 4, 4), np.array([0, 9, 3])
    for prefix in ("train", "t10k"):
        _write_idx(idx / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(idx / f"{prefix}-labels-idx1-ubyte", y)
    expected = {"d.npz": "npz", "cifar": "cifar", "imgs": "image-folder", "idx": "idx"}
    for name, fmt in expected.items():
        assert detect_format(tmp_path / name) == fmt
        assert open_path(tmp_path / name).format == fmt
    opened = open_path(idx)
    assert np.array_equal(opened.data.x_test, x) and opened.data.y_train.tolist() == [0, 9, 3]
    assert opened.input_shape == (4, 4) and len(opened.classes) == 10


def test_pickled_cifar_is_refused_with_a_pointer_to_the_binary_version(tmp_path):
    for name in ("data_batch_1", "batches.meta", "test_batch"):
        (tmp_path / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(DataError, match=r"pickled python version.*cifar-10-binary\.tar\.gz"):
        detect_format(tmp_path)


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    _write_folder(tmp_path, {"a": [_pixels(1, 8, 8)[0]], "b": [_pixels(1, 8, 8)[0]]})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 64 pixels > 2 x 10: a "bomb"
    with pytest.raises(DataError, match=r"a/0\.png: not a readable PNG/JPEG image"):
        read_image_folder(tmp_path)


def test_size_for_stored_arrays_must_match(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays())
    assert open_path(tmp_path / "d.npz", size=5).input_shape == (5, 5)
    with pytest.raises(DataError, match=r"d\.npz: size=8 \(--input\) resizes image folders only"):
        open_path(tmp_path / "d.npz", size=8)


def test_unknown_path_says_what_is_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    for path in (tmp_path, tmp_path / "notes.txt"):
        with pytest.raises(DataError, match=rf"{path}: .*expected an \.npz file"):
            detect_format(path)
    with pytest.raises(DataError, match=r"missing: no such file or folder"):
        open_path(tmp_path / "missing")


# ---------- load_path: a Dataset the training loop takes


def _count_decodes(monkeypatch) -> list[int]:
    """A list that grows by one per image decoded (every read converts its image)."""
    decoded: list[int] = []
    real_convert = Image.Image.convert
    monkeypatch.setattr(
        Image.Image,
        "convert",
        lambda self, *a, **k: decoded.append(1) or real_convert(self, *a, **k),
    )
    return decoded


def test_load_path_npz_cuts_val_and_keeps_class_names_count(tmp_path):
    np.savez(tmp_path / "d.npz", **_npz_arrays(classes=np.array(["a", "b", "c", "d"])))
    data = load_path(tmp_path / "d.npz", val_fraction=0.25)
    assert data.num_classes == 4 and data.input_shape == (1, 5, 5)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 2)


def test_load_path_cifar(tmp_path):
    _write_cifar10(tmp_path, [(_pixels(4, 3, 32, 32), np.array([0, 1, 2, 3]))] * 2)
    data = load_path(tmp_path)
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32)


def test_load_path_folder_streams(tmp_path, monkeypatch):
    train = {"a": list(_pixels(3, 4, 4, 3)), "b": list(_pixels(3, 4, 4, 3))}
    _write_folder(tmp_path / "train", train)
    _write_folder(tmp_path / "test", {"a": [_pixels(1, 4, 4, 3)[0]], "b": [_pixels(1, 4, 4, 3)[0]]})
    decoded = _count_decodes(monkeypatch)
    # with known statistics and no augmentation (whose default reads the input size)
    data = load_path(tmp_path, val_fraction=1 / 3, stats=Normalization.identity(3), augment=False)
    assert decoded == [] and data.num_classes == 2  # nothing read to open it
    assert (len(data.train), len(data.val), len(data.test)) == (4, 2, 2)
    seen = sum(len(y) for _, y in batches(data.train, 3, shuffle=True))
    assert seen == 4 and len(decoded) == 4  # one epoch reads each image once
    x, _ = next(batches(data.test, 2))
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32 and float(x.max()) <= 1.0


def test_load_path_folder_with_workers(tmp_path):
    _write_folder(tmp_path, {"a": list(_pixels(6, 4, 4)), "b": list(_pixels(6, 4, 4))})
    data = load_path(tmp_path, workers=2)
    labels = torch.cat([y for _, y in batches(data.train, 4)])
    # 12 images - 3 test (a/5.png, b/4.png, b/5.png: their file_key) - 1 validation
    assert len(labels) == len(data.train) == 8 and set(labels.tolist()) <= {0, 1}


def test_load_path_folder_without_test_cuts_a_fixed_test(tmp_path):
    _write_folder(tmp_path, {"a": list(_pixels(6, 4, 4)), "b": list(_pixels(6, 4, 4))})
    first, second = load_path(tmp_path, seed=0), load_path(tmp_path, seed=1)
    # a/5.png, b/4.png and b/5.png by their file_key, whatever the seed
    assert len(first.test) == 3 and first.test.source.indices == second.test.source.indices


def _write_each_format(root: Path) -> dict[str, Path]:
    """A tiny set of every detectable format under ``root``; name -> its path."""
    np.savez(root / "d.npz", **_npz_arrays())
    _write_cifar10(root / "cifar", [(_pixels(6, 3, 32, 32), np.arange(6) % 3)] * 2)
    rgb = {"a": list(_pixels(4, 6, 6, 3)), "b": list(_pixels(4, 6, 6, 3))}
    _write_folder(root / "rgb", rgb)
    grey = {"a": list(_pixels(3, 5, 5)), "b": list(_pixels(3, 5, 5))}
    _write_folder(root / "grey" / "train", grey)
    _write_folder(root / "grey" / "test", grey)
    idx = root / "idx"
    idx.mkdir()
    for prefix in ("train", "t10k"):
        _write_idx(idx / f"{prefix}-images-idx3-ubyte", _pixels(6, 4, 4))
        _write_idx(idx / f"{prefix}-labels-idx1-ubyte", np.arange(6) % 10)
    return {name: root / name for name in ("d.npz", "cifar", "rgb", "grey", "idx")}


def test_every_format_trains_and_evaluates(tmp_path):
    for name, path in _write_each_format(tmp_path).items():
        data = load_path(path)
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(math.prod(data.input_shape), data.num_classes)
        )
        result = fit(model, data, TrainConfig(epochs=1, batch_size=4), progress=False)
        scores = evaluate(model, data.test)
        assert math.isfinite(result.final["val_loss"]), name
        assert 0.0 <= scores["accuracy"] <= 1.0, name
