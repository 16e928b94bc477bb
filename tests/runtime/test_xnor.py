"""The binary conv kernels against a plain torch reference: float conv of the same +-1 tensors."""

import os
import signal
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnzip.errors import CnnzipError
from cnnzip.runtime import xnor
from cnnzip.runtime.xnor import (
    BinaryConvKernel,
    PackedActs,
    available_paths,
    max_pool_packed,
    pack_signs,
    pool_packed_words,
    thresholds_from,
    unpack_signs,
)

pytestmark = pytest.mark.usefixtures("one_thread")

COMPILED = [p for p in available_paths() if p != "torch"]


def sign(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t < 0, -1.0, 1.0)


def reference(x, w, scale, bias, stride, pad):
    """+-1 conv in float32 (exact: integer sums < 2**24), +1 padding, then the transform."""
    xb = F.pad(sign(x), (pad,) * 4, value=1.0)
    y = F.conv2d(xb, sign(w), stride=stride)
    return y * scale[:, None, None] + bias[:, None, None]


shapes = st.fixed_dictionaries(
    {
        "n": st.integers(1, 8),
        "cin": st.integers(1, 150),
        "cout": st.integers(1, 160),  # > 128: the AVX2 kernel's 4-vector blocks
        "h": st.integers(3, 11),
        "w": st.integers(3, 11),
        "k": st.sampled_from([1, 3]),
        "stride": st.sampled_from([1, 2]),
        "pad": st.sampled_from([0, 1]),
        "seed": st.integers(0, 2**31 - 1),
    }
)


def make(s, use_k=False):
    g = torch.Generator().manual_seed(s["seed"])
    x = torch.randn(s["n"], s["cin"], s["h"], s["w"], generator=g)
    x[x.abs() < 0.05] = 0.0  # exact zeros binarize to +1 everywhere
    w = torch.randn(s["cout"], s["cin"], s["k"], s["k"], generator=g)
    scale, bias = torch.randn(s["cout"], generator=g), torch.randn(s["cout"], generator=g)
    kernel = BinaryConvKernel(pack_signs(w), s["cin"], scale, bias, s["stride"], s["pad"], use_k)
    return x, w, scale, bias, kernel


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_every_path_equals_the_float_reference_exactly(s):
    x, w, scale, bias, kernel = make(s)
    want = reference(x, w, scale, bias, s["stride"], s["pad"])
    for path in available_paths():
        assert torch.equal(kernel(x, path=path, threads=2), want), path
    packed_path = available_paths()[s["seed"] % len(available_paths())]  # one path per example
    assert torch.equal(kernel(PackedActs.of(x), path=packed_path, threads=2), want), packed_path


@settings(max_examples=15, deadline=None)
@given(shapes)
def test_k_map_paths_agree_bit_for_bit_and_match_xnor_net(s):
    x, w, scale, bias, kernel = make(s, use_k=True)
    fallback = kernel(x, path="torch")
    for path in COMPILED:
        assert torch.equal(kernel(x, path=path), fallback), path
    # XNOR-Net's K: mean |x| over channels, averaged over each window (zero padded)
    a = F.pad(x.abs().mean(1, keepdim=True), (s["pad"],) * 4)
    k = F.avg_pool2d(a, s["k"], s["stride"])
    dots = reference(x, w, torch.ones_like(scale), torch.zeros_like(bias), s["stride"], s["pad"])
    want = dots * k * scale[:, None, None] + bias[:, None, None]
    torch.testing.assert_close(fallback, want, rtol=1e-5, atol=1e-5)


def test_paper_sized_layer_all_paths_and_thread_counts():
    s = {"n": 1, "cin": 256, "cout": 160, "h": 14, "w": 13, "k": 3, "stride": 1, "pad": 1}
    x, w, scale, bias, kernel = make({**s, "seed": 1})
    want = reference(x, w, scale, bias, 1, 1)
    for path in available_paths():
        for threads in (1, 3):
            assert torch.equal(kernel(x, path=path, threads=threads), want), (path, threads)


def test_pack_signs_is_one_bit_per_weight_and_round_trips():
    w = torch.randn(5, 70, 3, 3)
    words = pack_signs(w)
    assert words.shape == (5, 3, 3, 16) and words.dtype == torch.uint8  # 70 ch -> 2 words
    assert torch.equal(unpack_signs(words, 70), sign(w))
    # channel c is bit c % 8 of byte c // 8 (little-endian words), set for -1
    assert int(words[0, 0, 0, 0]) & 1 == int(w[0, 0, 0, 0] < 0)


def test_wrong_input_channels_is_a_clear_error():
    kernel = BinaryConvKernel(pack_signs(torch.randn(4, 8, 3, 3)), 8, torch.ones(4), torch.zeros(4))
    with pytest.raises(CnnzipError, match="expects input"):
        kernel(torch.randn(1, 9, 5, 5))


def test_unknown_path_is_a_clear_error():
    kernel = BinaryConvKernel(pack_signs(torch.randn(4, 8, 1, 1)), 8, torch.ones(4), torch.zeros(4))
    with pytest.raises(CnnzipError, match="not available"):
        kernel(torch.randn(1, 8, 5, 5), path="neon")


@pytest.mark.skipif(not COMPILED, reason="C kernels not built")
def test_binding_checks_buffer_sizes():
    from cnnzip import _xnor

    words = pack_signs(torch.randn(4, 8, 3, 3)).numpy()
    with pytest.raises(ValueError, match="bytes"):
        _xnor.prepare(words[:2], 4, 8, 3, 3, "portable")
    blob = _xnor.prepare(words, 4, 8, 3, 3, "portable")
    x, out = torch.randn(1, 8, 5, 5), torch.empty(1, 4, 5, 5)
    one, zero = torch.ones(4).numpy(), torch.zeros(4).numpy()
    with pytest.raises(ValueError, match="output"):
        _xnor.conv2d(
            x.numpy(), blob, one, zero, None, out[:, :3].contiguous().numpy(),
            (1, 8, 5, 5), (4, 3, 3, 1, 1), 1, False, False, False, "portable",
        )  # fmt: skip
    with pytest.raises(TypeError, match="float32"):
        _xnor.conv2d(
            x.double().numpy(), blob, one, zero, None, out.numpy(),
            (1, 8, 5, 5), (4, 3, 3, 1, 1), 1, False, False, False, "portable",
        )  # fmt: skip
    bits, packed = pack_signs(x).numpy(), torch.empty(1, 5, 5, 8, dtype=torch.uint8).numpy()
    thresh = torch.zeros(2, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="input has 800 bytes, expected 200"):  # floats
        _xnor.conv2d(
            x.numpy(), blob, one, zero, thresh.numpy(), packed,
            (1, 8, 5, 5), (4, 3, 3, 1, 1), 1, False, True, True, "portable",
        )  # fmt: skip
    with pytest.raises(TypeError, match="int32"):
        _xnor.conv2d(
            bits, blob, one, zero, thresh.float().numpy(), packed,
            (1, 8, 5, 5), (4, 3, 3, 1, 1), 1, False, True, True, "portable",
        )  # fmt: skip
    with pytest.raises(ValueError, match="K needs float input"):
        _xnor.conv2d(
            bits, blob, one, zero, thresh.numpy(), packed,
            (1, 8, 5, 5), (4, 3, 3, 1, 1), 1, True, True, True, "portable",
        )  # fmt: skip
    with pytest.raises(ValueError, match="impossible shape"):  # padding over half the window
        _xnor.pool_bits(bits, bits[0, 0, 0], packed, (1, 8, 5, 5), (2, 2, 2))


def test_env_var_forces_the_fallback(monkeypatch):
    monkeypatch.setenv("CNNZIP_KERNEL", "torch")
    assert xnor.default_path() == "torch"


@pytest.mark.skipif(not COMPILED or not hasattr(os, "fork"), reason="C kernels, fork")
def test_threads_still_work_in_a_forked_child():
    """The kernels run in torch's OpenMP pool, which a forked child cannot use (libgomp
    hangs there): the child must fall back to its own threads and give the same result."""
    kernel = BinaryConvKernel(
        pack_signs(torch.randn(64, 64, 3, 3)), 64, torch.ones(64), torch.zeros(64), 1, 1
    )
    x = torch.randn(1, 64, 12, 12)
    want = kernel(x, path="torch")
    assert torch.equal(kernel(x, path=COMPILED[-1], threads=2), want)  # the pool is in use
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only for the right answer
        os._exit(0 if torch.equal(kernel(x, path=COMPILED[-1], threads=2), want) else 1)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in the kernels")
    assert os.waitstatus_to_exitcode(done[1]) == 0


@pytest.mark.skipif(len(COMPILED) < 2, reason="needs two compiled paths to race")
def test_a_layer_races_the_vector_paths_once_per_shape(monkeypatch):
    """Where a CPU runs several RACED paths (AVX-512 and AVX2), a layer takes the one
    that ran its input fastest. Raced here: portable C against the fastest path."""
    monkeypatch.delenv("CNNZIP_KERNEL", raising=False)
    monkeypatch.setattr(xnor, "RACED", ("portable", COMPILED[-1]))
    kernel = BinaryConvKernel(
        pack_signs(torch.randn(128, 128, 3, 3)), 128, torch.ones(128), torch.zeros(128), 1, 1
    )
    x = torch.randn(1, 128, 14, 14)
    timed = []
    monkeypatch.setattr(
        kernel, "_time", lambda x, threads, path: timed.append(path) or (path == "portable")
    )
    assert kernel.path_for(x, 1) == COMPILED[-1]  # portable "took" 1 s, the other 0 s
    assert sorted(timed) == sorted(["portable", COMPILED[-1]] * 3)  # best of 3 each
    assert torch.equal(kernel(x, threads=1), kernel(x, path="torch"))
    assert len(timed) == 6  # the choice is kept for this shape and thread count
    kernel.path_for(torch.randn(2, 128, 14, 14), 1)
    assert len(timed) == 12  # a new shape races again
    monkeypatch.setenv("CNNZIP_KERNEL", "portable")
    assert kernel.path_for(x, 1) == "portable" and len(timed) == 12  # the user's choice wins


# ---- packed activations: in and out of the kernels, thresholds, packed max-pool ----


def make_packed(s):
    """make()'s input and weights, and random thresholds (2, cout) for packed output."""
    x, w, *_ = make(s)
    g = torch.Generator().manual_seed(s["seed"] + 1)
    fan_in = s["cin"] * s["k"] ** 2
    # thresholds anywhere in the dots' range and past both ends (always / never set)
    t = torch.randint(-fan_in - 3, fan_in + 4, (s["cout"],), generator=g, dtype=torch.int32)
    flip = torch.randint(0, 2, (s["cout"],), generator=g, dtype=torch.int32)
    return x, w, torch.stack([t, flip])


@settings(max_examples=20, deadline=None)
@given(shapes)
def test_packed_output_is_dot_below_threshold_xor_flip_on_every_path(s):
    x, w, thresholds = make_packed(s)
    ones, zeros = torch.ones(s["cout"]), torch.zeros(s["cout"])
    kernel = BinaryConvKernel(
        pack_signs(w), s["cin"], ones, zeros, s["stride"], s["pad"], thresholds=thresholds
    )
    d = reference(x, w, ones, zeros, s["stride"], s["pad"])  # the dots (n, cout, ho, wo)
    t, flip = (v[:, None, None] for v in thresholds)
    want = pack_signs(torch.where((d < t) ^ flip.bool(), -1.0, 1.0))
    for path in available_paths():
        got = kernel(x, path=path, threads=2)
        assert isinstance(got, PackedActs) and got.shape == (s["n"], s["cout"], *d.shape[2:])
        assert torch.equal(got.words, want), path
        assert torch.equal(kernel(PackedActs.of(x), path=path).words, want), path  # packed in


def test_packed_acts_round_trip_and_refuse_wrong_words():
    x = torch.randn(2, 70, 3, 5)
    packed = PackedActs.of(x)
    assert packed.shape == (2, 70, 3, 5) and packed.words.shape == (2, 3, 5, 16)
    assert torch.equal(packed.signs(), sign(x))
    with pytest.raises(CnnzipError, match="do not hold 65 channels"):
        PackedActs(packed.words[..., :8], 65)


def test_thresholds_reproduce_a_float_decision_with_ties_and_both_scale_signs():
    # dot * s + b < 0 with exact ties: dot = 3 gives exactly 0 for s = 1, b = -3 (not negative)
    s = torch.tensor([1.0, -1.0, 0.0, 0.0, 1e-30, 3.0])
    b = torch.tensor([-3.0, -3.0, -1.0, 1.0, 0.0, 1.5])

    def decide(d):
        return d * s[:, None, None] + b[:, None, None] < 0

    fan_in = 9
    t, flip = thresholds_from(decide, fan_in)
    all_dots = torch.arange(-fan_in, fan_in + 1, 2)
    for c in range(len(s)):
        want = all_dots * s[c] + b[c] < 0
        assert torch.equal((all_dots < t[c]) ^ bool(flip[c]), want), c
    assert (int(t[0]), int(flip[0])) == (3, 0)  # 3 * 1 - 3 = 0 is not negative: bit = d < 3
    assert (int(t[1]), int(flip[1])) == (-1, 1)  # -d - 3 < 0 <=> d > -3: bit = not d < -1


def test_thresholds_refuse_a_decision_that_is_not_monotone():
    with pytest.raises(CnnzipError, match="not monotone"):
        thresholds_from(lambda d: (d.abs() < 2).expand(1, 3, 1, -1), 5)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 2),
    st.integers(1, 130),
    st.integers(2, 9),
    st.sampled_from([(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1), (1, 1, 0), (3, 3, 0)]),
    st.integers(0, 2**31 - 1),
)
def test_packed_max_pool_equals_the_sign_of_the_pooled_floats(n, c, hw, pool, seed):
    """sign(a * maxpool(y) + b) == AND (a > 0) or OR (a < 0) of the bits of sign(a * y + b),
    a = 0 included (a constant decision)."""
    k, stride, pad = pool
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, c, hw, hw + 1, generator=g).round(decimals=1)  # ties between pixels
    a = torch.randn(c, generator=g).round()  # negative, zero and positive scales
    b = torch.randn(c, generator=g).round(decimals=1)

    def decision(v):
        return torch.where(v * a[:, None, None] + b[:, None, None] < 0, -1.0, 1.0)

    if 2 * pad > k or hw + 2 * pad < k:
        return
    want = pack_signs(decision(F.max_pool2d(y, k, stride, pad)))
    for path in available_paths():
        got = max_pool_packed(PackedActs.of(decision(y)), k, stride, pad, a < 0, path=path)
        assert torch.equal(got.words, want), path


def test_packed_max_pool_refuses_impossible_settings():
    x = PackedActs.of(torch.randn(1, 4, 5, 5))
    with pytest.raises(CnnzipError, match="padding <= kernel / 2"):
        max_pool_packed(x, 2, 2, 2, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(CnnzipError, match=r"or_mask \(3,\) must be \(4,\)"):
        max_pool_packed(x, 2, 2, 0, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(
        CnnzipError, match=r"or-mask words torch.uint8 \(16,\) must be uint8 \(8,\)"
    ):
        pool_packed_words(x, 2, 2, 0, torch.zeros(16, dtype=torch.uint8))


def test_a_k_layer_refuses_packed_input_and_thresholds():
    words = pack_signs(torch.randn(4, 8, 3, 3))
    kernel = BinaryConvKernel(words, 8, torch.ones(4), torch.zeros(4), 1, 1, use_k=True)
    with pytest.raises(CnnzipError, match="needs float input"):
        kernel(PackedActs.of(torch.randn(1, 8, 5, 5)))
    with pytest.raises(CnnzipError, match="without K"):
        BinaryConvKernel(words, 8, torch.ones(4), torch.zeros(4), 1, 1, True, torch.zeros(2, 4))


# ---- the per-call fast path: a C handle per input shape, thread count and path ----


@pytest.mark.skipif(not COMPILED, reason="C kernels not built")
def test_a_kept_handle_follows_new_and_changed_scales_and_thresholds():
    """Later calls reuse the first call's C handle, which reads the layer's tensors: an
    in-place change shows at once, a new tensor makes a new handle, a copy has its own."""
    import copy

    w, x = torch.randn(6, 10, 3, 3), torch.randn(2, 10, 7, 7)
    scale, bias = torch.randn(6), torch.randn(6)
    kernel = BinaryConvKernel(pack_signs(w), 10, scale.clone(), bias, 2, 1)
    path = COMPILED[-1]
    assert torch.equal(kernel(x, path=path), reference(x, w, scale, bias, 2, 1))
    kernel.scale.mul_(-3.0)  # in place: the kept handle reads the same memory
    assert torch.equal(kernel(x, path=path), reference(x, w, -3.0 * scale, bias, 2, 1))
    kernel.bias = torch.ones(6)  # a new tensor: a new handle
    assert torch.equal(kernel(x, path=path), reference(x, w, -3.0 * scale, torch.ones(6), 2, 1))
    twin = copy.deepcopy(kernel)  # the handle stays behind; the copy makes its own
    twin.scale.fill_(1.0)
    assert torch.equal(twin(x, path=path), reference(x, w, torch.ones(6), torch.ones(6), 2, 1))
    assert torch.equal(kernel(x, path=path), reference(x, w, -3.0 * scale, torch.ones(6), 2, 1))
    with pytest.raises(CnnzipError, match="expects input"):  # a new shape is checked again
        kernel(torch.randn(2, 11, 7, 7), path=path)
    with pytest.raises(CnnzipError, match="thread count"):  # so is a new thread count
        kernel(x, path=path, threads=0)
    words = PackedActs.of(x).words
    assert torch.equal(kernel(PackedActs(words, 10), path=path), kernel(x, path=path))
    with pytest.raises(CnnzipError, match=r"expects input \(N, 10, H, W\), got \(2, 9, 7, 7\)"):
        kernel(PackedActs(words, 9), path=path)  # the same words said to hold 9 channels
    d = reference(x, w, torch.ones(6), torch.zeros(6), 2, 1)  # the dots
    kernel.thresholds = torch.stack([torch.full((6,), 3), torch.zeros(6)]).int()
    assert torch.equal(kernel(x, path=path).words, pack_signs(torch.where(d < 3, -1.0, 1.0)))
    kernel.thresholds[1] = 1  # in place: every decision flips
    assert torch.equal(kernel(x, path=path).words, pack_signs(torch.where(d < 3, 1.0, -1.0)))


@pytest.mark.skipif(not COMPILED, reason="C kernels not built")
def test_the_lean_binding_checks_its_handle_and_buffers():
    from cnnzip import _xnor

    w = torch.randn(4, 8, 3, 3)
    blob = _xnor.prepare(pack_signs(w).numpy(), 4, 8, 3, 3, "portable")
    one, zero, geometry = torch.ones(4).numpy(), torch.zeros(4).numpy(), (4, 8, 3, 3, 1, 1)
    with pytest.raises(ValueError, match="prepared weights has 280 bytes, expected 288"):
        _xnor.layer(blob[:-8], one, zero, None, geometry, False, "portable")
    with pytest.raises(ValueError, match="scale has 12 bytes, expected 16"):
        _xnor.layer(blob, one[:3], zero, None, geometry, False, "portable")
    with pytest.raises(ValueError, match="K needs float input and gives float output"):
        _xnor.layer(blob, one, zero, torch.zeros(2, 4).int().numpy(), geometry, True, "portable")
    handle = _xnor.layer(blob, one, zero, None, geometry, False, "portable")
    x, out = torch.randn(1, 8, 5, 5), torch.empty(1, 4, 5, 5)
    _xnor.run(handle, x.numpy(), out.numpy(), (1, 5, 5), 1, False)
    assert torch.equal(out, reference(x, w, torch.ones(4), torch.zeros(4), 1, 1))
    with pytest.raises(ValueError, match="output has 64 bytes, expected 400"):
        _xnor.run(handle, x.numpy(), out.flatten()[:16].numpy(), (1, 5, 5), 1, False)
    with pytest.raises(ValueError, match="input has 800 bytes, expected 512"):
        _xnor.run(handle, x.numpy(), out.numpy(), (1, 4, 4), 1, False)
    with pytest.raises(ValueError, match="impossible shape"):
        _xnor.run(handle, x.numpy(), out.numpy(), (0, 5, 5), 1, False)
    same = torch.empty(1, 8, 5, 5)  # the output over the input
    with pytest.raises(ValueError, match="must not share memory"):
        _xnor.run(handle, same.numpy(), same[:, :4].numpy(), (1, 5, 5), 1, False)
    with pytest.raises(ValueError):  # not a layer handle
        _xnor.run(blob, x.numpy(), out.numpy(), (1, 5, 5), 1, False)
