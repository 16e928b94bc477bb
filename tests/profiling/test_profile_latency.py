"""Measured latency: statistics in order, thread count stated and restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnzip
from cnnzip.errors import CnnzipError
from cnnzip.models.running import example_input, is_channels_last
from cnnzip.profiling import Latency, measure_latency


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))


def test_latency_statistics_and_threads_restored() -> None:
    before = torch.get_num_threads()
    model = _tiny().train()
    report = cnnzip.profile(model, (1, 28, 28), measure_latency=True, runs=7, warmup=1, threads=1)
    lat = report.latency
    assert lat is not None
    assert (lat.runs, lat.warmup, lat.batch, lat.threads, lat.device) == (7, 1, 1, 1, "cpu")
    assert 0 < lat.min_ms <= lat.q1_ms <= lat.median_ms <= lat.q3_ms <= lat.max_ms
    assert torch.get_num_threads() == before
    assert model.training  # its mode is given back after the eval-mode forwards
    assert "batch 1, 1 thread(s)" in str(report)
    assert report.to_dict()["latency"]["median_ms"] == lat.median_ms


def test_latency_counts_the_whole_batch() -> None:
    calls = []
    model = _tiny()
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    measure_latency(model, (1, 28, 28), runs=3, warmup=2, batch=5)
    assert calls == [5] * 5


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"batch": 0}, {"threads": 0}])
def test_bad_latency_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(CnnzipError):
        measure_latency(_tiny(), (1, 28, 28), **kwargs)


def test_latency_summary_matches_numpy_percentiles() -> None:
    times = [4.0, 1.0, 3.0, 2.0, 5.0, 9.0]
    lat = Latency.from_times(times, warmup=0, batch=1, threads=1, device="cpu")
    q1, median, q3 = np.percentile(times, [25, 50, 75])  # linear interpolation
    assert (lat.q1_ms, lat.median_ms, lat.q3_ms) == pytest.approx((q1, median, q3))
    assert (lat.min_ms, lat.max_ms, lat.runs) == (1.0, 9.0, 6)


def test_the_example_input_follows_a_channels_last_model() -> None:
    """A channels-last model is timed on a channels-last input (else every conv converts
    it first and the layout's gain is hidden); an NCHW model on a contiguous one."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 1))
    x = example_input(net, (1, 3, 8, 8))
    assert x.is_contiguous() and not is_channels_last(net)
    net = net.to(memory_format=torch.channels_last)
    x = example_input(net, (1, 3, 8, 8))
    assert is_channels_last(net) and not x.is_contiguous()
    assert x.is_contiguous(memory_format=torch.channels_last) and x.shape == (1, 3, 8, 8)
