"""Structure-aware fuzzing of .cnnz files (benchmarks/fuzz_cnnz.py), bounded for the suite:
2,000 deterministic cases; each loads or fails with a CnnzipError, within 5 s and 512 MB."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnzip.codec import container
from cnnzip.codec.errors import CnnzFormatError

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fuzz_cnnz.py"


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_cnnz", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_cnnz"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_mutations_reach_past_the_checksums() -> None:
    fz = _fuzz_module()
    data = fz.deep_compression_file()
    rng = np.random.default_rng(0)
    parsed = 0
    for _ in range(200):
        try:
            container.unpack(fz.mutate(rng, data))
            parsed += 1
        except CnnzFormatError:  # a container-level refusal
            continue
    assert parsed > 120  # most cases get through the container to the decoder


@pytest.mark.slow
def test_2000_mutated_files_load_or_fail_with_a_cnnzip_error() -> None:
    fz = _fuzz_module()
    counts, bad, worst_s, worst_mb = fz.fuzz(2000, seed=11, batch=50)
    assert bad == [], bad[:5]
    assert counts["OTHER"] == 0
    assert worst_s < fz.LIMIT_S and worst_mb < fz.LIMIT_MB
    assert counts["ok"] > 100 and counts["CnnzFormatError"] > 1000  # both outcomes exercised
