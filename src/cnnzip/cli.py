"""The ``cnnzip`` command line: one verb per step of the user's path.

Every verb that reports numbers takes ``--json`` and then prints exactly one
JSON object as its last line. Bad input ends with one ``error:`` line, exit 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

import cnnzip
from cnnzip import data as cz_data
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model, list_models
from cnnzip.models.registry import data_kwargs
from cnnzip.runs import CHECKPOINT, load_run, save_run
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.train.distributed import setup


def parse_kwargs(items: tuple[str, ...]) -> dict[str, Any]:
    """``-k name=value`` pairs; values are read as JSON (numbers, true, lists) or kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise CnnzipError(f"-k expects name=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    """Print ``result`` as one JSON line, or as human text."""
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(text(result))


def _data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                      help="Folder holding the IDX files (else $CNNZIP_DATA, then Debian's).")(fn)  # fmt: skip
    fn = click.option("--limit", type=int, default=None,
                      help="Use only the first N training and test images (quick checks).")(fn)  # fmt: skip
    return click.option("--data", "data_name", default="fashion-mnist", show_default=True,
                        help=f"Dataset: {', '.join(cz_data.list_datasets())}.")(fn)  # fmt: skip


class _Group(click.Group):
    """Turns CnnzipError into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CnnzipError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cnnzip.__version__, prog_name="cnnzip")
def main() -> None:
    """cnnzip: make convolutional networks small and fast, and measure what was gained."""


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def models_cmd(as_json: bool) -> None:
    """List the registered model names."""
    emit({"models": list_models()}, as_json, lambda r: "\n".join(r["models"]))


@main.command("train")
@click.argument("name")
@_data_options
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine",
              show_default=True)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-k", "kwargs", multiple=True, metavar="NAME=VALUE",
              help="Builder keyword argument (repeatable), e.g. -k width_mult=0.5.")  # fmt: skip
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Run directory to write [default: runs/NAME].")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue from the run directory's checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object as the last line.")
def train_cmd(
    name: str, data_name: str, data_dir: str | None, limit: int | None, epochs: int,
    batch_size: int, lr: float, optimizer: str, weight_decay: float, lr_schedule: str,
    seed: int, kwargs: tuple[str, ...], out: str | None, resume: bool, as_json: bool,
) -> None:  # fmt: skip
    """Train model NAME from the zoo and save it as a run directory."""
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
        weight_decay=weight_decay, lr_schedule=lr_schedule, seed=seed,
    )  # fmt: skip
    data = cz_data.load(data_name, root=data_dir, seed=0, limit=limit)
    model_kwargs = data_kwargs(name, parse_kwargs(kwargs), data.input_shape, data.num_classes)
    torch.manual_seed(seed)  # weight initialisation is part of the run's seed
    model = get_model(name, **model_kwargs)
    run_dir = Path(out or f"runs/{name}")
    result = fit(model, data, cfg, checkpoint=run_dir / CHECKPOINT, resume=resume)
    if not setup().is_main:
        return
    test = evaluate(model, data.test)
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": result.final.get("val_accuracy"),
        "seconds_per_epoch": _mean([h["seconds"] for h in result.history]),
    }
    save_run(run_dir, model, arch=name, kwargs=model_kwargs, data=data_name,
             metrics=metrics, config=vars(cfg), history=result.history)  # fmt: skip
    emit(
        {**metrics, "run": str(run_dir), "model": name, "epochs": epochs},
        as_json,
        lambda r: f"{name}: test accuracy {r['test_accuracy']:.4f} -> {run_dir}",
    )


@main.command("eval")
@click.argument("source", type=click.Path(exists=True))
@_data_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object as the last line.")
def eval_cmd(source: str, data_name: str, data_dir: str | None, limit: int | None,
             as_json: bool) -> None:  # fmt: skip
    """Evaluate a run directory on the test split."""
    run = load_run(source)
    data = cz_data.load(data_name, root=data_dir, limit=limit)
    test = evaluate(run.model, data.test)
    emit(
        {"accuracy": test["accuracy"], "loss": test["loss"], "n": len(data.test), "source": source},
        as_json,
        lambda r: f"{source}: accuracy {r['accuracy']:.4f} on {r['n']} test images",
    )


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


if __name__ == "__main__":
    main()
