"""The CLI's shared pieces: one declaration of the training options with each verb's
defaults, one ``-o``, ``compress`` writing its file once, verbs short enough to read."""

from __future__ import annotations

import ast
import importlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from click.testing import CliRunner

import cnnzip.cli
from cnnzip import data as cz_data
from cnnzip import prune as P
from cnnzip.cli import compress as cli_compress
from cnnzip.cli import main
from cnnzip.cli.options import train_options
from cnnzip.codec import load as load_cnnz
from cnnzip.models import get_model
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, evaluate

# (epochs, batch size, lr, seed) of each verb that trains, as before the options were shared
DEFAULTS = {
    "train": (10, 128, 1e-3, 0),
    "distill": (10, 128, 2e-3, 0),
    "prune": (3, 128, 1e-3, 0),
    "binarize": (4, 128, 1e-3, 0),
}


@pytest.mark.parametrize("verb", DEFAULTS)
def test_each_verb_keeps_its_training_defaults(verb: str) -> None:
    params = {p.name: p.default for p in main.commands[verb].params}
    assert tuple(params[k] for k in ("epochs", "batch_size", "lr", "seed")) == DEFAULTS[verb]


def test_train_options_build_the_config_over_the_verbs_base() -> None:
    seen = []

    @click.command()
    @train_options(epochs=3, base=P.RETRAIN)
    def verb(cfg: TrainConfig) -> None:
        seen.append(cfg)

    assert CliRunner().invoke(verb, []).exit_code == 0
    assert CliRunner().invoke(verb, ["--lr", "0.01", "--seed", "7"]).exit_code == 0
    assert seen == [replace(P.RETRAIN, epochs=3), replace(P.RETRAIN, epochs=3, lr=0.01, seed=7)]


def test_train_saves_the_config_its_options_give(tmp_path: Path) -> None:
    args = ["--epochs", "1", "--batch-size", "4", "--lr", "0.01", "--seed", "3"]
    args += ["--optimizer", "sgd", "--weight-decay", "0.001", "--lr-schedule", "constant"]
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", "lenet300", "--data", "synthetic", "--limit", "16", *args, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    want = TrainConfig(epochs=1, batch_size=4, lr=0.01, seed=3, optimizer="sgd",
                       weight_decay=0.001, lr_schedule="constant")  # fmt: skip
    assert load_run(out).meta["config"] == vars(want)


def test_every_verb_that_writes_declares_o_one_way() -> None:
    outs = {
        name: next(p for p in command.params if p.name == "out")
        for name, command in main.commands.items()
        if any(p.name == "out" for p in getattr(command, "params", []))
    }
    assert set(outs) == {
        "train", "distill", "prune", "binarize", "compress", "survey", "export", "report"
    }  # fmt: skip
    assert all(p.opts == ["-o", "--out"] for p in outs.values())
    required = {name for name, p in outs.items() if p.required}
    assert required == {"prune", "binarize", "compress", "export"}


def test_compress_writes_its_file_once_and_loads_the_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"save": 0, "load_run": 0}
    pipeline = importlib.import_module("cnnzip.recipes.pipeline")

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipeline, "save_cnnz", counted("save", pipeline.save_cnnz))
    monkeypatch.setattr(cli_compress, "load_run", counted("load_run", cli_compress.load_run))
    torch.manual_seed(0)
    kwargs = {"hidden": [16, 8]}
    save_run(tmp_path / "run", get_model("lenet300", **kwargs), arch="lenet300", kwargs=kwargs)
    path = tmp_path / "m.cnnz"
    result = CliRunner().invoke(main, [
        "compress", str(tmp_path / "run"), "--data", "synthetic", "-o", str(path), "--json",
        "-s", "prune.steps=1", "-s", "prune.epochs=1", "-s", "finetune.epochs=1",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls == {"save": 1, "load_run": 1}
    summary = json.loads(result.output.strip().splitlines()[-1])
    measured = evaluate(load_cnnz(path), cz_data.load("synthetic").test)["accuracy"]
    assert summary["test_accuracy"] == measured  # the file's accuracy, though not re-measured
    assert summary["meta"]["file_test_accuracy"] == round(measured, 5)


def test_no_function_in_the_cli_is_over_60_lines() -> None:
    long = []
    for path in sorted(Path(cnnzip.cli.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.name}")
    assert long == []
