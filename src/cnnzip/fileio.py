"""Atomic file writes: a crash never leaves a half-written file under the real name.

A write goes to ``.NAME.cnnzip-tmp-<pid>-<random>`` in the target's folder (a
rename within one file system is atomic), created as ``open()`` would create
it, so the file gets the user's umask (0666 & ~umask), not mkstemp's 0600.
The temporary file is removed on any exception; one left by a killed writer
(its process gone, or older than ``STALE_SECONDS``) is removed by the next
write to the same path. Any OS error (a read-only folder, ``/proc/x``, a full
disk) ends as one ``CnnzipError`` naming the path.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cnnzip.errors import CnnzipError

__all__ = ["STALE_SECONDS", "TMP_MARK", "atomic_path", "atomic_write_bytes", "atomic_write_text"]

TMP_MARK = ".cnnzip-tmp-"
STALE_SECONDS = 600  # a temporary file this old is stale even if its pid is reused


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _stale(tmp: Path) -> bool:
    pid = tmp.name.rpartition(TMP_MARK)[2].split("-")[0]
    try:
        old = time.time() - tmp.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False
    return old or not pid.isdigit() or not _alive(int(pid))


def _remove_stale(path: Path) -> None:
    """Remove the temporary files killed writers left for ``path``.

    Names are compared as plain prefixes, not glob patterns: ``[1]``, ``*`` or ``?``
    in a file name would be pattern syntax and match some other name, or none."""
    prefix = f".{path.name}{TMP_MARK}"
    for tmp in path.parent.iterdir():
        if tmp.name.startswith(prefix) and _stale(tmp):
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (an empty file with the umask's mode);
    rename it into place if the block succeeds, remove it if it fails."""
    path = Path(path)
    tmp = path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 & ~umask, as open() made it
        yield tmp
        os.chmod(tmp, mode)  # a writer that replaced the file (safetensors: 0600) is undone
        os.replace(tmp, path)
    except OSError as exc:
        raise CnnzipError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with suppress(OSError):  # the folder is gone or unwritable: nothing was left there
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
