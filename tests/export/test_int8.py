"""The int8 baseline: onnxruntime's static PTQ of an exported model, and the side-by-side
rows against cnnzip's file, on a tiny MLP fitted to the synthetic toy data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

import cnnzip as cz
from cnnzip.data import Dataset
from cnnzip.export import ExportError, export_onnx, session
from cnnzip.export.int8 import (
    bench_int8,
    calibration_images,
    onnx_accuracy,
    quantize_int8,
    verdict,
)
from cnnzip.prune import one_shot, prunable
from cnnzip.quantize import share_weights

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.fixture(scope="module")
def trained(toy_data: Dataset) -> nn.Module:
    model = _mlp()
    cz.train.fit(model, toy_data, cz.train.TrainConfig(epochs=2, seed=0))
    return model.eval()


def test_int8_graph_is_smaller_and_close_in_accuracy(
    trained: nn.Module, toy_data: Dataset, tmp_path: Path
) -> None:
    export_onnx(trained, toy_data.input_shape, tmp_path / "f.onnx")
    size = quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", toy_data.train.x[:128])
    assert size == (tmp_path / "q.onnx").stat().st_size
    assert size < 0.4 * (tmp_path / "f.onnx").stat().st_size  # 8 of 32 bits, plus scales
    ref = cz.train.evaluate(trained, toy_data.test)["accuracy"]
    n = len(toy_data.test)
    assert abs(onnx_accuracy(session(tmp_path / "f.onnx"), toy_data.test) - ref) <= 1 / n
    assert abs(onnx_accuracy(session(tmp_path / "q.onnx"), toy_data.test) - ref) <= 0.05
    ops = {
        node.op_type for node in pytest.importorskip("onnx").load(tmp_path / "q.onnx").graph.node
    }
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_onnx_accuracy_counts_by_hand(tmp_path: Path) -> None:
    """A graph that returns its input as logits: predictions are each row's argmax."""
    export_onnx(nn.Flatten(), (1, 2, 2), tmp_path / "id.onnx")
    x = torch.eye(4)[[0, 1, 2, 3, 0]].reshape(5, 1, 2, 2)  # predicts 0, 1, 2, 3, 0
    split = cz.data.Split(x, torch.tensor([0, 1, 0, 3, 1]))
    assert onnx_accuracy(session(tmp_path / "id.onnx"), split) == pytest.approx(3 / 5)


def test_calibration_needs_images(tmp_path: Path) -> None:
    export_onnx(_mlp(), (1, 28, 28), tmp_path / "f.onnx")
    with pytest.raises(ExportError, match="at least one training image"):
        quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", torch.empty(0, 1, 28, 28))


def test_bench_rows_beside_the_cnnz(trained: nn.Module, toy_data: Dataset, tmp_path: Path) -> None:
    small = _mlp()
    small.load_state_dict(trained.state_dict())
    one_shot(small, {t: 0.9 for t in prunable(small)})
    share_weights(small, bits={"linear": 4})
    cz.codec.save(tmp_path / "m.cnnz", small)
    decoded = cz.load(tmp_path / "m.cnnz", _mlp())
    result = bench_int8(trained, toy_data, tmp_path, cnnz=(tmp_path / "m.cnnz", decoded), repeats=3)
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ["torch", "control", "float", "int8", "cnnz", "sparse"]
    assert rows["cnnz"]["bytes"] == rows["sparse"]["bytes"] == (tmp_path / "m.cnnz").stat().st_size
    on_disk = (tmp_path / "dense.safetensors").stat().st_size  # the bytes a run stores
    assert rows["torch"]["bytes"] == rows["control"]["bytes"] == on_disk
    assert 4 * (784 * 64 + 64 + 64 * 10 + 10) < on_disk < 4 * (784 * 64 + 64 + 64 * 10 + 10) + 1024
    assert rows["control"]["accuracy"] == rows["torch"]["accuracy"]
    assert rows["cnnz"]["accuracy"] == cz.train.evaluate(decoded, toy_data.test)["accuracy"]
    assert rows["torch"]["speedup"] == 1.0 and all(r["latency_ms"] > 0 for r in rows.values())
    assert len(result["verdict"]) == 3


def test_verdict_says_where_int8_wins() -> None:
    rows = [
        {"key": "int8", "bytes": 100, "accuracy": 0.9, "latency_ms": 1.0},
        {"key": "cnnz", "bytes": 50, "accuracy": 0.8, "latency_ms": 3.0},
        {"key": "sparse", "bytes": 50, "accuracy": 0.8, "latency_ms": 2.0},
    ]
    assert verdict(rows) == [
        "int8 PTQ is not smaller than the .cnnz (100 B vs 50 B)",
        "int8 PTQ is more accurate than the .cnnz (0.9000 vs 0.8000)",
        "int8 PTQ is faster at batch 1 than the .cnnz (1.000 ms vs 2.000 ms)",
    ]
    assert verdict(rows[1:]) == []
    assert len(verdict(rows[:2])) == 3  # without the sparse row: against the dense one


def test_calibration_is_a_fixed_random_sample() -> None:
    """Not the first N: a class-sorted training set would calibrate on one class."""
    train = torch.arange(1000.0).reshape(1000, 1)  # (N, 1): each image its own index
    pick = calibration_images(train, 50)
    assert torch.equal(pick, calibration_images(train, 50))  # the same on every call
    idx = pick[:, 0].long()
    assert len(set(idx.tolist())) == 50 and torch.all(idx[1:] > idx[:-1])  # distinct, ordered
    assert idx.max() > 500 and not torch.equal(idx, torch.arange(50))
    assert torch.equal(calibration_images(train, 5000), train)  # more than there are: all
