"""Automatic per-layer ratios vs one uniform ratio at the same overall sparsity.

For each baseline run and seed: prune to SPARSITY with (a) the same ratio in
every layer, (b) ratios allocated from the sensitivity curves; both then get
the same prune -> retrain schedule (3 steps on the cubic curve, Adam from 1e-3, cosine).
The seed sets the retraining batch order; the baseline is the same run.
Prints a markdown table of Fashion-MNIST test accuracies.

    .venv/bin/python benchmarks/prune_auto_vs_uniform.py [--runs runs/lenet300 runs/lenet5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from cnnzip import data as cz_data
from cnnzip import prune as P
from cnnzip.runs import load_run


def prune_once(run_dir: str, data: cz_data.Dataset, auto: bool, args: argparse.Namespace,
               seed: int) -> tuple[float, float, dict[str, float]]:  # fmt: skip
    """Test accuracy, kept fraction and per-layer ratios of one prune -> retrain."""
    run = load_run(run_dir)
    targets = P.prunable(run.model)
    if auto:
        ratios = P.allocate(P.cached(run.path, run.model, data.val, targets).curves, args.sparsity)
    else:
        ratios = dict.fromkeys(targets, args.sparsity)
    cfg = replace(P.RETRAIN, epochs=args.epochs, seed=seed)
    plan = P.growing_plan(ratios, args.steps)
    report = P.iterative(run.model, data, plan, config=cfg, progress=False)
    return report.steps[-1].test_accuracy or 0.0, report.kept_fraction, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["runs/lenet300", "runs/lenet5"])
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="retraining epochs per step")
    args = parser.parse_args()
    data = cz_data.load("fashion-mnist")
    print(
        f"sparsity {args.sparsity}, {args.steps} steps x {args.epochs} epochs, Adam 1e-3 cosine\n"
    )
    print("| run | seed | dense | uniform | auto | auto - uniform (pp) | auto ratios | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        dense = load_run(run_dir).meta["metrics"]["test_accuracy"]
        gains = []
        for seed in args.seeds:
            start = time.perf_counter()
            uniform, _, _ = prune_once(run_dir, data, False, args, seed)
            auto, kept, ratios = prune_once(run_dir, data, True, args, seed)
            gains.append(100 * (auto - uniform))
            shown = ", ".join(f"{t.removesuffix('.weight')} {r:.3f}" for t, r in ratios.items())
            print(f"| {run_dir} | {seed} | {dense:.4f} | {uniform:.4f} | {auto:.4f} | "
                  f"{gains[-1]:+.2f} | {shown} (kept {100 * kept:.2f}%) | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)  # fmt: skip
        print(f"| {run_dir} | mean | | | | {statistics.mean(gains):+.2f} | | |", flush=True)


if __name__ == "__main__":
    main()
