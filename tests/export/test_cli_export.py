"""The ``export`` and ``bench int8`` verbs, and their one line without the ONNX packages."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import cnnzip as cz
from cnnzip.cli import main
from cnnzip.prune import one_shot, prunable

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")

KWARGS = {"hidden": [16, 8]}


@pytest.fixture
def pruned_file(tmp_path: Path) -> Path:
    """A pruned LeNet-300 .cnnz that names its dense run and the synthetic data."""
    torch.manual_seed(0)
    dense = cz.models.get_model("lenet300", **KWARGS)
    cz.save_run(tmp_path / "run", dense, arch="lenet300", kwargs=KWARGS)
    model = copy.deepcopy(dense)
    one_shot(model, {t: 0.9 for t in prunable(model)})
    meta = {"source": str(tmp_path / "run"), "data": "synthetic", "input_shape": [1, 28, 28]}
    path = tmp_path / "m.cnnz"
    cz.codec.save(path, model, arch={"name": "lenet300", "kwargs": KWARGS}, meta=meta)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_export_a_file_checks_it(pruned_file: Path, tmp_path: Path) -> None:
    code, out = _run("export", str(pruned_file), "-o", str(tmp_path / "m.onnx"), "--json")
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["max_abs_diff"] <= 1e-4 and result["opset"] == 20 and result["batch"] is None
    assert result["bytes"] == (tmp_path / "m.onnx").stat().st_size


def test_export_without_onnxruntime_says_how_in_one_line(
    pruned_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, out = _run("export", str(pruned_file), "-o", str(tmp_path / "m.onnx"))
    assert code == 2 and out.count("\n") == 1 and out.startswith("error: ")
    assert "pip install 'cnnzip[onnx]'" in out and not (tmp_path / "m.onnx").exists()


def test_bench_int8_rows(pruned_file: Path, tmp_path: Path) -> None:
    args = ["--repeats", "3", "--calibration", "32", "--onnx-dir", str(tmp_path / "onnx")]
    code, out = _run("bench", "int8", str(pruned_file), *args, "--json")
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    rows = {r["key"]: r for r in result["rows"]}
    assert rows["cnnz"]["bytes"] == pruned_file.stat().st_size
    assert rows["float"]["bytes"] == (tmp_path / "onnx" / "dense.onnx").stat().st_size
    assert rows["int8"]["bytes"] == (tmp_path / "onnx" / "int8.onnx").stat().st_size
    assert len(result["verdict"]) == 3


def test_bench_int8_needs_the_dense_run(pruned_file: Path, tmp_path: Path) -> None:
    for child in (tmp_path / "run").iterdir():
        child.unlink()
    (tmp_path / "run").rmdir()
    code, out = _run("bench", "int8", str(pruned_file))
    assert code == 2 and "pass --dense RUN" in out


def test_export_never_overwrites_its_source(pruned_file: Path) -> None:
    before = pruned_file.read_bytes()
    code, out = _run("export", str(pruned_file), "-o", str(pruned_file))
    assert code == 2 and "would overwrite" in out and pruned_file.read_bytes() == before


def test_export_never_overwrites_a_runs_files(pruned_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "sensitivity.json").write_text("{}")
    for name, says in (("sensitivity.json", "sensitivity curves"), ("run.json", "would overwrite"),
                       ("model.safetensors", "would overwrite")):  # fmt: skip
        before = (run / name).read_bytes()
        code, out = _run("export", str(run), "-o", str(run / name))
        assert code == 2 and says in out and out.count("\n") == 1, out
        assert (run / name).read_bytes() == before


def test_export_input_sets_the_side_and_the_error_names_it(tmp_path: Path) -> None:
    run = tmp_path / "lenet5"  # built for 28 x 28: its fc1 takes 50 x 4 x 4
    cz.save_run(run, cz.models.get_model("lenet5"), arch="lenet5", kwargs={})
    code, out = _run("export", str(run), "-o", str(tmp_path / "a.onnx"), "--input", "20")
    assert code == 2 and "shape (1, 20, 20)" in out and "--input N" in out, out
    code, out = _run("export", "lenet5", "-o", str(tmp_path / "b.onnx"), "--input", "20")
    assert code == 0, out
    shape = pytest.importorskip("onnx").load(tmp_path / "b.onnx").graph.input[0].type.tensor_type
    assert [d.dim_value for d in shape.shape.dim][1:] == [1, 20, 20]


def test_bench_int8_refuses_a_dense_run_of_another_model(pruned_file: Path, tmp_path: Path) -> None:
    other = {"hidden": [32, 8]}
    cz.save_run(tmp_path / "other", cz.models.get_model("lenet300", **other), arch="lenet300",
                kwargs=other)  # fmt: skip
    code, out = _run("bench", "int8", str(pruned_file), "--dense", str(tmp_path / "other"))
    assert code == 2 and "hidden=[32, 8]" in out and "pass --dense RUN" in out, out
