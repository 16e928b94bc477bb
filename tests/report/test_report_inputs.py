"""What the report reads and must survive: the bars against the file's bytes (buffers
included), sensitivity files of any content, the dense run's files never overwritten,
and accuracies measured by the int8 bench where the file records none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import cnnzip as cz
from cnnzip.cli import main
from cnnzip.prune import one_shot, prunable
from cnnzip.report import figures, gather, render
from cnnzip.report.page import _curves, bar_segments

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 28, 28)


def test_bars_sum_to_the_stage_table_and_the_file_with_batchnorm(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 10)).eval()  # fmt: skip
    one_shot(model, {t: 0.9 for t in prunable(model)})
    cz.codec.save(tmp_path / "bn.cnnz", model)
    report = cz.codec.inspect(tmp_path / "bn.cnnz")
    segments, overhead = bar_segments(report)
    totals = {s: sum(seg["bytes"][s] for seg in segments) for s in figures.STAGES}
    assert totals["coded"] + overhead == (tmp_path / "bn.cnnz").stat().st_size
    assert {**totals, "coded": totals["coded"] + overhead} == report.stage_bytes()
    assert segments[-1]["name"] == "buffers" and segments[-1]["bytes"]["dense"] == 4 * (32 + 32 + 1)


BAD_CURVES = [
    b"\xff\xfe",  # not UTF-8
    b'{"curves": 5}',
    b'{"curves": [{"name": "fc1.weight", "ratios": [0.1, 0.5], "accuracy": [0.9]}]}',
    b'{"curves": [{"name": "fc1.weight", "ratios": [0.1, "x"], "accuracy": [0.9, 0.8]}]}',
    b'{"curves": [{"name": "fc1.weight", "ratios": 3, "accuracy": 3}, 7]}',
]


@pytest.mark.parametrize("content", BAD_CURVES)
def test_a_bad_sensitivity_file_leaves_the_curves_out(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "sensitivity.json").write_bytes(content)
    assert _curves(tmp_path) == []


@pytest.mark.slow
def test_good_curves_stay_beside_bad_ones(compressed) -> None:
    path, run, _ = compressed
    good = {"name": "fc2.weight", "ratios": [0.0, 0.5], "accuracy": [0.5, 0.4]}
    bad = {"name": "fc1.weight", "ratios": [0.0], "accuracy": [0.5, 0.4]}
    (run / "sensitivity.json").write_text(json.dumps({"curves": [bad, good]}))
    page = gather(path, cz.load(path), SHAPE, speed_runs=None)
    assert page.curves == [good] and "<h2>Sensitivity</h2>" in render(page)


def test_report_never_overwrites_the_dense_runs_files(compressed) -> None:
    path, run, _ = compressed
    for name in ("model.safetensors", "run.json", "sensitivity.json"):
        before = (run / name).read_bytes()
        result = CliRunner().invoke(
            main, ["report", str(path), "-o", str(run / name), "--no-speed"]
        )
        assert result.exit_code == 2 and "would overwrite" in result.output, result.output
        assert result.output.count("\n") == 1 and (run / name).read_bytes() == before


def test_without_recorded_accuracies_the_int8_rows_measured_ones_show(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cz.models.get_model("lenet300", hidden=[16, 8])
    cz.codec.save(tmp_path / "m.cnnz", model)  # a file written in Python: no accuracies
    rows = [{"key": k, "name": k, "bytes": 10, "accuracy": a, "latency_ms": 1.0, "speedup": 1.0}
            for k, a in (("torch", 0.91), ("int8", 0.9), ("cnnz", 0.875))]  # fmt: skip
    page = gather(tmp_path / "m.cnnz", model, SHAPE, speed_runs=None,
                  int8={"rows": rows, "verdict": []})  # fmt: skip
    assert (page.accuracy, page.baseline) == (0.875, 0.91)
    assert "test accuracy 0.8750 against the dense 0.9100 (-3.50 pp)" in render(page)
