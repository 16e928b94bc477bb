"""Issue 13's acceptance at the command line: a tiny dataset written in each on-disk
format (IDX raw and gzipped, PNG folders grey and RGB in both layouts, CIFAR-10 and
CIFAR-100 binaries, an .npz) trains, prunes, compresses to .cnnz, evaluates and distills
with ``--data PATH``; and each bad input ends in one ``error:`` line naming the file,
exit code 2, with nothing written."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.models import get_model
from cnnzip.runs import load_run, read_meta, save_run

RNG = np.random.default_rng(0)
N_TRAIN, N_TEST = 36, 12  # the formats that store a test split
STUDENT = ["--student", "lenet300", "-k", "hidden=[16,8]"]


@dataclass(frozen=True)
class Written:
    """A dataset a writer put on disk, and what the CLI must find in it."""

    path: Path
    input_shape: tuple[int, int, int]  # (C, H, W)
    n_test: int  # images the test split holds
    num_classes: int


def _pixels(n: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n: int, num_classes: int) -> np.ndarray:
    return np.arange(n) % num_classes


def _idx(tmp: Path, formats: ModuleType, suffix: str = "") -> Written:
    """MNIST-style: four IDX files of 16x16 grey images (10 classes), each gzipped
    when ``suffix`` is ".gz"."""
    folder = tmp / "idx"
    folder.mkdir()
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        for kind, array in (("images-idx3", _pixels(n, 16, 16)), ("labels-idx1", _labels(n, 10))):
            path = folder / f"{prefix}-{kind}-ubyte"
            formats._write_idx(path, array)
            if suffix:
                path.with_name(path.name + suffix).write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()
    return Written(folder, (1, 16, 16), N_TEST, 10)


def _idx_gz(tmp: Path, formats: ModuleType) -> Written:
    return _idx(tmp, formats, ".gz")


def _png_rgb_classes_only(tmp: Path, formats: ModuleType) -> Written:
    """Three class folders of 14 RGB images, no train/test: a sixth (7) is cut for test."""
    formats._write_folder(tmp / "rgb", {f"c{k}": list(_pixels(14, 16, 16, 3)) for k in range(3)})
    return Written(tmp / "rgb", (3, 16, 16), 7, 3)


def _png_grey_splits(tmp: Path, formats: ModuleType) -> Written:
    """train/ and test/, each with three class folders of grey images."""
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        classes = {f"c{k}": list(_pixels(n // 3, 16, 16)) for k in range(3)}
        formats._write_folder(tmp / "grey" / split, classes)
    return Written(tmp / "grey", (1, 16, 16), N_TEST, 3)


def _cifar10(tmp: Path, formats: ModuleType) -> Written:
    """data_batch_1.bin, data_batch_2.bin and test_batch.bin: 1 label byte + 3072 pixels."""
    parts = [(_pixels(n, 3, 32, 32), _labels(n, 10)) for n in (N_TRAIN // 2, N_TRAIN // 2, N_TEST)]
    formats._write_cifar10(tmp / "cifar10", parts)
    return Written(tmp / "cifar10", (3, 32, 32), N_TEST, 10)


def _cifar100(tmp: Path, formats: ModuleType) -> Written:
    """train.bin and test.bin: a coarse and a fine label byte + 3072 pixels per record."""
    folder = tmp / "cifar100"
    folder.mkdir()
    for name, n in (("train.bin", N_TRAIN), ("test.bin", N_TEST)):
        fine = _labels(n, 100)
        rows = [fine[:, None] // 5, fine[:, None], _pixels(n, 3, 32, 32).reshape(n, -1)]
        (folder / name).write_bytes(np.concatenate(rows, axis=1).astype(np.uint8).tobytes())
    return Written(folder, (3, 32, 32), N_TEST, 100)


def _npz(tmp: Path, formats: ModuleType) -> Written:
    """Channels-last RGB uint8 arrays, int labels of 4 classes."""
    x, y = _pixels(N_TRAIN + N_TEST, 16, 16, 3), _labels(N_TRAIN + N_TEST, 4)
    path = tmp / "d.npz"
    np.savez(path, x_train=x[:N_TRAIN], y_train=y[:N_TRAIN], x_test=x[N_TRAIN:], y_test=y[N_TRAIN:])
    return Written(path, (3, 16, 16), N_TEST, 4)


WRITERS: dict[str, Callable[[Path, ModuleType], Written]] = {
    "idx": _idx,
    "idx-gz": _idx_gz,
    "png-rgb-classes": _png_rgb_classes_only,
    "png-grey-splits": _png_grey_splits,
    "cifar-10": _cifar10,
    "cifar-100": _cifar100,
    "npz": _npz,
}


def _float32_bytes(run: str) -> int:
    return 4 * sum(p.numel() for p in load_run(run).model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_each_format_trains_prunes_compresses_evaluates_and_distills(
    tmp_path: Path, formats: ModuleType, data_path: ModuleType, write: Callable
) -> None:
    """LeNet-5 is built for the data (channels, size, classes from the format), one epoch
    of every verb; each score is checked against another verb's view of the same model."""
    written, ok = write(tmp_path, formats), data_path._ok
    data = ["--data", str(written.path)]
    run, pruned, cnnz, student = (str(tmp_path / n) for n in ("run", "pruned", "m.cnnz", "st"))
    c, h, w = written.input_shape

    trained = ok(["train", "lenet5", *data, "--epochs", "1", "-o", run])
    kwargs = {"num_classes": written.num_classes, "in_chans": c, "img_size": h}
    assert read_meta(run)["kwargs"] == kwargs and h == w
    assert load_run(run).model(torch.zeros(1, c, h, w)).shape == (1, written.num_classes)
    assert 0.0 <= trained["test_accuracy"] <= 1.0
    scored = ok(["eval", run, *data])
    assert (scored["accuracy"], scored["n"]) == (trained["test_accuracy"], written.n_test)

    pruning = ["--sparsity", "0.5", "--steps", "1", "--epochs", "1", "-o", pruned]
    assert ok(["prune", run, *data, *pruning])["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    assert (Path(pruned) / "run.json").is_file()

    over = ["-s", "prune.steps=1", "-s", "prune.epochs=1", "-s", "finetune.epochs=1"]
    compressed = ok(["compress", run, *data, *over, "-o", cnnz])
    assert compressed["file_bytes"] == Path(cnnz).stat().st_size < _float32_bytes(run)
    decoded = ok(["eval", cnnz, *data])
    assert (decoded["accuracy"], decoded["n"]) == (compressed["test_accuracy"], written.n_test)

    distilled = ok(["distill", "--teacher", run, *STUDENT, *data, "--epochs", "1", "-o", student])
    assert read_meta(student)["kwargs"]["in_features"] == c * h * w
    assert distilled["teacher_test_accuracy"] == trained["test_accuracy"]
    assert 0.0 <= distilled["test_accuracy"] <= 1.0


# ---------- bad input: one error line naming the file, exit 2, nothing written


def _error_line(args: list[str], *, alone: bool = True) -> str:
    """The one ``error:`` line a refused command prints, after checking exit code 2;
    ``alone``: nothing else printed (else the progress of stages that ran may surround it)."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and (lines == errors or not alone), res.output
    return errors[0]


def _two_classes(tmp: Path, formats: ModuleType, **extra: list[np.ndarray]) -> Path:
    """A classes-only folder of 16x16 grey PNGs: a/ and b/ with 6 each, plus ``extra``."""
    folder = tmp / "imgs"
    formats._write_folder(folder, {"a": list(_pixels(6, 16, 16)), "b": list(_pixels(6, 16, 16))})
    formats._write_folder(folder, extra)
    return folder


def _mixed_sizes(tmp: Path, formats: ModuleType) -> Path:
    return _two_classes(tmp, formats, c=[_pixels(1, 20, 16)[0]])


def _empty_class(tmp: Path, formats: ModuleType) -> Path:
    folder = _two_classes(tmp, formats)
    (folder / "c").mkdir()
    return folder


def _unreadable_png(tmp: Path, formats: ModuleType) -> Path:
    folder = _two_classes(tmp, formats)
    (folder / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    return folder


def _truncated_png(tmp: Path, formats: ModuleType) -> Path:
    """Header intact, pixels cut: opening the folder passes, decoding it in training fails."""
    folder = _two_classes(tmp, formats)
    path = folder / "b" / "3.png"
    path.write_bytes(path.read_bytes()[:60])
    return folder


def _npz_label_out_of_range(tmp: Path, formats: ModuleType) -> Path:
    written = _npz(tmp, formats)
    with np.load(written.path) as npz:
        arrays = dict(npz)
    np.savez(written.path, **arrays, classes=np.array(["a", "b", "c"]))  # labels reach 3
    return written.path


def _idx_label_out_of_range(tmp: Path, formats: ModuleType) -> Path:
    written = _idx(tmp, formats)
    formats._write_idx(written.path / "train-labels-idx1-ubyte", _labels(N_TRAIN, 11))
    return written.path


def _cifar_wrong_length(tmp: Path, formats: ModuleType) -> Path:
    written = _cifar10(tmp, formats)
    path = written.path / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    return written.path


def _npz_missing_key(tmp: Path, formats: ModuleType) -> Path:
    path = tmp / "d.npz"
    np.savez(path, x_train=_pixels(8, 16, 16), y_train=_labels(8, 2), x_test=_pixels(2, 16, 16))
    return path


def _pickled_cifar(tmp: Path, formats: ModuleType) -> Path:
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "batches.meta", "test_batch"):
        (folder / name).write_bytes(b"\x80\x04pickle")
    return folder


# name -> (writer of the bad data, what the error line must say after "error: ")
BAD = {
    "mixed-sizes": (_mixed_sizes, r"imgs/c/0\.png: image is 20x16 \(HxW\) but .*imgs/a/0\.png "
                    r"is 16x16; resize all with size=N \(--input N\)"),
    "empty-class": (_empty_class, r"imgs/c: class folder holds no PNG/JPEG images"),
    "unreadable-png": (_unreadable_png, r"imgs/b/bad\.png: not a readable PNG/JPEG image"),
    "truncated-png": (_truncated_png, r"imgs/b/3\.png: cannot decode image .*the file is corrupt"),
    "npz-labels": (_npz_label_out_of_range,
                   r"d\.npz \(y_train\): labels 0\.\.3 are outside 0\.\.2"),
    "idx-labels": (_idx_label_out_of_range,
                   r"idx/train-labels-idx1-ubyte: labels 0\.\.10 are outside 0\.\.9"),
    # 18 records of 1 + 3072 bytes, less the 100 cut: 18 * 3073 - 100 = 55214
    "cifar-length": (_cifar_wrong_length, r"cifar10/data_batch_2\.bin: 55214 bytes is not a "
                     r"whole number of 3073-byte CIFAR records"),
    "npz-missing-key": (_npz_missing_key, r"d\.npz: missing key\(s\) y_test"),
    "pickled-cifar": (_pickled_cifar, r"cifar-10-batches-py: CIFAR's pickled python version.*"
                      r"cifar-10-binary\.tar\.gz"),
}  # fmt: skip


@pytest.mark.parametrize(("write", "message"), BAD.values(), ids=BAD.keys())
def test_bad_data_is_one_error_line_naming_the_file_and_nothing_is_written(
    tmp_path: Path, formats: ModuleType, write: Callable, message: str
) -> None:
    data = write(tmp_path, formats)
    out = tmp_path / "run"
    line = _error_line(["train", "lenet5", "--data", str(data), "--epochs", "1", "-o", str(out)])
    assert line.startswith(f"error: {tmp_path}/") and re.search(message, line), line
    assert not out.exists()


@pytest.mark.slow
def test_a_corrupt_training_image_met_by_any_verb_leaves_no_output(
    tmp_path: Path, formats: ModuleType, data_path: ModuleType
) -> None:
    """A run trained on a good folder; then one training PNG is cut short. Every verb that
    trains on the data stops at that image with one error line (the progress of stages
    that ran before it may precede it), without writing its -o."""
    folder = _two_classes(tmp_path, formats)
    run, data = str(tmp_path / "run"), ["--data", str(folder)]
    data_path._ok(["train", "lenet5", *data, "--epochs", "1", "-o", run])
    path = folder / "b" / "3.png"  # in train or val, never in the test cut (TEST_SEED)
    path.write_bytes(path.read_bytes()[:60])
    verbs = {
        "pruned": ["prune", run, "--sparsity", "0.5", "--steps", "1", "--epochs", "1"],
        "m.cnnz": ["compress", run, "-s", "prune.epochs=1", "-s", "finetune.epochs=1"],
        "student": ["distill", "--teacher", run, *STUDENT, "--epochs", "1"],
    }
    for out, args in verbs.items():
        line = _error_line([*args, *data, "-o", str(tmp_path / out)], alone=False)
        assert line.startswith(f"error: {path}: cannot decode image"), line
        assert not (tmp_path / out).exists(), out


def _splits_with_a_cut_test_image(tmp: Path, formats: ModuleType) -> tuple[Path, Path]:
    """train/ (2 classes x 6) and test/ (2 x 2) of grey PNGs, test/b/1.png cut short:
    (the folder, the corrupt file)."""
    for split, n in (("train", 6), ("test", 2)):
        classes = {"a": list(_pixels(n, 16, 16)), "b": list(_pixels(n, 16, 16))}
        formats._write_folder(tmp / "imgs" / split, classes)
    path = tmp / "imgs" / "test" / "b" / "1.png"
    path.write_bytes(path.read_bytes()[:60])
    return tmp / "imgs", path


def test_eval_names_a_corrupt_test_image(tmp_path: Path, formats: ModuleType) -> None:
    """The folder opens (the header is intact); evaluating decodes the image and fails."""
    folder, path = _splits_with_a_cut_test_image(tmp_path, formats)
    run = tmp_path / "run"
    kwargs = {"num_classes": 2, "img_size": 16}
    save_run(run, get_model("lenet5", **kwargs), arch="lenet5", kwargs=kwargs)
    line = _error_line(["eval", str(run), "--data", str(folder)])
    assert line.startswith(f"error: {path}: cannot decode image"), line


def test_a_corrupt_test_image_keeps_the_training_for_resume(
    tmp_path: Path, formats: ModuleType, data_path: ModuleType
) -> None:
    """A test image that is corrupt only past its header is met after training: the error
    names it and the checkpoint it keeps, no run.json is written, and once the image is
    fixed --resume finishes the run without training again (its history has one epoch)."""
    folder, path = _splits_with_a_cut_test_image(tmp_path, formats)
    out = tmp_path / "run"
    args = ["train", "lenet5", "--data", str(folder), "--epochs", "1", "-o", str(out)]
    line = _error_line(args, alone=False)
    assert line.startswith(f"error: {path}: cannot decode image"), line
    assert "--resume" in line and str(out / "checkpoint.pt") in line
    assert not (out / "run.json").exists()
    formats._write_folder(folder / "test", {"b": list(_pixels(2, 16, 16))})
    assert 0.0 <= data_path._ok([*args, "--resume"])["test_accuracy"] <= 1.0
    assert len(json.loads((out / "run.json").read_text())["history"]) == 1
