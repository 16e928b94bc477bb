"""The optional ONNX packages: imported on first use, never by ``import cnnzip``.

``onnx`` and ``onnxruntime`` are an extra (``pip install 'cnnzip[onnx]'``; ``make
install`` installs them), so a user who never exports pays nothing; one who does without
them gets one line saying how. ``onnxscript`` is not needed: the TorchScript-based
exporter (``export.graph``) does not use it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnzip.errors import CnnzipError

__all__ = ["INSTALL_HINT", "MissingDependencyError", "require"]

INSTALL_HINT = "pip install 'cnnzip[onnx]' (or `make install`, or pip install -r requirements.txt)"


class MissingDependencyError(CnnzipError):
    """An optional package a verb needs is not installed."""


def require(name: str) -> ModuleType:
    """Import the optional package ``name`` (``onnx``, ``onnxruntime``, ...), or fail in
    one line naming it and how to install the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"ONNX export needs the optional package {name.split('.')[0]} ({exc}): "
            f"install it with {INSTALL_HINT}"
        ) from None
