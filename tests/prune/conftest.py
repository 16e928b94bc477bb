"""One torch thread for these tiny models: on a shared 2-core machine, two threads
spin against each other and a 0.3 s fit takes 10 s."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every pruning test at one torch thread (tests/conftest.py's ``one_thread``)."""
