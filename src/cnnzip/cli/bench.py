"""The ``bench`` verbs: speed against what a user would otherwise run, in one process.

``bench xnor``: the binary kernels against torch's float32 conv2d; ``bench sparse``:
a pruned model dense against its sparse layers as CSR products; ``bench compressed``:
dense vs torch CSR vs the compressed-domain kernels on a .cnnz or a random layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnzip.cli.app import emit, main
from cnnzip.cli.factory import model_option
from cnnzip.cli.options import COUNT, THREADS, json_option, max_params_option
from cnnzip.cli.profile import build_model, check_memory, max_memory_option
from cnnzip.codec import read as read_cnnz
from cnnzip.profiling import profile
from cnnzip.runtime.bench import (
    LayerSpec,
    bench_compressed_model,
    bench_compressed_spec,
    bench_layers,
)
from cnnzip.runtime.sparse import bench_sparse
from cnnzip.runtime.xnor import available_paths


@main.group("bench")
def bench() -> None:
    """Measure speed against what a user would otherwise run (torch float32)."""


def batch_option(default: str) -> Any:
    """--batch, repeatable, into ``batches`` (empty: the verb's ``default``)."""
    help_text = f"Batch size (repeatable) [default: {default}]."
    return click.option("--batch", "batches", type=COUNT, multiple=True, help=help_text)


@bench.command("sparse")
@click.argument("source", metavar="RUN|FILE.cnnz|NAME")
@batch_option("1 and 64")
@click.option("--threads", type=THREADS, default=None, help="[default: torch's]")
@click.option("--runs", type=COUNT, default=50, show_default=True)
@max_memory_option
@max_params_option
@model_option()
@json_option
def bench_sparse_cmd(
    source: str,
    batches: tuple[int, ...],
    threads: int | None,
    runs: int,
    max_memory: float,
    max_params: int,
    model_spec: str | None,
    as_json: bool,
) -> None:
    """A pruned model dense and with its sparse layers as CSR products (cnnzip.runtime.sparsify).

    Each Linear / Conv2d at most half nonzero is timed both ways on its real input and
    runs sparse only where that measured faster, so the result depends on the batch.
    """
    model, shape = build_model(source, None, {}, max_params, model_spec)
    report = profile(model, shape)
    for batch in batches or (1, 64):
        check_memory(source, model, shape, batch, max_memory, report)
    result = bench_sparse(model, shape, batches or (1, 64), threads=threads, runs=runs)
    emit({"model": source, **result}, as_json, _sparse_table)


def _sparse_table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['model']}: {r['nonzero_macs']:,} of {r['macs']:,} MACs by nonzero weights "
        f"(theory {r['theoretical_speedup']:.1f}x), {r['threads']} thread(s)",
        f"{'batch':>6} {'dense ms':>9} {'sparse ms':>10} {'speedup':>8}  layers run sparse",
    ]
    for row in r["batches"]:
        chosen = [
            f"{c['name']} ({100 * c['density']:.1f}%: "
            f"{c['dense_ms']:.3f} -> {c['sparse_ms']:.3f} ms)"
            for c in row["layers"]
            if c["sparse"]
        ]
        lines.append(
            f"{row['batch']:>6} {row['dense_ms']:9.3f} {row['sparse_ms']:10.3f} "
            f"{row['speedup']:7.2f}x  {', '.join(chosen) or 'none (dense was faster)'}"
        )
    return "\n".join(lines)


@bench.command("xnor")
@click.option("--threads", type=THREADS, default=1, show_default=True)
@click.option("--repeats", type=COUNT, default=15, show_default=True)
@click.option(
    "--path",
    type=click.Choice(available_paths()),
    default=None,
    help="Kernel path [default: the fastest this CPU runs; $CNNZIP_KERNEL overrides].",
)
@json_option
def bench_xnor(threads: int, repeats: int, path: str | None, as_json: bool) -> None:
    """Binary 3x3 convs (256@56, 128@28, 512@7, batch 1) vs torch float32 conv2d.

    The binary time runs from the float input: binarize + pack + conv + output transform.
    """
    emit(bench_layers(threads=threads, repeats=repeats, path=path), as_json, _table)


def _table(r: dict[str, Any]) -> str:
    cpu = all("cpu_speedup" in row for row in r["layers"])
    head = f"{'layer':>14} {'float ms':>9} {'binary ms':>10} {'speedup':>8} {'theory':>7}"
    lines = [
        f"path {r['path']}, {r['threads']} thread(s), median of {r['repeats']}",
        head + ("   (CPU time: float ms, binary ms, speedup)" if cpu else ""),
    ]
    for row in r["layers"]:
        name = f"{row['cin']}->{row['cout']} @{row['hw']}"
        line = (
            f"{name:>14} {row['float_ms']:9.2f} {row['binary_ms']:10.3f} {row['speedup']:7.1f}x"
            f" {row['theoretical_speedup']:6.1f}x"
        )
        if cpu:
            line += (
                f"   {row['float_cpu_ms']:9.2f} {row['binary_cpu_ms']:9.3f}"
                f" {row['cpu_speedup']:6.1f}x"
            )
        lines.append(line)
    lines.append(
        "theory: XNOR-Net's S = 64 c N_W / (c N_W + 64), binary ops only (no memory traffic,"
        " no packing, the float side at its peak)"
    )
    return "\n".join(lines)


@bench.command("compressed")
@click.argument("source", metavar="FILE.cnnz|LAYER-SPEC")
@batch_option("1, 8, 64")
@click.option("--threads", type=THREADS, default=1, show_default=True)
@click.option("--repeats", type=COUNT, default=30, show_default=True)
@max_memory_option
@max_params_option
@json_option
def bench_compressed_cmd(
    source: str, batches: tuple[int, ...], threads: int, repeats: int, max_memory: float,
    max_params: int, as_json: bool,
) -> None:  # fmt: skip
    """Dense vs torch CSR vs the compressed kernels (cnnzip.runtime.compressed), per layer.

    SOURCE is a .cnnz (its pruned + shared layers on their real inputs, then the whole
    model, its layers on the kernels where measured faster) or a random layer,
    fc:IN:OUT:DENSITY:BITS or conv:CIN:COUT:K:HW:DENSITY:BITS (e.g. fc:9216:4096:0.09:5).
    Beside each speed-up: its bytes-moved bound (dense bytes / the form's bytes).
    """
    batches = batches or (1, 8, 64)
    if not Path(source).is_file():
        result = bench_compressed_spec(
            LayerSpec.parse(source), batches, repeats=repeats, threads=threads
        )
        emit({"source": source, **result}, as_json, _layer_table)
        return
    model, shape = build_model(source, None, {}, max_params)
    report = profile(model, shape)
    for batch in batches:
        check_memory(source, model, shape, batch, max_memory, report)
    result = bench_compressed_model(
        model, read_cnnz(source), shape, batches, repeats=repeats, threads=threads
    )
    emit({"source": source, **result}, as_json, _model_table)


def _batch_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per batch: ms of each form, speed-up over dense and bytes-moved bound."""
    lines = []
    for row in rows:
        ms, up, bound = row["ms"], row["speedup"], row["bound"]
        c_csr = (
            f"   bare C calls: CSR {ms['c_csr']:.3f} ms ({up['c_csr']:.1f}x), kernels "
            f"{ms['kernel_call']:.3f} ms ({up['kernel_call']:.1f}x)"
            if "c_csr" in ms
            else ""
        )
        lines.append(
            f"  batch {row['batch']:>4}: dense {ms['dense']:.3f} ms | torch CSR {ms['csr']:.3f} ms "
            f"({up['csr']:.2f}x, bound {bound['csr']:.1f}x) | kernels {ms['kernel']:.3f} ms "
            f"({up['kernel']:.2f}x, bound {bound['kernel']:.1f}x){c_csr}"
        )
    return lines


def _layer_table(r: dict[str, Any]) -> str:
    head = (
        f"{r['layer']}: {r['threads']} thread(s), path {r['path']}; weights "
        f"{r['dense_bytes']:,} B dense, {r['kernel_bytes']:,} B in the kernels' layout"
    )
    return "\n".join([head, *_batch_lines(r["batches"])])


def _model_table(r: dict[str, Any]) -> str:
    lines = [f"{r['source']}: {r['threads']} thread(s), path {r['path']}"]
    for layer in r["layers"]:
        lines.append(
            f"{layer['name']} ({100 * layer['density']:.1f}% kept): weights "
            f"{layer['dense_bytes']:,} B dense, {layer['kernel_bytes']:,} B in the kernels' layout"
        )
        lines += _batch_lines(layer["batches"])
    for row in r["model"]:
        lines.append(
            f"whole model, batch {row['batch']}: dense {row['dense_ms']:.3f} ms, compressed "
            f"{row['compressed_ms']:.3f} ms ({row['speedup']:.2f}x; on the kernels: "
            f"{', '.join(row['on_kernels']) or 'none'})"
        )
    return "\n".join(lines)
