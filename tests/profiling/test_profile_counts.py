"""The profiler against counts derived by hand from the conv and linear formulas."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune

import cnnzip
from cnnzip.errors import CnnzipError
from cnnzip.profiling import register_storage, weight_bytes
from cnnzip.transforms import WeightTransform, add_transform


def _out_side(side: int, k: int, s: int, p: int, d: int) -> int:
    """PyTorch's documented output size of a conv along one axis."""
    return (side + 2 * p - d * (k - 1) - 1) // s + 1


def _random_conv2d_stack(rng: random.Random, side: int) -> tuple[nn.Sequential, list[dict]]:
    """Random Conv2d layers (groups, depthwise, strides, padding, dilation, non-square
    kernels), then flatten and two linears; and what each layer must cost, by formula."""
    layers: list[nn.Module] = []
    expected: list[dict] = []
    chans, h, w = 3, side, side
    for _ in range(rng.randint(3, 6)):
        groups = rng.choice([1, 1, chans] + [g for g in (2, 3) if chans % g == 0])
        out_chans = groups * rng.randint(1, 4) if groups == chans else groups * rng.randint(1, 6)
        kh, kw = rng.choice([1, 3, 5]), rng.choice([1, 2, 3])
        sh, sw = rng.choice([1, 2]), rng.choice([1, 2, 3])
        ph, pw = rng.randint(0, 2), rng.randint(0, 2)
        dh, dw = rng.choice([1, 2]), rng.choice([1, 2])
        oh, ow = _out_side(h, kh, sh, ph, dh), _out_side(w, kw, sw, pw, dw)
        if oh < 1 or ow < 1:
            continue
        bias = rng.random() < 0.5
        layers.append(
            nn.Conv2d(chans, out_chans, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, bias=bias)
        )
        kind = "depthwise" if groups == chans > 1 else "conv1x1" if kh == kw == 1 else "conv"
        expected.append(
            {
                "kind": kind,
                "macs": out_chans * oh * ow * (chans // groups) * kh * kw,
                "params": out_chans * (chans // groups) * kh * kw + (out_chans if bias else 0),
                "output_shape": (1, out_chans, oh, ow),
            }
        )
        chans, h, w = out_chans, oh, ow
    layers.append(nn.Flatten())
    expected.append({"kind": "reshape", "macs": 0, "params": 0, "output_shape": (1, chans * h * w)})
    hidden = rng.randint(1, 40)
    for fan_in, fan_out in ((chans * h * w, hidden), (hidden, 10)):
        layers.append(nn.Linear(fan_in, fan_out))
        expected.append(
            {
                "kind": "fc",
                "macs": fan_in * fan_out,
                "params": fan_in * fan_out + fan_out,
                "output_shape": (1, fan_out),
            }
        )
    return nn.Sequential(*layers), expected


@pytest.mark.parametrize("seed", range(8))
def test_random_conv2d_stacks_match_the_formulas_layer_by_layer(seed: int) -> None:
    rng = random.Random(seed)
    side = rng.randint(9, 33)
    model, expected = _random_conv2d_stack(rng, side)
    report = cnnzip.profile(model, (3, side, side))
    got = [
        {"kind": r.kind, "macs": r.macs, "params": r.params, "output_shape": r.output_shape}
        for r in report.layers
    ]
    assert got == expected
    assert report.macs == sum(e["macs"] for e in expected)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.weight_bytes == 4 * report.params  # float32
    assert report.uncounted == []


@pytest.mark.parametrize("seed", range(4))
def test_random_conv1d_stacks_match_the_formula(seed: int) -> None:
    rng = random.Random(100 + seed)
    length = rng.randint(30, 60)
    chans, side, layers, macs = 4, length, [], []
    for _ in range(4):
        groups, out_chans = rng.choice([1, 2, 4]), 4 * rng.randint(1, 3)
        k, s, p, d = (
            rng.choice([1, 3, 5]),
            rng.choice([1, 2]),
            rng.randint(0, 2),
            rng.choice([1, 2]),
        )
        if _out_side(side, k, s, p, d) < 1:
            k = d = 1  # too short for this kernel: a 1-wide one always fits
        side = _out_side(side, k, s, p, d)
        layers.append(nn.Conv1d(chans, out_chans, k, s, p, d, groups))
        macs.append(out_chans * side * chans // groups * k)
        chans = out_chans
    report = cnnzip.profile(nn.Sequential(*layers), (4, length))
    assert [r.macs for r in report.layers] == macs
    assert report.layers[-1].output_shape == (1, chans, side)


class _Mask(WeightTransform):
    """A pruning-style transform: weight * mask; stores only the kept weights (4 B each)."""

    kind = "test-mask"

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def storage_bytes(self, original: torch.Tensor) -> int:
        return int(self.mask.sum()) * original.element_size()


def _lenet_like() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 12 * 12, 10)
    )


def test_parametrized_layers_count_as_the_plain_layer_and_report_their_storage() -> None:
    torch.manual_seed(0)
    model = _lenet_like()
    plain = cnnzip.profile(model, (1, 28, 28))
    mask = (torch.rand(6, 1, 5, 5) < 0.3).float()
    add_transform(model, "0.weight", _Mask(mask))
    masked = cnnzip.profile(model, (1, 28, 28))
    assert [(r.name, r.kind, r.macs, r.ops, r.params) for r in masked.layers] == [
        (r.name, r.kind, r.macs, r.ops, r.params) for r in plain.layers
    ]  # the mask's multiply is the weight's business, not an extra row
    assert masked.params == plain.params == sum(p.numel() for p in _lenet_like().parameters())
    kept = int(mask.sum())
    assert masked.layers[0].weight_bytes == 4 * (kept + 6)  # kept weights + dense bias
    assert masked.weight_bytes == plain.weight_bytes - 4 * (150 - kept)


def test_torch_prune_hooks_do_not_add_rows() -> None:
    """torch.nn.utils.prune recomputes the weight in a pre-hook: part of the layer's own call."""
    model = _lenet_like()
    plain = cnnzip.profile(model, (1, 28, 28))
    torch.nn.utils.prune.l1_unstructured(model[0], "weight", amount=0.5)
    pruned = cnnzip.profile(model, (1, 28, 28))
    assert [(r.name, r.macs, r.ops) for r in pruned.layers] == [
        (r.name, r.macs, r.ops) for r in plain.layers
    ]


def test_register_storage_overrides_a_module_type() -> None:
    class PackedLinear(nn.Linear):
        """Stands in for a binary layer: one bit a weight."""

    register_storage(PackedLinear)(lambda m: m.weight.numel() // 8)
    layer = PackedLinear(64, 8, bias=False)
    assert weight_bytes(layer) == 64
    report = cnnzip.profile(nn.Sequential(layer), (64,))
    assert report.layers[0].kind == "fc"  # a subclass of Linear counts as one
    assert report.layers[0].macs == 64 * 8
    assert report.weight_bytes == 64


def test_bytes_follow_the_dtype() -> None:
    model = _lenet_like().to(torch.float64)
    report = cnnzip.profile(model, (1, 28, 28))
    assert report.weight_bytes == 8 * sum(p.numel() for p in model.parameters())
    assert report.layers[0].activation_bytes == 8 * 6 * 24 * 24


class _Branches(nn.Module):
    """A residual add, a concatenation, a functional ReLU and one ReLU module used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 2, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (1, 4, 6, 6)
        y = self.relu(self.a(x)) + x  # (1, 4, 6, 6)
        y = torch.cat([y, self.relu(self.b(y))], dim=1)  # (1, 6, 6, 6)
        return F.relu(y) * y.mean((2, 3), keepdim=True)  # (1, 6, 6, 6)


def test_tensor_ops_in_forward_are_listed_under_their_module() -> None:
    model = nn.Sequential(_Branches(), nn.Flatten(), nn.Linear(6 * 36, 3))
    rows = {r.name: r for r in cnnzip.profile(model, (4, 6, 6)).layers}
    assert rows["0:add"].kind == "add" and rows["0:add"].ops == 4 * 36
    assert rows["0:cat"].ops == 0 and rows["0:cat"].activation_bytes == 4 * 6 * 36
    assert rows["0:relu"].kind == "act" and rows["0:relu"].ops == 6 * 36
    assert rows["0:mean"].kind == "pool" and rows["0:mean"].ops == 6 * 36
    assert rows["0:mul"].ops == 6 * 36 and rows["0:mul"].output_shape == (1, 6, 6, 6)
    assert rows["0.relu"].calls == 2 and rows["0.relu"].ops == 4 * 36 + 2 * 36
    assert rows["0.a"].macs == 4 * 36 * 4 * 9 and rows["0.b"].macs == 2 * 36 * 4
    assert rows["2"].macs == 6 * 36 * 3


class _OwnConv(nn.Module):
    """A leaf with its own weight and a functional conv: counted through the op it calls."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 2, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=2, groups=2)


class _Mystery(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)  # no counter for this module and no tracked op


def test_unknown_leaf_modules_are_listed_as_uncounted_and_their_tensor_ops_counted() -> None:
    model = nn.Sequential(_OwnConv(), _Mystery())
    report = cnnzip.profile(model, (4, 9, 9))
    rows = {r.name: r for r in report.layers}
    assert report.uncounted == ["0", "1"]
    assert rows["0"].params == 8 * 2 * 9 and rows["0"].kind == "_OwnConv"
    assert rows["0:conv2d"].macs == 8 * 4 * 4 * 2 * 9  # (1, 8, 4, 4) outputs x 2*3*3
    assert report.macs == rows["0:conv2d"].macs
    text = str(report)
    assert "UNCOUNTED _Mystery" in text and "uncounted (cost missing from totals): 0, 1" in text


def test_report_text_json_and_shares() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)
    )
    model.append(nn.Flatten())
    model.append(nn.Linear(4 * 4 * 4, 2))
    report = cnnzip.profile(model, (3, 8, 8))
    macs = {"full conv": 8 * 36 * 27, "depthwise conv": 8 * 16 * 9, "1x1 conv": 4 * 16 * 8}
    macs["fully connected"] = 64 * 2
    shares = report.shares()
    for group, value in macs.items():
        assert shares["macs"][group] == pytest.approx(value / sum(macs.values()))
    assert shares["params"]["other"] == pytest.approx(8 / report.params)  # batch norm's 2 x 4
    assert sum(shares["params"].values()) == pytest.approx(1.0)
    assert "MACs = multiply-accumulates" in str(report)
    body = json.loads(json.dumps(report.to_dict()))
    assert body["macs"] == sum(macs.values()) and body["params"] == report.params
    assert body["layers"][3]["kind"] == "norm" and body["layers"][3]["ops"] == 4 * 16


class _NeedsValues(nn.Module):
    """A data-dependent forward: cannot run on the meta device, so the real forward counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.abs().sum().item() >= 0 else x


def test_forwards_that_need_values_are_counted_by_a_real_forward() -> None:
    report = cnnzip.profile(_NeedsValues(), (5,))
    assert report.macs == 15 and report.layers[0].output_shape == (1, 3)


def test_a_wrong_input_shape_is_one_clear_error() -> None:
    with pytest.raises(CnnzipError, match="without the batch dimension"):
        cnnzip.profile(_lenet_like(), (1, 1, 28, 28))
