"""The options verbs share, each declared once: types that refuse impossible values,
``-o``, ``--json``, and families handed to a verb as one object (``data_options`` ->
``dataset: DataSpec``, ``train_options`` -> ``cfg: TrainConfig``)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from cnnzip import data as cz_data
from cnnzip.codec import read as read_cnnz
from cnnzip.codec.header import MAX_PARAMS
from cnnzip.data import DEFAULT_VAL_FRACTION, Dataset, Normalization
from cnnzip.errors import DataError
from cnnzip.runs import META, read_meta, stored_normalization
from cnnzip.runtime.xnor import MAX_THREADS
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


def stacked(*decorators: Decorator) -> Decorator:
    """Several decorators as one, the first outermost: its option comes first in --help."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return decorate


shown = functools.partial(click.option, show_default=True)  # an option with its default in --help


DEFAULT_DATA = "fashion-mnist"  # --data of train, and of a source that records no data


@dataclass(frozen=True)
class Recorded:
    """What a model's source (a run directory or a .cnnz file) records of the data the
    model was trained on (``Dataset.record``): read by every verb that loads the model
    with data, to find that data and to refuse other data."""

    source: str
    meta: Mapping[str, Any]

    @classmethod
    def of(cls, source: str | Path) -> Recorded:
        """The record of a run directory (run.json) or of a .cnnz file (its metadata)."""
        if Path(source).is_file():
            return cls(str(source), read_cnnz(source).header.get("meta") or {})
        return cls(str(source), read_meta(source))

    @property
    def stats(self) -> Normalization | None:
        """The normalization the source records (None: written before cnnzip recorded
        it, so the data's own statistics are measured instead)."""
        where = self.source if Path(self.source).is_file() else Path(self.source) / META
        return stored_normalization(dict(self.meta), where)

    def data_name(self) -> str | None:
        """The data the source records, refused when it is a PATH that is gone (the
        default would silently be another data set)."""
        name = self.meta.get("data")
        if not isinstance(name, str) or not name:
            return None
        if name not in cz_data.list_datasets() and not Path(name).exists():
            raise DataError(
                f"{self.source} was trained on {name}, which is not there (moved or "
                "deleted?); pass --data with the path of that data"
            )
        return name

    def check(self, data: Dataset) -> None:
        """``data`` is laid out as the data the model was trained on: the input shape,
        and the class names where both name them (other classes would mis-map labels)."""
        shape, classes = self.meta.get("input_shape"), self.meta.get("classes")
        if isinstance(shape, list) and shape != list(data.input_shape):
            side = f"--input {shape[-1]} for an image folder, or " if len(shape) == 3 else ""
            raise DataError(
                f"{self.source} was trained on inputs of shape {tuple(shape)} but {data.name} "
                f"gives {data.input_shape}; pass {side}--data with data of that shape"
            )
        named = [str(c) for c in classes] if isinstance(classes, list) else None
        if named is not None and data.classes is not None and named != list(data.classes):
            raise DataError(
                f"{self.source} was trained on classes {', '.join(named):.200} but "
                f"{data.name} has {', '.join(data.classes):.200}; labels would be "
                "mis-mapped: pass --data with data of the same classes"
            )


@dataclass(frozen=True)
class DataSpec:
    """The dataset named by ``data_options``, loaded once the verb has checked its outputs.
    ``given`` is --data as given: None means the data the model's source records, else
    ``DEFAULT_DATA``."""

    given: str | None
    root: str | None
    limit: int | None
    val_size: int | None
    val_fraction: float | None = None
    workers: int = 0
    size: int | None = None
    augment: bool | None = None

    @property
    def name(self) -> str:
        """The data set's name or PATH (before ``load`` resolves it against a source)."""
        return self.given or DEFAULT_DATA

    def load(
        self,
        stats: Normalization | None = None,
        *,
        validation: bool = True,
        trained: Recorded | None = None,
    ) -> Dataset:
        """A registered set by name, or the data at a PATH (format detected), normalised with
        ``stats`` (those a model was trained with) or, without, its own measured ones.
        ``validation=False`` (a verb that only evaluates) ignores the validation options,
        so what such a verb reports never depends on them. With ``trained`` (the record of
        the model's source) --data without a value is the data it records, and data of
        another input shape or other classes is refused. The name that was loaded is the
        returned ``Dataset.name``."""
        recorded = trained.data_name() if trained and self.given is None else None
        spec = replace(self, given=recorded) if recorded else self
        data = spec._any(stats, validation)
        if trained:
            trained.check(data)
        return data

    def _any(self, stats: Normalization | None, validation: bool) -> Dataset:
        known = cz_data.list_datasets()
        if self.name in known:
            data = self._named(stats, validation)
        elif Path(self.name).exists():
            data = self._path(stats, validation)
        else:
            raise DataError(
                f"unknown dataset {self.name!r}: neither a named set ({', '.join(known)}) nor "
                "an existing file or folder"
            )
        return data.with_augment(self.augment)

    def _named(self, stats: Normalization | None, validation: bool) -> Dataset:
        given = [opt for opt, v in (("--workers", self.workers or None),
                                    ("--input", self.size)) if v is not None]  # fmt: skip
        if given:
            raise DataError(
                f"{', '.join(given)}: only for a PATH (an image folder), not for the named "
                f"data set {self.name}, which is held in memory at its stored size"
            )
        val_size, fraction = (self.val_size, self.val_fraction) if validation else (None, None)
        return cz_data.load(
            self.name,
            root=self.root,
            limit=self.limit,
            val_size=val_size,
            val_fraction=fraction,
            stats=stats,
        )

    def _path(self, stats: Normalization | None, validation: bool) -> Dataset:
        given = [opt for opt, v in (("--data-dir", self.root), ("--limit", self.limit),
                                    ("--val-size", self.val_size)) if v is not None]  # fmt: skip
        if given:
            raise DataError(
                f"{', '.join(given)}: only for the named data sets, not for a PATH ({self.name}): "
                "write the split you want into the npz or the folder"
            )
        fraction = self.val_fraction if validation and self.val_fraction else DEFAULT_VAL_FRACTION
        return cz_data.load_path(
            self.name, size=self.size, val_fraction=fraction, workers=self.workers, stats=stats
        )


# the options ``data_options`` declares, gathered into a DataSpec
_DATA_OPTIONS = (
    "data_name",
    "data_dir",
    "limit",
    "val_size",
    "val_fraction",
    "workers",
    "input_size",
    "augment",
)


def _data_spec(
    data_name: str | None, data_dir: str | None, input_size: int | None, **rest: Any
) -> DataSpec:
    """The options' names (``--data``, ``--data-dir``, ``--input``) as DataSpec fields."""
    return DataSpec(data_name, data_dir, size=input_size, **rest)


def recorded_stats(source: str | Path) -> Normalization | None:
    """The normalization a run directory or a .cnnz file records (``Recorded.stats``)."""
    return Recorded.of(source).stats


data_options = stacked(
    click.option(
        "--data",
        "data_name",
        default=None,
        help=f"Dataset: {', '.join(cz_data.list_datasets())}, or a PATH: an .npz "
        "(x_train, y_train, x_test, y_test), a CIFAR-10/100 binary folder, an IDX folder or "
        "an image folder with one sub-folder per class [default: the data the run or file "
        f"records, else {DEFAULT_DATA}].",
    ),
    click.option(
        "--limit", type=COUNT, help="Use only the first N training and test images (quick checks)."
    ),
    click.option(
        "--val-size",
        type=click.IntRange(min=0),
        help="Training images held out for validation [default: 5000 from 50,000 or more, "
        "else a tenth].",
    ),
    click.option(
        "--val-fraction",
        type=FiniteFloat(0.0, 1.0, min_open=True, max_open=True),
        help="Fraction of the training images held out for validation where the data has "
        "no validation split [default: 1/12]; verbs that only evaluate ignore it.",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        help="Folder holding the IDX files [default: $CNNZIP_DATA, else Debian's]; "
        "a folder without them is an error.",
    ),
    shown(
        "--workers",
        type=click.IntRange(min=0),
        default=0,
        help="DataLoader worker processes reading an image folder (0: read in this process).",
    ),
    click.option(
        "--input",
        "input_size",
        type=COUNT,
        default=None,
        help="Resize an image folder's images to N x N pixels (needed when their sizes differ).",
    ),
    click.option(
        "--augment/--no-augment",
        default=None,
        help="Random 4 px crops and horizontal flips of the training images [default: on "
        "for colour images of 32 px or more, off for grey or smaller ones].",
    ),
    gather("dataset", _DATA_OPTIONS, _data_spec),
)
"""--data, --limit, --val-size, --val-fraction, --data-dir, --workers, --input,
--augment/--no-augment, handed to the verb as ``dataset: DataSpec``."""


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
    seed_help = "Random seed: the data order, and a new model's initial weights."
    return stacked(
        shown("--epochs", type=EPOCHS, default=epochs, help=epochs_help),
        shown("--batch-size", type=COUNT, default=base.batch_size, help="Batch size."),
        shown("--lr", type=LR, default=lr, help=lr_help),
        shown("--seed", type=SEED, default=base.seed, help=seed_help),
        gather("cfg", fields, functools.partial(dataclasses.replace, base)),
    )
