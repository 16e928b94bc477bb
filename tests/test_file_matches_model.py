"""The compressed model is exactly its file: ``cnnzip.load`` gives outputs identical
(``torch.equal``) to ``result.model``, for a zoo model and for a hand-written one, with
the encode stage's float16 dense tensors and a BatchNorm variance float16 cannot hold."""

from __future__ import annotations

import torch
import torch.nn as nn

import cnnzip
from cnnzip.data import synthetic
from cnnzip.recipes import parse_recipe
from cnnzip.train import evaluate


class SmallCNN(nn.Module):
    """Not in the zoo: Conv-BN-ReLU twice, pooled, one Linear; colour 16x16 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, stride=2), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))  # (N, 8, 16, 16)
        x = torch.relu(self.bn2(self.conv2(x)))  # (N, 16, 7, 7)
        return self.fc(x.mean((2, 3)))  # (N, 10)


def _recipe(ratios: dict[str, float]) -> object:
    """Prune (fixed ratios: no sensitivity sweep), share, fine-tune, encode with the
    default float16 dense tensors: a whole recipe in about a second."""
    return parse_recipe(
        {
            "stages": [
                {"prune": {"ratios": ratios, "steps": 1, "epochs": 1, "batch_size": 64}},
                {"share": {"bits": 4}},
                {"finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 64}},
                {"encode": {}},
            ]
        }
    )


def _assert_same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_zoo_model_file_equals_the_result(tmp_path) -> None:
    torch.manual_seed(0)
    data = synthetic(n_train=128, n_val=64, n_test=64, seed=1)
    ratios = {"conv1": 0.3, "conv2": 0.5, "fc1": 0.8, "fc2": 0.3}
    result = cnnzip.compress(
        cnnzip.models.get_model("lenet5"), data, _recipe(ratios),
        arch={"name": "lenet5", "kwargs": {}}, log=lambda _: None,
    )  # fmt: skip
    result.save(tmp_path / "m.cnnz")
    bias = result.model.fc2.bias
    assert torch.equal(bias.half().float(), bias)  # rounded as stored, not kept float32
    x = data.test.x[:32]
    _assert_same_outputs(cnnzip.load(tmp_path / "m.cnnz"), result.model, x)
    fresh = cnnzip.load(tmp_path / "m.cnnz", model=cnnzip.models.get_model("lenet5"))
    _assert_same_outputs(fresh, result.model, x)
    assert evaluate(fresh, data.test)["accuracy"] == result.meta["test_accuracy"]


def test_own_model_with_batchnorm_file_equals_the_result(tmp_path) -> None:
    torch.manual_seed(0)
    data = synthetic(n_train=128, n_val=64, n_test=64, shape=(3, 16, 16), seed=2)
    model = SmallCNN()
    model.bn1.running_var[0] = 1e6  # 0.9**4 of it survives 4 training batches: > 65504
    ratios = {"conv1": 0.2, "conv2": 0.5, "fc": 0.5}
    result = cnnzip.compress(model, data, _recipe(ratios), log=lambda _: None)
    result.save(tmp_path / "own.cnnz")
    loaded = cnnzip.load(tmp_path / "own.cnnz", model=SmallCNN())
    _assert_same_outputs(loaded, result.model, data.test.x[:32])
    var = loaded.bn1.running_var
    assert var[0] > 65504 and torch.isfinite(var).all()  # float16 would make it inf
    assert torch.equal(var, result.model.bn1.running_var)
    assert evaluate(loaded, data.test)["accuracy"] == result.meta["test_accuracy"]
