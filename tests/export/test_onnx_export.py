"""ONNX export checked in onnxruntime: each kind of cnnzip model, within 1e-4 of torch.

Tolerance, per case: max |onnxruntime - torch| <= 1e-4 on the export's own check (a
random batch of 3) and again here on a batch of 5, for dense, pruned (80%), shared
(4/3-bit codebooks over the pruned weights), BWN, XNOR (BatchNorm statistics moved off
0/1) and slim (half the channels) LeNet-5. Measured when written: 1.2e-7, 1.5e-8, 2.2e-8,
9.7e-8, 4.8e-8, 3.8e-8. The references are the torch models themselves, transforms on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnzip as cz
from cnnzip.binary import convert
from cnnzip.export import ExportError, MissingDependencyError, export_onnx, session
from cnnzip.export.graph import plain_copy
from cnnzip.prune import one_shot, prunable
from cnnzip.prune.structured import channel_groups, plan_channels, slim
from cnnzip.quantize import share_weights
from cnnzip.runtime import compile_binary

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 28, 28)


def _lenet5() -> nn.Module:
    torch.manual_seed(0)
    return cz.models.get_model("lenet5", num_classes=10).eval()


def _pruned() -> nn.Module:
    model = _lenet5()
    one_shot(model, {t: 0.8 for t in prunable(model)})
    return model


def _shared() -> nn.Module:
    model = _pruned()
    share_weights(model, bits={"conv": 4, "linear": 3})
    return model


def _slim() -> nn.Module:
    model = _lenet5()
    groups = channel_groups(model, SHAPE)
    ratios = {g.name: 0.5 for g in groups if g.prunable}
    return slim(model, plan_channels(model, groups, ratios)).eval()


def _binary(mode: str) -> nn.Module:
    model = convert(_lenet5(), mode)
    with torch.no_grad():  # running statistics away from 0/1, so the norms do something
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


CASES = {
    "dense": _lenet5,
    "pruned": _pruned,
    "shared": _shared,
    "bwn": lambda: _binary("bwn"),
    "xnor": lambda: _binary("xnor"),
    "slim": _slim,
}


def _onnx_out(path: Path, x: torch.Tensor) -> np.ndarray:
    return session(path).run(None, {"input": x.numpy()})[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_export_matches_torch_within_1e4(case: str, tmp_path: Path) -> None:
    model = CASES[case]()
    checked = export_onnx(model, SHAPE, tmp_path / "m.onnx")
    assert checked.max_abs_diff <= 1e-4 and checked.batch is None
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(7))  # another batch
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(_onnx_out(tmp_path / "m.onnx", x), want, rtol=0, atol=1e-4)


def test_graph_holds_the_effective_weights(tmp_path: Path) -> None:
    """Pruned zeros are kept, shared weights decoded to their centroids, and the caller's
    model keeps its transforms (torch shares the parametrized class with a deep copy)."""
    model = _shared()
    export_onnx(model, SHAPE, tmp_path / "m.onnx")
    onnx = pytest.importorskip("onnx")
    inits = {
        i.name: onnx.numpy_helper.to_array(i)
        for i in onnx.load(tmp_path / "m.onnx").graph.initializer
    }
    conv2 = next(v for v in inits.values() if v.shape == (50, 20, 5, 5))
    want = cz.transforms.effective_tensor(model, "conv2.weight").numpy()
    np.testing.assert_array_equal(conv2, want)
    assert (conv2 == 0).mean() == pytest.approx(0.8, abs=1e-3) and len(np.unique(conv2)) <= 17
    assert set(cz.transforms.transforms_of(model)) == {
        f"{n}.weight" for n in ("conv1", "conv2", "fc1", "fc2")
    }
    model(torch.zeros(1, *SHAPE))  # still runs: its weight properties are intact


def test_plain_copy_binarizes_zero_to_plus_one() -> None:
    """cnnzip's convention (0 -> +1), which ONNX's Sign would break (0 -> 0)."""
    layer = plain_copy(nn.Sequential(cz.binary.BinActiv()))
    x = torch.tensor([-2.0, -0.0, 0.0, 0.5])
    assert layer(x).tolist() == [-1.0, 1.0, 1.0, 1.0]


@pytest.mark.slow
def test_a_layer_onnx_cannot_express_is_named(tmp_path: Path) -> None:
    """An XNOR block compiled to the C kernels traces into constants: the check fails and
    the error names the layer; no file is left."""
    fast = compile_binary(_binary("xnor"))
    with pytest.raises(ExportError, match=r"layer conv2 \(FastXnorConv2d\) has no ONNX form"):
        export_onnx(fast, SHAPE, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_forward_that_fails_to_trace_is_an_export_error(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.fft.fft(x.numpy()).real.astype(np.float32))

    with pytest.raises(ExportError, match="cannot export to ONNX"):
        export_onnx(nn.Sequential(nn.Flatten(), Odd()), SHAPE, tmp_path / "m.onnx")


def test_bad_opset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"opset 99 .* 9\.\.20"):
        export_onnx(_lenet5(), SHAPE, tmp_path / "m.onnx", opset=99)


def test_opset_is_written(tmp_path: Path) -> None:
    assert export_onnx(_lenet5(), SHAPE, tmp_path / "m.onnx", opset=17).opset == 17


def test_without_onnxruntime_one_line_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if absent
    with pytest.raises(MissingDependencyError) as info:
        export_onnx(_lenet5(), SHAPE, tmp_path / "m.onnx")
    message = str(info.value)
    assert (
        "\n" not in message and "onnxruntime" in message and "pip install 'cnnzip[onnx]'" in message
    )
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_of_several_outputs_is_refused(tmp_path: Path) -> None:
    class Two(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.flatten(1), 2 * x.flatten(1)

    with pytest.raises(ExportError, match="returns tuple; export takes one tensor"):
        export_onnx(Two(), SHAPE, tmp_path / "m.onnx")


def test_an_input_the_model_cannot_take_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError,
        match=r"forward fails on one sample of shape \(1, 20, 20\) \(RuntimeError: .*--input N",
    ):
        export_onnx(_lenet5(), (1, 20, 20), tmp_path / "m.onnx")  # fc1 wants 50 x 4 x 4


class _Loud(nn.Module):
    """Logits in the hundreds (an fc scaled by 400) and, with ``hidden``, one more output
    of about 0.08 computed in NumPy: traced into a constant, wrong on any other input by
    ~1e-3, far under 1e-4 of the largest logit but far over 1e-4 of its own value."""

    def __init__(self, hidden: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.hidden = nn.Linear(784, 10), hidden
        with torch.no_grad():
            self.fc.weight.mul_(400)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.flatten(1))  # (N, 10), |values| ~ 100s
        if not self.hidden:
            return logits
        extra = torch.tensor(0.1 * np.abs(x.numpy()).mean(), dtype=torch.float32)  # ()
        return torch.cat([logits, logits[:, :1] * 0 + extra], 1)  # (N, 11)


def test_the_tolerance_is_per_element_relative_to_that_element(tmp_path: Path) -> None:
    checked = export_onnx(_Loud(hidden=False), SHAPE, tmp_path / "m.onnx")
    with torch.no_grad():
        scale = float(_Loud(hidden=False)(torch.randn(3, *SHAPE)).abs().max())
    assert scale > 100 and 1e-4 < checked.max_abs_diff < 1e-4 * scale  # float32 sums at 100s
    assert "each element within 0.0001 + 0.0001 * |torch|" in checked.line()
    with pytest.raises(ExportError, match=r"where torch gives 0\.0\d+, over the limit 0\.0001"):
        export_onnx(_Loud(hidden=True), SHAPE, tmp_path / "h.onnx")  # 1e-4 * 100s would pass
    assert not (tmp_path / "h.onnx").exists()
