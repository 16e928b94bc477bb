"""Run directories: weights and weight transforms round-trip; bad directories are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.errors import RunError
from cnnzip.models import get_model
from cnnzip.quantize import share_weights
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
    (tmp_path / "run.json").write_text('{"format": "cnnzip-run", "version": 1, "arch": "lenet5"}')
    with pytest.raises(RunError, match="cannot load the weights"):
        load_run(tmp_path)


def _shared_run(path: Path) -> dict[str, Any]:
    """A saved lenet300 with a shared fc2 (a codebook of k=4), and its run.json."""
    model = get_model("lenet300", hidden=[8, 4])
    share_weights(model, ["fc2.weight"], bits={"linear": 2})
    save_run(path, model, arch="lenet300", kwargs={"hidden": [8, 4]})
    return json.loads((path / "run.json").read_text())


def _shared_spec(**spec: Any) -> list[dict[str, Any]]:
    return [{"target": "fc2.weight", "kind": "shared", "spec": {"k": 4, "masked": False, **spec}}]


def _mask_spec(**spec: Any) -> dict[str, Any]:
    return {"target": "fc1.weight", "kind": "mask", "spec": spec}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: [m], "must hold a JSON object, not list"),
        (lambda m: None, "must hold a JSON object, not NoneType"),
        (lambda m: {**m, "arch": 5}, "field arch must be a model name, got 5"),
        (lambda m: {**m, "kwargs": [1, 2]}, r"field kwargs must be an object, got \[1, 2\]"),
        (lambda m: {**m, "kwargs": {"num_classes": -1}}, "arch/kwargs: .*num_classes=-1"),
        (lambda m: {**m, "kwargs": {"in_features": 2**62}}, "arch/kwargs: .*in_features"),
        (lambda m: {**m, "kwargs": {"hidden": [100_000, 100_000]}}, "arch/kwargs: .*over the cap"),
        (lambda m: {**m, "transforms": "abc"}, "field transforms must be a list"),
        (lambda m: {**m, "transforms": [{"kind": "mask"}]}, "field transforms must be a list"),
        (
            lambda m: {**m, "transforms": [{**m["transforms"][0], "spec": {"k": [1]}}]},
            "field transforms must be a list",
        ),
        (
            lambda m: {**m, "transforms": [{**m["transforms"][0], "target": "fc9.weight"}]},
            "field transforms: target 'fc9.weight' is not a weight of the model",
        ),
        (
            lambda m: {**m, "transforms": [{**m["transforms"][0], "target": "fc2.nothing"}]},
            "field transforms: target 'fc2.nothing' is not a weight",
        ),
        (
            lambda m: {**m, "transforms": [{**m["transforms"][0], "target": "fc1"}]},
            "target 'fc1' is not a weight of the model; name one as module.tensor",
        ),
        (
            lambda m: {**m, "version": 99},
            "field version is 99; this cnnzip reads run.json version 1",
        ),
        (lambda m: {k: v for k, v in m.items() if k != "version"}, "field version is None"),
        (lambda m: {**m, "version": True}, "field version is True"),
        (lambda m: {**m, "transforms": _shared_spec(k=-5)}, "field transforms: RuntimeError"),
        (
            lambda m: {**m, "transforms": [*m["transforms"], _mask_spec(k=-5)]},
            "field transforms .* is not what its kinds take",
        ),
        (lambda m: {**m, "transforms": _shared_spec(masked=1)}, "is not what its kinds take"),
        (lambda m: {**m, "transforms": _shared_spec(k=2**40)}, "does not fit the model"),
        (lambda m: {**m, "transforms": []}, "does not fit the model.*unexpected"),
    ],
)
def test_bad_run_json_fields_are_run_errors_naming_the_field(
    tmp_path: Path, change: Any, message: str
) -> None:
    meta = _shared_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps(change(meta)))
    with pytest.raises(RunError, match=message) as info:
        load_run(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('"arch": "lenet300"', '"arch": "lenet5", "arch": "lenet300"', "arch"),
        ('"k": 4', '"k": 4, "k": 4', "k"),
    ],
)
def test_a_key_given_twice_in_run_json_is_refused(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    _shared_run(tmp_path)
    text = (tmp_path / "run.json").read_text()
    compact = json.dumps(json.loads(text), sort_keys=True)  # one line, so `old` is found
    assert old in compact
    (tmp_path / "run.json").write_text(compact.replace(old, new))
    with pytest.raises(RunError, match=f"field '{key}' is given twice in one object"):
        load_run(tmp_path)


def test_a_valid_shared_run_still_loads(tmp_path: Path) -> None:
    _shared_run(tmp_path)
    assert load_run(tmp_path).model.fc2.parametrizations.weight[0].codebook.shape == (4,)


def test_cli_reports_a_bad_run_json_in_one_line(tmp_path: Path) -> None:
    meta = _shared_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**meta, "kwargs": {"hidden": [-5, 10]}}))
    result = CliRunner().invoke(main, ["profile", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "run.json: fields arch/kwargs: model 'lenet300': hidden=[-5, 10]" in result.output
