"""Deep Compression stage 3 and the file that proves it: sparse storage, entropy coding, .cnnz.

from cnnzip import codec
codec.save("lenet5.cnnz", model, arch={"name": "lenet5", "kwargs": {}})
model = codec.load("lenet5.cnnz")            # nn.Module, weights bit-exact
print(codec.inspect("lenet5.cnnz").table())  # per-layer bytes by stage

cnnzip.codec.model is the format alone: it builds a zoo architecture only with the
``build`` it is handed. ``load`` and ``load_file`` here hand it the zoo's
``build_model`` (the models sit below the codec), so ``codec.load(path)`` and
``cnnzip.load(path)`` rebuild any zoo file.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from cnnzip.codec import model as _model
from cnnzip.codec.container import CnnzFile, read
from cnnzip.codec.errors import CnnzFormatError, CnnzVersionError
from cnnzip.codec.header import MAX_PARAMS
from cnnzip.codec.model import decode_state, encode, save
from cnnzip.codec.report import Report, inspect
from cnnzip.codec.streams import decode_stream, encode_stream, entropy_bits
from cnnzip.models import build_model

__all__ = [
    "CnnzFile",
    "CnnzFormatError",
    "CnnzVersionError",
    "Report",
    "decode_state",
    "decode_stream",
    "encode",
    "encode_stream",
    "entropy_bits",
    "inspect",
    "load",
    "load_file",
    "read",
    "save",
]


def load(
    path: str | Path, model: nn.Module | None = None, *, max_params: int = MAX_PARAMS
) -> nn.Module:
    """``cnnzip.codec.model.load`` with the model zoo as the builder of the header's arch."""
    return _model.load(path, model, build=build_model, max_params=max_params)


def load_file(
    cf: CnnzFile, model: nn.Module | None = None, *, max_params: int = MAX_PARAMS
) -> nn.Module:
    """``cnnzip.codec.model.load_file`` with the model zoo as the builder."""
    return _model.load_file(cf, model, build=build_model, max_params=max_params)
