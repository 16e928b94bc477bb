"""The error types cnnzip raises for bad input.

Every error a user can cause (a wrong name, a missing file, a corrupt file, an
impossible value) is a ``CnnzipError`` whose message says what is wrong and
what to do, so the CLI can print it as one line instead of a traceback.
"""

from __future__ import annotations


class CnnzipError(Exception):
    """Base class: bad input a user can fix."""


class DataError(CnnzipError):
    """A dataset is missing, truncated or corrupt."""


class ModelError(CnnzipError, KeyError):
    """An unknown model name or bad builder arguments."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RunError(CnnzipError):
    """A run directory is missing or not one cnnzip wrote."""


def one_line(text: str, keep: int = 2) -> str:
    """``text`` (often a library's multi-line message: PyYAML's, torch's state_dict
    listing) as one line: its first ``keep`` lines joined, and how many more there were,
    so the CLI's promise of one error line holds."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    more = f" (and {len(lines) - keep} more lines)" if len(lines) > keep else ""
    return " ".join(lines[:keep]) + more
