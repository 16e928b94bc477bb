"""Deep Compression end to end on trained runs, and the speed of k-means at AlexNet fc6 size.

    .venv/bin/python benchmarks/deep_compression.py runs/lenet300 runs/lenet5 [-s prune.steps=4]
    .venv/bin/python benchmarks/deep_compression.py --kmeans-only

For each run: the deep-compression recipe (automatic per-layer pruning with
retraining, k-means sharing, codebook fine-tuning), the .cnnz written, the
test accuracy measured on the decoded file, the stage table (Deep
Compression's Tables 2/3 layout) and the time to load the file into a module.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import cnnzip
from cnnzip import data as cz_data
from cnnzip.codec.report import inspect
from cnnzip.quantize import kmeans_1d
from cnnzip.recipes import compress, load_recipe
from cnnzip.train import evaluate


def kmeans_speed(n: int = 37_748_736, bits: int = 5) -> dict[str, float]:
    """k-means of n float32 weights (AlexNet fc6: 9216 x 4096) into 2**bits clusters."""
    weights = (np.random.default_rng(0).standard_normal(n) * 0.01).astype(np.float32)
    start = time.perf_counter()
    result = kmeans_1d(weights, 2**bits)
    return {"weights": n, "k": 2**bits, "seconds": time.perf_counter() - start,
            "iterations": result.iterations}  # fmt: skip


def load_seconds(path: Path, repeats: int = 5) -> float:
    cnnzip.load(path)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        cnnzip.load(path)
        best = min(best, time.perf_counter() - start)
    return best


def run_one(run_dir: str, out_dir: Path, overrides: dict[str, object]) -> dict[str, object]:
    run = cnnzip.load_run(run_dir)
    data = cz_data.load(run.meta.get("data", "fashion-mnist"))
    baseline = evaluate(run.model, data.test)["accuracy"]
    recipe = load_recipe("deep-compression", overrides)
    start = time.perf_counter()
    result = compress(run.model, data, recipe, arch={"name": run.arch, "kwargs": run.kwargs},
                      meta={"source": run_dir, "baseline_test_accuracy": baseline})  # fmt: skip
    seconds = time.perf_counter() - start
    path = out_dir / f"{run.arch}.cnnz"
    result.save(path)
    accuracy = evaluate(cnnzip.load(path), data.test)["accuracy"]
    result.meta["file_test_accuracy"] = accuracy
    result.save(path)
    report = inspect(path)
    print(report.table())
    return {
        "model": run.arch,
        "file_bytes": report.file_bytes,
        "ratio": report.ratio,
        "stages": {s: report.dense_bytes / b for s, b in report.stage_bytes().items()},
        "baseline_accuracy": baseline,
        "file_accuracy": accuracy,
        "drop_pp": 100 * (baseline - accuracy),
        "compress_seconds": seconds,
        "load_seconds": load_seconds(path),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories written by `cnnzip train`")
    parser.add_argument("--out-dir", default="runs/deep-compression")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="STAGE.OPTION=VALUE")
    parser.add_argument("--kmeans-only", action="store_true")
    args = parser.parse_args()
    speed = kmeans_speed()
    print(f"k-means: {speed['weights']:,} weights into {speed['k']} clusters in "
          f"{speed['seconds']:.1f} s ({speed['iterations']} iterations)")  # fmt: skip
    if args.kmeans_only:
        return
    overrides = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    out_dir = Path(args.out_dir)
    rows = [run_one(r, out_dir, overrides) for r in args.runs]
    print(
        "\n| model | pruned | + shared | + coded (file) | file bytes | dense acc | file acc "
        "| drop pp | load s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["stages"]
        print(f"| {r['model']} | {st['pruned']:.1f}x | {st['shared']:.1f}x | {r['ratio']:.1f}x | "
              f"{r['file_bytes']:,} | {r['baseline_accuracy']:.4f} | {r['file_accuracy']:.4f} | "
              f"{r['drop_pp']:+.2f} | {r['load_seconds']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
