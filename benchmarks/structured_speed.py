"""Structured pruning's speed: does a model with half the MACs run twice as fast at batch 1?

    .venv/bin/python benchmarks/structured_speed.py                     # the issue's table
    .venv/bin/python benchmarks/structured_speed.py --models resnet18 --size 32 \\
        --threads 1 --rounds 1 --runs 2                                  # smoke test

For each model (resnet18, mobilenet_v1, shufflenet_v1 g=3 at 224, random weights: speed
does not depend on them) and each of ``--plans``, channels are removed by L1 norm until
at most ``--macs`` of the MACs remain (cnnzip.prune.structured.allocate_channels):
"uniform" removes one share of every group; "latency" keeps the same MAC budget but cuts
more where a per-group latency table, measured once at one thread in ``--table-layout``,
saves more time per MAC (cnnzip.prune.structured.latency); ``--branches 6`` gives each
plan a variant that first removes 6 residual branches whole (``allocate_channels(...,
branches=6)``: fewer layers, each of which pays a fixed cost at batch 1, and the
width search on the rest). ``--round-to 8`` keeps pruned
widths multiples of 8 (whole AVX2 vectors; groups cut in whole shuffle columns or conv
groups keep their own step). The slim copies (real smaller tensors) and the original
are timed at batch 1 with 1 and 2 threads, interleaved in this one process (original,
slim, slim, original, ... ``--rounds`` times, each the median of ``--runs`` forwards,
the fastest round kept) so that a load change hits them alike, in torch's default NCHW layout and in
channels-last (``model.to(memory_format=torch.channels_last)``, the input too), where
oneDNN's convolutions run fastest; the models compared always share one layout.
``--layouts onnxruntime`` times both instead as ONNX exports (cnnzip.export.export_onnx,
checked against torch) in onnxruntime CPU sessions of that many intra-op threads: a
deployment runtime that fuses BatchNorm and activations into the convs;
``--layouts torchscript`` as torch's own inference path (``Frozen``: traced, frozen,
``torch.jit.optimize_for_inference``). The
latency ratio (original / slim) is set against the MAC ratio; the issue asks for at
least 0.8x of it (2.0x fewer MACs -> >= 1.6x faster). Prints a markdown table and
writes it as JSON to ``--json`` (default benchmarks/results/structured_speed.json).
Run it on a quiet machine: everything else on the cores shows in the ratios.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnzip.export import export_onnx
from cnnzip.export.graph import session
from cnnzip.models import get_model
from cnnzip.profiling import measure_latency, profile
from cnnzip.prune import PruneError
from cnnzip.prune.structured import slim
from cnnzip.prune.structured.allocate import allocate_channels

MODELS = {"resnet18": {}, "mobilenet_v1": {}, "shufflenet_v1": {"groups": 3}}
LAYOUTS = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}
RUNTIMES = ("onnxruntime", "torchscript")  # --layouts beyond torch's memory formats
GOAL = 0.8  # latency ratio / MAC ratio the issue asks for


class OnnxSession(nn.Module):
    """A model's ONNX export in an onnxruntime session, called like the model (batch 1)."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...], threads: int, folder: str) -> None:
        super().__init__()
        path = Path(folder) / f"model{len(list(Path(folder).iterdir()))}.onnx"
        export_onnx(model, shape, path)
        self.session = session(path, threads)
        self.input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: x.numpy()})[0])


class Frozen(nn.Module):
    """A model as torch's own inference path runs it: traced, frozen (BatchNorm folded into
    the convs) and ``torch.jit.optimize_for_inference`` (convs fused with their ReLUs on
    oneDNN's blocked layout, kept between ops instead of reordered at each one), checked
    against the model on one input."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
        model = copy.deepcopy(model).eval()  # the caller's model keeps its mode
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            torch.testing.assert_close(frozen(x), model(x), rtol=1e-3, atol=1e-4)  # same maths
        self.frozen = [frozen]  # in a list: not a submodule, so eval() never reaches it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen[0](x)


def placed(models: list[nn.Module], shape: tuple[int, ...], layout: str, threads: int,
           folder: str) -> list[nn.Module]:  # fmt: skip
    """The models as timed in ``layout``: copies in a torch memory format, onnxruntime
    sessions or frozen TorchScript."""
    if layout == "onnxruntime":
        return [OnnxSession(m, shape, threads, folder) for m in models]
    if layout == "torchscript":
        return [Frozen(m, shape) for m in models]
    return [copy.deepcopy(m).to(memory_format=LAYOUTS[layout]) for m in models]


def interleaved(
    models: list[nn.Module], shape: tuple[int, ...], threads: int, rounds: int, runs: int
) -> list[float]:
    """Each model's batch-1 latency (ms): the median of ``runs`` forwards per round, the
    models in turn, and of the ``rounds`` rounds the fastest: a burst of other work on
    the cores slows some rounds, never speeds one up, so the least disturbed round is
    the best estimate of each model alone (and the models' rounds are interleaved)."""
    times: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            lat = measure_latency(model, shape, runs=runs, warmup=2, threads=threads)
            times[i].append(lat.median_ms)
    return [min(t) for t in times]


def planned(
    model: nn.Module, shape: tuple[int, ...], plan: str, branches: int, args: argparse.Namespace
) -> Any:
    """The allocation of ``plan``: "uniform" (one share per group, ``--round-to``) or
    "latency" (the per-group latency table, measured in ``--table-layout``), with
    ``branches`` residual branches removed whole first."""
    start = time.perf_counter()
    table_model = copy.deepcopy(model).to(memory_format=LAYOUTS[args.table_layout])
    chosen = allocate_channels(table_model, shape, macs=args.macs, importance="l1",
                               round_to=args.round_to, by_latency=plan == "latency",
                               branches=branches)  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"{plan}, {branches} branches removed:\n{chosen.table()}\nplanned in {seconds:.1f}s",
          file=sys.stderr)  # fmt: skip
    return chosen


def plans_of(model: nn.Module, shape: tuple[int, ...], args: argparse.Namespace) -> dict[str, Any]:
    """Every ``--plans`` x ``--branches`` allocation, by label ("uniform", "uniform-6br");
    a branch count the model does not have is left out, said on stderr."""
    chosen = {}
    for plan, branches in itertools.product(args.plans, args.branches):
        label = plan if branches == 0 else f"{plan}-{branches}br"
        try:
            chosen[label] = planned(model, shape, plan, branches, args)
        except PruneError as exc:
            if branches == 0:
                raise
            print(f"{label}: left out: {exc}", file=sys.stderr)
    return chosen


def bench(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One model: a slim copy per plan (``plans_of``) at ``args.macs``, each timed against
    the original, all interleaved in one loop per layout and thread count."""
    kwargs = {**MODELS.get(name, {}), "img_size": args.size}
    model = get_model(name, **kwargs).eval()
    shape = (3, args.size, args.size)
    chosen = plans_of(model, shape, args)
    smalls = [slim(model, c.plan, shape).eval() for c in chosen.values()]
    before = profile(model, shape)
    afters = [profile(small, shape) for small in smalls]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for layout, threads in itertools.product(args.layouts, args.threads):
            moved = placed([model, *smalls], shape, layout, threads, folder)
            times = interleaved(moved, shape, threads, args.rounds, args.runs)
            rows += _rows(name, kwargs, chosen, before, afters, times, layout, threads, args)
    return rows


def _rows(
    name: str, kwargs: dict[str, Any], chosen: dict[str, Any], before: Any, afters: list[Any],
    times: list[float], layout: str, threads: int, args: argparse.Namespace,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per plan: the original's and the slim model's times beside their MACs."""
    full_ms, *slim_ms = times
    rows = []
    for (plan, c), after, ms in zip(chosen.items(), afters, slim_ms, strict=True):
        mac_ratio, latency_ratio = before.macs / after.macs, full_ms / ms
        rows.append({
            "model": name, "kwargs": kwargs, "plan": plan, "round_to": args.round_to,
            "layout": layout, "threads": threads,
            "macs": [before.macs, after.macs], "params": [before.params, after.params],
            "latency_ms": [full_ms, ms], "mac_ratio": mac_ratio,
            "latency_ratio": latency_ratio, "efficiency": latency_ratio / mac_ratio,
            "meets_goal": latency_ratio >= GOAL * mac_ratio,
            "groups_left_whole": len(c.skipped),
            "branches_removed": [g.name for g in c.groups if g.after == 0],
            "widths": {g.name: [g.before, g.after] for g in c.groups},
        })  # fmt: skip
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | plan | layout | threads | MACs (M) orig -> slim | MAC ratio | ms orig -> slim | "
        f"latency ratio | latency / MAC ratio (goal >= {GOAL}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['plan']} | {r['layout']} | {r['threads']}"
            f" | {r['macs'][0] / 1e6:.1f} -> {r['macs'][1] / 1e6:.1f}"
            f" | {r['mac_ratio']:.2f}x | {r['latency_ms'][0]:.2f} -> {r['latency_ms'][1]:.2f}"
            f" | {r['latency_ratio']:.2f}x | {r['efficiency']:.2f}"
            f" {'ok' if r['meets_goal'] else 'BELOW'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--macs", type=float, default=0.5, help="fraction of the MACs kept")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--layouts", nargs="+", choices=[*LAYOUTS, *RUNTIMES], default=list(LAYOUTS),
        help="torch memory formats, onnxruntime (the ONNX exports in its CPU sessions) or "
        "torchscript (traced, frozen, optimize_for_inference)",
    )  # fmt: skip
    parser.add_argument(
        "--round-to",
        type=int,
        default=1,
        help="keep channel counts multiples of this (8: whole SIMD lanes; try both)",
    )
    parser.add_argument(
        "--plans", nargs="+", choices=["uniform", "latency"], default=["uniform", "latency"],
        help="latency: cut more where a per-group latency table (1 thread) saves more "
        "time per MAC, at the same MAC budget",
    )  # fmt: skip
    parser.add_argument(
        "--branches", type=int, nargs="+", default=[0],
        help="residual branches removed whole before the width search (0: none); each "
        "count gives every plan a variant, labelled e.g. uniform-6br",
    )  # fmt: skip
    parser.add_argument(
        "--table-layout", choices=list(LAYOUTS), default="channels-last",
        help="the layout the latency table is measured in",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    parser.add_argument("--runs", type=int, default=20, help="timed forwards per round")
    parser.add_argument("--json", default="benchmarks/results/structured_speed.json")
    args = parser.parse_args()
    rows = []
    for name in args.models:
        try:
            rows += bench(name, args)
        except PruneError as exc:  # the engine cannot slim it (yet): say so, time the rest
            print(f"{name}: not slimmed: {exc}", file=sys.stderr)
    print(table(rows))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
