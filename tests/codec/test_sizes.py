"""One size model: what profile reports as stored is what inspect reports for the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnzip.binary import convert
from cnnzip.codec import encode_stream, inspect, save
from cnnzip.codec.bits import write_varints
from cnnzip.codec.sizes import binary_bytes, coder_bytes, fixed_bytes, shared_bytes
from cnnzip.models import get_model
from cnnzip.profiling.storage import weight_bytes
from cnnzip.prune import Mask
from cnnzip.quantize import share_weights
from cnnzip.transforms import add_transform


def _stage_bytes(path, stage: str) -> dict[str, int]:
    return {layer["name"]: layer["bytes"][stage] for layer in inspect(path).layers}


def _weight_only(model: torch.nn.Module, name: str) -> int:
    """profile's bytes of a layer's weight: its weight bytes less its dense float32 bias."""
    layer = model.get_submodule(name)
    return weight_bytes(layer) - 4 * layer.bias.numel()


@pytest.mark.parametrize("stage", ["pruned", "shared"])
def test_profile_and_inspect_agree(tmp_path, stage: str) -> None:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=(30, 20))
    for name in ("fc1", "fc2"):
        w = model.get_submodule(name).weight.detach()
        add_transform(model, f"{name}.weight", Mask(w.abs() > w.abs().quantile(0.7)))
    if stage == "shared":
        share_weights(model, bits={"linear": 3})
    path = tmp_path / "m.cnnz"
    save(path, model, arch={"name": "lenet300", "kwargs": {"hidden": [30, 20]}})
    stored = _stage_bytes(path, stage)
    for name in ("fc1", "fc2"):
        assert _weight_only(model, name) == stored[f"{name}.weight"]


def test_binary_profile_and_inspect_agree(tmp_path) -> None:
    torch.manual_seed(0)
    model = convert(get_model("lenet5"), "bwn", log=None)
    save(tmp_path / "b.cnnz", model, arch={"name": "lenet5", "kwargs": {}})
    stored = _stage_bytes(tmp_path / "b.cnnz", "shared")
    conv2 = model.get_submodule("conv2")
    assert _weight_only(model, "conv2") == stored["conv2.weight"]
    assert stored["conv2.weight"] == binary_bytes(conv2.weight.numel(), conv2.weight.shape[0])


def test_shared_bytes_formula() -> None:
    # 10 kept weights at 3 bits (k=5): 30 bits -> 4 bytes; 7 index bytes; 5 float32 centres
    assert shared_bytes(10, 5, 7) == 4 + 7 + 20
    assert fixed_bytes(9, 1) == 2


def test_coder_estimates_are_exact_for_raw_and_huffman() -> None:
    symbols = np.random.default_rng(0).choice(6, size=3000, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    counts = np.bincount(symbols, minlength=6)
    table = len(write_varints(np.concatenate([[6], counts])))
    estimate = coder_bytes(counts, 6, table)
    for coder in ("raw", "huffman"):
        assert encode_stream(symbols, 6, coder).nbytes == estimate[coder]
    rans = encode_stream(symbols, 6, "rans").nbytes
    assert abs(rans - estimate["rans"]) <= 0.01 * rans


def test_a_layer_kept_whole_has_no_index_in_either_figure(tmp_path) -> None:
    """Shared without a mask, or pruned with a mask of all ones: the codec writes a
    constant gap stream (0 bytes), so neither profile nor inspect counts indices."""
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=(30, 20))
    add_transform(model, "fc2.weight", Mask(torch.ones(20, 30, dtype=torch.bool)))
    share_weights(model, ["fc1.weight"], bits={"fc1.weight": 4})
    save(tmp_path / "w.cnnz", model, arch={"name": "lenet300", "kwargs": {"hidden": [30, 20]}})
    stages = {layer["name"]: layer["bytes"] for layer in inspect(tmp_path / "w.cnnz").layers}
    assert (
        _weight_only(model, "fc1")
        == stages["fc1.weight"]["shared"]
        == shared_bytes(784 * 30, 16, 0)
    )
    assert _weight_only(model, "fc2") == stages["fc2.weight"]["pruned"] == 4 * 20 * 30
