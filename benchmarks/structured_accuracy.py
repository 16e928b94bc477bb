"""Structured pruning's accuracy on Fashion-MNIST, and slim + Deep Compression vs Deep Compression.

    .venv/bin/python benchmarks/structured_accuracy.py                    # the issue's table
    .venv/bin/python benchmarks/structured_accuracy.py --nets lenet5 --limit 600 \\
        --epochs 1 --retrain 1 --dc-epochs 1 --work /tmp/sa              # smoke test

For each net (LeNet-5, and MobileNet v1 at width 0.5 trained on 28x28 inputs):
1. ``base``: trained from scratch (``--epochs``);
2. ``slim``: channels removed to at most ``--macs`` of the MACs (per-group ratios from
   the sensitivity curves, L1 importance), then ``--retrain`` epochs; the issue asks
   for >= 2x fewer MACs with <= 0.5 pp test-accuracy drop;
3. ``slim-dc.cnnz``: the slim run through slim-deep-compression's stages after its
   ``channels`` stage (prune, share, fine-tune, encode);
4. ``dc.cnnz``: the base run through the unstructured ``deep-compression`` recipe.
Each row: test accuracy (of the decoded file for the .cnnz), bytes (the file; fp32
weights for a run), MACs, and batch-1 latency at one thread (the four models timed
interleaved, median of rounds). Every step writes its result under ``--work`` and is
skipped when there (training resumes from its checkpoint), so an interrupted run
continues; the table is printed and written as JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch.nn as nn

import cnnzip
from cnnzip import data as cz_data
from cnnzip.models import get_model
from cnnzip.models.registry import data_kwargs
from cnnzip.profiling import measure_latency, profile
from cnnzip.prune.structured import slim
from cnnzip.prune.structured.allocate import allocate_channels
from cnnzip.recipes import compress, load_recipe
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, evaluate, fit

NETS = {"lenet5": {}, "mobilenet_v1": {"width_mult": 0.5}}
MAX_DROP_PP = 0.5


def trained(path: Path, model: nn.Module, dataset: cz_data.Dataset, cfg: TrainConfig,
            **meta: Any) -> nn.Module:  # fmt: skip
    """``model`` trained by ``cfg`` and saved as run ``path``, or that run if it exists
    (an interrupted training resumes from ``path``/checkpoint.pt)."""
    if (path / "run.json").is_file():
        return load_run(path).model
    path.mkdir(parents=True, exist_ok=True)
    fit(model, dataset, cfg, checkpoint=path / "checkpoint.pt", resume=True)
    save_run(path, model, **meta)  # a slim model's plan is recorded with it
    return model


def compressed(path: Path, model: nn.Module, data: cz_data.Dataset, recipe: Any,
               arch: dict[str, Any]) -> nn.Module:  # fmt: skip
    """``model`` through ``recipe`` into the .cnnz ``path`` (skipped when it exists);
    the model decoded from the file."""
    if not path.is_file():
        result = compress(model, data, recipe, arch=arch)
        result.save(path)
    return cnnzip.load(path)


def latencies(models: dict[str, nn.Module], shape: tuple[int, ...], rounds: int,
              runs: int) -> dict[str, float]:  # fmt: skip
    """Batch-1 one-thread median latency (ms) of each model, measured interleaved."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            lat = measure_latency(model, shape, runs=runs, warmup=2, threads=1)
            times[key].append(lat.median_ms)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(name: str, data: cz_data.Dataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(args.work) / name
    kwargs = data_kwargs(name, NETS.get(name, {}), data.input_shape, data.num_classes)
    meta = {"arch": name, "kwargs": kwargs, "data": "fashion-mnist",
            "input_shape": list(data.input_shape)}  # fmt: skip
    base = trained(work / "base", get_model(name, **kwargs), data,
                   TrainConfig(epochs=args.epochs), **meta)  # fmt: skip
    if (work / "slim" / "run.json").is_file():
        small = load_run(work / "slim").model
    else:
        chosen = allocate_channels(base, data.input_shape, data.val, macs=args.macs)
        print(chosen.table(), flush=True)
        small = slim(base, chosen.plan)
    small = trained(work / "slim", small, data, TrainConfig(epochs=args.retrain, lr=1e-3), **meta)
    arch = {"name": name, "kwargs": kwargs}
    dc_over = {"prune.epochs": args.dc_epochs, "finetune.epochs": max(1, args.dc_epochs // 4)}
    after_channels = load_recipe("slim-deep-compression", dc_over)
    after_channels.stages = [s for s in after_channels.stages if s[0] != "channels"]
    slim_dc = compressed(work / "slim-dc.cnnz", load_run(work / "slim").model, data,
                         after_channels, arch)  # fmt: skip
    dc = compressed(work / "dc.cnnz", load_run(work / "base").model, data,
                    load_recipe("deep-compression", dc_over), arch)  # fmt: skip
    models = {"base": base, "slim": small, "slim-dc.cnnz": slim_dc, "dc.cnnz": dc}
    ms = latencies(models, data.input_shape, args.rounds, args.runs)
    rows = []
    for key, model in models.items():
        file = work / key
        size = (
            file.stat().st_size
            if file.is_file()
            else 4 * sum(p.numel() for p in model.parameters())
        )
        rows.append({"net": name, "model": key, "bytes": size, "latency_ms": ms[key],
                     "macs": profile(model, data.input_shape).macs,
                     "test_accuracy": evaluate(model, data.test)["accuracy"]})  # fmt: skip
    base_row = rows[0]
    for row in rows:
        row["mac_ratio"] = base_row["macs"] / row["macs"]
        row["drop_pp"] = 100 * (base_row["test_accuracy"] - row["test_accuracy"])
    rows[1]["meets_goal"] = rows[1]["mac_ratio"] >= 2.0 and rows[1]["drop_pp"] <= MAX_DROP_PP
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| net | model | test acc | drop (pp) | bytes | MACs | MAC ratio | batch-1 ms |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        goal = {True: " ok", False: " BELOW GOAL"}.get(r.get("meets_goal"), "")  # type: ignore[arg-type]
        lines.append(
            f"| {r['net']} | {r['model']}{goal} | {r['test_accuracy']:.4f} | {r['drop_pp']:+.2f}"
            f" | {r['bytes']:,} | {r['macs']:,} | {r['mac_ratio']:.2f}x | {r['latency_ms']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS))
    parser.add_argument("--macs", type=float, default=0.5, help="fraction of the MACs kept")
    parser.add_argument("--epochs", type=int, default=20, help="baseline training epochs")
    parser.add_argument("--retrain", type=int, default=10, help="epochs after slimming")
    parser.add_argument("--dc-epochs", type=int, default=8, help="deep compression's prune epochs")
    parser.add_argument("--limit", type=int, default=None, help="first N images (smoke test)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--work", default="runs/structured_accuracy")  # git ignores runs/
    parser.add_argument("--json", default="benchmarks/results/structured_accuracy.json")
    args = parser.parse_args()
    data = cz_data.load("fashion-mnist", limit=args.limit)
    rows = [row for name in args.nets for row in bench(name, data, args)]
    print(table(rows))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
