"""Reproduce the survey's cost tables with ``cnnzip.profile``, and put theory beside measurement.

1. The reference table: parameters and MACs (multiply-accumulates) of every zoo
   model at 224x224 against the published numbers (../shared/REFERENCE.md
   section 7, the MobileNet and ShuffleNet papers).
2. MAC ratio against measured latency ratio: the compact networks against
   AlexNet and VGG-16 on this CPU, batch 1, at 1 and 2 threads. The survey's
   point: fewer MACs is not the same speedup (ShuffleNet: 4x fewer FLOPs gave
   ~2.6x on ARM).

    .venv/bin/python benchmarks/profile_zoo.py [--runs 5] [--warmup 2] [--threads 1 2]

Prints markdown tables (the ones in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import cnnzip
from cnnzip.models import get_model
from cnnzip.profiling import Latency, compare, measure_latency

SHAPE = (3, 224, 224)

# name, builder kwargs, published params (exact, or as the paper rounds them), published MACs
REFERENCES: list[tuple[str, dict[str, Any], int | str, float]] = [
    ("alexnet", {}, 61_100_840, 0.71e9),
    ("vgg16", {}, 138_357_544, 15.5e9),
    ("googlenet", {}, 6_624_904, 1.5e9),
    ("resnet18", {}, 11_689_512, 1.8e9),
    ("resnet50", {}, 25_557_032, 4.1e9),
    ("squeezenet1_0", {}, 1_248_424, 0.82e9),
    ("squeezenet1_1", {}, 1_235_496, 0.35e9),
    ("mobilenet_v1", {"width_mult": 1.0}, "4.2 M", 569e6),
    ("mobilenet_v1", {"width_mult": 0.75}, "2.6 M", 325e6),
    ("mobilenet_v1", {"width_mult": 0.5}, "1.3 M", 149e6),
    ("mobilenet_v1", {"width_mult": 0.25}, "0.47 M", 41e6),
    ("shufflenet_v1", {"groups": 1}, "-", 143e6),
    ("shufflenet_v1", {"groups": 2}, "-", 140e6),
    ("shufflenet_v1", {"groups": 3}, "1.9 M", 137e6),
    ("shufflenet_v1", {"groups": 4}, "-", 133e6),
    ("shufflenet_v1", {"groups": 8}, "-", 137e6),
]

COMPACT = [
    ("squeezenet1_0", {}),
    ("squeezenet1_1", {}),
    ("mobilenet_v1", {}),
    ("shufflenet_v1", {"groups": 3}),
]
BASELINES = [("alexnet", {}), ("vgg16", {})]


def _label(name: str, kwargs: dict[str, Any]) -> str:
    return " ".join([name, *(f"{k}={v}" for k, v in kwargs.items())])


def reference_table() -> str:
    """Counts only, so the models are built on the meta device (no weights allocated)."""
    lines = [
        "| model | params | published | MACs | published | MACs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, kwargs, params, macs in REFERENCES:
        with torch.device("meta"):
            report = cnnzip.profile(get_model(name, **kwargs), SHAPE)
        published = f"{params:,}" if isinstance(params, int) else params
        lines.append(
            f"| {_label(name, kwargs)} | {report.params:,} | {published} | "
            f"{report.macs / 1e6:,.1f} M | {macs / 1e6:,.0f} M | {report.macs / macs - 1:+.2%} |"
        )
    return "\n".join(lines)


def latency_table(threads: int, runs: int, warmup: int) -> str:
    """Models timed round-robin, one forward each per round, so that load from other jobs
    drifting during the benchmark hits every model alike; ratios are baseline / row."""
    models = {_label(n, kw): get_model(n, **kw) for n, kw in [*BASELINES, *COMPACT]}
    reports = {label: cnnzip.profile(m, SHAPE) for label, m in models.items()}
    for model in models.values():
        measure_latency(model, SHAPE, runs=1, warmup=warmup, threads=threads)
    times: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(runs):
        for label, model in models.items():
            lat = measure_latency(model, SHAPE, runs=1, warmup=0, threads=threads)
            times[label].append(lat.median_ms)
    for label, report in reports.items():
        setting = {"warmup": warmup, "batch": 1, "threads": threads, "device": "cpu"}
        report.latency = Latency.from_times(times[label], **setting)
    head = "| model | MACs | latency ms (IQR) |"
    rule = "|---|---:|---:|"
    for base, _ in BASELINES:
        head += f" MACs {base}/x | latency {base}/x |"
        rule += "---:|---:|"
    title = f"{threads} thread(s), batch 1, median of {runs} rounds after {warmup} warm-up"
    lines = [title, "", head, rule]
    for label, report in reports.items():
        lat = report.latency
        assert lat is not None
        spread = f"{lat.median_ms:,.1f} ({lat.q1_ms:,.1f}-{lat.q3_ms:,.1f})"
        row = f"| {label} | {report.macs / 1e6:,.0f} M | {spread} |"
        for base, _ in BASELINES:
            ratios = compare(report, reports[base])
            row += f" {ratios['mac_ratio']:.2f}x | {ratios['latency_ratio']:.2f}x |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(reference_table())
    for threads in args.threads:
        print()
        print(latency_table(threads, args.runs, args.warmup))


if __name__ == "__main__":
    main()
