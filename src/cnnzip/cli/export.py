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
from cnnzip.errors import CnnzipError
from cnnzip.export import export_onnx
from cnnzip.export.dense import load_dense
from cnnzip.export.graph import MAX_OPSET, MIN_OPSET
from cnnzip.export.int8 import CALIBRATION_IMAGES, bench_int8
from cnnzip.prune.sensitivity import CACHE
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
@click.option(
    "--input",
    "size",
    type=COUNT,
    default=None,
    help="Input side in pixels [default: the shape the run or file records, else the "
    "model's img_size, else 224].",
)
@max_params_option
@model_option()
@json_option
def export_cmd(
    source: str,
    out: str,
    opset: int | None,
    size: int | None,
    max_params: int,
    model_spec: str | None,
    as_json: bool,
) -> None:
    """Export a run, a .cnnz file (as decoded: pruned zeros kept, shared weights as floats,
    BWN weights as alpha * sign) or a zoo model to ONNX, and check it in onnxruntime
    against torch on random inputs (an element off by more than 1e-4 + 1e-4 * |torch's
    value| is an error)."""
    check_reads([out], [source])
    check_writable(out)
    model, shape = build_model(source, size, {}, max_params, model_spec)
    checked = export_onnx(model, shape, out, opset=opset)
    emit({"source": source, **checked.to_dict()}, as_json, lambda _: checked.line())


def check_reads(outputs: list[str | Path | None], runs: list[str | Path]) -> None:
    """Fail now if an output is one of the files of a run the verb reads
    (``check_not_sources``), its sensitivity curves included (the report reads them)."""
    check_not_sources(outputs, runs)
    caches = {(Path(run) / CACHE).resolve(): run for run in runs}
    for out in outputs:
        run = caches.get(Path(out).resolve()) if out else None
        if run is not None:
            raise CnnzipError(
                f"output {out} would overwrite the sensitivity curves of run {run}, which "
                "this command reads; write to another path"
            )


F = TypeVar("F", bound=Callable[..., Any])


def dense_option(help: str) -> Callable[[F], F]:
    """``--dense RUN``: the dense run a .cnnz was compressed from (``export.dense``)."""
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
    help="Training images (a fixed-seed random sample) that calibrate the int8 activation ranges.",
)
@click.option("--repeats", type=COUNT, default=200, show_default=True, help="Timed runs.")
@click.option(
    "--onnx-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the two ONNX files and the dense safetensors here [default: a temporary folder].",
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
        path,
        decoded,
        dense,
        dataset,
        model_spec,
        onnx_dir,
        calibration=calibration,
        repeats=repeats,
    )
    emit({"file": path, **result}, as_json, int8_table)


def int8_of(
    path: str,
    decoded: nn.Module,
    dense: str | None,
    dataset: DataSpec,
    model_spec: str | None,
    onnx_dir: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``bench_int8`` of .cnnz ``path`` (decoded to ``decoded``) against its dense run
    (``export.dense``; its factory trusted with ``--model``), on the data the file records;
    the ONNX files go to ``onnx_dir`` (else a temporary one)."""
    run = load_dense(path, dense, model_spec)
    trained = Recorded.of(path)
    data = dataset.load(trained.stats, trained=trained)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(onnx_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result = bench_int8(run.model, data, folder, cnnz=(path, decoded), **kwargs)
    return {"dense": str(run.path), **result}


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
        f"dense run {r['dense']}; {r['threads']} thread, median of {r['repeats']} interleaved "
        f"runs (order shuffled); int8 calibrated on {r['calibration_images']} random training "
        "images; sparse layers: "
        f"{', '.join(r['sparse_layers']) or 'none (dense was faster)'}"
    )
    return "\n".join([*lines, *r["verdict"]])
