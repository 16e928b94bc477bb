"""cnnzip: make convolutional networks small and fast, and say honestly what was gained."""

from cnnzip import data, distill, models, train
from cnnzip.errors import CnnzipError, DataError, ModelError, RunError
from cnnzip.profiling import profile
from cnnzip.runs import load_run, save_run

__version__ = "0.1.0"

__all__ = [
    "CnnzipError",
    "DataError",
    "ModelError",
    "RunError",
    "__version__",
    "data",
    "distill",
    "load_run",
    "models",
    "profile",
    "save_run",
    "train",
]
