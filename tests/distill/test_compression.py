"""Distillation-aware compression: every stage that retrains learns from one shared teacher.

The references: a KD loss with soft weight 0 is plain cross-entropy, so it must
reproduce the plain recipe bit for bit; a cached teacher shared by all stages
runs once per distinct image whatever the number of stages and epochs.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import cnnzip
from cnnzip.binary.finetune import binarize_run
from cnnzip.cli import main
from cnnzip.data import Dataset, synthetic
from cnnzip.distill import KDLoss, Teachers
from cnnzip.models import get_model
from cnnzip.prune import growing_plan, iterative
from cnnzip.recipes import compress
from cnnzip.recipes.loader import parse_recipe
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, cross_entropy, evaluate, fit

HIDDEN = {"hidden": [32, 16]}
BATCHES = 512 // 128 + 1  # per epoch of toy_data: 4 training batches, 1 validation batch (128 rows)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(toy_data: Dataset) -> nn.Module:
    torch.manual_seed(1)
    model = get_model("mlp30")
    fit(model, toy_data, TrainConfig(epochs=2, batch_size=64), progress=False)
    return model


def _student(toy_data: Dataset) -> nn.Module:
    torch.manual_seed(0)
    model = get_model("lenet300", **HIDDEN)
    fit(model, toy_data, TrainConfig(epochs=1, batch_size=64), progress=False)
    return model


def _recipe(schedule: str = "gradual"):
    return parse_recipe(
        {
            "stages": [
                {"prune": {"sparsity": 0.8, "schedule": schedule, "steps": 2, "epochs": 1}},
                {"share": {"bits": 4}},
                {"finetune": {"epochs": 1, "lr": 1e-3}},
            ]
        }
    )


class Counted:
    """A loss that counts its calls: which stages trained with it, and how long."""

    def __init__(self, loss: Callable[..., torch.Tensor]) -> None:
        self.loss, self.calls = loss, 0

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.loss(logits, y, x)


def _rows_seen(model: nn.Module) -> list[int]:
    """A counter of the rows ``model`` is run on, through a forward hook."""
    seen = [0]
    model.register_forward_hook(
        lambda _m, inputs, _out: seen.__setitem__(0, seen[0] + len(inputs[0]))
    )
    return seen


@pytest.mark.parametrize("schedule", ["gradual", "iterative"])
def test_one_cached_teacher_serves_every_stage(toy_data, teacher, schedule, tmp_path) -> None:
    seen = _rows_seen(teacher)
    kd = KDLoss(Teachers([teacher], cache=True), T=4.0)
    loss = Counted(kd)
    arch = {"name": "lenet300", "kwargs": HIDDEN}
    model, recipe = _student(toy_data), _recipe(schedule)
    result = compress(model, toy_data, recipe, arch=arch, log=lambda _: None, loss_fn=loss)
    prune_epochs = {"gradual": 1, "iterative": 2}[schedule]  # 1 run, or 2 steps of 1 epoch
    assert loss.calls == (prune_epochs + 1) * BATCHES  # + 1 epoch of codebook fine-tuning
    # every stage trains and validates on the same rows: the teacher ran once on each
    assert seen[0] == kd.teachers.cached == len(toy_data.train) + len(toy_data.val)
    result.save(tmp_path / "m.cnnz")
    loaded = cnnzip.load(tmp_path / "m.cnnz")
    accuracy = evaluate(result.model, toy_data.test)["accuracy"]  # biases stored as float16
    assert evaluate(loaded, toy_data.test)["accuracy"] == accuracy > 0.3


def test_soft_weight_zero_is_the_plain_recipe_and_a_teacher_changes_it(toy_data, teacher) -> None:
    def run(loss_fn) -> dict[str, torch.Tensor]:
        model = _student(toy_data)
        compress(model, toy_data, _recipe(), log=lambda _: None, loss_fn=loss_fn)
        return model.state_dict()

    plain = run(cross_entropy)
    hard_only = run(KDLoss(teacher, T=4.0, soft_weight=0.0, hard_weight=1.0))
    distilled = run(KDLoss(teacher, T=4.0))
    assert all(torch.equal(plain[k], hard_only[k]) for k in plain)
    assert not all(torch.equal(plain[k], distilled[k]) for k in plain)


def test_iterative_and_binarize_retrain_with_the_given_loss(toy_data, teacher, tmp_path) -> None:
    spy = Counted(cross_entropy)
    model = _student(toy_data)
    plan = growing_plan(dict.fromkeys(["fc1.weight", "fc2.weight"], 0.5), 2)
    cfg = TrainConfig(epochs=1, batch_size=128)
    iterative(model, toy_data, plan, config=cfg, progress=False, loss_fn=spy)
    assert spy.calls == 2 * BATCHES
    spy.calls = 0
    save_run(tmp_path / "float", model, arch="lenet300", kwargs=HIDDEN)
    _, metrics = binarize_run(
        load_run(tmp_path / "float"),
        toy_data,
        tmp_path / "bin",
        mode="bwn",
        config=cfg,
        loss_fn=spy,
    )
    assert spy.calls == BATCHES and 0 <= metrics["test_accuracy"] <= 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A student and a teacher run on the CLI's --data synthetic (the same set)."""
    torch.set_num_threads(1)
    data, root = synthetic(seed=0), tmp_path_factory.mktemp("runs")
    paths = {}
    for name, arch, kwargs, seed in [
        ("student", "lenet300", HIDDEN, 0),
        ("teacher", "mlp30", {}, 1),
    ]:
        torch.manual_seed(seed)
        model = get_model(arch, **kwargs)
        fit(model, data, TrainConfig(epochs=1, batch_size=64), progress=False)
        paths[name] = str(root / name)
        save_run(paths[name], model, arch=arch, kwargs=kwargs, data="synthetic")
    return paths


def _cli(*args: str) -> dict:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_every_retraining_verb_takes_a_teacher(runs, tmp_path) -> None:
    kd = ["--teacher", runs["teacher"], "-T", "2", "--data", "synthetic", "--json"]
    pruned = _cli(
        "prune",
        runs["student"],
        "--sparsity",
        "0.5",
        "--steps",
        "1",
        "--epochs",
        "1",
        "-o",
        str(tmp_path / "p"),
        *kd,
    )
    assert pruned["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    small = ["-s", "prune.epochs=1", "-s", "prune.steps=2", "-s", "finetune.epochs=1"]
    out = str(tmp_path / "m.cnnz")
    packed = _cli("compress", runs["student"], *small, "-o", out, *kd)
    assert packed["meta"]["distill"] == {"teachers": [runs["teacher"]], "T": 2.0}
    assert packed["test_accuracy"] == evaluate(cnnzip.load(out), synthetic().test)["accuracy"]
    binary = _cli(
        "binarize",
        runs["student"],
        "--mode",
        "bwn",
        "--epochs",
        "1",
        "-o",
        str(tmp_path / "b"),
        *kd,
    )
    assert binary["test_accuracy"] == load_run(tmp_path / "b").meta["metrics"]["test_accuracy"]


def test_a_teacher_of_other_data_is_a_one_line_error(runs, tmp_path) -> None:
    model = get_model("mlp30")
    save_run(tmp_path / "t", model, arch="mlp30", kwargs={}, data="mnist")
    args = ["prune", runs["student"], "--sparsity", "0.5", "--teacher", str(tmp_path / "t")]
    result = CliRunner().invoke(main, [*args, "--data", "synthetic", "-o", str(tmp_path / "p")])
    assert (
        result.exit_code == 2 and "trained on mnist but the student on synthetic" in result.output
    )
