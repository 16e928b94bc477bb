"""The prune and sensitivity verbs through the real CLI: JSON results, run directories, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.data import synthetic
from cnnzip.models import get_model
from cnnzip.prune import get_mask
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, fit

KWARGS = {"num_classes": 10, "in_features": 784, "hidden": [32, 16]}


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trained run on the synthetic data (the CLI's --data synthetic is the same set)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_model("lenet300", **KWARGS)
    fit(model, synthetic(seed=0), TrainConfig(epochs=2, batch_size=64), progress=False)
    path = tmp_path_factory.mktemp("runs") / "mlp"
    save_run(path, model, arch="lenet300", kwargs=KWARGS)
    return str(path)


@pytest.mark.slow
def test_prune_auto_writes_a_masked_run(run_dir: str, tmp_path: Path) -> None:
    out = str(tmp_path / "pruned")
    args = ["--sparsity", "0.9", "--auto", "--steps", "2", "--epochs", "1", "--json"]
    code, text = run_cli("prune", run_dir, *args, "-o", out, "--data", "synthetic")
    assert code == 0, text
    res = last_json(text)
    total = 784 * 32 + 32 * 16 + 16 * 10
    assert res["kept"] == total - round(0.9 * total)
    assert res["kept_fraction"] == pytest.approx(res["kept"] / total)
    assert [s["name"] for s in res["layers"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert sum(s["kept"] for s in res["layers"]) == res["kept"]
    assert [s["step"] for s in res["steps"]] == [0, 1, 2]
    assert res["test_accuracy"] > res["baseline_test_accuracy"] - 0.1  # survives 90% sparsity
    assert (Path(run_dir) / "sensitivity.json").is_file()  # --auto cached its curves there
    pruned = load_run(out)
    assert pruned.meta["prune"]["kept"] == res["kept"]
    assert pruned.meta["metrics"]["test_accuracy"] == res["test_accuracy"]
    assert int(get_mask(pruned.model, "fc1.weight").mask.sum()) == res["layers"][0]["kept"]
    code, text = run_cli("eval", out, "--data", "synthetic", "--json")
    assert code == 0 and last_json(text)["accuracy"] == res["test_accuracy"]


def test_prune_uniform_and_by_layer(run_dir: str, tmp_path: Path) -> None:
    code, text = run_cli("prune", run_dir, "--sparsity", "0.5", "--layer", "fc2", "-o",
                         str(tmp_path / "p"), "--data", "synthetic", "--steps", "1",
                         "--epochs", "0", "--json")  # fmt: skip
    assert code == 0, text
    (layer,) = last_json(text)["layers"]
    assert layer["name"] == "fc2.weight" and layer["kept"] == 256


def test_prune_to_a_byte_budget(run_dir: str, tmp_path: Path) -> None:
    # 58 biases stay dense (232 B); 5 B per kept weight: room for exactly 2576 of 25760
    budget = 4 * 58 + 5 * 2576
    args = ["--budget", str(budget), "--steps", "1", "--epochs", "0", "--json"]
    code, text = run_cli("prune", run_dir, *args, "-o", str(tmp_path / "b"), "--data", "synthetic")
    assert code == 0, text
    assert last_json(text)["kept"] == 2576


def test_prune_to_a_maximum_drop(run_dir: str, tmp_path: Path) -> None:
    code, text = run_cli("prune", run_dir, "--max-drop", "1", "-o", str(tmp_path / "d"),
                         "--data", "synthetic", "--epochs", "1", "--json")  # fmt: skip
    assert code == 0, text
    res = last_json(text)
    steps = res["steps"]
    assert steps[-1]["val_accuracy"] >= steps[0]["val_accuracy"] - 0.01
    assert res["kept_fraction"] <= 0.5  # the first point of the path (50%) costs nothing here
    assert res["kept_fraction"] == pytest.approx(steps[-1]["kept_fraction"])


def test_sensitivity_prints_the_table_and_writes_curves_and_plot(
    run_dir: str, tmp_path: Path
) -> None:
    png = tmp_path / "s.png"
    code, text = run_cli("sensitivity", run_dir, "--data", "synthetic", "--ratios", "0.5,0.9",
                         "--plot", str(png), "--json")  # fmt: skip
    assert code == 0, text
    res = last_json(text)
    assert [c["ratios"] for c in res["layers"]] == [[0.0, 0.5, 0.9]] * 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(Path(res["curves"]).read_text())["curves"][0]["name"] == "fc1.weight"
    code, text = run_cli("sensitivity", run_dir, "--data", "synthetic", "--ratios", "0.5,0.9",
                         "--plot", str(png))  # fmt: skip
    assert code == 0 and "fc3.weight" in text and "0.9" in text.splitlines()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sparsity", "1.0"], r"sparsity must be in \[0, 1\)"),
        (["--sparsity", "-0.2", "--auto"], r"sparsity must be in \[0, 1\)"),
        (["--sparsity", "0.5", "--layer", "conv7"], "unknown or unprunable layer.*conv7"),
        ([], "exactly one of --sparsity, --max-drop, --budget"),
        (["--sparsity", "0.5", "--budget", "1000"], "exactly one of"),
        (["--budget", "10"], "cannot hold"),
    ],
)
def test_prune_errors(run_dir: str, tmp_path: Path, args: list[str], message: str) -> None:
    code, text = run_cli("prune", run_dir, *args, "-o", str(tmp_path / "x"), "--data", "synthetic")
    assert code == 2
    assert text.startswith("error: ") and len(text.strip().splitlines()) == 1
    assert re.search(message, text), text


def test_a_directory_that_is_not_a_run(tmp_path: Path) -> None:
    for verb in (["prune", str(tmp_path), "--sparsity", "0.5", "-o", str(tmp_path / "o")],
                 ["sensitivity", str(tmp_path)]):  # fmt: skip
        code, text = run_cli(*verb, "--data", "synthetic")
        assert code == 2 and "is not a run directory" in text
