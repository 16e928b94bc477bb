"""Every ```python example of README.md runs as printed (in a temporary folder).

The first block (## Python) is the session the other examples continue from: it
loads Fashion-MNIST, trains a LeNet-5 into runs/lenet5 and defines ``cz``, ``data``,
``model`` and ``cfg``; each later block runs, in README order, on a fresh copy of
that session. Fashion-MNIST is replaced by its first few hundred images
($CNNZIP_DATA), so the examples' full-size settings take seconds, and the runs a
block reads without making them (runs/mlp1200, runs/lenet300) are prepared here.
A block's own asserts (the own-model example's: the file is exactly the model)
are checked as it runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnzip as cz
from cnnzip.data.idx import read_idx
from cnnzip.runtime import xnor

README = Path(__file__).resolve().parents[1] / "README.md"
SPLITS = {"train": 300, "t10k": 100}  # images kept of each Fashion-MNIST split


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def write_small_fmnist(source: Path, folder: Path, idx_bytes: Callable[..., bytes]) -> None:
    """The first images of each Fashion-MNIST split, as uncompressed IDX files."""
    folder.mkdir()
    for split, n in SPLITS.items():
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte"
            array = np.ascontiguousarray(read_idx(source / f"{name}.gz")[:n])
            (folder / name).write_bytes(idx_bytes(array))


def prepare_runs() -> None:
    """The runs the examples read but do not make: a distillation teacher and the
    LeNet-300-100 that Deep Compression compresses. Untrained: the examples only need
    runs they can load, and training them would double the test's time."""
    torch.manual_seed(0)
    for arch in ("mlp1200", "lenet300"):
        model = cz.models.get_model(arch, num_classes=10)
        cz.save_run(f"runs/{arch}", model, arch=arch, kwargs={"num_classes": 10})


def run_block(code: str, namespace: dict) -> None:
    exec(compile(code, "README.md", "exec"), namespace)


@pytest.mark.slow
def test_every_python_example_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmnist_dir: Path,
    idx_bytes: Callable[..., bytes],
) -> None:
    write_small_fmnist(fmnist_dir, tmp_path / "fmnist", idx_bytes)
    monkeypatch.setenv("CNNZIP_DATA", str(tmp_path / "fmnist"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(xnor, "_threads", xnor._threads)  # the binary example sets it
    prepare_runs()
    first, *others = python_blocks()
    session = {"__name__": "readme"}
    run_block(first, session)
    assert len(session["data"].test.y) == SPLITS["t10k"]  # the small copy, not the real one
    for block in others:
        run_block(block, dict(session))
    written = ["runs/lenet5/run.json", "lenet300.cnnz", "mine.cnnz", "m.cnnz"]
    assert all((tmp_path / name).stat().st_size > 0 for name in written)
