"""`--data PATH`: a user's .npz and image folder through train, eval, compress and eval of
the file, with the format detected; options meant for the named sets are refused for a PATH."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnzip.cli import main

SMALL = ["-k", "hidden=[32,16]"]


def _images(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)
    x[..., 0] = np.where(y[:, None, None] == 0, 255, x[..., 0])  # class 0 is learnable: red
    return x, y


def _npz(tmp: Path) -> Path:
    x, y = _images()
    np.savez(tmp / "tiny.npz", x_train=x[:96], y_train=y[:96], x_test=x[96:], y_test=y[96:])
    return tmp / "tiny.npz"


def _folder(tmp: Path) -> Path:
    x, y = _images()
    for i in range(len(y)):
        d = tmp / "imgs" / ("train" if i < 96 else "test") / f"class{y[i]}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(d / f"{i}.png")
    return tmp / "imgs"


def _ok(args: list[str]) -> dict:
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("make", [_npz, _folder], ids=["npz", "png-folder"])
def test_a_path_trains_compresses_and_evaluates(tmp_path: Path, make) -> None:
    data = str(make(tmp_path))
    run, cnnz = str(tmp_path / "run"), str(tmp_path / "m.cnnz")
    trained = _ok(["train", "lenet300", "--data", data, "--epochs", "2", *SMALL, "-o", run])
    assert _ok(["eval", run, "--data", data])["accuracy"] == trained["test_accuracy"]
    over = ["-s", "prune.steps=2", "-s", "prune.epochs=1", "-s", "finetune.epochs=1"]
    compressed = _ok(["compress", run, "--data", data, *over, "-o", cnnz])
    evaluated = _ok(["eval", cnnz, "--data", data])
    assert evaluated["accuracy"] == compressed["test_accuracy"]
    assert compressed["file_bytes"] == Path(cnnz).stat().st_size


def test_named_set_options_are_refused_for_a_path(tmp_path: Path) -> None:
    data = str(_npz(tmp_path))
    res = CliRunner().invoke(main, ["train", "lenet300", "--data", data, "--limit", "5",
                                    "-o", str(tmp_path / "r")])  # fmt: skip
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: --limit: only for the named data sets, not for a PATH ({data}): "
        "write the split you want into the npz or the folder"
    ]
    assert not (tmp_path / "r").exists()
