"""``profile`` refuses, before allocating, an input whose forward would not fit --max-memory."""

from __future__ import annotations

import math
import re

import pytest
import torch.nn as nn
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.cli.profile import check_memory
from cnnzip.errors import CnnzipError
from cnnzip.models import get_model
from cnnzip.profiling import profile


def test_the_input_alone_is_checked_and_the_limit_can_be_raised() -> None:
    model = nn.Linear(1, 1)  # float32: 4 bytes an element
    shape = (3, 100_000, 100_000)  # 120 GB, what `profile vgg16 --input 100000` asked for
    with pytest.raises(CnnzipError, match=r"needs about 111\.8 GB, over --max-memory 100 GB"):
        check_memory("vgg16", model, shape, 1, 100.0)
    check_memory("vgg16", model, shape, 1, 112.0)  # the override lets it through


@pytest.mark.parametrize(
    "verb",
    [["profile", "resnet18", "--input", "1000", "--latency"], ["bench", "sparse", "resnet18"]],
)
def test_a_batch_of_the_largest_activation_is_checked(verb: list[str]) -> None:
    shape = (3, 1000, 1000) if "--input" in verb else (3, 224, 224)
    result = CliRunner().invoke(main, [*verb, "--batch", "64", "--max-memory", "0.2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # the reference: 64 x (the input + the largest output of the traced forward)
    report = profile(get_model("resnet18", img_size=shape[1]), shape)
    largest = max(layer.activation_bytes for layer in report.layers)
    want = 64 * (4 * math.prod(shape) + largest) / 2**30
    shown = float(re.search(r"needs about ([\d.]+) GB", result.output).group(1))
    assert shown == pytest.approx(want, abs=0.05) and want > 0.2
