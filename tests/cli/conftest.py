"""Fixtures the CLI tests borrow from the folders their verbs' tests live in: the codec
tests' tools for hostile .cnnz files, one torch thread for every test (tiny models
fitted in-process: two threads spin against each other on a shared machine), and the
helpers that write tiny on-disk datasets, borrowed from the test modules that
define them (test modules are not importable under --import-mode=importlib)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _module(relative: str, name: str) -> ModuleType:
    """``tests/<relative>`` loaded as module ``name`` (the test folders are not packages)."""
    path = Path(__file__).parents[1] / relative
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conftest(folder: str) -> ModuleType:
    """``tests/<folder>/conftest.py`` as a module."""
    return _module(f"{folder}/conftest.py", f"cli_uses_{folder}_conftest")


_codec = _conftest("codec")
small, tools = _codec.small, _codec.tools


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every CLI test at one torch thread (tests/conftest.py's ``one_thread``)."""


@pytest.fixture(scope="session")
def formats() -> ModuleType:
    """tests/data/test_formats.py: its writers of tiny image folders, CIFAR binaries and
    IDX files (``_write_folder``, ``_write_cifar10``, ``_write_idx``)."""
    return _module("data/test_formats.py", "cli_uses_data_test_formats")


@pytest.fixture(scope="session")
def data_path() -> ModuleType:
    """tests/cli/test_cli_data_path.py: ``_ok`` (a verb's --json result, exit 0 asserted)
    and ``_npz`` (a tiny RGB .npz)."""
    return _module("cli/test_cli_data_path.py", "cli_uses_test_cli_data_path")
