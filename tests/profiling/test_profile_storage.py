"""Weight bytes at the layer's actual storage: sparse, codebook and binary, against hand counts.

The storage is the .cnnz layout before entropy coding (see cnnzip.profiling.storage).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

import cnnzip
from cnnzip.binary import BWN, BinActiv, XnorConv2d, XnorLinear, convert
from cnnzip.models import get_model
from cnnzip.profiling import weight_bytes
from cnnzip.prune import set_mask
from cnnzip.quantize import share_layer
from cnnzip.transforms import add_transform


def _index_bytes(keep: torch.Tensor) -> int:
    """Deep Compression's relative indices by hand: each kept weight is one p-bit entry
    (the gap since the previous one); a gap of 2**p - 1 or more first takes one filler
    entry per 2**p - 1 skipped; p = 1..16, whichever is smallest."""
    positions = np.flatnonzero(keep.reshape(-1).numpy())
    gaps = np.diff(positions, prepend=-1) - 1
    bits = min(p * (len(gaps) + int((gaps // (2**p - 1)).sum())) for p in range(1, 17))
    return math.ceil(bits / 8)


def test_index_bytes_by_hand() -> None:
    """Kept at 0, 3, 19 of 20: gaps 0, 2, 15; p=3 (fillers: 2 of 7) and p=5 (none) both
    take 15 bits -> 2 bytes; with 3 float32 values, 14 bytes."""
    keep = torch.zeros(1, 20, dtype=torch.bool)
    keep[0, [0, 3, 19]] = True
    layer = nn.Linear(20, 1, bias=False)
    set_mask(layer, "weight", keep)
    assert weight_bytes(layer) == 3 * 4 + 2


def test_pruned_lenet300_bytes_equal_a_hand_count() -> None:
    torch.manual_seed(0)
    model = get_model("lenet300")
    dense = cnnzip.profile(model, (784,))
    masks = {}
    for name, density in (("fc1", 0.02), ("fc2", 0.1), ("fc3", 0.5)):  # 0.02: long gaps
        shape = model.get_submodule(name).weight.shape
        masks[name] = torch.rand(shape) < density
        set_mask(model, f"{name}.weight", masks[name])
    report = cnnzip.profile(model, (784,))
    rows = {r.name: r for r in report.layers}
    for name, keep in masks.items():
        bias = model.get_submodule(name).bias.numel()
        expected = 4 * int(keep.sum()) + _index_bytes(keep) + 4 * bias
        assert rows[name].weight_bytes == expected
        assert rows[name].params == dense.layers[[r.name for r in dense.layers].index(name)].params
    assert report.weight_bytes == sum(rows[n].weight_bytes for n in masks)
    assert report.weight_bytes < dense.weight_bytes / 10


def test_shared_layer_with_5_bits() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 30, bias=False))
    share_layer(model, "0.weight", 5)
    assert weight_bytes(model[0]) == math.ceil(1200 * 5 / 8) + 4 * 32  # 750 + codebook

    keep = torch.rand(30, 40) < 0.3
    pruned = nn.Sequential(nn.Linear(40, 30, bias=False))
    set_mask(pruned, "0.weight", keep)
    share_layer(pruned, "0.weight", 5)  # the mask moves into the SharedWeight
    kept = int(keep.sum())
    expected = math.ceil(kept * 5 / 8) + _index_bytes(keep) + 4 * 32
    assert cnnzip.profile(pruned, (40,)).weight_bytes == expected


def test_bwn_conv_is_one_bit_a_weight_plus_alpha() -> None:
    model = nn.Sequential(nn.Conv2d(3, 5, 3))  # 135 weights: 17 bytes of bits
    add_transform(model, "0.weight", BWN())
    report = cnnzip.profile(model, (3, 8, 8))
    assert report.layers[0].weight_bytes == 17 + 4 * 5 + 4 * 5  # bits, alpha, float32 bias
    assert report.layers[0].macs == 5 * 6 * 6 * 27


def test_binactiv_is_counted() -> None:
    report = cnnzip.profile(nn.Sequential(nn.Linear(8, 6), BinActiv()), (8,))
    assert report.uncounted == []
    assert (report.layers[1].kind, report.layers[1].macs, report.layers[1].ops) == ("act", 0, 6)


def test_xnor_blocks_count_their_macs_and_elementwise_ops() -> None:
    conv = XnorConv2d(4, 8, 3, padding=1)
    linear = XnorLinear(8 * 5 * 5, 10, scale_k=False)
    model = nn.Sequential(conv, nn.Flatten(), linear)
    report = cnnzip.profile(model, (4, 5, 5))
    rows = {r.name: r for r in report.layers}
    assert (rows["0"].kind, rows["0"].macs) == ("conv", 8 * 25 * 4 * 9)
    assert rows["0"].ops == 3 * 4 * 25 + 8 * 25  # norm, sign, mean |x|; K scaling
    assert (rows["2"].kind, rows["2"].macs, rows["2"].ops) == ("fc", 200 * 10, 2 * 200)
    assert report.uncounted == []


def test_binarized_lenet5_keeps_its_macs_and_stores_bits() -> None:
    plain = cnnzip.profile(get_model("lenet5"), (1, 28, 28))
    model = convert(get_model("lenet5"), "xnor")
    report = cnnzip.profile(model, (1, 28, 28))
    assert report.macs == plain.macs
    assert report.uncounted == []
    fc1 = {r.name: r for r in report.layers}["fc1"]  # binary: conv1 and fc2 stay float
    assert fc1.weight_bytes == math.ceil(800 * 500 / 8) + 4 * 500 + 4 * 500


def test_matches_the_codecs_own_pre_entropy_stage(tmp_path) -> None:
    """The .cnnz file's inspect report ("shared" stage: fixed-width streams) agrees per layer."""
    torch.manual_seed(1)
    model = get_model("lenet300")
    for name, density in (("fc1", 0.08), ("fc2", 0.09), ("fc3", 0.26)):
        set_mask(
            model, f"{name}.weight", torch.rand(model.get_submodule(name).weight.shape) < density
        )
    share_layer(model, "fc2.weight", 5)
    cnnzip.codec.save(tmp_path / "m.cnnz", model)
    stages = {
        layer["name"].removesuffix(".weight"): layer["bytes"]["shared"]
        for layer in cnnzip.codec.inspect(tmp_path / "m.cnnz").to_dict()["layers"]
        if layer["name"].endswith(".weight")
    }
    rows = {r.name: r.weight_bytes for r in cnnzip.profile(model, (784,)).layers}
    for name, stored in stages.items():
        assert rows[name] == stored + 4 * model.get_submodule(name).bias.numel()


def test_nonzero_macs_of_pruned_layers_by_hand() -> None:
    """Conv 2->3, 3x3, on 5x5 (3x3 outputs, 9 positions) and fc 27->4: MACs count every
    weight at every use, nonzero MACs only the kept ones; a dense model has them equal."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(27, 4))
    dense = cnnzip.profile(model, (2, 5, 5))
    assert dense.nonzero_macs == dense.macs == 3 * 18 * 9 + 27 * 4
    conv_keep = torch.rand(3, 2, 3, 3) < 0.5
    fc_keep = torch.rand(4, 27) < 0.25
    set_mask(model, "0.weight", conv_keep)
    set_mask(model, "2.weight", fc_keep)
    rows = {r.name: r for r in cnnzip.profile(model, (2, 5, 5)).layers}
    assert rows["0"].macs == 3 * 18 * 9 and rows["0"].nonzero_macs == int(conv_keep.sum()) * 9
    assert rows["2"].macs == 27 * 4 and rows["2"].nonzero_macs == int(fc_keep.sum())


def test_comparison_says_what_sparse_kernels_could_reach() -> None:
    model = get_model("lenet300")
    dense = cnnzip.profile(model, (784,), measure_latency=True, runs=3, warmup=1)
    set_mask(model, "fc1.weight", torch.rand(300, 784) < 0.1)
    pruned = cnnzip.profile(model, (784,), measure_latency=True, runs=3, warmup=1)
    result = cnnzip.profiling.comparison(("pruned", "dense"), pruned, dense)
    assert result["mac_ratio"] == 1.0
    assert result["nonzero_mac_ratio"] == dense.macs / pruned.nonzero_macs > 4
    text = cnnzip.profiling.comparison_text(result)
    assert "nonzero weights" in text and f"{result['nonzero_mac_ratio']:.2f}x" in text
    same = cnnzip.profiling.comparison(("dense", "dense"), dense, dense)
    assert "nonzero" not in cnnzip.profiling.comparison_text(same)
