"""Verbs for binary networks: ``binarize`` and the ``bench`` group (``bench xnor``)."""

from __future__ import annotations

from typing import Any

import click

from cnnzip import data as cz_data
from cnnzip.binary import MODES
from cnnzip.binary.finetune import binarize_run
from cnnzip.cli.app import data_options, emit, json_option, main
from cnnzip.cli.distill import teacher_loss, teacher_options
from cnnzip.codec import save as save_cnnz
from cnnzip.runs import load_run
from cnnzip.runtime.bench import bench_layers
from cnnzip.runtime.xnor import available_paths
from cnnzip.train import TrainConfig


@main.command("binarize")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--mode", type=click.Choice(MODES), required=True, help="bwn: weights; xnor: both.")
@data_options
@click.option(
    "--epochs",
    type=int,
    default=4,
    show_default=True,
    help="Fine-tuning epochs (BWN LeNet-5 from a trained float run: see BENCHMARKS.md).",
)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--keep",
    multiple=True,
    metavar="LAYER",
    help="Layer kept in full precision (repeatable) [default: the first and the last].",
)
@click.option("--no-k", is_flag=True, help="XNOR without the K scaling map.")
@click.option("-o", "--out", type=click.Path(file_okay=False), required=True, help="New run.")
@click.option(
    "--cnnz",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the model as a .cnnz file (1 bit per binarized weight).",
)
@teacher_options
@json_option
def binarize_cmd(
    source: str,
    mode: str,
    data_name: str,
    data_dir: str | None,
    limit: int | None,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    keep: tuple[str, ...],
    no_k: bool,
    out: str,
    cnnz: str | None,
    teachers: tuple[str, ...],
    temperature: float,
    soft_weight: float,
    hard_weight: float,
    as_json: bool,
) -> None:
    """Binarize the float run SOURCE (BWN or XNOR-Net) and fine-tune it into run OUT.

    With --teacher (e.g. SOURCE itself) the fine-tuning distills from the teacher runs."""
    run = load_run(source)
    data = cz_data.load(data_name, root=data_dir, seed=0, limit=limit)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    loss_fn = teacher_loss(teachers, data_name, temperature, soft_weight, hard_weight, cache=True)
    model, metrics = binarize_run(
        run,
        data,
        out,
        mode=mode,
        config=cfg,
        keep=list(keep) or None,
        scale_k=not no_k,
        loss_fn=loss_fn,
    )
    if cnnz:
        saved = load_run(out)
        metrics["cnnz_bytes"] = save_cnnz(
            cnnz, model, arch={"name": saved.arch, "kwargs": saved.kwargs}
        )
    emit(
        {**metrics, "mode": mode, "run": out, "source": source},
        as_json,
        lambda r: (
            f"{mode}: test accuracy {r['test_accuracy']:.4f} "
            f"(float {r['source_test_accuracy']}) -> {out}"
        ),
    )


@main.group("bench")
def bench() -> None:
    """Measure speed against what a user would otherwise run (torch float32)."""


@bench.command("xnor")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True)
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
