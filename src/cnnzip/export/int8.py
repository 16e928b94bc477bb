"""The int8 baseline: onnxruntime's static post-training quantization of an exported model.

It is what most users try first, so a compressed file is held against it: the dense
model exported to ONNX (float32), quantized with ``onnxruntime.quantization``
(``quantize_static``: QDQ format, per-channel int8 weights, uint8 activations, min/max
ranges calibrated on a fixed-seed random sample of the training images), then both graphs
and cnnzip's own file (decoded dense, and with its pruned layers as CSR products where
that measured faster) are measured side by side: bytes on disk (the dense model as a
safetensors file), test accuracy, batch-1 latency on one thread, all timed interleaved in
one process, each after every other equally often (``runtime.bench.median_ms``), with a
copy of the torch model as a control that must read about 1.00x: how far it is off is
the noise.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

from cnnzip.data import Dataset, Split
from cnnzip.export.deps import require
from cnnzip.export.graph import ExportError, export_onnx, session
from cnnzip.fileio import atomic_path
from cnnzip.profiling.latency import num_threads
from cnnzip.runtime.bench import median_ms
from cnnzip.runtime.sparse import LayerChoice, sparsify
from cnnzip.train import evaluate

__all__ = [
    "CALIBRATION_IMAGES",
    "bench_int8",
    "calibration_images",
    "onnx_accuracy",
    "quantize_int8",
]

CALIBRATION_IMAGES = 512  # training images for the activation ranges
CALIBRATION_SEED = 0  # which training images: a fixed random sample, not the first N
BATCH = 256  # images per onnxruntime call when measuring accuracy


def _batches(x: torch.Tensor, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(x), size):
        yield x[i : i + size].float().numpy()


def quantize_int8(
    float_onnx: str | Path, out: str | Path, images: torch.Tensor, *, per_channel: bool = True
) -> int:
    """Quantize ``float_onnx`` (an ``export_onnx`` graph: its input is named ``input``) to
    int8 at ``out`` (written atomically) with activation ranges calibrated on ``images``
    (N, ...), normalised as the model's inputs; returns the file's bytes."""
    q = require("onnxruntime.quantization")
    if len(images) == 0:
        raise ExportError("int8 calibration needs at least one training image, got none")

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter({"input": b} for b in _batches(images, 64))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp, atomic_path(out) as target:
        prepared = Path(tmp) / "prepared.onnx"
        q.quant_pre_process(str(float_onnx), str(prepared))  # shapes inferred, graph fused
        q.quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
    return os.path.getsize(out)


def onnx_accuracy(sess: Any, split: Split) -> float:
    """Top-1 accuracy of an onnxruntime session on ``split`` (in memory)."""
    name = sess.get_inputs()[0].name
    correct = 0
    for xb, start in zip(_batches(split.x, BATCH), range(0, len(split), BATCH), strict=True):
        logits = sess.run(None, {name: xb})[0]  # (B, classes)
        correct += int((logits.argmax(1) == split.y[start : start + BATCH].numpy()).sum())
    return correct / max(len(split), 1)


def calibration_images(train: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` training images drawn at random with a fixed seed (in their stored
    order): the first N of a sorted or class-grouped set would calibrate on few classes."""
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    pick = torch.randperm(len(train), generator=generator)[:count].sort().values
    return train[pick]


def _safetensors_bytes(model: nn.Module, path: Path) -> int:
    """Bytes on disk of the model's state as a safetensors file at ``path`` (how cnnzip
    stores a dense run): the header and the tensors, as the other rows' files."""
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return os.path.getsize(path)


def _runners(
    dense: nn.Module, float_path: Path, int8_path: Path, compressed: nn.Module | None, one: Any
) -> tuple[dict[str, Any], dict[str, Any], list[LayerChoice]]:
    """(onnxruntime sessions, torch models, the sparse runtime's layer choices) to time."""
    sessions = {"float": session(float_path), "int8": session(int8_path)}
    models = {k: copy.deepcopy(dense).eval() for k in ("torch", "control")}
    chosen: list[LayerChoice] = []
    if compressed is not None:
        models["cnnz"] = compressed.eval()
        models["sparse"] = copy.deepcopy(compressed).eval()
        with num_threads(1):
            chosen = sparsify(models["sparse"], one)
    return sessions, models, chosen


def bench_int8(
    dense: nn.Module,
    data: Dataset,
    workdir: str | Path,
    *,
    cnnz: tuple[str | Path, nn.Module] | None = None,
    calibration: int = CALIBRATION_IMAGES,
    repeats: int = 200,
) -> dict[str, Any]:
    """Rows of bytes, test accuracy and batch-1 latency (1 thread, median of ``repeats``,
    all timed interleaved, the order shuffled each round) for: the dense model in torch
    (the reference every speedup is against) and a copy of it (the control: ~1.00x), as
    float32 ONNX and as int8 PTQ ONNX in onnxruntime, and, given ``cnnz`` (a .cnnz path
    and the model it decodes to), cnnzip's file run dense and with its sparse layers as
    CSR products. The ONNX and safetensors files are written into ``workdir``."""
    if not all(isinstance(s.x, torch.Tensor) for s in (data.train, data.test)):
        raise ExportError(f"{data.name}: the int8 baseline needs data held in memory, not streamed")
    workdir = Path(workdir)
    float_path, int8_path = workdir / "dense.onnx", workdir / "int8.onnx"
    export_onnx(dense, data.input_shape, float_path)
    quantize_int8(float_path, int8_path, calibration_images(data.train.x, calibration))
    one = data.test.x[:1].float()  # (1, ...): batch-1 latency on a real image
    sessions, models, chosen = _runners(dense, float_path, int8_path, cnnz and cnnz[1], one)
    fns = {k: (lambda s=s: s.run(None, {"input": one.numpy()})) for k, s in sessions.items()}
    fns.update({k: (lambda m=m: m(one)) for k, m in models.items()})
    with num_threads(1), torch.no_grad():
        ms = {k: v["wall"] for k, v in median_ms(fns, repeats, rotate=True).items()}
    file_bytes = os.path.getsize(cnnz[0]) if cnnz else 0
    torch_bytes = _safetensors_bytes(dense, workdir / "dense.safetensors")
    rows = [
        ("torch", "dense float32 (torch, safetensors)", torch_bytes),
        ("control", "dense float32 (torch, a copy: control)", torch_bytes),
        ("float", "dense float32 ONNX (onnxruntime)", os.path.getsize(float_path)),
        ("int8", "int8 PTQ ONNX (onnxruntime)", os.path.getsize(int8_path)),
        ("cnnz", ".cnnz decoded (torch, dense)", file_bytes),
        ("sparse", ".cnnz sparse runtime (torch CSR)", file_bytes),
    ]
    out = []
    for key, name, nbytes in rows:
        if key in sessions:
            acc = onnx_accuracy(sessions[key], data.test)
        elif key in models:
            acc = evaluate(models[key], data.test)["accuracy"]
        else:
            continue
        speedup = ms["torch"] / ms[key]
        out.append({"name": name, "key": key, "bytes": nbytes, "accuracy": acc,
                    "latency_ms": ms[key], "speedup": speedup})  # fmt: skip
    return {
        "rows": out,
        "sparse_layers": [c.name for c in chosen if c.sparse],
        "threads": 1,
        "repeats": repeats,
        "calibration_images": calibration,
        "verdict": verdict(out),
    }


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """Sentences saying where int8 PTQ beats cnnzip's file (bytes, accuracy, latency
    against the faster of our two runtimes), and where it does not."""
    by = {r["key"]: r for r in rows}
    if "int8" not in by or "cnnz" not in by:
        return []
    q, ours = by["int8"], by["cnnz"]
    fast = min((by[k] for k in ("cnnz", "sparse") if k in by), key=lambda r: r["latency_ms"])
    lines = []
    for what, better, a, b in (
        ("smaller", q["bytes"] < ours["bytes"], f"{q['bytes']:,} B", f"{ours['bytes']:,} B"),
        ("more accurate", q["accuracy"] > ours["accuracy"], f"{q['accuracy']:.4f}",
         f"{ours['accuracy']:.4f}"),
        ("faster at batch 1", q["latency_ms"] < fast["latency_ms"], f"{q['latency_ms']:.3f} ms",
         f"{fast['latency_ms']:.3f} ms"),
    ):  # fmt: skip
        who = "int8 PTQ is" if better else "int8 PTQ is not"
        lines.append(f"{who} {what} than the .cnnz ({a} vs {b})")
    return lines
