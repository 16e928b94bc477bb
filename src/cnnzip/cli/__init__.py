"""The ``cnnzip`` command line: one verb per step of the user's path, one module per verb family."""

from cnnzip.cli import (  # noqa: F401  (each import registers its verbs)
    bench,
    binary,
    compress,
    distill,
    export,
    profile,
    prune,
    report,
    survey,
    train,
)
from cnnzip.cli.app import main

__all__ = ["main"]
