"""The ``distill`` verb, and ``teacher_options`` for every verb that retrains.

A verb that retrains becomes distillation-aware with two lines::

    @teacher_options
    def prune_cmd(..., teaching: Teaching): ...
        fit(model, data, cfg, loss_fn=teaching.loss(data_name, cache=data.augment is None))

(the teachers' outputs are cached only where the training images repeat: no augmentation.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch

from cnnzip.cli.app import check_not_sources, check_run_out, emit, main
from cnnzip.cli.factory import run_name
from cnnzip.cli.options import (
    NON_NEGATIVE,
    POSITIVE,
    DataSpec,
    Recorded,
    data_options,
    gather,
    json_option,
    kwargs_option,
    out_option,
    recorded_stats,
    resume_option,
    shown,
    stacked,
    train_options,
)
from cnnzip.cli.train import fit_and_save, zoo_run
from cnnzip.data import Normalization
from cnnzip.distill import KDLoss, Teachers, jitter, make_loss
from cnnzip.errors import CnnzipError
from cnnzip.runs import load_run
from cnnzip.train import TrainConfig
from cnnzip.train.loop import LossFn

__all__ = ["Teaching", "teacher_options"]


@dataclass(frozen=True)
class Teaching:
    """What ``teacher_options`` name: the teacher runs (none: plain cross-entropy) and
    the weighting of the distillation loss."""

    teachers: tuple[str, ...]
    temperature: float
    soft_weight: float
    hard_weight: float

    def models(self, data_name: str) -> list[torch.nn.Module]:
        """The teachers' models, refusing any trained on other data than the student's."""
        models = []
        for path in self.teachers:
            run = load_run(path)
            trained_on = run.meta.get("data")
            if trained_on and trained_on != data_name:
                raise CnnzipError(
                    f"teacher {path} was trained on {trained_on} but the student on {data_name}: "
                    f"pass --data {trained_on} or a teacher trained on {data_name}"
                )
            models.append(run.model)
        return models

    def stats(self) -> Normalization | None:
        """The input normalization the first teacher that records one was trained with:
        the data a student learns from them is normalised as they saw it."""
        found = (recorded_stats(path) for path in self.teachers)
        return next((stats for stats in found if stats is not None), None)

    def loss(self, data_name: str, *, cache: bool) -> LossFn:
        """The retraining loss: cross-entropy without --teacher, else distillation from
        the teachers, loaded once here so that every stage shares them."""
        models = self.models(data_name) if self.teachers else None
        return make_loss(models, self.temperature, self.soft_weight, self.hard_weight, cache=cache)


teacher_options = stacked(
    click.option(
        "--teacher",
        "teachers",
        multiple=True,
        type=click.Path(exists=True, file_okay=False),
        help="Teacher run directory; repeat for an ensemble (their probabilities are averaged).",
    ),
    shown(
        "-T",
        "--temperature",
        type=POSITIVE,
        default=4.0,
        help="Softmax temperature of teachers and student in the soft term.",
    ),
    shown(
        "--soft-weight",
        type=NON_NEGATIVE,
        default=0.5,
        help="Weight of the T^2-scaled divergence from the teachers' softened outputs.",
    ),
    shown(
        "--hard-weight",
        type=NON_NEGATIVE,
        default=0.5,
        help="Weight of the cross-entropy with the true labels.",
    ),
    gather("teaching", ("teachers", "temperature", "soft_weight", "hard_weight"), Teaching),
)
"""--teacher (repeatable: an ensemble), -T, --soft-weight, --hard-weight, handed to the
verb as ``teaching: Teaching``."""


@main.command("distill")
@teacher_options
@click.option(
    "--student",
    required=True,
    help="Zoo model name of the student, e.g. lenet300, or your own package.module:factory.",
)
@kwargs_option("Student builder argument (repeatable), e.g. -k hidden=[30,30].")
@data_options
@train_options(
    epochs=10,
    lr=2e-3,
    lr_help="Adam learning rate; 2e-3 measured best for distilled LeNet-300-100 (BENCHMARKS.md).",
)
@click.option(
    "--jitter",
    "jitter_pixels",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Shift training images by up to this many pixels (teachers see the same shifted "
    "images); replaces --augment's crops and flips.",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Keep the teachers' outputs per image (only without --jitter or --augment, where "
    "images repeat).",
)
@out_option("Run directory to write", default="runs/STUDENT-distilled (a factory: its name)")
@resume_option
@json_option
def distill_cmd(
    teaching: Teaching,
    student: str,
    kwargs: tuple[str, ...],
    dataset: DataSpec,
    cfg: TrainConfig,
    jitter_pixels: int,
    cache: bool,
    out: str | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Train model STUDENT (from the zoo, or your own package.module:factory) to match one
    teacher run or an ensemble of them (any run, of your own model too)."""
    if not teaching.teachers:
        raise CnnzipError("distill needs a teacher: --teacher RUN (repeat for an ensemble)")
    run_dir = Path(out or f"runs/{run_name(student)}-distilled")
    check_not_sources([run_dir], teaching.teachers)
    check_run_out(run_dir)
    # the first teacher's data by default, normalised as the teachers were trained
    data = dataset.load(teaching.stats(), trained=Recorded.of(teaching.teachers[0]))
    repeats = jitter_pixels == 0 and data.augment is None  # else a cached row never recurs
    ensemble = Teachers(teaching.models(data.name), cache=cache and repeats)
    loss_fn = KDLoss(ensemble, teaching.temperature, teaching.soft_weight, teaching.hard_weight)
    run = zoo_run(run_dir, student, kwargs, data, cfg.seed)  # as `cnnzip train`
    distill = {**_settings(teaching), "jitter": jitter_pixels}
    run.meta["distill"] = distill
    metrics = fit_and_save(
        run,
        data,
        cfg,
        resume=resume,
        extra=lambda _: {"teacher_test_accuracy": ensemble.accuracy(data.test)},
        loss_fn=loss_fn,
        augment=functools.partial(jitter, pixels=jitter_pixels) if jitter_pixels else None,
    )
    if metrics is None:  # not the main process
        return
    emit(
        {**metrics, **distill, "run": str(run_dir), "model": student, "epochs": cfg.epochs},
        as_json,
        lambda r: (
            f"{student} distilled at T={teaching.temperature}: test accuracy "
            f"{r['test_accuracy']:.4f} (teachers {r['teacher_test_accuracy']:.4f}) -> {run_dir}"
        ),
    )


def _settings(teaching: Teaching) -> dict[str, Any]:
    return {
        "teachers": list(teaching.teachers),
        "T": teaching.temperature,
        "soft_weight": teaching.soft_weight,
        "hard_weight": teaching.hard_weight,
    }
