"""``compress(work_dir=...)``: a compression killed in a retraining stage continues
from its last epoch's checkpoint and writes the same tensors an uninterrupted one does
(the files differ only in the stages' timings in their metadata)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnzip.codec import decode_state
from cnnzip.codec.container import unpack
from cnnzip.models import get_model
from cnnzip.recipes import RecipeError, compress, parse_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = [
    {
        "prune": {
            "sparsity": 0.8,
            "schedule": "gradual",
            "steps": 4,
            "epochs": 2,
            "lr": 1e-3,
            "batch_size": 128,
        }
    },
    {"share": {"bits": 4}},
    {"finetune": {"epochs": 2, "lr": 1e-3, "batch_size": 128}},
    {"encode": {"dense_dtype": "float32"}},
]
ARCH = {"name": "lenet300", "kwargs": {"hidden": [32, 16]}}


class _Killed(Exception):
    """Stands in for a kill in the middle of an epoch."""


class _Loss:
    """Cross-entropy that counts its calls (training and validation batches) and raises
    on the ``kill_at``-th."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.calls, self.kill_at = 0, kill_at

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.kill_at:
            raise _Killed
        return F.cross_entropy(logits, y)


def _compressed(model, data, out: Path, **kwargs) -> dict[str, torch.Tensor]:
    result = compress(
        model, data, parse_recipe({"stages": STAGES}), arch=ARCH, log=lambda _: None, **kwargs
    )
    result.save(out)
    return decode_state(unpack(out.read_bytes()))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "left"), [(6, 15), (18, 5)], ids=["in prune epoch 2", "in finetune epoch 2"]
)
def test_a_killed_compression_resumes_to_the_same_file(toy_data, tmp_path, kill_at, left) -> None:
    """512 images at batch 128 are 4 steps an epoch, plus one validation batch: 5 loss
    calls an epoch, 20 in all. Call 6 is the prune stage's second epoch's first (the
    rerun does that epoch and fine-tuning's two), call 18 falls in fine-tuning's second
    epoch (the rerun does that one)."""
    torch.manual_seed(0)
    trained = get_model("lenet300", hidden=(32, 16))
    whole = _compressed(copy.deepcopy(trained), toy_data, tmp_path / "whole.cnnz")
    work = tmp_path / "work"
    with pytest.raises(_Killed):
        compress(
            copy.deepcopy(trained),
            toy_data,
            parse_recipe({"stages": STAGES}),
            arch=ARCH,
            log=lambda _: None,
            loss_fn=_Loss(kill_at),
            work_dir=work,
        )
    assert sorted(p.name for p in work.glob("stage*.pt"))  # at least one epoch kept
    counted = _Loss()
    again = _compressed(
        copy.deepcopy(trained), toy_data, tmp_path / "again.cnnz", work_dir=work, loss_fn=counted
    )
    assert counted.calls == left  # resumed, not restarted
    assert again.keys() == whole.keys()
    assert all(torch.equal(again[k], whole[k]) for k in whole)


def test_a_work_folder_of_another_recipe_is_refused(toy_data, tmp_path) -> None:
    model = get_model("lenet300", hidden=(32, 16))
    quick = parse_recipe({"stages": [{"finetune": {"epochs": 0}}]})
    compress(model, toy_data, quick, log=lambda _: None, work_dir=tmp_path)
    other = parse_recipe({"stages": [{"finetune": {"epochs": 0, "lr": 1e-3}}]})
    with pytest.raises(RecipeError, match="another recipe"):
        compress(model, toy_data, other, log=lambda _: None, work_dir=tmp_path)


def test_a_work_folder_of_another_starting_model_is_refused(toy_data, tmp_path) -> None:
    """Same recipe, other weights (a retrained base): resuming would continue the other
    model's training and write its weights into this file, so the folder is refused."""
    quick = parse_recipe({"stages": [{"finetune": {"epochs": 0}}]})
    torch.manual_seed(0)
    first = get_model("lenet300", hidden=(32, 16))
    retrained = copy.deepcopy(first)
    compress(first, toy_data, quick, log=lambda _: None, work_dir=tmp_path)
    with torch.no_grad():
        retrained.fc1.weight.mul_(3.0)
    with pytest.raises(RecipeError, match="checkpoints of a model of other weights"):
        compress(retrained, toy_data, quick, log=lambda _: None, work_dir=tmp_path)
