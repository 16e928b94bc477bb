"""Verbs for deployment: ``export`` (ONNX, checked in onnxruntime) and ``bench int8`` (the
int8 post-training-quantization baseline beside a .cnnz)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import torch.nn as nn

from cnnzip.cli.app import check_not_sources, emit, main
from cnnzip.cli.bench import bench
from cnnzip.cli.factory import load_cnnz, model_option
from cnnzip.cli.options import (
    COUNT,
    DataSpec,
    Recorded,
    data_options,
    json_option,
    max_params_option,
    out_option,
)
from cnnzip.cli.profile import build_model
from cnnzip.codec import read as read_cnnz
from cnnzip.errors import CnnzipError
from cnnzip.export import export_onnx
from cnnzip.export.graph import MAX_OPSET, MIN_OPSET
from cnnzip.export.int8 import CALIBRATION_IMAGES, bench_int8
from cnnzip.runs import load_run
from cnnzip.train.checkpoint import check_writable


@main.command("export")
@click.argument("source", metavar="RUN|FILE.cnnz|NAME")
@out_option("The .onnx file", file=True)
@click.option(
    "--opset",
    type=click.IntRange(MIN_OPSET, MAX_OPSET),
    default=None,
    help="ONNX opset [default: torch's exporter's, 20].",
)
@max_params_option
@model_option()
@json_option
def export_cmd(
    source: str, out: str, opset: int | None, max_params: int, model_spec: str | None, as_json: bool
) -> None:
    """Export a run, a .cnnz file (as decoded: pruned zeros kept, shared weights as floats,
    BWN weights as alpha * sign) or a zoo model to ONNX, and check it in onnxruntime
    against torch on random inputs (a difference over 1e-4 is an error)."""
    check_not_sources([out], [source])
    check_writable(out)
    model, shape = build_model(source, None, {}, max_params, model_spec)
    checked = export_onnx(model, shape, out, opset=opset)
    emit({"source": source, **checked.to_dict()}, as_json, lambda _: checked.line())


F = TypeVar("F", bound=Callable[..., Any])


def dense_source(path: str, given: str | None) -> str:
    """The dense run a .cnnz was compressed from: ``--dense``, else the run its metadata
    names, which must still be there."""
    if given:
        return given
    meta = read_cnnz(path).header.get("meta") or {}
    source = meta.get("source") if isinstance(meta, dict) else None
    if not isinstance(source, str) or not Path(source).is_dir():
        raise CnnzipError(
            f"{path} names no dense run that is still there (source: {source!r}); "
            "pass --dense RUN with the run it was compressed from"
        )
    return source


def dense_option(help: str) -> Callable[[F], F]:
    """``--dense RUN``: the dense run a .cnnz was compressed from (see ``dense_source``)."""
    where = "[default: the run the file's metadata names]"
    path = click.Path(exists=True, file_okay=False)
    return click.option("--dense", type=path, default=None, help=f"{help} {where}.")


@bench.command("int8")
@click.argument("path", metavar="FILE.cnnz", type=click.Path(exists=True, dir_okay=False))
@dense_option("The dense run the file was compressed from")
@data_options
@click.option(
    "--calibration",
    type=COUNT,
    default=CALIBRATION_IMAGES,
    show_default=True,
    help="Training images that calibrate the int8 activation ranges.",
)
@click.option("--repeats", type=COUNT, default=200, show_default=True, help="Timed runs.")
@click.option(
    "--onnx-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the two ONNX files here [default: a temporary folder].",
)
@max_params_option
@model_option()
@json_option
def bench_int8_cmd(
    path: str,
    dense: str | None,
    dataset: DataSpec,
    calibration: int,
    repeats: int,
    onnx_dir: str | None,
    max_params: int,
    model_spec: str | None,
    as_json: bool,
) -> None:
    """The dense model as float32 and as int8 PTQ ONNX in onnxruntime (static quantization
    calibrated on training images) beside the .cnnz, dense and on the sparse runtime:
    bytes, test accuracy, batch-1 latency (1 thread, interleaved), speed vs torch dense."""
    decoded = load_cnnz(path, model_spec, max_params)
    result = int8_of(
        path, decoded, dense, dataset, onnx_dir, calibration=calibration, repeats=repeats
    )
    emit({"file": path, **result}, as_json, int8_table)


def int8_of(
    path: str,
    decoded: nn.Module,
    dense: str | None,
    dataset: DataSpec,
    onnx_dir: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``bench_int8`` of .cnnz ``path`` (decoded to ``decoded``) against its dense run, on
    the data the file records; the ONNX files go to ``onnx_dir`` (else a temporary one)."""
    run = load_run(dense_source(path, dense))
    trained = Recorded.of(path)
    data = dataset.load(trained.stats, trained=trained)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(onnx_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        return bench_int8(run.model, data, folder, cnnz=(path, decoded), **kwargs)


def int8_table(r: dict[str, Any]) -> str:
    """The rows as text, then which layers ran sparse and the verdict."""
    head = f"{'':<36}{'bytes':>12}{'accuracy':>10}{'batch-1 ms':>12}{'vs torch':>10}"
    lines = [head]
    for row in r["rows"]:
        lines.append(
            f"{row['name']:<36}{row['bytes']:>12,}{row['accuracy']:>10.4f}"
            f"{row['latency_ms']:>12.4f}{row['speedup']:>9.2f}x"
        )
    lines.append(
        f"{r['threads']} thread, median of {r['repeats']} interleaved runs; int8 calibrated on "
        f"{r['calibration_images']} training images; sparse layers: "
        f"{', '.join(r['sparse_layers']) or 'none (dense was faster)'}"
    )
    return "\n".join([*lines, *r["verdict"]])
