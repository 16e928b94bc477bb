"""Verbs for Deep Compression's file: ``compress`` (run a recipe, write .cnnz) and ``inspect``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import click
import torch.nn as nn

from cnnzip.cli.app import check_not_sources, emit, main, parse_kwargs
from cnnzip.cli.distill import Teaching, teacher_options
from cnnzip.cli.factory import factories_of
from cnnzip.cli.options import (
    DataSpec,
    Recorded,
    data_options,
    json_option,
    max_params_option,
    out_option,
)
from cnnzip.cli.profile import recorded_input_shape
from cnnzip.cli.report import report_path
from cnnzip.codec import load as load_cnnz
from cnnzip.codec.report import inspect
from cnnzip.data import Dataset
from cnnzip.errors import CnnzipError
from cnnzip.models import trust_factories
from cnnzip.profiling import ProfileReport, comparison, comparison_text, profile
from cnnzip.recipes import builtin_recipes, compress, load_recipe
from cnnzip.report import gather, write_report
from cnnzip.runs import Run, load_run
from cnnzip.train import evaluate
from cnnzip.train.checkpoint import check_writable


@main.command("compress")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False))
@data_options
@click.option(
    "--recipe",
    default="deep-compression",
    show_default=True,
    help=f"Built-in recipe ({', '.join(builtin_recipes())}) or a YAML file.",
)
@click.option(
    "-s",
    "--set",
    "overrides",
    multiple=True,
    metavar="STAGE.OPTION=VALUE",
    help="Override a recipe option (repeatable), e.g. -s prune.sparsity=0.9.",
)
@out_option("The .cnnz file", file=True)
@click.option(
    "--report", "with_report", is_flag=True, help="Also write FILE.html, the file's HTML report."
)
@click.option(
    "--work",
    type=click.Path(file_okay=False),
    default=None,
    help="Checkpoint every retraining epoch in this folder; after a kill, the same "
    "command continues where the last epoch ended.",
)
@teacher_options
@json_option
def compress_cmd(
    run_dir: str,
    dataset: DataSpec,
    recipe: str,
    overrides: tuple[str, ...],
    out: str,
    teaching: Teaching,
    with_report: bool,
    work: str | None,
    as_json: bool,
) -> None:
    """Compress the model of run directory RUN with a recipe and write a .cnnz file.

    With --teacher every stage that retrains distills from the teacher runs. The
    report ends with the speed of the file's model beside the dense one's: measured
    latency, and MACs in theory (all, and those by nonzero weights)."""
    check_not_sources([out], [run_dir, *teaching.teachers])
    html = _check_outputs(out, with_report)
    plan = load_recipe(recipe, _overrides(overrides))
    run = load_run(run_dir)
    dense = copy.deepcopy(run.model)  # compress changes run.model in place
    data = dataset.load(run.normalization, trained=Recorded(run_dir, run.meta))  # as trained
    baseline = evaluate(run.model, data.test)["accuracy"]
    result = compress(
        run.model,
        data,
        plan,
        arch={"name": run.arch, "kwargs": run.kwargs},
        meta=_file_meta(run_dir, data, baseline, teaching),
        log=lambda line: click.echo(line, err=as_json),
        loss_fn=teaching.loss(data.name, cache=data.augment is None),
        work_dir=work,
    )
    # the model holds exactly what its file holds, so its accuracy is the file's
    accuracy = result.meta["file_test_accuracy"] = result.meta["test_accuracy"]
    result.save(out)
    with trust_factories(*factories_of(run.arch, run.kwargs)):  # the user's own run
        decoded = load_cnnz(out)
    speed = comparison((out, run_dir), *_speed_profiles(decoded, dense, run))
    _summarize(out, speed, accuracy, baseline, as_json)
    if html:  # after the summary: the file is written whatever the page meets
        click.echo(f"report: {_write_report(html, out, decoded, run)}", err=as_json)


def _summarize(
    out: str, speed: dict[str, Any], accuracy: float, baseline: float, as_json: bool
) -> None:
    """Print the file's stage table, speed and gains (or them as JSON)."""
    report = inspect(out)
    summary = {
        **{k: v for k, v in report.to_dict().items() if k != "layers"},
        "file": out,
        "test_accuracy": accuracy,
        "baseline_accuracy": baseline,
        "accuracy_drop_pp": 100 * (baseline - accuracy),
        "speed": speed,
    }
    emit(
        summary,
        as_json,
        lambda r: (
            f"{report.table()}\n\n{comparison_text(speed)}\n\n"
            f"{out}: {r['file_bytes']} bytes, {r['ratio']:.1f}x smaller;"
            f" test accuracy {accuracy:.4f} (dense {baseline:.4f},"
            f" {100 * (accuracy - baseline):+.2f} pp);"
            f" {speed['latency_ratio']:.2f}x the dense model's speed"
        ),
    )


def _check_outputs(out: str, with_report: bool) -> Path | None:
    """Fail now if the .cnnz, or with ``--report`` its HTML page beside it, cannot be
    written; the page's path, or None."""
    check_writable(out)
    return report_path(out) if with_report else None


def _write_report(html: Path, out: str, decoded: nn.Module, run: Run) -> Path:
    """The HTML report of the file just written (cnnzip.report), its path."""
    shape = recorded_input_shape(run.arch, run.kwargs, run.meta, None)
    return write_report(gather(out, decoded, shape), html)


def _file_meta(run_dir: str, data: Dataset, baseline: float, teaching: Teaching) -> dict[str, Any]:
    """What the .cnnz file records of where it came from, and how its inputs are
    normalised (``cnnzip eval`` of the file normalises its data the same way)."""
    meta: dict[str, Any] = {
        "source": str(run_dir),
        **data.record(),  # name, classes, input shape (a factory's kwargs need not say it)
        "normalization": data.stats.to_json(),
        "baseline_test_accuracy": baseline,
    }
    if teaching.teachers:
        meta["distill"] = {"teachers": list(teaching.teachers), "T": teaching.temperature}
    return meta


def _speed_profiles(a: nn.Module, b: nn.Module, run: Run) -> tuple[ProfileReport, ProfileReport]:
    """MACs and latency at batch 1 of two models of ``run``'s architecture, measured twice,
    alternating, keeping the second pair: small models take microseconds, and the
    first measurement of a process pays for warming up."""
    shape = recorded_input_shape(run.arch, run.kwargs, run.meta, None)

    def measure(model: nn.Module) -> ProfileReport:
        return profile(model, shape, measure_latency=True, runs=50, warmup=5)

    for model in (a, b):  # the warm-up pair, not reported
        measure(model)
    return measure(a), measure(b)


def _overrides(items: tuple[str, ...]) -> dict[str, object]:
    """``-s stage.option=value`` pairs; values are read as JSON, like ``-k``."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CnnzipError(f"-s expects STAGE.OPTION=VALUE, got {item!r}")
        out[key] = parse_kwargs((f"value={raw}",))["value"]
    return out


@main.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@max_params_option
@json_option
def inspect_cmd(path: str, max_params: int, as_json: bool) -> None:
    """Per-layer weights, kept %, bits and bytes after each stage of a .cnnz file."""
    report = inspect(path, max_params=max_params)
    emit(report.to_dict(), as_json, lambda _: report.table())
