"""Verbs for the foundation: ``models``, ``train``, ``eval``; and ``zoo_model`` and
``save_trained``, the start and the end of every verb that trains a zoo model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
import torch.nn as nn

from cnnzip.cli.app import check_run_out, emit, main, parse_kwargs
from cnnzip.cli.factory import load_cnnz, model_option, run_name
from cnnzip.cli.options import (
    NON_NEGATIVE,
    DataSpec,
    Recorded,
    data_options,
    json_option,
    kwargs_option,
    max_params_option,
    out_option,
    resume_option,
    train_options,
)
from cnnzip.data import Dataset
from cnnzip.errors import CnnzipError, DataError
from cnnzip.models import get_model, list_models
from cnnzip.models.registry import data_kwargs
from cnnzip.runs import CHECKPOINT, save_run
from cnnzip.train import FitResult, TrainConfig, evaluate, fit
from cnnzip.train.distributed import setup, teardown


@main.command("models")
@json_option
def models_cmd(as_json: bool) -> None:
    """List the registered model names."""
    emit({"models": list_models()}, as_json, lambda r: "\n".join(r["models"]))


@main.command("train")
@click.argument("name", required=False, metavar="NAME")  # or --model
@model_option("Your own model instead of NAME: a factory returning the nn.Module.")
@data_options
@train_options(epochs=10)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--weight-decay", type=NON_NEGATIVE, default=0.0, show_default=True)
@click.option(
    "--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True
)
@kwargs_option()
@out_option("Run directory to write", default="runs/NAME (a factory: runs/FACTORY)")
@resume_option
@json_option
def train_cmd(
    name: str | None,
    model_spec: str | None,
    dataset: DataSpec,
    cfg: TrainConfig,
    kwargs: tuple[str, ...],
    out: str | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Train model NAME from the zoo, or your own (package.module:factory, also as --model,
    imported from the current folder or PYTHONPATH), and save it as a run directory."""
    if (name is None) == (model_spec is None):
        raise CnnzipError("train takes one model: a zoo NAME or --model package.module:factory")
    name = name or str(model_spec)
    run_dir = Path(out or f"runs/{run_name(name)}")
    check_run_out(run_dir)
    data = dataset.load()
    run = zoo_run(run_dir, name, kwargs, data, cfg.seed)
    metrics = fit_and_save(
        run, data, cfg, resume=resume, extra=lambda result: {"seconds_per_epoch": _mean(result)}
    )
    if metrics is not None:  # the main process
        emit(
            {**metrics, "run": str(run_dir), "model": name, "epochs": cfg.epochs},
            as_json,
            lambda r: f"{name}: test accuracy {r['test_accuracy']:.4f} -> {run_dir}",
        )


@dataclass
class ZooRun:
    """A zoo model a verb trains into run directory ``path``, and what run.json will
    say of it besides metrics, config and history (arch, kwargs, data, ...)."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]


def zoo_run(path: Path, name: str, kwargs: tuple[str, ...], data: Dataset, seed: int) -> ZooRun:
    """Zoo model ``name`` (or the user's ``package.module:factory``, which run.json then
    records as the arch) built for ``data`` from its ``-k`` arguments; ``seed`` makes
    the weight initialisation part of the run's seed."""
    model_kwargs = data_kwargs(name, parse_kwargs(kwargs), data.input_shape, data.num_classes)
    torch.manual_seed(seed)
    model = get_model(name, **model_kwargs)
    # the data's name, classes and input shape (a factory's kwargs need not say it: profile
    # reads it here), which later verbs find the data by and check it against
    meta = {"arch": name, "kwargs": model_kwargs, **data.record()}
    return ZooRun(path, model, meta)


def fit_and_save(
    run: ZooRun,
    data: Dataset,
    cfg: TrainConfig,
    *,
    resume: bool,
    extra: Callable[[FitResult], dict[str, Any]],
    **fit_options: Any,
) -> dict[str, Any] | None:
    """Train ``run.model`` with a checkpoint in its run directory each epoch; then, in the
    main process, evaluate it on the test split and save the run. Returns the metrics,
    with ``extra(result)`` among them, or None in torchrun's other workers."""
    checkpoint = run.path / CHECKPOINT
    result = fit(run.model, data, cfg, checkpoint=checkpoint, resume=resume, **fit_options)
    is_main = setup().is_main
    teardown()
    if not is_main:
        return None
    test = _evaluate_kept(run.model, data, checkpoint)
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": result.final.get("val_accuracy"),
        **extra(result),
    }
    history = result.history
    stats = data.stats.to_json()  # what eval, compress... normalise this model's inputs with
    meta = {"normalization": stats, **run.meta}
    save_run(run.path, run.model, metrics=metrics, config=vars(cfg), history=history, **meta)
    return metrics


def _evaluate_kept(model: nn.Module, data: Dataset, checkpoint: Path) -> dict[str, float]:
    """The test evaluation after training. Bad test data (a corrupt image met only now)
    fails with the checkpoint kept and named: the training it holds is resumed, not
    repeated, once the data is fixed."""
    try:
        return evaluate(model, data.test)
    except DataError as exc:
        raise DataError(
            f"{exc}; the trained weights are kept in {checkpoint}: fix the data and run "
            "the same command with --resume"
        ) from None


@main.command("eval")
@click.argument("source", type=click.Path(exists=True))
@data_options
@max_params_option
@model_option()
@json_option
def eval_cmd(
    source: str, dataset: DataSpec, max_params: int, model_spec: str | None, as_json: bool
) -> None:
    """Evaluate a run directory, or a .cnnz file as decoded, on the test split."""
    model = load_cnnz(source, model_spec, max_params)
    trained = Recorded.of(source)  # the data the model was trained on, normalised as then
    data = dataset.load(trained.stats, validation=False, trained=trained)
    test = evaluate(model, data.test)
    emit(
        {"accuracy": test["accuracy"], "loss": test["loss"], "n": len(data.test), "source": source},
        as_json,
        lambda r: f"{source}: accuracy {r['accuracy']:.4f} on {r['n']} test images",
    )


def _mean(result: FitResult) -> float | None:
    """Mean seconds per epoch."""
    seconds = [h["seconds"] for h in result.history]
    return sum(seconds) / len(seconds) if seconds else None
