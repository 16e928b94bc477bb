"""Files the codec tests take apart: a small Deep Compression file and tools to make it lie."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import ClassVar

import pytest
import torch
import torch.nn as nn

from cnnzip.codec import container, encode
from cnnzip.models import get_model
from cnnzip.prune import Mask
from cnnzip.quantize import share_weights
from cnnzip.transforms import add_transform


@pytest.fixture(scope="session")
def small() -> bytes:
    """The .cnnz of ``Tools.small_model``."""
    return encode(Tools.small_model(), arch=Tools.SMALL_ARCH)


class Tools:
    """Take a .cnnz apart and put it back with checksums recomputed, so a lie gets past them."""

    SMALL_ARCH: ClassVar[dict] = {"name": "lenet300", "kwargs": {"hidden": [30, 20]}}

    @staticmethod
    def small_model() -> nn.Module:
        """LeNet-300 (30, 20 hidden) pruned to half and shared at 3-4 bits."""
        torch.manual_seed(0)
        model = get_model("lenet300", hidden=(30, 20))
        for name in ("fc1", "fc2", "fc3"):
            w = model.get_submodule(name).weight.detach()
            add_transform(model, f"{name}.weight", Mask(w.abs() > w.abs().median()))
        share_weights(model, bits={"fc1.weight": 4, "linear": 3})
        return model

    @staticmethod
    def parts(data: bytes) -> tuple[dict, list[bytes]]:
        cf = container.unpack(data)
        return json.loads(json.dumps(cf.header)), list(cf.sections)

    @staticmethod
    def repack(data: bytes, edit: Callable[[dict, list[bytes]], None]) -> bytes:
        """``data`` after ``edit(header, sections)``, table and checksums recomputed."""
        header, sections = Tools.parts(data)
        edit(header, sections)
        header.pop("sections")
        return container.pack(header, sections)

    @staticmethod
    def tensor(header: dict, name: str) -> dict:
        return next(t for t in header["tensors"] if t["name"] == name)

    @staticmethod
    def constant_lenet300(hidden: list[int]) -> bytes:
        """A valid tiny file: every lenet300 tensor shared with one cluster, kept whole."""
        shapes = {
            "fc1.weight": [hidden[0], 784], "fc1.bias": [hidden[0]],
            "fc2.weight": [hidden[1], hidden[0]], "fc2.bias": [hidden[1]],
            "fc3.weight": [10, hidden[1]], "fc3.bias": [10],
        }  # fmt: skip
        tensors = []
        for name, shape in shapes.items():
            n = math.prod(shape)
            const = {"coder": "const", "n": n, "alphabet": 1, "table_bytes": 0, "symbol": 0}
            tensors.append({
                "name": name, "shape": shape, "encoding": "shared", "dtype": "float32",
                "index_bits": 1, "count": n, "k": 1, "codebook": 0,
                "gaps": {**const, "alphabet": 2, "section": 1}, "codes": {**const, "section": 1},
            })  # fmt: skip
        arch = {"name": "lenet300", "kwargs": {"hidden": hidden}}
        header = {"format": "cnnz", "arch": arch, "meta": {}, "tensors": tensors}
        return container.pack(header, [struct.pack("<f", 0.25), b""])


@pytest.fixture(scope="session")
def tools() -> type[Tools]:
    return Tools
