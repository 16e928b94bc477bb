"""The binarize and bench xnor verbs through the real CLI."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.runtime import available_paths

pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_bench_xnor_json_has_the_documented_fields():
    code, out = run_cli("bench", "xnor", "--threads", "1", "--repeats", "3", "--json")
    assert code == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    assert [(r["cin"], r["hw"]) for r in result["layers"]] == [(256, 56), (128, 28), (512, 7)]
    for row in result["layers"]:
        assert row["cout"] == row["cin"] and row["float_ms"] > 0 and row["binary_ms"] > 0
        assert abs(row["speedup"] - row["float_ms"] / row["binary_ms"]) < 1e-9
        assert abs(row["cpu_speedup"] - row["float_cpu_ms"] / row["binary_cpu_ms"]) < 1e-9
        if len(available_paths()) > 1:  # compiled kernels: 6-12x faster than float32
            # in the calling thread's CPU time, median of 3: other processes on the
            # machine stretch wall times (a 1-repeat wall ratio fell below 1 under load)
            # but not the CPU time this thread spends in each conv
            assert row["cpu_speedup"] > 1
    # the paper's formula by hand: 64 c N_W / (c N_W + 64) with N_W = 9
    theory = [row["theoretical_speedup"] for row in result["layers"]]
    assert theory == [64 * 2304 / 2368, 64 * 1152 / 1216, 64 * 4608 / 4672]
    assert 62.2 < theory[0] < 62.3  # "62x in theory for c=256, 3x3" (XNOR-Net)


def test_binarize_refuses_a_folder_that_is_not_a_run(tmp_path: Path):
    code, out = run_cli(
        "binarize",
        str(tmp_path),
        "--mode",
        "xnor",
        "--data",
        "synthetic",
        "-o",
        str(tmp_path / "b"),
    )
    assert code == 2 and "not a run directory" in out and "Traceback" not in out
