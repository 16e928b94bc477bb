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
