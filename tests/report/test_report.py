"""The HTML report: self-contained, every image a valid inline PNG, the numbers of the
file's inspection, the centroids the file holds; and the verb, alone and in compress."""

from __future__ import annotations

import base64
import json
import re
import struct
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cnnzip as cz
from cnnzip.cli import main
from cnnzip.prune import one_shot, prunable
from cnnzip.quantize import shared_of
from cnnzip.report import figures, gather, render, write_report

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 28, 28)


def _images(text: str) -> list[tuple[int, int]]:
    """(width, height) of every <img>, read from the PNG's IHDR; fails on anything else."""
    sources = re.findall(r'<img alt="[^"]*" src="([^"]*)">', text)
    assert len(sources) == text.count("<img")
    sizes = []
    for src in sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix) :], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        sizes.append(struct.unpack(">II", data[16:24]))
    return sizes


@pytest.mark.slow
def test_page_is_self_contained_with_every_section(compressed, tmp_path: Path) -> None:
    path, _, _ = compressed
    page = gather(path, cz.load(path), SHAPE, speed_runs=2)
    out = write_report(page, tmp_path / "r.html")
    text = out.read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "<script" not in text
    sizes = _images(text)
    assert len(sizes) == 5 and all(w > 100 and h > 100 for w, h in sizes)
    for heading in ("Stages", "Bytes per layer", "Weights before and after", "Sensitivity",
                    "Speed: measured and theoretical", "Accuracy and bytes"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in text
    totals = cz.codec.inspect(path).stage_bytes()
    assert all(f"<td>{b:,}</td>" in text for b in totals.values())
    assert f"{path.stat().st_size:,} bytes on disk" in text and "(-5.00 pp)" in text
    assert "<td>prune</td><td>1.5</td><td>0.4000</td><td>0.200</td>" in text


def test_histograms_hold_the_files_centroids_and_the_dense_weights(compressed) -> None:
    path, run, model = compressed
    page = gather(path, cz.load(path), SHAPE, speed_runs=None)
    dense = cz.load_run(run).model.state_dict()
    assert [w["name"] for w in page.weights] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for layer, (target, shared) in zip(page.weights, shared_of(model).items(), strict=True):
        used = shared.codebook.detach()[shared.index[shared.mask].long()].unique().numpy()
        assert layer["centroids"] == sorted(set(used.tolist()) - {0.0})
        np.testing.assert_array_equal(layer["before"], dense[target].numpy().ravel())
        assert layer["after"].size == int(shared.mask.sum())  # every kept weight, no zeros


@pytest.mark.slow
def test_without_the_source_run_no_before_and_no_curves(compressed, tmp_path: Path) -> None:
    path, run, _ = compressed
    for child in run.iterdir():
        child.unlink()
    run.rmdir()
    page = gather(path, cz.load(path), SHAPE, speed_runs=None)
    assert page.curves == [] and all(w["before"] is None for w in page.weights)
    text = render(page)
    assert len(_images(text)) == 3 and "<h2>Sensitivity</h2>" not in text


@pytest.mark.slow
def test_where_int8_wins_the_page_says_so(compressed) -> None:
    path, _, _ = compressed
    rows = [
        {"key": "int8", "name": "int8 PTQ ONNX", "bytes": 10, "accuracy": 0.9,
         "latency_ms": 1.0, "speedup": 2.0},
    ]  # fmt: skip
    verdict = ["int8 PTQ is more accurate than the .cnnz (0.9 vs 0.45)",
               "int8 PTQ is not smaller than the .cnnz (10 B vs 5 B)"]  # fmt: skip
    page = gather(
        path, cz.load(path), SHAPE, speed_runs=None, int8={"rows": rows, "verdict": verdict}
    )
    text = render(page)
    assert f'<p class="note">{verdict[0]}</p>' in text and f'<p class="">{verdict[1]}</p>' in text
    assert len(_images(text)) == 4  # no speed section; the int8 point joins the accuracy plot


def test_report_verb_writes_beside_the_file(compressed) -> None:
    path, _, _ = compressed
    result = CliRunner().invoke(main, ["report", str(path), "--no-speed", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["report"] == str(path.with_suffix(".html")) and summary["speed"] is None
    assert summary["file_bytes"] == path.stat().st_size
    assert len(_images(path.with_suffix(".html").read_text())) == 4


def test_report_of_a_run_and_int8_of_a_run_is_refused(compressed) -> None:
    _, run, _ = compressed
    ok = CliRunner().invoke(main, ["report", str(run), "--no-speed"])
    assert ok.exit_code == 0 and (run / "report.html").is_file(), ok.output
    bad = CliRunner().invoke(main, ["report", str(run), "--compare-int8", "--no-speed"])
    assert bad.exit_code == 2 and "--compare-int8 takes a .cnnz file" in bad.output


@pytest.mark.slow
def test_compress_report_says_where(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kwargs = {"hidden": [16, 8]}
    cz.save_run(tmp_path / "run", cz.models.get_model("lenet300", **kwargs), arch="lenet300",
                kwargs=kwargs)  # fmt: skip
    path = tmp_path / "m.cnnz"
    bad = {"curves": [{"name": "fc1.weight", "ratios": [0.1, 0.5], "accuracy": [0.9]}]}
    (tmp_path / "run" / "sensitivity.json").write_text(json.dumps(bad))  # unequal lengths
    result = CliRunner().invoke(main, [
        "compress", str(tmp_path / "run"), "--data", "synthetic", "-o", str(path), "--report",
        "-s", "prune.steps=1", "-s", "prune.epochs=1", "-s", "finetune.epochs=1",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary, where = result.output.strip().splitlines()[-2:]  # the summary, then the page
    assert f"{path}: " in summary and where == f"report: {tmp_path / 'm.html'}"
    text = (tmp_path / "m.html").read_text()  # no well-formed curve in the run: no curves
    assert len(_images(text)) == 4 and "<h2>Speed: measured and theoretical</h2>" in text


def test_report_never_overwrites_its_source(compressed) -> None:
    path, _, _ = compressed
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["report", str(path), "-o", str(path), "--no-speed"])
    assert result.exit_code == 2 and "would overwrite" in result.output
    assert path.read_bytes() == before


@pytest.mark.slow
def test_report_of_a_pruned_run_times_its_sparse_layers(compressed, tmp_path: Path) -> None:
    _, _, model = compressed
    cz.save_run(tmp_path / "pruned", model, arch="lenet300", kwargs={"hidden": [16, 8]})
    result = CliRunner().invoke(main, ["report", str(tmp_path / "pruned"), "--runs", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["speed"]["theoretical_speedup"] > 2 and summary["stage_bytes"]["shared"] < (
        summary["stage_bytes"]["dense"] / 4
    )


def test_free_form_metadata_never_breaks_the_page(tmp_path: Path) -> None:
    """A file whose meta holds text where numbers go, and names a source that is gone."""
    torch.manual_seed(0)
    model = cz.models.get_model("lenet300", hidden=[16, 8])
    meta = {"source": str(tmp_path / "gone"), "test_accuracy": "high", "stages": "all",
            "baseline_test_accuracy": True}  # fmt: skip
    cz.codec.save(tmp_path / "m.cnnz", model, meta=meta)
    page = gather(tmp_path / "m.cnnz", model, SHAPE, speed_runs=None)
    assert page.accuracy is None and page.baseline is None and page.stages == []
    assert "test accuracy - against the dense -" in render(page)


def test_past_twelve_layers_the_smaller_ones_are_one_segment() -> None:
    stages = ("dense", "pruned", "shared", "coded")
    layers = [{"name": f"l{i}", "bytes": dict.fromkeys(stages, 1024 * i)} for i in range(1, 21)]
    segments = figures._largest(layers)
    assert [n for n, _ in segments] == [f"l{i}" for i in range(10, 21)] + ["9 others"]
    assert segments[-1][1].tolist() == [sum(range(1, 10))] * 4  # KB of l1..l9


def test_histograms_for_the_eight_largest_layers_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    widths = [4, 8, 5, 9, 6, 10, 7, 11, 3, 12, 2]  # ten Linear layers of mixed sizes
    model = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in pairwise(widths)])
    one_shot(model, {t: 0.5 for t in prunable(model)})
    cz.codec.save(tmp_path / "m.cnnz", model)
    page = gather(tmp_path / "m.cnnz", model, (4,), speed_runs=None)
    sizes = {f"{i}.weight": a * b for i, (a, b) in enumerate(pairwise(widths))}
    want = sorted(sorted(sizes, key=lambda n: -sizes[n])[:8], key=lambda n: int(n.split(".")[0]))
    assert [w["name"] for w in page.weights] == want
