"""DIR/results.json: every finished step's numbers, keyed by row and step.

Written atomically right after each step is measured (read, merge, replace), so a killed
survey loses at most the step in flight and a rerun skips every step already there.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnzip.errors import RunError
from cnnzip.fileio import atomic_write_text

__all__ = ["RESULTS", "Results"]

RESULTS = "results.json"
LOCK = ".survey.lock"


class Results:
    """The survey's results file: ``{"setting": {...}, "rows": {row: {step: {...}}}}``."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / RESULTS
        self.data: dict[str, Any] = {"setting": {}, "rows": {}}
        if self.path.exists():
            self.data = _read(self.path)

    def get(self, row: str, step: str) -> dict[str, Any] | None:
        """The numbers of ``row``'s finished ``step``, or None if it has not run."""
        return self.data["rows"].get(row, {}).get(step)

    def put(self, row: str, step: str, values: dict[str, Any]) -> None:
        """Record a finished step and write the file at once."""
        self.data["rows"].setdefault(row, {})[step] = values
        self._write()

    def set_setting(self, setting: dict[str, Any]) -> None:
        """The study's setting (budget, data, CPU), refreshed on every run."""
        self.data["setting"] = setting
        self._write()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """The folder for this process alone while the block runs: two surveys in one
        folder would train the same steps at once. An advisory lock on a file beside
        results.json, released by the OS however the process ends (a kill included)."""
        _make_folder(self.path.parent)
        with open(self.path.parent / LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(
                    f"another survey is running in {self.path.parent}; wait for it, or "
                    "see its tables so far with --tables-only"
                ) from None
            yield  # the lock goes with the file's closing

    def _write(self) -> None:
        _make_folder(self.path.parent)
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(
            f"cannot create the survey's folder {folder}: {exc.strerror}; pick another -o"
        ) from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(
            f"cannot read {path}: {exc}; move it away to start the survey's results afresh"
        ) from None
    if not (isinstance(data, dict) and isinstance(data.get("rows"), dict)):
        raise RunError(
            f"{path} is not a survey results file (no 'rows' mapping); move it away to start afresh"
        )
    data.setdefault("setting", {})
    return data
