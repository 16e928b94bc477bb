"""Run directories: weights and weight transforms round-trip; bad directories are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnzip.errors import RunError
from cnnzip.models import get_model
from cnnzip.runs import load_run, save_run
from cnnzip.transforms import WeightTransform, add_transform, register_transform


@register_transform
class _Scale(WeightTransform):
    """A toy transform with a buffer, standing in for masks and codebooks."""

    kind = "test-scale"

    def __init__(self, shape: torch.Size, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("scale", torch.ones(shape))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.scale * self.factor

    def spec(self) -> dict[str, Any]:
        return {"factor": self.factor}

    @classmethod
    def from_spec(cls, weight: torch.Tensor, spec: dict[str, Any]) -> _Scale:
        return cls(weight.shape, spec["factor"])


def test_weights_round_trip_exactly(tmp_path: Path) -> None:
    model = get_model("lenet5")
    save_run(tmp_path, model, arch="lenet5", kwargs={}, metrics={"test_accuracy": 0.5})
    run = load_run(tmp_path)
    assert run.arch == "lenet5" and run.meta["metrics"]["test_accuracy"] == 0.5
    for (ka, va), (kb, vb) in zip(model.state_dict().items(), run.model.state_dict().items(),
                                  strict=True):  # fmt: skip
        assert ka == kb and torch.equal(va, vb)
    assert (tmp_path / "model.safetensors").read_bytes()[:8] != b"PK\x03\x04"  # not a zip/pickle


def test_transforms_are_rebuilt_before_weights_load(tmp_path: Path) -> None:
    model = get_model("lenet300", hidden=[8, 4])
    t = _Scale(model.fc2.weight.shape, factor=2.0)
    t.scale.bernoulli_(0.5)
    add_transform(model, "fc2.weight", t)
    save_run(tmp_path, model, arch="lenet300", kwargs={"hidden": [8, 4]})
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["transforms"] == [{"target": "fc2.weight", "kind": "test-scale",
                                   "spec": {"factor": 2.0}}]  # fmt: skip
    loaded = load_run(tmp_path).model
    assert torch.equal(loaded.fc2.weight, model.fc2.weight)
    x = torch.randn(3, 784)
    assert torch.equal(loaded(x), model(x))


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a run directory"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{oops")
    with pytest.raises(RunError, match="corrupt"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text('{"format": "cnnzip-run", "arch": "lenet5"}')
    with pytest.raises(RunError, match="cannot load the weights"):
        load_run(tmp_path)
