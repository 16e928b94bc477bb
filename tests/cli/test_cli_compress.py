"""compress / inspect / eval on a .cnnz through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.models import get_model
from cnnzip.runs import save_run


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow
def test_compress_inspect_eval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kwargs = {"hidden": [32, 16]}
    save_run(tmp_path / "run", get_model("lenet300", **kwargs), arch="lenet300", kwargs=kwargs)
    out_file = str(tmp_path / "m.cnnz")
    code, out = run_cli(
        "compress", str(tmp_path / "run"), "--data", "synthetic", "-o", out_file, "--json",
        "-s", "prune.steps=1", "-s", "prune.epochs=1", "-s", "finetune.epochs=1",
    )  # fmt: skip
    assert code == 0, out
    summary = last_json(out)
    size = Path(out_file).stat().st_size
    assert summary["file_bytes"] == size
    assert summary["ratio"] == summary["dense_bytes"] / size
    assert summary["dense_bytes"] == 4 * sum(
        p.numel() for p in get_model("lenet300", **kwargs).parameters()
    )
    speed = summary["speed"]  # the file's model beside the dense run: same MACs, fewer nonzero
    assert speed["mac_ratio"] == 1.0 and speed["macs"][0] == speed["macs"][1]
    assert speed["nonzero_mac_ratio"] > 2 and speed["latency_ratio"] > 0

    code, out = run_cli("inspect", out_file, "--json")
    assert code == 0, out
    report = last_json(out)
    assert {"file_bytes", "dense_bytes", "ratio", "layers"} <= report.keys()
    fc1 = next(layer for layer in report["layers"] if layer["name"] == "fc1.weight")
    assert fc1["weights"] == 32 * 784 and fc1["kept"] < fc1["weights"]
    assert fc1["bytes"]["dense"] > fc1["bytes"]["pruned"] > fc1["bytes"]["shared"]
    code, text = run_cli("inspect", out_file)
    assert code == 0 and "fc1.weight" in text and "stages:" in text

    code, out = run_cli("profile", out_file, "--json")
    assert code == 0, out
    profiled = last_json(out)
    assert profiled["macs"] == speed["macs"][0] and profiled["nonzero_macs"] < profiled["macs"]

    code, out = run_cli("eval", out_file, "--data", "synthetic", "--json")
    assert code == 0 and last_json(out)["accuracy"] == summary["test_accuracy"]


def test_corrupt_file_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cnnz"
    bad.write_bytes(b"CNNZ" + bytes(40))
    code, out = run_cli("inspect", str(bad))
    assert code == 2 and out.strip().startswith("error:") and len(out.strip().splitlines()) == 1
