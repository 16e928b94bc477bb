"""The ``binarize`` verb: BWN / XNOR-Net from a float run (speed: ``cnnzip bench xnor``)."""

from __future__ import annotations

import click

from cnnzip import data as cz_data
from cnnzip.binary import MODES
from cnnzip.binary.finetune import binarize_run
from cnnzip.cli.app import (
    COUNT,
    EPOCHS,
    LR,
    SEED,
    check_not_sources,
    check_run_out,
    data_options,
    emit,
    json_option,
    main,
)
from cnnzip.cli.distill import teacher_loss, teacher_options
from cnnzip.codec import save as save_cnnz
from cnnzip.runs import load_run
from cnnzip.train import TrainConfig
from cnnzip.train.checkpoint import check_writable


@main.command("binarize")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--mode", type=click.Choice(MODES), required=True, help="bwn: weights; xnor: both.")
@data_options
@click.option(
    "--epochs",
    type=EPOCHS,
    default=4,
    show_default=True,
    help="Fine-tuning epochs (BWN LeNet-5 from a trained float run: see BENCHMARKS.md).",
)
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option("--lr", type=LR, default=1e-3, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
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
    val_size: int | None,
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
    check_not_sources([out, cnnz], [source, *teachers])
    check_run_out(out)
    if cnnz:
        check_writable(cnnz)
    run = load_run(source)
    data = cz_data.load(data_name, root=data_dir, seed=0, limit=limit, val_size=val_size)
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
        log=lambda line: click.echo(line, err=True),
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
