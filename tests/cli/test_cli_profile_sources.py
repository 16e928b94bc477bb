"""``cnnzip profile`` through the real CLI: zoo names, run directories, --compare, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnzip.binary import convert
from cnnzip.cli import main
from cnnzip.models import get_model
from cnnzip.runs import save_run

# Caffe LeNet-5 at 28x28 by hand: conv1 20x24x24 outputs x 1*5*5, conv2 50x8x8 x 20*5*5,
# fc1 800 -> 500, fc2 500 -> 10
LENET5_MACS = 20 * 24 * 24 * 25 + 50 * 8 * 8 * 20 * 25 + 800 * 500 + 500 * 10
LENET300_MACS = 784 * 300 + 300 * 100 + 100 * 10


def _json(*args: str) -> dict:
    result = CliRunner().invoke(main, ["profile", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.mark.slow
def test_zoo_name_json() -> None:
    body = _json("lenet5")
    assert (body["params"], body["macs"], body["input_shape"]) == (
        431_080,
        LENET5_MACS,
        [1, 28, 28],
    )
    assert [layer["name"] for layer in body["layers"]][:2] == ["conv1", "pool1"]
    assert body["latency"] is None


def test_input_size_reaches_the_builder() -> None:
    """MobileNet paper Table 7: 1.0 MobileNet at 128x128 costs 186M mult-adds."""
    body = _json("mobilenet_v1", "--input", "128")
    assert body["input_shape"] == [3, 128, 128]
    assert body["macs"] == pytest.approx(186e6, rel=0.02)


def test_text_output_names_its_units() -> None:
    result = CliRunner().invoke(main, ["profile", "lenet5", "-k", "num_classes=7"])
    assert result.exit_code == 0 and "MACs = multiply-accumulates" in result.output
    assert f"{LENET5_MACS - 5000 + 3500:,}" in result.output  # fc2 now 500 -> 7


def test_run_directory(tmp_path: Path) -> None:
    save_run(tmp_path / "run", get_model("lenet300"), arch="lenet300", kwargs={"in_features": 784})
    body = _json(str(tmp_path / "run"), "--latency", "--runs", "2", "--warmup", "0")
    assert (body["params"], body["macs"], body["input_shape"]) == (266_610, LENET300_MACS, [784])
    assert body["latency"]["runs"] == 2 and body["latency"]["median_ms"] > 0


def test_binarized_run_takes_its_base_models_input(tmp_path: Path) -> None:
    kwargs = {"base": "lenet5", "base_kwargs": {"img_size": 28, "in_chans": 1}, "mode": "bwn"}
    model = convert(get_model("lenet5"), "bwn")  # as ``cnnzip binarize`` saves it
    save_run(tmp_path / "run", model, arch="binarized", kwargs=kwargs)
    body = _json(str(tmp_path / "run"))
    assert (body["macs"], body["input_shape"], body["uncounted"]) == (LENET5_MACS, [1, 28, 28], [])
    # conv1 and fc2 stay float32; conv2 and fc1: a bit a weight + float32 alpha and bias
    float_bytes = 4 * (20 * 25 + 20) + 4 * (500 * 10 + 10)
    binary_bytes = 50 * 500 // 8 + 8 * 50 + 800 * 500 // 8 + 8 * 500
    assert body["weight_bytes"] == float_bytes + binary_bytes


def test_compare_prints_mac_and_latency_ratios() -> None:
    body = _json(
        "--compare", "lenet300", "lenet5", "--runs", "3", "--warmup", "1", "--threads", "1"
    )
    assert body["mac_ratio"] == pytest.approx(LENET5_MACS / LENET300_MACS)
    assert body["latency_ratio"] == pytest.approx(body["latency_ms"][1] / body["latency_ms"][0])
    assert (body["threads"], body["batch"], body["runs"]) == (1, 1, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchnet"], "unknown model"),
        (["--compare", "lenet5"], "two models"),
        (["lenet5", "lenet300"], "one NAME or RUN"),
        (["lenet300", "--input", "32"], "in_features"),
    ],
)
def test_bad_input_is_one_error_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["profile", *args])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
