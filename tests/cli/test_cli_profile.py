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
        check_memory("vgg16", model, shape, 1, 0, 100.0)
    check_memory("vgg16", model, shape, 1, 0, 112.0)  # the override lets it through


def test_latency_checks_a_batch_of_the_largest_activation() -> None:
    args = ["profile", "resnet18", "--input", "1000", "--latency", "--batch", "64"]
    result = CliRunner().invoke(main, [*args, "--max-memory", "2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # the reference: 64 x (the input + the largest output of the traced forward)
    report = profile(get_model("resnet18", img_size=1000), (3, 1000, 1000))
    largest = max(layer.activation_bytes for layer in report.layers)
    want = 64 * (4 * math.prod((3, 1000, 1000)) + largest) / 2**30
    shown = float(re.search(r"needs about ([\d.]+) GB", result.output).group(1))
    assert shown == pytest.approx(want, abs=0.05) and want > 2
