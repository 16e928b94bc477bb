"""The dense run a .cnnz was compressed from: one lookup for ``bench int8``, ``report`` and
benchmarks/int8_baseline.py.

``cnnzip compress`` records the run as it was given (``meta.source``, often relative to
where it ran). A relative source is looked up beside the file and in the working folder;
found in both as different runs it is ambiguous, and an error. Whatever the path, the
run's ``run.json`` must name the architecture and arguments the file's header does: a
run of another model of the same name would give baselines of the wrong network.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from cnnzip.codec import read as read_cnnz
from cnnzip.errors import RunError
from cnnzip.models.registry import trust_factories
from cnnzip.runs import Run, load_run, read_meta

__all__ = ["DenseRunError", "dense_dir", "load_dense"]

HINT = "pass --dense RUN with the run it was compressed from"


class DenseRunError(RunError):
    """No dense run, an ambiguous one, or one of another model than the .cnnz's."""


def _named(path: Path, given: str | Path | None) -> tuple[Path, str]:
    """(the run's folder, how it was found): ``given``, else the file's ``meta.source``."""
    if given is not None:
        return Path(given), "--dense"
    meta = read_cnnz(path).header.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    if not isinstance(source, str) or not source:
        raise DenseRunError(f"{path} names no dense run (source: {source!r}); {HINT}")
    if Path(source).is_absolute():
        return Path(source), "the file's metadata"
    found = {
        (path.parent / source).resolve(): f"the file's metadata, beside {path}",
        Path(source).resolve(): "the file's metadata, in the working folder",
    }
    there = [(d, how) for d, how in found.items() if d.is_dir()]
    if len(there) > 1:
        raise DenseRunError(
            f"{path} names dense run {source!r}, which is both {there[0][0]} and "
            f"{there[1][0]}; {HINT}"
        )
    return there[0] if there else (Path(source), "the file's metadata")


def dense_dir(path: str | Path, given: str | Path | None = None) -> tuple[Path, str]:
    """(the folder of the dense run of .cnnz ``path``, how it was found): ``given``
    (``--dense``), else the run the file's metadata names; one line of error where there is
    none, or where its run.json names another architecture or arguments than the file."""
    path = Path(path)
    folder, how = _named(path, given)
    if not folder.is_dir():
        raise DenseRunError(f"dense run {folder} ({how}) is not there; {HINT}")
    arch = read_cnnz(path).header.get("arch")
    arch = arch if isinstance(arch, dict) else {}
    meta = read_meta(folder)
    want = (arch.get("name"), arch.get("kwargs") or {})
    have = (meta.get("arch"), meta.get("kwargs") or {})
    if arch and want != have:
        raise DenseRunError(
            f"dense run {folder} ({how}) is {_arch(*have)}, but {path} holds {_arch(*want)}; {HINT}"
        )
    return folder, how


def _arch(name: Any, kwargs: Any) -> str:
    """``lenet300(hidden=[16, 8])``, at most 200 characters (metadata is free-form)."""
    args = kwargs.items() if isinstance(kwargs, dict) else [("kwargs", kwargs)]
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args)})"[:200]


def load_dense(path: str | Path, given: str | Path | None = None, trust: str | None = None) -> Run:
    """The dense run of .cnnz ``path`` (``dense_dir``), its model built trusting the
    factory ``trust`` (``--model``) as well as $CNNZIP_TRUST's."""
    folder, _ = dense_dir(path, given)
    with trust_factories(trust) if trust else nullcontext():
        return load_run(folder)
