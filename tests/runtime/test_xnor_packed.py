"""Packed activations in and out of the binary kernels, thresholds and packed max-pool,
against plain torch references (float conv of +-1 tensors, float max-pool)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnzip.errors import CnnzipError
from cnnzip.runtime.xnor import (
    BinaryConvKernel,
    PackedActs,
    available_paths,
    max_pool_packed,
    pack_signs,
    pool_packed_words,
    thresholds_from,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def sign(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t < 0, -1.0, 1.0)


def dots(x, w, stride, pad):
    """The exact +-1 conv with +1 padding (float32 holds these integer sums exactly)."""
    return F.conv2d(F.pad(sign(x), (pad,) * 4, value=1.0), sign(w), stride=stride)


shapes = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "cin": st.integers(1, 140),
        "cout": st.integers(1, 150),  # > 128: the AVX2 kernel's 4-vector blocks; odd counts
        "h": st.integers(3, 10),
        "w": st.integers(3, 10),
        "k": st.sampled_from([1, 3]),
        "stride": st.sampled_from([1, 2]),
        "pad": st.sampled_from([0, 1]),
        "seed": st.integers(0, 2**31 - 1),
    }
)


def make(s):
    g = torch.Generator().manual_seed(s["seed"])
    x = torch.randn(s["n"], s["cin"], s["h"], s["w"], generator=g)
    x[x.abs() < 0.05] = 0.0  # exact zeros binarize to +1
    w = torch.randn(s["cout"], s["cin"], s["k"], s["k"], generator=g)
    fan_in = s["cin"] * s["k"] ** 2
    # thresholds anywhere in the dots' range and past both ends (always / never set)
    t = torch.randint(-fan_in - 3, fan_in + 4, (s["cout"],), generator=g, dtype=torch.int32)
    flip = torch.randint(0, 2, (s["cout"],), generator=g, dtype=torch.int32)
    return x, w, torch.stack([t, flip])


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_packed_output_is_dot_below_threshold_xor_flip_on_every_path(s):
    x, w, thresholds = make(s)
    ones, zeros = torch.ones(s["cout"]), torch.zeros(s["cout"])
    kernel = BinaryConvKernel(
        pack_signs(w), s["cin"], ones, zeros, s["stride"], s["pad"], thresholds=thresholds
    )
    d = dots(x, w, s["stride"], s["pad"])  # (n, cout, ho, wo)
    t, flip = (v[:, None, None] for v in thresholds)
    want = pack_signs(torch.where((d < t) ^ flip.bool(), -1.0, 1.0))
    for path in available_paths():
        got = kernel(x, path=path, threads=2)
        assert isinstance(got, PackedActs) and got.shape == (s["n"], s["cout"], *d.shape[2:])
        assert torch.equal(got.words, want), path
        assert torch.equal(kernel(PackedActs.of(x), path=path).words, want), path  # packed in


@settings(max_examples=25, deadline=None)
@given(shapes)
def test_packed_input_gives_the_float_inputs_outputs(s):
    x, w, _ = make(s)
    g = torch.Generator().manual_seed(s["seed"] + 1)
    scale, bias = torch.randn(s["cout"], generator=g), torch.randn(s["cout"], generator=g)
    kernel = BinaryConvKernel(pack_signs(w), s["cin"], scale, bias, s["stride"], s["pad"])
    want = dots(x, w, s["stride"], s["pad"]) * scale[:, None, None] + bias[:, None, None]
    for path in available_paths():
        assert torch.equal(kernel(PackedActs.of(x), path=path, threads=2), want), path


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
