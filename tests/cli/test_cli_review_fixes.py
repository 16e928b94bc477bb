"""Regression tests of the review of issue 13 in the CLI: a verb reading a run or a .cnnz
file without --data uses the data it records (not Fashion-MNIST), and refuses data of
another input shape or other classes than the model was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnzip.cli import main
from cnnzip.codec import read as read_cnnz

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["-k", "hidden=[8,8]", "--epochs", "0"]  # no training: what is read is under test


def _invoke(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


def _ok(args: list[str]) -> dict:
    code, output = _invoke([*args, "--json"])
    assert code == 0, output
    return json.loads(output.strip().splitlines()[-1])


def _error(args: list[str]) -> str:
    """The one line a refused command prints (exit 2)."""
    code, output = _invoke(args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def _npz(path: Path, n_test: int = 14, classes: list[str] | None = None) -> Path:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40 + n_test, 8, 8), dtype=np.uint8), np.arange(40 + n_test) % 3
    names = {"classes": np.array(classes)} if classes else {}
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:], **names)
    return path


def _folder(root: Path, classes: tuple[str, ...], side: int = 12) -> Path:
    """train/ and test/ of grey PNGs, 4 and 2 per class."""
    rng = np.random.default_rng(1)
    for split, n in (("train", 4), ("test", 2)):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_verbs_default_to_the_data_the_source_records(tmp_path: Path) -> None:
    """Trained on an .npz of 14 test images: eval of the run and of a binarized .cnnz
    without --data score those 14 (not Fashion-MNIST's 10,000), and the files that
    binarize, prune and distill write record that data (and its input shape)."""
    data, run = str(_npz(tmp_path / "mine.npz")), str(tmp_path / "run")
    _ok(["train", "lenet300", "--data", data, *SMALL, "-o", run])
    assert _ok(["eval", run])["n"] == 14
    cnnz, binarized = tmp_path / "b.cnnz", str(tmp_path / "bin")
    _ok(["binarize", run, "--mode", "bwn", "--epochs", "0", "-o", binarized, "--cnnz", str(cnnz)])
    meta = read_cnnz(cnnz).header["meta"]
    assert meta["data"] == data and meta["input_shape"] == [1, 8, 8]
    assert _ok(["eval", str(cnnz)])["n"] == 14
    pruned = tmp_path / "pruned"
    _ok(["prune", run, "--sparsity", "0.5", "--steps", "1", "--epochs", "0", "-o", str(pruned)])
    assert json.loads((pruned / "run.json").read_text())["data"] == data
    student = tmp_path / "student"  # distill: the teacher's data
    _ok(["distill", "--teacher", run, "--student", "lenet300", *SMALL, "-o", str(student)])
    assert json.loads((student / "run.json").read_text())["data"] == data


def test_a_recorded_path_that_is_gone_is_named(tmp_path: Path) -> None:
    data, run = _npz(tmp_path / "mine.npz"), str(tmp_path / "run")
    _ok(["train", "lenet300", "--data", str(data), *SMALL, "-o", run])
    data.unlink()
    assert _error(["eval", run]) == (
        f"error: {run} was trained on {data}, which is not there (moved or deleted?); "
        "pass --data with the path of that data"
    )


def test_another_input_size_is_refused(tmp_path: Path) -> None:
    """Trained at --input 8 on 12 px images: the same folder at its native 12 px is
    refused (a model with adaptive pooling would run on it), and evaluates at --input 8."""
    folder, run = str(_folder(tmp_path / "imgs", ("a", "b"))), str(tmp_path / "run")
    _ok(["train", "lenet300", "--data", folder, "--input", "8", *SMALL, "-o", run])
    assert _error(["eval", run, "--data", folder]) == (
        f"error: {run} was trained on inputs of shape (1, 8, 8) but {folder} gives "
        "(1, 12, 12); pass --input 8 for an image folder, or --data with data of that shape"
    )
    assert _ok(["eval", run, "--input", "8"])["n"] == 4


def test_other_classes_are_refused(tmp_path: Path) -> None:
    """The class names are recorded (an image folder's, an .npz's ``classes``) and data
    with others is refused instead of mis-mapping labels."""
    folder, run = str(_folder(tmp_path / "imgs", ("cat", "dog"))), str(tmp_path / "run")
    _ok(["train", "lenet300", "--data", folder, *SMALL, "-o", run])
    assert json.loads(Path(run, "run.json").read_text())["classes"] == ["cat", "dog"]
    other = str(_folder(tmp_path / "other", ("cat", "fox")))
    assert _error(["eval", run, "--data", other]) == (
        f"error: {run} was trained on classes cat, dog but {other} has cat, fox; labels "
        "would be mis-mapped: pass --data with data of the same classes"
    )
    named, npz_run = _npz(tmp_path / "n.npz", classes=["x", "y", "z"]), str(tmp_path / "r2")
    _ok(["train", "lenet300", "--data", str(named), *SMALL, "-o", npz_run])
    renamed = _npz(tmp_path / "m.npz", classes=["x", "z", "y"])
    assert "was trained on classes x, y, z but" in _error(["eval", npz_run, "--data", str(renamed)])
