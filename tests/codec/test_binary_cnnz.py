"""Binarized models in .cnnz: the codec's "binary" encoding, through cnnzip.load and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cnnzip
from cnnzip.binary import convert
from cnnzip.cli import main
from cnnzip.codec import container, decode_state, inspect
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.models import get_model
from cnnzip.prune import Mask
from cnnzip.transforms import add_transform, transforms_of


def _binarized(mode: str) -> tuple[torch.nn.Module, dict]:
    """A binarized LeNet-5 with trained-looking float weights, and its header arch."""
    torch.manual_seed(0)
    kwargs = {"base": "lenet5", "mode": mode}
    model = convert(get_model("lenet5"), mode).eval()
    return model, {"name": "binarized", "kwargs": kwargs}


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_binarized_lenet5_round_trips_bit_exactly(tmp_path: Path, mode: str):
    model, arch = _binarized(mode)
    size = cnnzip.codec.save(tmp_path / "m.cnnz", model, arch=arch)
    loaded = cnnzip.load(tmp_path / "m.cnnz")
    assert not transforms_of(loaded)  # a plain module
    for name in ("conv2", "fc1"):
        w = getattr(model, name).parametrizations.weight.original.detach()
        alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)  # per output filter
        want = alpha * torch.where(w < 0, -1.0, 1.0)
        got = getattr(loaded, name).weight
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))  # bit for bit
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # 1 bit per weight of conv2 and fc1 (425,000 of 431,080) + their alphas; the rest float32
    rest = [v for k, v in loaded.state_dict().items() if k not in ("conv2.weight", "fc1.weight")]
    floats = 4 * sum(v.numel() for v in rest) + 4 * (50 + 500)
    assert size < (25_000 + 400_000) / 8 + floats + 4096  # + header, padding


def test_inspect_lists_binary_layers_with_their_bytes(tmp_path: Path):
    model, arch = _binarized("bwn")
    cnnzip.codec.save(tmp_path / "m.cnnz", model, arch=arch)
    report = inspect(tmp_path / "m.cnnz")
    layers = {layer["name"]: layer for layer in report.layers}
    conv2 = layers["conv2.weight"]
    assert conv2["encoding"] == "binary" and conv2["weights"] == 50 * 20 * 25
    assert conv2["bytes"]["dense"] == 4 * 25_000
    assert conv2["bytes"]["coded"] == 25_000 // 8 + 4 * 50  # sign bits + alpha
    assert conv2["weight_bits"] == 1.0
    assert layers["conv1.weight"]["encoding"] == "dense"
    assert report.ratio > 20


def test_binary_weights_mixed_with_a_mask_are_refused(tmp_path: Path):
    model, arch = _binarized("bwn")
    add_transform(model, "fc1.weight", Mask(torch.rand(500, 800) > 0.5))  # zeros among +-alpha
    with pytest.raises(cnnzip.CnnzipError, match="alpha"):
        cnnzip.codec.save(tmp_path / "m.cnnz", model, arch=arch)


def _edit(path: Path, out: Path, change) -> None:
    """Rewrite ``path`` with ``change(header, sections)`` applied, checksums made valid."""
    cf = container.read(path)
    header, sections = dict(cf.header), list(cf.sections)
    change(header, sections)
    container.write(out, header, sections)


def _fc1(header: dict) -> dict:
    return next(e for e in header["tensors"] if e["name"] == "fc1.weight")


def _set_section(key: str, data: bytes):
    def change(header: dict, sections: list[bytes]) -> None:
        sections[_fc1(header)[key]] = data

    return change


def _set_entry(key: str, value):
    def change(header: dict, sections: list[bytes]) -> None:
        _fc1(header)[key] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set_section("bits", b"\0" * 100), "sign bits"),
        (_set_section("alpha", np.full(500, -1.0, "<f4").tobytes()), "negative"),
        (_set_section("alpha", np.full(500, np.nan, "<f4").tobytes()), "not finite"),
        (_set_section("alpha", np.ones(499, "<f4").tobytes()), "float32"),
        (_set_entry("bits", 999), "section"),
        (_set_entry("alpha", "0"), "section"),
        (_set_entry("shape", [400_000]), "binary weights of shape"),
        (_set_entry("shape", [0, 800]), "binary weights of shape"),
    ],
)
def test_corrupt_binary_sections_fail_cleanly(tmp_path: Path, change, message: str):
    model, arch = _binarized("bwn")
    cnnzip.codec.save(tmp_path / "m.cnnz", model, arch=arch)
    _edit(tmp_path / "m.cnnz", tmp_path / "bad.cnnz", change)
    with pytest.raises(CnnzFormatError, match=message):
        decode_state(container.read(tmp_path / "bad.cnnz"))
    with pytest.raises(cnnzip.CnnzipError):  # the architecture may object first
        cnnzip.load(tmp_path / "bad.cnnz")
    code, out = _cli("inspect", str(tmp_path / "bad.cnnz"))
    assert code == 2 and out.startswith("error:") and "Traceback" not in out


def test_a_flipped_bit_in_the_sign_bits_fails_its_checksum(tmp_path: Path):
    model, arch = _binarized("bwn")
    cnnzip.codec.save(tmp_path / "m.cnnz", model, arch=arch)
    cf = container.read(tmp_path / "m.cnnz")
    data = bytearray((tmp_path / "m.cnnz").read_bytes())
    bits = cf.sections[_fc1(cf.header)["bits"]]
    data[data.index(bits) + 1000] ^= 0x10
    (tmp_path / "bad.cnnz").write_bytes(bytes(data))
    with pytest.raises(CnnzFormatError, match="CRC32"):
        cnnzip.load(tmp_path / "bad.cnnz")


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
def test_binarize_cnnz_evaluates_and_inspects_through_the_cli(tmp_path: Path, fmnist_dir: Path):
    data = ("--data", "fashion-mnist", "--data-dir", str(fmnist_dir), "--limit", "600")
    code, out = _cli("train", "lenet5", *data, "--epochs", "1", "-o", str(tmp_path / "f"))
    assert code == 0, out
    cnnz = str(tmp_path / "b.cnnz")
    args = ("--mode", "bwn", *data, "--epochs", "1", "-o", str(tmp_path / "b"), "--cnnz", cnnz)
    code, out = _cli("binarize", str(tmp_path / "f"), *args, "--json")
    assert code == 0, out
    run = json.loads(out.strip().splitlines()[-1])
    code, out = _cli("eval", cnnz, *data, "--json")
    assert code == 0, out
    assert json.loads(out.strip().splitlines()[-1])["accuracy"] == run["test_accuracy"]
    code, out = _cli("inspect", cnnz, "--json")
    assert code == 0, out
    layers = {row["name"]: row for row in json.loads(out.strip().splitlines()[-1])["layers"]}
    assert layers["fc1.weight"]["encoding"] == "binary"
    assert layers["fc1.weight"]["bytes"]["coded"] == 400_000 // 8 + 4 * 500
    loaded = cnnzip.load(cnnz)
    weights = cnnzip.load_run(tmp_path / "b").model.fc1.weight
    assert torch.equal(loaded.fc1.weight, weights)
    assert run["cnnz_bytes"] == Path(cnnz).stat().st_size
