"""The training loop: it learns, is deterministic, resumes exactly; DDP matches one process."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.data import Dataset, Split
from cnnzip.errors import CnnzipError, RunError
from cnnzip.models import get_model
from cnnzip.train import Callback, TrainConfig, TrainState, evaluate, fit


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_model("lenet300", hidden=[32, 16])


def test_short_run_beats_chance_by_a_wide_margin(toy_data: Dataset) -> None:
    model = small_mlp()
    before = evaluate(model, toy_data.test)["accuracy"]
    result = fit(model, toy_data, TrainConfig(epochs=3, batch_size=32), progress=False)
    after = evaluate(model, toy_data.test)["accuracy"]
    assert before < 0.3 and after > 0.7  # chance is 0.1
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_weights(toy_data: Dataset) -> None:
    cfg = TrainConfig(epochs=1, batch_size=64, seed=5)
    a, b = small_mlp(), small_mlp()
    fit(a, toy_data, cfg, progress=False)
    fit(b, toy_data, cfg, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


class StopAfter(Callback):
    """Simulates an interruption: raise at the end of a given epoch (after its checkpoint? no:
    before it, so the checkpoint of the previous epoch is what a resume sees)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def dropout_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(64, 10))  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(
    toy_data: Dataset, tmp_path: Path, optimizer: str
) -> None:
    cfg = TrainConfig(epochs=4, batch_size=64, optimizer=optimizer, lr=0.01, seed=1)
    straight = dropout_mlp()  # dropout: the RNG state must be resumed too
    fit(straight, toy_data, cfg, progress=False)

    resumed = dropout_mlp()
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(resumed, toy_data, cfg, checkpoint=ckpt, callbacks=[StopAfter(2)], progress=False)
    fresh = dropout_mlp()  # a new process would rebuild the model from scratch
    result = fit(fresh, toy_data, cfg, checkpoint=ckpt, resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    for pa, pb in zip(straight.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_resume_from_a_corrupt_checkpoint_is_a_clear_error(
    toy_data: Dataset, tmp_path: Path
) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="cannot resume"):
        fit(small_mlp(), toy_data, TrainConfig(epochs=1), checkpoint=ckpt, resume=True)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"epochs": -1}, "epochs=-1"),
        ({"epochs": 10**9}, "epochs=1000000000"),
        ({"epochs": 2.5}, "epochs=2.5"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"eval_batch_size": -3}, "eval_batch_size=-3"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"lr": float("inf")}, "lr=inf"),
        ({"lr": 100.0}, "lr=100.0"),
        ({"lr": "0.1"}, "lr='0.1'"),
        ({"momentum": 1.0}, "momentum=1.0"),
        ({"weight_decay": -1e-4}, "weight_decay=-0.0001"),
        ({"weight_decay": float("nan")}, "weight_decay=nan"),
        ({"seed": -1}, "seed=-1"),
        ({"seed": 2**64}, "seed="),
        ({"optimizer": "lion"}, "optimizer='lion'"),
        ({"lr_schedule": "step"}, "lr_schedule='step'"),
    ],
)
def test_impossible_settings_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(CnnzipError, match=f"impossible training settings: {re.escape(message)}"):
        TrainConfig(**bad)


def test_every_bad_setting_is_named_in_one_error() -> None:
    with pytest.raises(CnnzipError, match=r"epochs=-1 .*; lr=nan"):
        TrainConfig(epochs=-1, lr=float("nan"))


def test_a_head_of_another_class_count_fails_before_training(toy_data: Dataset) -> None:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=[8, 8], num_classes=3)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CnnzipError, match=r"outputs \(3,\) values .* has 10 classes"):
        fit(model, toy_data, TrainConfig(epochs=1), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(CnnzipError, match=r"labels 0\.\.9 do not fit a model with 3 outputs"):
        evaluate(model, toy_data.test)


def test_a_model_for_other_inputs_fails_before_training(toy_data: Dataset) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))  # not 28x28 = 784 inputs
    with pytest.raises(CnnzipError, match=r"cannot take synthetic's inputs of shape \(1, 28, 28\)"):
        fit(model, toy_data, TrainConfig(epochs=1), progress=False)
    with pytest.raises(CnnzipError, match=r"cannot take inputs of shape \(1, 28, 28\): mat1"):
        evaluate(model, toy_data.test)


def test_a_loss_that_fails_on_the_data_fails_before_any_step(toy_data: Dataset) -> None:
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))  # built for other inputs

    def distill(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(logits, teacher(x))

    model = small_mlp()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CnnzipError, match=r"the training loss fails on synthetic: mat1"):
        fit(model, toy_data, TrainConfig(epochs=1), loss_fn=distill, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_labels_beyond_the_class_count_fail_before_training(toy_data: Dataset) -> None:
    bad = Split(x=toy_data.train.x, y=toy_data.train.y.clone())
    bad.y[-1] = -1
    data = dataclasses.replace(toy_data, train=bad)
    with pytest.raises(CnnzipError, match=r"labels -1\.\.9 do not fit"):
        fit(small_mlp(), data, TrainConfig(epochs=1), progress=False)


def test_an_unwritable_checkpoint_fails_before_training(toy_data: Dataset, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    model = small_mlp()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CnnzipError, match=r"cannot write .*file/run/checkpoint\.pt"):
        fit(model, toy_data, TrainConfig(epochs=1), checkpoint=blocker / "run" / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.slow
def test_two_process_ddp_gives_the_same_loss_curve_as_one(tmp_path: Path) -> None:
    """torchrun -m cnnzip train, 2 processes (gloo), against the same command in one process."""
    args = ["train", "lenet300", "--data", "synthetic", "--epochs", "3", "--batch-size", "64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port", str(_free_port()),
                    "-m", "cnnzip", *args, "-o", str(tmp_path / "ddp")],
                   check=True, env=env, capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "cnnzip", *args, "-o", str(tmp_path / "one")],
                   check=True, env=env, capture_output=True)  # fmt: skip
    curves = [
        [h["train_loss"] for h in json.loads((tmp_path / run / "run.json").read_text())["history"]]
        for run in ("ddp", "one")
    ]
    assert curves[0] == pytest.approx(curves[1], rel=1e-4)
    assert curves[0][-1] < curves[0][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
