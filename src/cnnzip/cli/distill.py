"""The ``distill`` verb, and ``teacher_options`` for every verb that retrains.

A verb that retrains becomes distillation-aware with two lines::

    @teacher_options
    def prune_cmd(..., teachers, temperature, soft_weight, hard_weight): ...
        loss_fn = teacher_loss(teachers, data_name, temperature, soft_weight, hard_weight,
                               cache=True)
        fit(model, data, cfg, loss_fn=loss_fn)

(``cache=True`` only where the verb trains without augmentation.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from cnnzip import data as cz_data
from cnnzip.cli.app import (
    COUNT,
    EPOCHS,
    LR,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    check_not_sources,
    check_run_out,
    data_options,
    emit,
    json_option,
    kwargs_option,
    main,
    parse_kwargs,
    resume_option,
    run_out_option,
)
from cnnzip.distill import KDLoss, Teachers, jitter, make_loss
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.models.registry import data_kwargs
from cnnzip.runs import CHECKPOINT, load_run, save_run
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.train.distributed import setup
from cnnzip.train.loop import LossFn

__all__ = ["teacher_loss", "teacher_options"]


def teacher_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--teacher (repeatable: an ensemble), -T, --soft-weight, --hard-weight."""
    fn = click.option(
        "--hard-weight",
        type=NON_NEGATIVE,
        default=0.5,
        show_default=True,
        help="Weight of the cross-entropy with the true labels.",
    )(fn)
    fn = click.option(
        "--soft-weight",
        type=NON_NEGATIVE,
        default=0.5,
        show_default=True,
        help="Weight of the T^2-scaled divergence from the teachers' softened outputs.",
    )(fn)
    fn = click.option(
        "-T",
        "--temperature",
        type=POSITIVE,
        default=4.0,
        show_default=True,
        help="Softmax temperature of teachers and student in the soft term.",
    )(fn)
    return click.option(
        "--teacher",
        "teachers",
        multiple=True,
        type=click.Path(exists=True, file_okay=False),
        help="Teacher run directory; repeat for an ensemble (their probabilities are averaged).",
    )(fn)


def _load_teacher_models(paths: tuple[str, ...], data_name: str) -> list[torch.nn.Module]:
    """Teachers from run directories, refusing any trained on other data than the student's."""
    models = []
    for path in paths:
        run = load_run(path)
        trained_on = run.meta.get("data")
        if trained_on and trained_on != data_name:
            raise CnnzipError(
                f"teacher {path} was trained on {trained_on} but the student on {data_name}: "
                f"pass --data {trained_on} or a teacher trained on {data_name}"
            )
        models.append(run.model)
    return models


def teacher_loss(
    teachers: tuple[str, ...],
    data_name: str,
    temperature: float,
    soft_weight: float,
    hard_weight: float,
    *,
    cache: bool,
) -> LossFn:
    """The retraining loss of a verb with ``teacher_options``: cross-entropy without --teacher,
    else distillation from the teachers, loaded once here so that every stage shares them."""
    models = _load_teacher_models(teachers, data_name) if teachers else None
    return make_loss(models, temperature, soft_weight, hard_weight, cache=cache)


@main.command("distill")
@teacher_options
@click.option("--student", required=True, help="Zoo model name of the student, e.g. lenet300.")
@kwargs_option("Student builder argument (repeatable), e.g. -k hidden=[30,30].")
@data_options
@click.option("--epochs", type=EPOCHS, default=10, show_default=True)
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option(
    "--lr",
    type=LR,
    default=2e-3,
    show_default=True,
    help="Adam learning rate; 2e-3 measured best for distilled LeNet-300-100 (BENCHMARKS.md).",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--jitter",
    "jitter_pixels",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Shift training images by up to this many pixels (teachers see the same shifted images).",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Keep the teachers' outputs per image (only without --jitter, where images repeat).",
)
@run_out_option("runs/STUDENT-distilled")
@resume_option
@json_option
def distill_cmd(
    teachers: tuple[str, ...],
    temperature: float,
    soft_weight: float,
    hard_weight: float,
    student: str,
    kwargs: tuple[str, ...],
    data_name: str,
    data_dir: str | None,
    limit: int | None,
    val_size: int | None,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    jitter_pixels: int,
    cache: bool,
    out: str | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Train model STUDENT from the zoo to match one teacher run or an ensemble of them."""
    if not teachers:
        raise CnnzipError("distill needs a teacher: --teacher RUN (repeat for an ensemble)")
    run_dir = Path(out or f"runs/{student}-distilled")
    check_not_sources([run_dir], teachers)
    check_run_out(run_dir)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    data = cz_data.load(data_name, root=data_dir, seed=0, limit=limit, val_size=val_size)
    ensemble = Teachers(
        _load_teacher_models(teachers, data_name), cache=cache and jitter_pixels == 0
    )
    loss_fn = KDLoss(ensemble, temperature, soft_weight, hard_weight)
    model_kwargs = data_kwargs(student, parse_kwargs(kwargs), data.input_shape, data.num_classes)
    torch.manual_seed(seed)  # the same initial student as `cnnzip train` with this seed
    model = get_model(student, **model_kwargs)
    augment = functools.partial(jitter, pixels=jitter_pixels) if jitter_pixels else None
    result = fit(
        model,
        data,
        cfg,
        loss_fn=loss_fn,
        checkpoint=run_dir / CHECKPOINT,
        resume=resume,
        augment=augment,
    )
    if not setup().is_main:
        return
    test = evaluate(model, data.test)
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": result.final.get("val_accuracy"),
        "teacher_test_accuracy": ensemble.accuracy(data.test),
    }
    distill = {
        "teachers": list(teachers),
        "T": temperature,
        "soft_weight": soft_weight,
        "hard_weight": hard_weight,
        "jitter": jitter_pixels,
    }
    save_run(
        run_dir,
        model,
        arch=student,
        kwargs=model_kwargs,
        data=data_name,
        metrics=metrics,
        config=vars(cfg),
        history=result.history,
        distill=distill,
    )
    emit(
        {**metrics, **distill, "run": str(run_dir), "model": student, "epochs": epochs},
        as_json,
        lambda r: (
            f"{student} distilled at T={temperature}: test accuracy {r['test_accuracy']:.4f} "
            f"(teachers {r['teacher_test_accuracy']:.4f}) -> {run_dir}"
        ),
    )
