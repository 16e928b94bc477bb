"""The compressed-domain kernels against torch's dense product of the decoded weight.

Exactness: a kernel sums in another order than torch, so each output may differ from
the dense one by at most ``summation_bound`` (1e-6 * sqrt(fan-in) * sum_j |w_j x_j|);
the portable and AVX2 paths give identical bits; the layout decodes back to the
decoded dense weight bit for bit.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnzip import runtime
from cnnzip.cli import main
from cnnzip.codec import container, save
from cnnzip.codec import load as load_cnnz
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.prune import Mask
from cnnzip.quantize import share_weights
from cnnzip.runtime import bench, compressed, sparse
from cnnzip.runtime.bench import LayerSpec, median_ms
from cnnzip.runtime.compressed import (
    CompressedConv2d,
    CompressedLinear,
    StoredWeight,
    build_layout,
    compile_compressed,
    load_compressed,
    shared_weights,
    summation_bound,
    swap_all,
)
from cnnzip.runtime.sparse import layer_inputs
from cnnzip.transforms import add_transform

pytestmark = pytest.mark.usefixtures("one_thread")

PATHS = [p for p in compressed.available_paths() if p != "torch"]
needs_kernels = pytest.mark.skipif(not PATHS, reason="the C extension is not built here")


def shared_layer(
    shape: tuple[int, ...], density: float, bits: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random pruned + shared weight (as decoded: codebook values, +0.0 pruned) and its
    codebook."""
    gen = torch.Generator().manual_seed(seed)
    codebook = torch.randn(1 << bits, generator=gen)
    keep = torch.rand(shape, generator=gen) < density
    codes = torch.randint(0, 1 << bits, shape, generator=gen)
    return torch.where(keep, codebook[codes], torch.zeros(())), codebook


def linear_of(weight: torch.Tensor, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer.eval()


def assert_within_bound(y: torch.Tensor, dense: torch.Tensor, w: torch.Tensor, x: torch.Tensor):
    assert y.shape == dense.shape and y.dtype == torch.float32
    err = (y - dense).abs().reshape(-1, w.shape[0])
    assert bool((err <= summation_bound(w, x.reshape(-1, w[0].numel()))).all()), err.max()


@needs_kernels
@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 40),
    fan_in=st.integers(1, 700),
    density=st.sampled_from([0.0, 0.004, 0.05, 0.3, 1.0]),
    bits=st.integers(1, 8),
    batch=st.integers(1, 19),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_equals_dense_within_the_summation_bound(
    rows: int, fan_in: int, density: float, bits: int, batch: int, bias: bool, seed: int
) -> None:
    w, codebook = shared_layer((rows, fan_in), density, bits, seed)
    dense = linear_of(w, bias)
    try:
        twin = CompressedLinear(dense, StoredWeight.from_dense(w, codebook))
    except CnnzipError:  # 256 codes, no +0.0, a gap over 255: no layout (tested below)
        assert bits == 8 and density < 1
        return
    x = torch.randn(batch, fan_in, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        want = dense(x)
    results = [twin(x, path) for path in PATHS]
    for y in results:
        assert_within_bound(y, want, w, x)
        assert torch.equal(y, results[0])  # every path the same bits
    assert torch.equal(twin.layout.dense(), w)  # the layout holds exactly the weight


@needs_kernels
@settings(max_examples=30, deadline=None)
@given(
    cin=st.integers(1, 12),
    cout=st.integers(1, 12),
    k=st.sampled_from([1, 3, 5]),
    stride=st.integers(1, 2),
    hw=st.integers(5, 11),
    density=st.sampled_from([0.0, 0.1, 0.5]),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_conv_equals_dense_within_the_summation_bound(
    cin: int, cout: int, k: int, stride: int, hw: int, density: float, batch: int, seed: int
) -> None:
    w, codebook = shared_layer((cout, cin, k, k), density, 4, seed)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2).eval()
    with torch.no_grad():
        conv.weight.copy_(w)
    twin = CompressedConv2d(conv, StoredWeight.from_dense(w, codebook))
    x = torch.randn(batch, cin, hw, hw, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = conv(x)
    cols = F.unfold(x, k, padding=k // 2, stride=stride).transpose(1, 2)  # (N, L, fan_in)
    got = [twin(x, path) for path in PATHS]
    for y in got:
        y_rows = y.permute(0, 2, 3, 1).reshape(-1, cout)  # (N * L, cout)
        assert_within_bound(y_rows, want.permute(0, 2, 3, 1).reshape(-1, cout), w, cols)
        assert torch.equal(y, got[0])
    assert torch.equal(twin(x[0]), got[0][0])  # unbatched (C, H, W) as nn.Conv2d takes it


def _padded_stream(cols: list[int], codes: list[int], fan_in: int, pad_col: int = -1) -> bytes:
    """One row's entries as the kernels take them: padded to 16 with column fan_in
    (or ``pad_col``), code 0; 16-bit columns, then the codes."""
    pad = 16 - len(cols) % 16 if len(cols) % 16 else 0
    col = cols + [fan_in if pad_col < 0 else pad_col] * pad
    return np.array(col, "<u2").tobytes() + bytes(codes + [0] * pad)


def test_layout_by_hand_columns_then_codes() -> None:
    # rows of 600: kept columns 0, 300 (row 0) and 599 (row 1), codes 2, 0, 1; each row
    # padded to 16 entries with column 600 (a zero the kernel appends to x), code 0
    w = StoredWeight((2, 600), np.array([0, 300, 1199]), np.array([2, 0, 1]), np.ones(3, "f4"))
    lay = build_layout(w)
    cols = [0, 300] + [600] * 14 + [599] + [600] * 15
    assert lay.stream == np.array(cols, "<u2").tobytes() + bytes([2, 0] + [0] * 14 + [1] + [0] * 15)
    assert np.frombuffer(lay.row_len, "<u4").tolist() == [2, 1]
    assert lay.nnz == 3 and lay.nbytes == 3 * 32 + 8 + 12
    want = torch.zeros(2, 600)
    want[0, 0] = want[0, 300] = want[1, 599] = 1.0
    assert torch.equal(lay.dense(), want)


def test_wide_layers_and_non_finite_centroids_stay_dense() -> None:
    ok = StoredWeight((1, 65535), np.array([65534]), np.array([0]), np.ones(1, "f4"))
    assert build_layout(ok).stream == _padded_stream([65534], [0], 65535)
    wide = StoredWeight((1, 65536), np.array([3]), np.array([0]), np.ones(1, "f4"))
    with pytest.raises(CnnzipError, match="16-bit columns"):
        build_layout(wide)
    inf = StoredWeight((1, 8), np.array([3]), np.array([0]), np.array([1.0, np.inf], "f4"))
    with pytest.raises(CnnzipError, match="finite centroids"):
        build_layout(inf)


def test_from_dense_refuses_a_weight_off_the_codebook() -> None:
    with pytest.raises(CnnzipError, match="no codebook entry"):
        StoredWeight.from_dense(torch.tensor([[0.0, 0.5]]), torch.tensor([1.0, 2.0]))


@needs_kernels
def test_all_pruned_layer_and_empty_rows_give_the_bias() -> None:
    w = torch.zeros(5, 40)
    w[2, 7] = 3.0
    dense = linear_of(w)
    twin = CompressedLinear(dense, StoredWeight.from_dense(w, torch.tensor([3.0])))
    x = torch.randn(9, 40)
    for batch in (1, 9):
        y = twin(x[:batch])
        expected = dense.bias.detach().expand(batch, 5).clone()
        expected[:, 2] += 3.0 * x[:batch, 7]
        assert torch.equal(y, expected)  # one product per row: no reassociation at all
    empty = CompressedLinear(
        linear_of(torch.zeros(3, 4)), StoredWeight.from_dense(torch.zeros(3, 4), torch.ones(1))
    )
    assert torch.equal(empty(x[:2, :4]), empty.bias_tensor().expand(2, 3))


@needs_kernels
def test_inputs_of_other_dtypes_and_bad_layouts_are_refused() -> None:
    w, cb = shared_layer((4, 10), 0.5, 2)
    twin = CompressedLinear(linear_of(w), StoredWeight.from_dense(w, cb))
    with pytest.raises(CnnzipError, match="float32 CPU input"):
        twin(torch.randn(1, 10, dtype=torch.float64))
    ext = compressed.kernels()
    lay = twin.layout
    row_len = np.frombuffer(lay.row_len, "<u4").copy()
    row_len[0] += 1  # one entry more than the stream holds
    with pytest.raises(ValueError, match="inconsistent"):
        ext.prepare(lay.stream, row_len.tobytes(), lay.codebook, twin.bias_bytes, 4, 10)
    one, two = (np.array([n, 0, 0, 0], "<u4").tobytes() for n in (1, 2))
    cb, bias = lay.codebook, twin.bias_bytes
    for stream, rows in (
        (_padded_stream([10], [0], 10), one),  # a column past fan_in
        (_padded_stream([1], [9], 10), one),  # a code past the codebook
        (_padded_stream([3, 1], [0, 0], 10), two),  # columns 3 then 1: not ascending
        (_padded_stream([1], [0], 10, pad_col=9), one),  # padding at a real column
        (_padded_stream([1], [0], 10)[:3], one),  # a row without its padding
    ):
        with pytest.raises(ValueError, match="inconsistent"):
            ext.prepare(stream, rows, cb, bias, 4, 10)
    ext.prepare(_padded_stream([1], [0], 10), one, cb, bias, 4, 10)  # the same, well formed
    with pytest.raises(ValueError, match="inconsistent"):  # a non-finite centroid
        ext.prepare(
            _padded_stream([1], [0], 10), one, np.array([np.nan], "<f4").tobytes(), bias, 4, 10
        )
    with pytest.raises(ValueError, match="expected 3"):  # not whole entries
        ext.prepare(bytes([3, 0]), one, cb, bias, 4, 10)
    with pytest.raises(TypeError, match="must be bytes"):
        ext.prepare(bytearray(lay.stream), lay.row_len, lay.codebook, twin.bias_bytes, 4, 10)
    handle = twin.prepared()
    with pytest.raises(ValueError, match="expected 10"):
        ext.matvec(handle, np.zeros(9, "f4"), np.zeros(4, "f4"), "portable")
    with pytest.raises(ValueError, match="multiple of 8"):
        ext.matmat(handle, np.zeros((10, 4), "f4"), np.zeros((4, 4), "f4"), 4, "portable")
    with pytest.raises(ValueError, match="unknown kernel path"):
        ext.matvec(handle, np.zeros(10, "f4"), np.zeros(4, "f4"), "avx9")


@needs_kernels
def test_c_csr_baseline_is_scipys_loop_and_checks_its_rows() -> None:
    w, _ = shared_layer((30, 50), 0.2, 3)
    csr = w.to_sparse_csr()
    parts = [csr.values().numpy().tobytes(), csr.col_indices().numpy().astype("<i4").tobytes()]
    ext = compressed.kernels()
    handle = ext.csr_prepare(*parts, csr.crow_indices().numpy().astype("<i8").tobytes(), 30, 50)
    x, y = torch.randn(50), torch.empty(30)
    ext.csr_matvec(handle, x.numpy(), y.numpy())
    assert_within_bound(y[None], (w @ x)[None], w, x[None])
    bad = csr.crow_indices().numpy().astype("<i8").copy()
    bad[5] = bad[6] + 1  # a row running backwards
    with pytest.raises(ValueError, match="CSR row"):
        ext.csr_prepare(*parts, bad.tobytes(), 30, 50)


LENET5_LAYERS = ["conv1", "conv2", "fc1", "fc2"]


def _small_cnnz(tmp_path: Path) -> Path:
    """lenet5 pruned to ~15% and shared (conv 5 bits, fc 4 bits), as a .cnnz."""
    torch.manual_seed(0)
    model = get_model("lenet5")
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            w = module.weight.detach()
            add_transform(model, f"{name}.weight", Mask(w.abs() > w.abs().quantile(0.85)))
    share_weights(model, bits={"conv": 5, "linear": 4})
    path = tmp_path / "m.cnnz"
    save(path, model, arch={"name": "lenet5", "kwargs": {}})
    return path


@needs_kernels
def test_a_cnnz_runs_on_the_kernels_as_decoded(tmp_path: Path) -> None:
    path = _small_cnnz(tmp_path)
    cf, decoded = container.read(path), load_cnnz(path)
    stored = shared_weights(cf)
    assert sorted(stored) == [f"{n}.weight" for n in LENET5_LAYERS]
    for name, w in stored.items():
        assert torch.equal(w.dense(), decoded.get_submodule(name[: -len(".weight")]).weight)
    fast = copy.deepcopy(decoded)
    names = swap_all(fast, cf)
    assert sorted(names) == LENET5_LAYERS
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        for name in names:  # each layer within its bound on the same input
            layer, twin = decoded.get_submodule(name), fast.get_submodule(name)
            seen = layer_inputs(decoded, x, [name])
            flat = seen[name] if isinstance(layer, nn.Linear) else F.unfold(
                seen[name], layer.kernel_size, padding=layer.padding).transpose(1, 2)  # fmt: skip
            got, want = twin(seen[name]), layer(seen[name])
            if isinstance(layer, nn.Conv2d):
                got, want = (
                    t.permute(0, 2, 3, 1).reshape(-1, layer.out_channels) for t in (got, want)
                )
            assert_within_bound(got, want, layer.weight, flat)
        assert torch.allclose(fast(x), decoded(x), rtol=1e-4, atol=1e-5)
    assert {k: v.shape for k, v in fast.state_dict().items()} == {
        k: v.shape for k, v in decoded.state_dict().items()
    }
    for key, value in decoded.state_dict().items():
        assert torch.equal(fast.state_dict()[key], value), key  # saves like the original
    assert torch.equal(copy.deepcopy(fast)(x), fast(x))


@needs_kernels
def test_compile_measures_each_layer_and_load_compressed_agrees(tmp_path: Path) -> None:
    path = _small_cnnz(tmp_path)
    model, choices = load_compressed(path, torch.randn(1, 1, 28, 28), repeats=2)
    assert sorted(c.name for c in choices) == LENET5_LAYERS
    for c in choices:
        on_kernels = isinstance(model.get_submodule(c.name), CompressedLinear | CompressedConv2d)
        assert on_kernels == c.sparse == (c.sparse_ms < 0.95 * c.dense_ms)
        assert 0.1 < c.density < 0.2
    again = load_cnnz(path)
    chosen = compile_compressed(again, container.read(path), torch.randn(2, 1, 28, 28), repeats=1)
    assert sorted(c.name for c in chosen) == LENET5_LAYERS


@needs_kernels
def test_runtime_load_compressed_runs_the_measured_layers_on_the_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _small_cnnz(tmp_path)
    x = torch.randn(1, 1, 28, 28)
    twins = CompressedLinear | CompressedConv2d
    for twin_ms, want in ((0.0, LENET5_LAYERS), (2.0, [])):  # the timing decides, per layer
        monkeypatch.setattr(
            sparse, "_best_ms", lambda m, _x, _r, t=twin_ms: t if isinstance(m, twins) else 1.0
        )
        fast = runtime.load(path, compressed=True, example=x)
        assert sorted(n for n, m in fast.named_modules() if isinstance(m, twins)) == want
        with torch.no_grad():
            assert torch.allclose(fast(x), load_cnnz(path)(x), rtol=1e-4, atol=1e-5)
    plain = runtime.load(path)  # without the flag: the decoded model, nothing swapped
    assert not any(isinstance(m, twins) for m in plain.modules())
    with pytest.raises(CnnzipError, match="needs an example input"):
        runtime.load(path, compressed=True)


def test_median_ms_orders_beyond_six_functions_still_pair_every_two() -> None:
    keys = list("abcdefg")
    orders = bench._orders(keys)
    assert all(sorted(o) == keys for o in orders)
    follows = {(o[j], o[j + 1]) for o in orders for j in range(len(o) - 1)}
    assert follows == {(a, b) for a in keys for b in keys if a != b}


def test_without_the_extension_the_twins_run_dense_and_say_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compressed, "_ext", None)
    monkeypatch.setattr(compressed, "_missing_because", "No module named 'cnnzip._sparse'")
    monkeypatch.setattr(compressed, "_fallback_reported", False)
    assert compressed.available_paths() == ["torch"]
    w, cb = shared_layer((6, 20), 0.3, 3)
    dense = linear_of(w)
    twin = CompressedLinear(dense, StoredWeight.from_dense(w, cb))
    x = torch.randn(4, 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [twin(x), twin(x[:1])]
    (warning,) = caught
    assert "make install" in str(warning.message) and "cnnzip._sparse" in str(warning.message)
    with torch.no_grad():
        assert_within_bound(got[0], dense(x), w, x)
        assert_within_bound(got[1], dense(x[:1]), w, x[:1])


def test_layer_specs_parse_build_and_refuse() -> None:
    spec = LayerSpec.parse("conv:3:4:3:6:0.25:5")
    assert (spec.kind, spec.cin, spec.cout, spec.k, spec.hw, spec.density, spec.bits) == (
        "conv", 3, 4, 3, 6, 0.25, 5,
    )  # fmt: skip
    layer, w = spec.build()
    assert tuple(layer.weight.shape) == (4, 3, 3, 3) and len(np.unique(w.codes)) <= 32
    assert math.isclose(w.positions.size / 108, 0.25, abs_tol=0.15)
    assert tuple(spec.example(2).shape) == (2, 3, 6, 6)
    for bad in ("fc:1:2:0.5", "fc:a:2:0.5:4", "fc:4:4:1.5:4", "fc:4:4:0.5:9", "mlp:1:1:1:1"):
        with pytest.raises(CnnzipError, match="layer spec"):
            LayerSpec.parse(bad)


def _documented_matvec(w: StoredWeight, x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """csrc/sparse.h's batch-1 arithmetic, in float32 step by step: entry i of each
    row's groups of 16 (padding: + 0.0) into lane i, lanes j + 8 folded into j, a fixed
    tree, then the bias."""
    rows, cols = np.divmod(w.positions, w.fan_in)
    f = np.float32
    out = np.empty(w.rows, dtype=f)
    for r in range(w.rows):
        lanes = [f(0.0)] * 16
        kept = rows == r
        for i, (c, code) in enumerate(zip(cols[kept], w.codes[kept], strict=True)):
            lanes[i % 16] = f(lanes[i % 16] + f(w.codebook[code] * x[c]))
        a = [f(lanes[j] + lanes[j + 8]) for j in range(8)]
        total = f(f(f(a[0] + a[4]) + f(a[2] + a[6])) + f(f(a[1] + a[5]) + f(a[3] + a[7])))
        out[r] = f(bias[r] + total)
    return out


@needs_kernels
def test_batch_1_follows_the_documented_arithmetic_bit_for_bit() -> None:
    """Rows of 0, 1, 15, 16, 17, 31, 32 and 33 kept weights: every path gives exactly
    the documented sums (the padding adds nothing), not merely something close."""
    lengths = [0, 1, 15, 16, 17, 31, 32, 33]
    gen = np.random.default_rng(5)
    fan_in = 40
    positions = np.concatenate(
        [r * fan_in + np.sort(gen.choice(fan_in, n, replace=False)) for r, n in enumerate(lengths)]
    )
    codebook = gen.standard_normal(32).astype("f4")
    w = StoredWeight(
        (len(lengths), fan_in), positions, gen.integers(0, 32, len(positions)), codebook
    )
    layer = linear_of(torch.zeros(len(lengths), fan_in))
    twin = CompressedLinear(layer, w)
    x = torch.randn(1, fan_in)
    want = _documented_matvec(w, x[0].numpy(), layer.bias.detach().numpy())
    for path in PATHS:
        assert twin(x, path)[0].numpy().tobytes() == want.tobytes(), path


@needs_kernels
@pytest.mark.parametrize("k", [32, 33])
def test_avx2_register_codebook_and_its_scalar_fallback_match_portable(k: int) -> None:
    # 5-bit sharing fits the AVX2 registers (32 centroids); a 33rd centroid does not, and
    # the AVX2 path runs the scalar lanes. Rows of ~30 entries: groups of 16 and tails.
    w, codebook = shared_layer((6, 3000), 0.01, 5, seed=3)
    codebook = torch.cat([codebook, torch.tensor([0.5] * (k - 32))])
    dense = linear_of(w)
    twin = CompressedLinear(dense, StoredWeight.from_dense(w, codebook))
    assert len(twin.layout.codebook) == 4 * k
    x = torch.randn(1, 3000)
    got = [twin(x, path) for path in PATHS]
    with torch.no_grad():
        assert_within_bound(got[0], dense(x), w, x)
    assert all(torch.equal(y, got[0]) for y in got)


@pytest.mark.slow  # ~2-3 s: a small .cnnz built, then timed layer by layer and whole
@needs_kernels
def test_cli_bench_compressed_on_a_spec_and_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["bench", "compressed", "fc:40:16:0.2:4", "--batch", "1", "--batch", "9"]
    out = runner.invoke(main, [*args, "--repeats", "1", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert [row["batch"] for row in result["batches"]] == [1, 9]
    assert set(result["batches"][0]["ms"]) == {"dense", "csr", "kernel", "c_csr", "kernel_call"}
    assert result["dense_bytes"] == 4 * 40 * 16 and result["kernel_bytes"] < result["dense_bytes"]
    text = runner.invoke(main, [*args, "--repeats", "1"]).output
    assert "fc 40->16, 20% kept, 4-bit" in text and "kernels" in text
    path = _small_cnnz(tmp_path)
    out = runner.invoke(main, ["bench", "compressed", str(path), "--batch", "2", "--repeats", "1"])
    assert out.exit_code == 0, out.output
    assert "whole model, batch 2" in out.output and "conv1 (" in out.output
    bad = runner.invoke(main, ["bench", "compressed", "fc:1:2"])
    assert bad.exit_code == 2 and "layer spec" in bad.output


def test_stored_weights_that_lie_are_refused_and_empty_batches_pass() -> None:
    cb = np.ones(4, "f4")
    for pos, codes, codebook in (
        ([3, 2], [0, 0], cb),  # not ascending
        ([0, 12], [0, 0], cb),  # past the weight
        ([0, 1], [0, 4], cb),  # a code past the codebook
        ([0], [0, 0], cb),  # one code too many
        ([0], [0], np.ones(257, "f4")),  # codes are bytes
    ):
        with pytest.raises(CnnzipError, match="stored weight"):
            build_layout(StoredWeight((3, 4), np.array(pos), np.array(codes), codebook))
    w, codebook = shared_layer((5, 6), 0.5, 2)
    twin = CompressedLinear(linear_of(w), StoredWeight.from_dense(w, codebook))
    assert twin(torch.zeros(0, 6)).shape == (0, 5)
    assert twin(torch.randn(6)).shape == (5,)  # unbatched, as nn.Linear takes it
    w, codebook = shared_layer((4, 3, 3, 3), 0.5, 2)
    conv = nn.Conv2d(3, 4, 3).eval()
    with torch.no_grad():
        conv.weight.copy_(w)
    assert CompressedConv2d(conv, StoredWeight.from_dense(w, codebook))(
        torch.zeros(0, 3, 6, 6)
    ).shape == (0, 4, 4, 4)


def test_median_ms_rotates_so_each_call_follows_every_other_equally_often() -> None:
    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    median_ms(fns, 6, rotate=True)  # all 6 orders of 3, after one warm-up call each
    rounds = [calls[i : i + 3] for i in range(3, len(calls), 3)]
    assert sorted(map(tuple, rounds)) == sorted(itertools.permutations("abc"))
    follows = Counter((r[j], r[j + 1]) for r in rounds for j in range(2))
    assert follows == {(a, b): 2 for a in "abc" for b in "abc" if a != b}
    calls.clear()
    median_ms(fns, 2)
    assert calls[3:] == list("abcabc")
