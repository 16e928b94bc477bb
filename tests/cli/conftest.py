"""Fixtures the CLI tests borrow from the folders their verbs' tests live in: the codec
tests' tools for hostile .cnnz files, and the pruning tests' one torch thread (tiny
models fitted in-process: two threads spin against each other on a shared machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def _conftest(folder: str) -> ModuleType:
    """``tests/<folder>/conftest.py`` as a module (the test folders are not packages)."""
    path = Path(__file__).parents[1] / folder / "conftest.py"
    spec = importlib.util.spec_from_file_location(f"cli_uses_{folder}_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_codec = _conftest("codec")
small, tools = _codec.small, _codec.tools
one_thread = _conftest("prune").one_thread
