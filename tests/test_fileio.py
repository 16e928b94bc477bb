"""Atomic writes: the user's umask, recognisable temporary files, stale ones cleaned,
unwritable targets as one CnnzipError."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from cnnzip.errors import CnnzipError
from cnnzip.fileio import STALE_SECONDS, TMP_MARK, atomic_path, atomic_write_bytes


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_users_umask_as_open_would(tmp_path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "m.cnnz", b"abc")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.cnnz") == 0o666 & ~umask == _mode(tmp_path / "plain")
    assert (tmp_path / "m.cnnz").read_bytes() == b"abc"


def test_temporary_file_is_named_and_removed_on_any_exception(tmp_path) -> None:
    target = tmp_path / "run.json"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(f".run.json{TMP_MARK}{os.getpid()}-")
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_files_are_cleaned_by_the_next_write(tmp_path) -> None:
    target = tmp_path / "m.cnnz"
    dead = tmp_path / f".m.cnnz{TMP_MARK}{_dead_pid()}-0001"
    old = tmp_path / f".m.cnnz{TMP_MARK}{os.getpid()}-0002"  # pid alive (maybe reused), old
    live = tmp_path / f".m.cnnz{TMP_MARK}{os.getpid()}-0003"  # a writer at work right now
    other = tmp_path / f".n.cnnz{TMP_MARK}{_dead_pid()}-0004"  # another target's: not ours
    for p in (dead, old, live, other):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - STALE_SECONDS - 5,) * 2)
    atomic_write_bytes(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "m.cnnz"])


@pytest.mark.parametrize("name", ["a[1].cnnz", "a*.cnnz", "a?.cnnz", "[ab].cnnz"])
def test_stale_temporary_files_of_a_name_with_glob_characters_are_cleaned(
    tmp_path, name: str
) -> None:
    dead = tmp_path / f".{name}{TMP_MARK}{_dead_pid()}-0001"
    lookalike = tmp_path / f".ab.cnnz{TMP_MARK}{_dead_pid()}-0002"  # what a pattern would match
    for p in (dead, lookalike):
        p.write_bytes(b"x")
    atomic_write_bytes(tmp_path / name, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([lookalike.name, name])
    assert (tmp_path / name).read_bytes() == b"new"


@pytest.mark.parametrize("where", ["/proc/x", "{tmp}/a_file/x.cnnz"])
def test_unwritable_targets_are_one_cnnzip_error(tmp_path, where: str) -> None:
    (tmp_path / "a_file").write_bytes(b"")
    path = where.format(tmp=tmp_path)
    with pytest.raises(CnnzipError, match=f"cannot write {path}: "):
        atomic_write_bytes(path, b"abc")


def test_safetensors_written_into_the_temporary_path_keep_the_umask(tmp_path) -> None:
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "model.safetensors") == 0o644
