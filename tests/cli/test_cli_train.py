"""The train/eval/models verbs through the real CLI: JSON output, -k arguments, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cnnzip import data as cz_data
from cnnzip.cli import main
from cnnzip.cli.app import parse_kwargs
from cnnzip.errors import CnnzipError


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_models_lists_the_registry() -> None:
    code, out = run_cli("models", "--json")
    assert code == 0 and {"lenet300", "lenet5"} <= set(last_json(out)["models"])


def test_train_then_eval_agree(tmp_path: Path) -> None:
    run = str(tmp_path / "run")
    code, out = run_cli("train", "lenet300", "--data", "synthetic", "--epochs", "2",
                        "-k", "hidden=[64,32]", "-o", run, "--json")  # fmt: skip
    assert code == 0, out
    trained = last_json(out)
    assert 0.5 < trained["test_accuracy"] <= 1.0  # synthetic data is easy; chance is 0.1
    meta = json.loads(Path(run, "run.json").read_text())
    assert meta["kwargs"] == {"num_classes": 10, "in_features": 784, "hidden": [64, 32]}
    code, out = run_cli("eval", run, "--data", "synthetic", "--json")
    assert code == 0 and last_json(out)["accuracy"] == trained["test_accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "lenet9", "--data", "synthetic"], "Did you mean 'lenet5'"),
        (["train", "lenet5", "--data", "synthetic", "-k", "width=2"], "takes no argument width"),
        (["train", "lenet5", "--data", "cifar"], "unknown dataset"),
        (["train", "lenet5", "--data", "synthetic", "--epochs", "-1"], "not in the range 0<=x"),
        (["train", "lenet5", "--data", "synthetic", "-k", "oops"], "name=value"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], message: str) -> None:
    code, out = run_cli(*args)
    assert code == 2 and message in out and "Traceback" not in out


def test_eval_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    code, out = run_cli("eval", str(tmp_path), "--data", "synthetic")
    assert code == 2 and "not a run directory" in out


def test_parse_kwargs_reads_json_values() -> None:
    assert parse_kwargs(("a=1", "b=0.5", "c=true", "d=[1,2]", "e=simple")) == {
        "a": 1, "b": 0.5, "c": True, "d": [1, 2], "e": "simple",
    }  # fmt: skip
    with pytest.raises(CnnzipError):
        parse_kwargs(("1x=2",))


def test_a_small_folder_trains_and_val_size_is_checked(
    tmp_path: Path, idx_bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (600, 28, 28), dtype=np.uint8)
    labels = (np.arange(600) % 10).astype(np.uint8)
    for split in ("train", "t10k"):
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    val_sizes = []
    load = cz_data.load

    def spy(*args: Any, **kwargs: Any) -> cz_data.Dataset:
        data = load(*args, **kwargs)
        val_sizes.append(len(data.val))
        return data

    monkeypatch.setattr(cz_data, "load", spy)
    args = ["train", "lenet300", "--data", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
            "-k", "hidden=[8,4]", "-o", str(tmp_path / "run")]  # fmt: skip
    code, out = run_cli(*args)  # failed with "val_size=5000 must be in [0, 600)"
    assert code == 0, out
    code, out = run_cli(*args, "--val-size", "7")
    assert code == 0, out
    assert val_sizes == [60, 7]
    code, out = run_cli(*args, "--val-size", "600")
    assert code == 2 and out == "error: val_size=600 must be in [0, 600): the training split " \
        "has 600 images; leave val_size unset for a tenth of them\n"  # fmt: skip
