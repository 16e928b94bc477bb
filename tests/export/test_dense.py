"""The dense run of a .cnnz (``cnnzip.export.dense``): a relative source found beside the
file or in the working folder, never an ambiguous one, never a run of another model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import cnnzip as cz
from cnnzip.export.dense import DenseRunError, dense_dir, load_dense

pytestmark = pytest.mark.usefixtures("one_thread")

KWARGS = {"hidden": [16, 8]}


def _run(folder: Path, kwargs: dict = KWARGS) -> Path:
    torch.manual_seed(0)
    cz.save_run(folder, cz.models.get_model("lenet300", **kwargs), arch="lenet300", kwargs=kwargs)
    return folder


def _file(path: Path, source: str, kwargs: dict = KWARGS) -> Path:
    model = cz.models.get_model("lenet300", **kwargs)
    arch = {"name": "lenet300", "kwargs": kwargs}
    cz.codec.save(path, model, arch=arch, meta={"source": source})
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder apart from the files'."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "cwd"


def test_a_relative_source_is_found_beside_the_file(tmp_path: Path, elsewhere: Path) -> None:
    _run(tmp_path / "files" / "runs" / "a")
    path = _file(tmp_path / "files" / "m.cnnz", "runs/a")
    folder, how = dense_dir(path)
    assert folder == (tmp_path / "files" / "runs" / "a").resolve() and "beside" in how
    assert load_dense(path).path == folder


def test_a_relative_source_is_found_in_the_working_folder(tmp_path: Path, elsewhere: Path) -> None:
    _run(elsewhere / "runs" / "a")
    path = _file(tmp_path / "m.cnnz", "runs/a")
    assert dense_dir(path) == (
        (elsewhere / "runs/a").resolve(),
        "the file's metadata, in the working folder",
    )


def test_a_source_found_twice_is_ambiguous(tmp_path: Path, elsewhere: Path) -> None:
    _run(elsewhere / "runs" / "a")
    _run(tmp_path / "files" / "runs" / "a")
    path = _file(tmp_path / "files" / "m.cnnz", "runs/a")
    with pytest.raises(DenseRunError, match=r"is both .* pass --dense RUN"):
        dense_dir(path)
    assert dense_dir(path, elsewhere / "runs" / "a")[1] == "--dense"  # --dense decides


def test_a_run_of_another_model_is_refused(tmp_path: Path, elsewhere: Path) -> None:
    _run(elsewhere / "runs" / "a", {"hidden": [32, 8]})
    path = _file(tmp_path / "m.cnnz", str(elsewhere / "runs" / "a"))
    with pytest.raises(DenseRunError, match=r"is lenet300\(hidden=\[32, 8\]\), but .* holds "
                       r"lenet300\(hidden=\[16, 8\]\); pass --dense RUN"):  # fmt: skip
        dense_dir(path)
    with pytest.raises(DenseRunError, match=r"but .* holds lenet300"):
        dense_dir(path, elsewhere / "runs" / "a")  # --dense is checked too


def test_no_source_or_a_gone_one_says_pass_dense(tmp_path: Path, elsewhere: Path) -> None:
    with pytest.raises(DenseRunError, match=r"names no dense run .*pass --dense RUN"):
        dense_dir(_file(tmp_path / "m.cnnz", ""))
    with pytest.raises(DenseRunError, match="is not there; pass --dense RUN"):
        dense_dir(_file(tmp_path / "m.cnnz", "runs/gone"))


def test_the_dense_run_of_a_factory_loads_only_trusted(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--model SPEC`` reaches the dense run (bench int8, report): without it, refused."""
    body = "    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))\n"
    source = f"import torch.nn as nn\n\ndef mlp():\n{body}"
    (tmp_path / "cz_dense_nets.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CNNZIP_TRUST", raising=False)
    spec = "cz_dense_nets:mlp"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    cz.save_run(tmp_path / "run", model, arch=spec, kwargs={})
    path = tmp_path / "m.cnnz"
    cz.codec.save(path, model, arch={"name": spec, "kwargs": {}}, meta={"source": "run"})
    with pytest.raises(cz.errors.CnnzipError, match="cz_dense_nets:mlp"):
        load_dense(path)
    run = load_dense(path, trust=spec)
    assert torch.equal(run.model[1].weight, model[1].weight)
