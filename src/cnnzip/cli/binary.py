"""The ``binarize`` verb: BWN / XNOR-Net from a float run (speed: ``cnnzip bench xnor``)."""

from __future__ import annotations

import click

from cnnzip.binary import MODES
from cnnzip.binary.finetune import binarize_run
from cnnzip.cli.app import check_not_sources, check_run_out, emit, main
from cnnzip.cli.distill import Teaching, teacher_options
from cnnzip.cli.options import (
    DataSpec,
    Recorded,
    data_options,
    json_option,
    out_option,
    train_options,
)
from cnnzip.codec import save as save_cnnz
from cnnzip.runs import load_run
from cnnzip.train import TrainConfig
from cnnzip.train.checkpoint import check_writable


@main.command("binarize")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--mode", type=click.Choice(MODES), required=True, help="bwn: weights; xnor: both.")
@data_options
@train_options(
    epochs=4,
    epochs_help="Fine-tuning epochs (BWN LeNet-5 from a trained float run: see BENCHMARKS.md).",
)
@click.option(
    "--keep",
    multiple=True,
    metavar="LAYER",
    help="Layer kept in full precision (repeatable) [default: the first and the last].",
)
@click.option("--no-k", is_flag=True, help="XNOR without the K scaling map.")
@out_option("New run")
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
    dataset: DataSpec,
    cfg: TrainConfig,
    keep: tuple[str, ...],
    no_k: bool,
    out: str,
    cnnz: str | None,
    teaching: Teaching,
    as_json: bool,
) -> None:
    """Binarize the float run SOURCE (BWN or XNOR-Net) and fine-tune it into run OUT.

    With --teacher (e.g. SOURCE itself) the fine-tuning distills from the teacher runs."""
    check_not_sources([out, cnnz], [source, *teaching.teachers])
    check_run_out(out)
    if cnnz:
        check_writable(cnnz)
    run = load_run(source)
    data = dataset.load(run.normalization, trained=Recorded(source, run.meta))  # as trained
    loss_fn = teaching.loss(data.name, cache=data.augment is None)
    model, metrics = binarize_run(
        run,
        data,
        out,
        mode=mode,
        config=cfg,
        keep=list(keep) or None,
        scale_k=not no_k,
        loss_fn=loss_fn,
        log=lambda line: click.echo(line, err=True),
    )
    if cnnz:
        saved = load_run(out)
        metrics["cnnz_bytes"] = save_cnnz(
            cnnz,
            model,
            arch={"name": saved.arch, "kwargs": saved.kwargs},
            meta={**data.record(), "normalization": data.stats.to_json()},
        )
    emit(
        {**metrics, "mode": mode, "run": out, "source": source},
        as_json,
        lambda r: (
            f"{mode}: test accuracy {r['test_accuracy']:.4f} "
            f"(float {r['source_test_accuracy']}) -> {out}"
        ),
    )
