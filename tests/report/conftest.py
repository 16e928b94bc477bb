"""A tiny compressed file and the dense run it names, for the report's tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import cnnzip as cz
from cnnzip.prune import one_shot, prunable
from cnnzip.quantize import share_weights

KWARGS = {"hidden": [16, 8]}
META = {
    "baseline_test_accuracy": 0.5,
    "test_accuracy": 0.45,
    "stages": [{"stage": "prune", "seconds": 1.5, "val_accuracy": 0.4, "kept_fraction": 0.2}],
}
CURVES = {
    "key": "x",
    "curves": [{"name": "fc1.weight", "weights": 12544, "ratios": [0.0, 0.5, 0.9],
                "accuracy": [0.5, 0.45, 0.2], "loss": [1.0, 1.1, 2.0]}],
}  # fmt: skip


@pytest.fixture
def compressed(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module]:
    """(the .cnnz, its dense run with sensitivity curves, the shared model it holds)."""
    torch.manual_seed(0)
    dense = cz.models.get_model("lenet300", **KWARGS)
    run = tmp_path / "run"
    cz.save_run(run, dense, arch="lenet300", kwargs=KWARGS)
    (run / "sensitivity.json").write_text(json.dumps(CURVES))
    model = copy.deepcopy(dense)
    one_shot(model, {t: 0.8 for t in prunable(model)})
    share_weights(model, bits={"linear": 3})
    path = tmp_path / "m.cnnz"
    arch = {"name": "lenet300", "kwargs": KWARGS}
    cz.codec.save(path, model, arch=arch, meta={**META, "source": str(run)})
    return path, run, model
