"""BWN / XNOR layers against hand computations and torch references; conversion; round trips."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cnnzip
from cnnzip.binary import BWN, XnorConv2d, binary_layers, convert, sign_ste
from cnnzip.binary.scales import filter_alpha, norm_affine
from cnnzip.errors import ModelError
from cnnzip.models import get_model
from cnnzip.runtime import available_paths, compile_binary
from cnnzip.transforms import describe


def test_sign_ste_forward_and_clipped_straight_through_gradient():
    x = torch.tensor([-2.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1, -1, 1, 1, 1, 1, 1]  # x < 0 -> -1, as the kernels
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]  # 1 where |x| <= 1


def test_bwn_is_alpha_times_sign_with_alpha_the_mean_abs_per_filter():
    w = torch.tensor([[[[0.5, -1.5]]], [[[-2.0, -4.0]]]])  # (2, 1, 1, 2)
    out = BWN()(w)
    assert out.flatten().tolist() == [1.0, -1.0, -3.0, -3.0]  # alpha = 1.0 and 3.0


def test_convert_keeps_first_and_last_and_records_transforms():
    model = convert(get_model("lenet5"), "bwn")
    assert binary_layers(get_model("lenet5")) == ["conv2", "fc1"]
    assert [d["target"] for d in describe(model)] == ["conv2.weight", "fc1.weight"]
    w = model.conv2.parametrizations.weight.original
    alpha = w.abs().mean((1, 2, 3), keepdim=True)
    assert torch.equal(model.conv2.weight, alpha * torch.where(w < 0, -1.0, 1.0))


def test_convert_keep_by_name_and_unknown_names():
    assert binary_layers(get_model("lenet5"), keep=["fc2"]) == ["conv1", "conv2", "fc1"]
    with pytest.raises(ModelError, match="conv9"):
        convert(get_model("lenet5"), "xnor", keep=["conv9"])
    with pytest.raises(ModelError, match="mode"):
        convert(get_model("lenet5"), "ternary")


@pytest.mark.parametrize("scale_k", [True, False])
def test_xnor_conv_equals_a_hand_built_reference(scale_k):
    torch.manual_seed(0)
    conv = XnorConv2d(6, 5, 3, stride=2, padding=1, scale_k=scale_k).eval()
    x = torch.randn(2, 6, 9, 8)
    xn = conv.norm(x)
    xb = F.pad(torch.where(xn < 0, -1.0, 1.0), (1, 1, 1, 1), value=1.0)  # +1 padding
    want = F.conv2d(xb, conv.weight, stride=2)
    if scale_k:  # XNOR-Net: K = A * k, A = mean_c |I|, k a 3x3 box filter
        a = F.pad(xn.abs().mean(1, keepdim=True), (1, 1, 1, 1))
        want = want * F.conv2d(a, torch.full((1, 1, 3, 3), 1 / 9), stride=2)
    want = want + conv.bias[:, None, None]
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)


def trained_xnor(toy_data):
    torch.manual_seed(0)
    model = convert(get_model("lenet5"), "xnor")
    cfg = cnnzip.train.TrainConfig(epochs=2, batch_size=64, lr=5e-3, seed=0)
    cnnzip.train.fit(model, toy_data, cfg, progress=False)
    return model.eval()


@pytest.mark.slow
def test_xnor_lenet_trains_and_runs_on_every_kernel_path(toy_data, monkeypatch):
    model = trained_xnor(toy_data)
    assert cnnzip.train.evaluate(model, toy_data.test)["accuracy"] > 0.5  # chance is 0.1
    x = toy_data.test.x[:16]
    fast = compile_binary(model)
    with torch.no_grad():
        want = model(x)
        for path in available_paths():
            monkeypatch.setenv("CNNZIP_KERNEL", path)
            # float rounding differs (alpha applied after the sum), the +-1 sums do not
            torch.testing.assert_close(fast(x), want, rtol=1e-4, atol=1e-4)


def test_binarize_run_round_trips_through_load_run(toy_data, tmp_path: Path):
    from cnnzip.binary.finetune import binarize_run

    torch.manual_seed(0)
    base = get_model("lenet5")
    cnnzip.save_run(tmp_path / "f", base, arch="lenet5", kwargs={})
    cfg = cnnzip.train.TrainConfig(epochs=1, seed=0)
    model, metrics = binarize_run(
        cnnzip.load_run(tmp_path / "f"), toy_data, tmp_path / "x", mode="xnor", config=cfg
    )
    again = cnnzip.load_run(tmp_path / "x").model.eval()
    x = toy_data.test.x[:8]
    with torch.no_grad():
        assert torch.equal(again(x), model.eval()(x))
    assert isinstance(again.conv2, XnorConv2d)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_filter_alpha_is_mean_abs_per_output_filter_and_bwn_uses_it():
    w = torch.tensor([[[[1.0, -3.0]]], [[[-0.5, 0.5]]]])  # (2, 1, 1, 2)
    assert torch.equal(filter_alpha(w), torch.tensor([2.0, 0.5]))
    assert torch.equal(BWN()(w), torch.tensor([[[[2.0, -2.0]]], [[[-0.5, 0.5]]]]))


def test_norm_affine_matches_eval_mode_batch_norm():
    norm = torch.nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, -2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
        norm.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        norm.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    scale, shift = norm_affine(norm)
    with torch.no_grad():
        expected = norm(x)
    assert torch.allclose(x * scale[:, None, None] + shift[:, None, None], expected, atol=1e-6)


def test_cnnz_stores_1_bit_per_weight_and_runs_on_the_kernels(tmp_path: Path):
    from cnnzip.runtime import load as load_fast

    torch.manual_seed(0)
    kwargs = {"base": "lenet5", "mode": "xnor"}
    model = get_model("binarized", **kwargs)
    for name in binary_layers(get_model("lenet5")):
        cnnzip.transforms.add_transform(model, f"{name}.weight", BWN())
    model.eval()
    size = cnnzip.codec.save(
        tmp_path / "m.cnnz", model, arch={"name": "binarized", "kwargs": kwargs}
    )
    float_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert size < float_bytes / 12  # conv1 and fc2 stay float32
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(cnnzip.load(tmp_path / "m.cnnz")(x), want)  # alpha * sign, exactly
        torch.testing.assert_close(load_fast(tmp_path / "m.cnnz")(x), want, rtol=1e-4, atol=1e-4)


def test_a_norm_after_an_xnor_conv_is_folded_into_the_kernel():
    torch.manual_seed(0)
    conv = XnorConv2d(16, 24, 3, padding=1)
    cnnzip.transforms.add_transform(conv, "weight", BWN())
    norm = torch.nn.BatchNorm2d(24)
    with torch.no_grad():  # a norm that really moves things
        norm.running_mean.uniform_(-2, 2)
        norm.running_var.uniform_(0.5, 3)
        norm.weight.uniform_(-2, 2)
        norm.bias.uniform_(-1, 1)
    model = torch.nn.Sequential(conv, norm).eval()
    fast = compile_binary(model)
    assert isinstance(fast[1], torch.nn.Identity)
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
