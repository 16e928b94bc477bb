"""The ``cnnzip`` group and what every verb shares: JSON output, -k parsing, data options.

Every verb that reports numbers takes ``--json`` and then prints exactly one
JSON object as its last line. Bad input ends with one ``error:`` line, exit 2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

import cnnzip
from cnnzip import data as cz_data
from cnnzip.codec.header import MAX_PARAMS
from cnnzip.data import Dataset
from cnnzip.errors import CnnzipError, one_line
from cnnzip.runs import CHECKPOINT, META, WEIGHTS
from cnnzip.runtime.xnor import MAX_THREADS
from cnnzip.train.checkpoint import check_writable
from cnnzip.train.loop import MAX_EPOCHS, MAX_LR, MAX_SEED, TrainConfig

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan and inf: nan passes every comparison with a
    bound, and inf every lower one, so FloatRange alone lets them through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return number


# the types of the numeric options every verb shares: impossible values end in a usage error
COUNT = click.IntRange(min=1)  # images, batch sizes, runs, steps
THREADS = click.IntRange(1, MAX_THREADS)
EPOCHS = click.IntRange(0, MAX_EPOCHS)
SEED = click.IntRange(0, MAX_SEED)
LR = FiniteFloat(0.0, MAX_LR, min_open=True)
POSITIVE = FiniteFloat(0.0, min_open=True)
NON_NEGATIVE = FiniteFloat(0.0)


def check_run_out(run_dir: str | Path) -> None:
    """Fail now if run directory ``run_dir`` cannot be written, not after the training."""
    check_writable(Path(run_dir) / "run.json")


def check_not_sources(outputs: Iterable[str | Path | None], sources: Iterable[str | Path]) -> None:
    """Fail now if an output (a run directory or a file) is a run the verb reads, or one
    of the files that run consists of: writing it would destroy the input, or fail only
    after the work with the input already overwritten."""
    outs = [out for out in outputs if out]
    for source in sources:
        run = Path(source).resolve()
        taken = {run, run / WEIGHTS, run / META, run / CHECKPOINT}
        for out in outs:
            if Path(out).resolve() in taken:
                raise CnnzipError(
                    f"output {out} would overwrite run {source}, which this command reads; "
                    "write to another path"
                )


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


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON object as the last line."
)
max_params_option = click.option(
    "--max-params",
    type=click.IntRange(min=1),
    default=MAX_PARAMS,
    show_default=True,
    help="Refuse a .cnnz declaring more elements than this, before allocating (raise it "
    "for a model larger than any zoo CNN).",
)


def kwargs_option(
    help: str = "Builder keyword argument (repeatable), e.g. -k width_mult=0.5.",
) -> Decorator:
    """``-k NAME=VALUE`` (repeatable), parsed by ``parse_kwargs``."""
    return click.option("-k", "kwargs", multiple=True, metavar="NAME=VALUE", help=help)


resume_option = click.option(
    "--resume", is_flag=True, help="Continue from the run directory's checkpoint."
)


def out_option(help: str, *, default: str | None = None, file: bool = False) -> Decorator:
    """``-o/--out``: the one path a verb writes, a run directory (a file with ``file``);
    required unless the verb fills in ``default`` itself (shown in the help)."""
    if default:
        help = f"{help} [default: {default}]"
    path = click.Path(dir_okay=False) if file else click.Path(file_okay=False)
    return click.option("-o", "--out", type=path, required=default is None, help=f"{help}.")


def gather(into: str, names: Iterable[str], build: Callable[..., Any]) -> Decorator:
    """Hand a verb the options ``names`` as one argument ``into`` = ``build(**options)``,
    so a family of options is declared, typed and turned into an object in one place."""
    names = tuple(names)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the click options declared below this one
        def verb(**params: Any) -> Any:
            given = {name: params.pop(name) for name in names if name in params}
            return fn(**params, **{into: build(**given)})

        return verb

    return decorate


@dataclass(frozen=True)
class DataSpec:
    """The dataset named by ``data_options``, loaded once the verb has checked its outputs."""

    name: str
    root: str | None
    limit: int | None
    val_size: int | None

    def load(self) -> Dataset:
        return cz_data.load(self.name, root=self.root, limit=self.limit, val_size=self.val_size)


def _data_spec(
    data_name: str, data_dir: str | None, limit: int | None, val_size: int | None
) -> DataSpec:
    return DataSpec(data_name, data_dir, limit, val_size)


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--data, --data-dir, --limit, --val-size, handed to the verb as ``dataset: DataSpec``."""
    fn = gather("dataset", ("data_name", "data_dir", "limit", "val_size"), _data_spec)(fn)
    fn = click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Folder holding the IDX files [default: $CNNZIP_DATA, else Debian's]; "
        "a folder without them is an error.",
    )(fn)
    fn = click.option(
        "--val-size",
        type=click.IntRange(min=0),
        default=None,
        help="Training images held out for validation [default: 5000 from 50,000 or more, "
        "else a tenth].",
    )(fn)
    fn = click.option(
        "--limit",
        type=COUNT,
        default=None,
        help="Use only the first N training and test images (quick checks).",
    )(fn)
    return click.option(
        "--data",
        "data_name",
        default="fashion-mnist",
        show_default=True,
        help=f"Dataset: {', '.join(cz_data.list_datasets())}.",
    )(fn)


def train_options(
    *,
    epochs: int,
    lr: float = 1e-3,
    base: TrainConfig | None = None,
    epochs_help: str = "Training epochs.",
    lr_help: str = "Learning rate.",
) -> Decorator:
    """--epochs, --batch-size, --lr, --seed, handed to the verb as ``cfg: TrainConfig``
    together with any other option named after a TrainConfig field (train's --optimizer).

    The one place for their defaults: batch size and seed are ``base``'s (TrainConfig's,
    128 and 0) everywhere; epochs and lr differ by verb because the work does: train
    and distill 10 epochs from scratch (distill at lr 2e-3, measured best), prune 3
    retraining epochs per step, binarize 4 fine-tuning epochs, all others at lr 1e-3."""
    base = base or TrainConfig()
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    seed_help = "Seed of every random choice (initialisation, data order)."
    option = functools.partial(click.option, show_default=True)
    options = [
        option("--epochs", type=EPOCHS, default=epochs, help=epochs_help),
        option("--batch-size", type=COUNT, default=base.batch_size, help="Batch size."),
        option("--lr", type=LR, default=lr, help=lr_help),
        option("--seed", type=SEED, default=base.seed, help=seed_help),
    ]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = gather("cfg", fields, functools.partial(dataclasses.replace, base))(fn)
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


class _Group(click.Group):
    """Every failure ends as one ``error:`` line on stderr and exit code 2: click's usage
    errors (a bad option value, a missing path), CnnzipError and OSError (a full disk, a
    folder that went away), never a traceback or click's three-line usage report."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a bare `cnnzip`: the help, as click prints it
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message())
        except click.Abort:
            _fail("interrupted")
        except (CnnzipError, OSError) as exc:
            _fail(str(exc))
        sys.exit(code if isinstance(code, int) else 0)  # --help and --version exit with 0


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cnnzip.__version__, prog_name="cnnzip")
def main() -> None:
    """cnnzip: make convolutional networks small and fast, and measure what was gained."""
