"""cnnzip: make convolutional networks small and fast, and say honestly what was gained."""

from cnnzip import (
    binary,
    codec,
    data,
    distill,
    models,
    profiling,
    prune,
    quantize,
    recipes,
    runtime,
    train,
)
from cnnzip.codec import load
from cnnzip.errors import CnnzipError, DataError, ModelError, RunError
from cnnzip.profiling import profile
from cnnzip.recipes import compress
from cnnzip.runs import load_run, save_run

__version__ = "0.1.0"

__all__ = [
    "CnnzipError",
    "DataError",
    "ModelError",
    "RunError",
    "__version__",
    "binary",
    "codec",
    "compress",
    "data",
    "distill",
    "load",
    "load_run",
    "models",
    "profile",
    "profiling",
    "prune",
    "quantize",
    "recipes",
    "runtime",
    "save_run",
    "train",
]
