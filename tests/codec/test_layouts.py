"""Each transform kind says how its tensor is stored; the format knows no transform or zoo."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cnnzip import codec
from cnnzip.binary import BWN
from cnnzip.codec import container, encode
from cnnzip.codec import model as codec_model
from cnnzip.codec.layouts import layout_of
from cnnzip.errors import CnnzipError
from cnnzip.models import build_model
from cnnzip.prune import Mask
from cnnzip.quantize import SharedWeight
from cnnzip.transforms import WeightTransform, add_transform


class _Scale(WeightTransform):
    """A transform kind that registers no layout: its tensor is stored dense."""

    kind = "test-scale"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return 2 * weight


def test_each_kind_registers_its_encoding() -> None:
    mask = torch.tensor([True, False, True])
    shared = SharedWeight(torch.tensor([0, 1, 0]), torch.tensor([0.5, -0.5]), mask)
    assert layout_of([Mask(mask)]).encoding == "sparse"
    assert torch.equal(layout_of([Mask(mask)]).mask, mask)
    assert layout_of([BWN()]).encoding == "binary"
    assert layout_of([shared]).codebook is shared.codebook
    assert layout_of([Mask(mask), shared]).encoding == "shared"  # a codebook over a mask
    assert layout_of([_Scale()]) is None
    assert layout_of([]) is None


def test_unregistered_kind_is_stored_dense() -> None:
    layer = nn.Linear(3, 2)
    add_transform(layer, "weight", _Scale())
    entries = container.unpack(encode(layer)).header["tensors"]
    weight = next(e for e in entries if e["name"] == "weight")
    assert weight["encoding"] == "dense"


def test_format_alone_needs_a_builder_for_a_zoo_file(tmp_path, small: bytes) -> None:
    path = tmp_path / "m.cnnz"
    path.write_bytes(small)
    with pytest.raises(CnnzipError, match=r"no model and no builder: use cnnzip\.load"):
        codec_model.load(path)
    built = []

    def build(name: str, kwargs: dict, max_params: int) -> nn.Module:
        built.append(name)
        return build_model(name, kwargs, max_params=max_params)

    loaded = codec_model.load(path, build=build)
    assert built and set(built) == {"lenet300"}
    reference = codec.load(path).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
