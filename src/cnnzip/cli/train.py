"""Verbs for the foundation: ``models``, ``train``, ``eval``."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from cnnzip import data as cz_data
from cnnzip.cli.app import (
    COUNT,
    EPOCHS,
    LR,
    NON_NEGATIVE,
    SEED,
    check_run_out,
    data_options,
    emit,
    json_option,
    kwargs_option,
    main,
    max_params_option,
    parse_kwargs,
    resume_option,
    run_out_option,
)
from cnnzip.codec import load as load_cnnz
from cnnzip.models import get_model, list_models
from cnnzip.models.registry import data_kwargs
from cnnzip.runs import CHECKPOINT, load_run, save_run
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.train.distributed import setup, teardown


@main.command("models")
@json_option
def models_cmd(as_json: bool) -> None:
    """List the registered model names."""
    emit({"models": list_models()}, as_json, lambda r: "\n".join(r["models"]))


@main.command("train")
@click.argument("name")
@data_options
@click.option("--epochs", type=EPOCHS, default=10, show_default=True)
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option("--lr", type=LR, default=1e-3, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--weight-decay", type=NON_NEGATIVE, default=0.0, show_default=True)
@click.option(
    "--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@kwargs_option()
@run_out_option("runs/NAME")
@resume_option
@json_option
def train_cmd(
    name: str,
    data_name: str,
    data_dir: str | None,
    limit: int | None,
    val_size: int | None,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    weight_decay: float,
    lr_schedule: str,
    seed: int,
    kwargs: tuple[str, ...],
    out: str | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Train model NAME from the zoo and save it as a run directory."""
    run_dir = Path(out or f"runs/{name}")
    check_run_out(run_dir)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        lr_schedule=lr_schedule,
        seed=seed,
    )
    data = cz_data.load(data_name, root=data_dir, seed=0, limit=limit, val_size=val_size)
    model_kwargs = data_kwargs(name, parse_kwargs(kwargs), data.input_shape, data.num_classes)
    torch.manual_seed(seed)  # weight initialisation is part of the run's seed
    model = get_model(name, **model_kwargs)
    result = fit(model, data, cfg, checkpoint=run_dir / CHECKPOINT, resume=resume)
    is_main = setup().is_main
    teardown()
    if not is_main:
        return
    test = evaluate(model, data.test)
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": result.final.get("val_accuracy"),
        "seconds_per_epoch": _mean([h["seconds"] for h in result.history]),
    }
    save_run(
        run_dir,
        model,
        arch=name,
        kwargs=model_kwargs,
        data=data_name,
        metrics=metrics,
        config=vars(cfg),
        history=result.history,
    )
    emit(
        {**metrics, "run": str(run_dir), "model": name, "epochs": epochs},
        as_json,
        lambda r: f"{name}: test accuracy {r['test_accuracy']:.4f} -> {run_dir}",
    )


@main.command("eval")
@click.argument("source", type=click.Path(exists=True))
@data_options
@max_params_option
@json_option
def eval_cmd(
    source: str,
    data_name: str,
    data_dir: str | None,
    limit: int | None,
    val_size: int | None,
    max_params: int,
    as_json: bool,
) -> None:
    """Evaluate a run directory, or a .cnnz file as decoded, on the test split."""
    is_file = Path(source).is_file()
    model = load_cnnz(source, max_params=max_params) if is_file else load_run(source).model
    data = cz_data.load(data_name, root=data_dir, limit=limit, val_size=val_size)
    test = evaluate(model, data.test)
    emit(
        {"accuracy": test["accuracy"], "loss": test["loss"], "n": len(data.test), "source": source},
        as_json,
        lambda r: f"{source}: accuracy {r['accuracy']:.4f} on {r['n']} test images",
    )


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
