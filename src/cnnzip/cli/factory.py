"""The user's own model on the command line: ``package.module:factory`` wherever a zoo
name goes, and ``--model`` on the verbs that read a run or a .cnnz, since a file never
imports the code it names on its own (see cnnzip.models.registry; $CNNZIP_TRUST trusts a
factory in every verb)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import click
import torch.nn as nn

from cnnzip.codec import load_file
from cnnzip.codec import read as read_cnnz
from cnnzip.codec.header import MAX_PARAMS
from cnnzip.errors import CnnzipError
from cnnzip.models.registry import is_factory, trust_factories
from cnnzip.runs import load_run

__all__ = ["factories_of", "load_cnnz", "model_option", "run_name", "trusting"]

F = TypeVar("F", bound=Callable[..., Any])

READ_HELP = (
    "For a run or .cnnz of your own model: its factory, as the file names it "
    "(cnnzip never imports code a file names unless you repeat it here or in $CNNZIP_TRUST)."
)


def model_option(help: str = READ_HELP) -> Callable[[F], F]:
    """``--model SPEC``, handed to the verb as ``model_spec`` (None when not given)."""
    return click.option(
        "--model", "model_spec", default=None, metavar="PKG.MODULE:FACTORY", help=help
    )


def run_name(name: str) -> str:
    """The folder name of a run of ``name``: a zoo name as it is, a factory by its own
    name (``mynets:small_cnn`` -> ``small_cnn``)."""
    return name.rpartition(":")[2].rpartition(".")[2] if is_factory(name) else name


def factories_of(name: Any, kwargs: Any) -> set[str]:
    """The ``package.module:factory`` specs an arch names: itself, or the model a
    binarized one binarizes (its ``base``). A verb writing a .cnnz from a run it was
    trusted to build may read the file back trusting these."""
    base = kwargs.get("base") if isinstance(kwargs, dict) else None
    return {n for n in (name, base) if isinstance(n, str) and is_factory(n)}


def trusting(spec: str | None) -> AbstractContextManager[None]:
    """Within the block the factory ``spec`` (``--model``) may be imported where a file
    names it; without one, only $CNNZIP_TRUST's."""
    return trust_factories(spec) if spec else nullcontext()


def load_cnnz(source: str, spec: str | None, max_params: int = MAX_PARAMS) -> nn.Module:
    """The model of run directory or .cnnz ``source``; one that names the user's own
    factory is rebuilt only when ``spec`` (``--model``) or $CNNZIP_TRUST repeats it."""
    if Path(source).is_dir():
        with trusting(spec):
            return load_run(source).model
    if spec is None:
        return load_file(read_cnnz(source), max_params=max_params)
    cf = read_cnnz(source)
    arch = cf.header.get("arch") if isinstance(cf.header.get("arch"), dict) else {}
    if spec not in factories_of(arch.get("name"), arch.get("kwargs")):
        raise CnnzipError(
            f"--model {spec} but {source} was saved from {arch.get('name')!r}: "
            "give the architecture its header names, or drop --model for a zoo model"
        )
    with trust_factories(spec):
        return load_file(cf, max_params=max_params)
