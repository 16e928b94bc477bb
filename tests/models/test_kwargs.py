"""Builder arguments from run.json, .cnnz headers and ``-k`` are checked before anything
is allocated: bad sizes, absurd structures and oversized models are ModelErrors."""

from __future__ import annotations

import time

import pytest
import torch.nn as nn

from cnnzip.errors import ModelError
from cnnzip.models import build_model, check_model_kwargs, get_model, registry


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("lenet300", {"num_classes": -1}, "num_classes=-1 must be an integer >= 1"),
        ("lenet300", {"hidden": [-5, 10]}, r"hidden=\[-5, 10\] must be a non-empty list"),
        ("lenet300", {"hidden": []}, "must be a non-empty list"),
        ("lenet300", {"hidden": [8]}, r"hidden=\[8\] must have 2 entries"),
        ("lenet300", {"hidden": [8, 4, 2]}, r"hidden=\[8, 4, 2\] must have 2 entries"),
        ("lenet300", {"in_features": 2**62}, "in_features=4611686018427387904 is beyond"),
        ("lenet300", {"hidden": [100_000, 100_000]}, "10,079,600,010 elements, over the cap"),
        ("mlp", {"hidden": [10] * 20_000}, "more than 256 entries"),
        ("lenet5", {"in_chans": True}, "in_chans=True must be an integer"),
        ("resnet18", {"num_classes": 2.5}, "num_classes=2.5 must be an integer"),
        ("vgg16", {"dropout": float("nan")}, "dropout=nan must be finite"),
        ("mobilenet_v1", {"width_mult": 1e6}, "over the cap"),
        ("lenet5", {"img_size": 8}, "ValueError: img_size 8 is too small"),
        ("shufflenet_v1", {"scale": 0.0}, "cannot build 'shufflenet_v1'.*scale must be positive"),
        ("binarized", {"num_classes": -1}, "'lenet5': num_classes=-1"),  # reaches the base
        ("binarized", {"base_kwargs": {"a": [[[[1]]]]}}, "nested deeper than 4"),
    ],
)
def test_bad_kwargs_fail_before_building(name: str, kwargs: dict, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelError, match=message):
        get_model(name, **kwargs)
    assert time.perf_counter() - start < 1.0  # refused up front (the 20,000-layer MLP took 18 s)


def test_the_element_cap_counts_parameters_and_buffers_and_can_be_raised() -> None:
    check_model_kwargs("lenet300", {}, max_params=266_610)  # exactly its size
    with pytest.raises(ModelError, match="266,610 elements, over the cap of 266,609"):
        check_model_kwargs("lenet300", {}, max_params=266_609)
    with pytest.raises(ModelError, match="over the cap"):
        build_model("lenet300", {}, max_params=1000)
    assert isinstance(build_model("lenet300", {"hidden": [3, 2]}, max_params=3000), nn.Module)


@pytest.mark.parametrize("key", ["max_params", "_max_params", "name"])
def test_kwargs_from_a_file_cannot_raise_the_cap_or_clash(key: str) -> None:
    with pytest.raises(ModelError, match=f"takes no argument {key}"):
        get_model("lenet300", **{key: 10**12})


@pytest.mark.parametrize("error", [ZeroDivisionError, RuntimeError, AttributeError, IndexError])
def test_anything_a_builder_raises_is_a_model_error(monkeypatch, error: type) -> None:
    def broken(*, size: int = 3) -> nn.Module:
        raise error("boom")

    monkeypatch.setitem(registry._BUILDERS, "broken", broken)
    with pytest.raises(
        ModelError, match=rf"cannot build 'broken' with {{'size': 2}}: {error.__name__}: boom"
    ):
        get_model("broken", size=2)
