"""``cnnzip distill`` end to end on the synthetic data, and its clear errors."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.data import synthetic
from cnnzip.models import get_model
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, evaluate, fit


def _teacher(path, seed: int, data: str = "synthetic") -> None:
    torch.manual_seed(seed)
    model = get_model("mlp30")
    fit(model, synthetic(), TrainConfig(epochs=1, batch_size=64, seed=seed), progress=False)
    save_run(path, model, arch="mlp30", kwargs={}, data=data)


def test_distill_from_an_ensemble_writes_a_run(tmp_path):
    _teacher(tmp_path / "t1", 0)
    _teacher(tmp_path / "t2", 1)
    args = ["distill", "--teacher", str(tmp_path / "t1"), "--teacher", str(tmp_path / "t2")]
    args += ["--student", "mlp", "-k", "hidden=[16]", "--data", "synthetic", "--epochs", "1"]
    args += ["-T", "2", "-o", str(tmp_path / "s"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    run = load_run(tmp_path / "s")
    test = evaluate(run.model, synthetic().test)
    assert report["test_accuracy"] == test["accuracy"] > 0.5
    assert 0.5 < report["teacher_test_accuracy"] <= 1.0
    assert run.kwargs["hidden"] == [16] and run.meta["distill"]["T"] == 2.0
    assert run.meta["distill"]["teachers"] == [str(tmp_path / "t1"), str(tmp_path / "t2")]


def test_missing_teacher_and_other_data_are_one_line_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["distill", "--student", "mlp30", "--data", "synthetic"])
    assert result.exit_code == 2 and "error: distill needs a teacher" in result.output
    _teacher(tmp_path / "t", 0, data="mnist")
    args = ["distill", "--teacher", str(tmp_path / "t"), "--student", "mlp30", "--data"]
    result = runner.invoke(main, [*args, "synthetic", "--epochs", "1"])
    assert result.exit_code == 2
    assert "trained on mnist but the student on synthetic" in result.output
