"""One torch thread for these tiny models: on a shared 2-core machine, two threads
spin against each other and a 0.3 s fit takes 10 s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
