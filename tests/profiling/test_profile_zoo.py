"""The zoo profiled at 224: the published parameter counts exactly, MACs within 2%.

References: ../shared/REFERENCE.md section 7 (torchvision's counts; MACs at
224x224), the MobileNet paper (Table 6/7: mult-adds by width multiplier) and
the ShuffleNet paper (Table 2: 1x complexity by number of groups).
"""

from __future__ import annotations

import re
import time
from functools import cache
from typing import Any

import pytest
import torch

import cnnzip
from cnnzip.models import get_model, list_models
from cnnzip.profiling import ProfileReport

# name, builder kwargs, exact parameter count (None: the paper gives none exactly), MACs
REFERENCES: list[tuple[str, dict[str, Any], int | None, float]] = [
    ("alexnet", {}, 61_100_840, 0.71e9),
    ("vgg16", {}, 138_357_544, 15.5e9),
    ("googlenet", {}, 6_624_904, 1.5e9),
    ("resnet18", {}, 11_689_512, 1.8e9),
    ("resnet50", {}, 25_557_032, 4.1e9),
    ("squeezenet1_0", {}, 1_248_424, 0.82e9),
    ("squeezenet1_1", {}, 1_235_496, 0.35e9),
    ("mobilenet_v1", {"width_mult": 1.0}, None, 569e6),
    ("mobilenet_v1", {"width_mult": 0.75}, None, 325e6),
    ("mobilenet_v1", {"width_mult": 0.5}, None, 149e6),
    ("mobilenet_v1", {"width_mult": 0.25}, None, 41e6),
    ("shufflenet_v1", {"groups": 1}, None, 143e6),
    ("shufflenet_v1", {"groups": 2}, None, 140e6),
    ("shufflenet_v1", {"groups": 3}, None, 137e6),
    ("shufflenet_v1", {"groups": 4}, None, 133e6),
    ("shufflenet_v1", {"groups": 8}, None, 137e6),
]


@cache
def _profiled(name: str, kwargs: tuple[tuple[str, Any], ...]) -> ProfileReport:
    """Built on the meta device: counts need shapes only, and weight init would dominate."""
    if name not in list_models():
        pytest.skip(f"{name} is not registered yet")
    with torch.device("meta"):
        model = get_model(name, **dict(kwargs))
    return cnnzip.profile(model, (3, 224, 224))


@pytest.mark.parametrize(
    ("name", "kwargs", "params", "macs"),
    REFERENCES,
    ids=[
        f"{n}-{'-'.join(f'{k}{v}' for k, v in kw.items())}".rstrip("-")
        for n, kw, _, _ in REFERENCES
    ],
)
def test_zoo_matches_the_references(
    name: str, kwargs: dict[str, Any], params: int | None, macs: float
) -> None:
    report = _profiled(name, tuple(sorted(kwargs.items())))
    if params is not None:
        assert report.params == params
    assert report.macs == pytest.approx(macs, rel=0.02)
    assert report.uncounted == []


def test_shufflenet_docstring_gives_the_measured_macs() -> None:
    import cnnzip.models.shufflenet as shufflenet

    text = " ".join(shufflenet.__doc__.split())
    found = re.search(r"are ([\d / ]+) M for groups ([\d / ]+?) \(", text)
    assert found is not None
    macs = [int(m) for m in found[1].split(" / ")]
    groups = [int(g) for g in found[2].split(" / ")]
    measured = [round(_profiled("shufflenet_v1", (("groups", g),)).macs / 1e6) for g in groups]
    assert macs == measured


def test_mobilenet_mac_shares_match_its_table_2() -> None:
    """MobileNet paper Table 2: 94.86% of mult-adds in 1x1 convs, 3.06% depthwise, 0.18% fc."""
    report = _profiled("mobilenet_v1", (("width_mult", 1.0),))
    shares = report.shares()["macs"]
    assert shares["1x1 conv"] == pytest.approx(0.9486, abs=0.002)
    assert shares["depthwise conv"] == pytest.approx(0.0306, abs=0.002)
    assert shares["fully connected"] == pytest.approx(0.0018, abs=0.0005)


@pytest.mark.slow
def test_profiling_vgg16_at_224_takes_under_5_seconds() -> None:
    model = get_model("vgg16")  # real weights, as a user has them
    start = time.perf_counter()
    report = cnnzip.profile(model, (3, 224, 224))
    assert time.perf_counter() - start < 5.0
    assert report.macs == _profiled("vgg16", ()).macs
