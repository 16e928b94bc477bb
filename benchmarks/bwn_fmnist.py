"""BWN against float at the same total epochs: fine-tune a trained float run both ways.

The BWN run is made by the CLI (``cnnzip binarize SOURCE --mode bwn ...``, the
reproducible recipe); this script fine-tunes the float SOURCE model itself with
the same epochs, learning rate and cosine schedule ("float+"), so both models
have seen the same training, and prints one table.

    cnnzip binarize runs/lenet5 --mode bwn --data fashion-mnist --epochs 4 --lr 1e-4 \\
        -o runs/bwn_exp/e4_lr1e-4
    .venv/bin/python benchmarks/bwn_fmnist.py --source runs/lenet5 --epochs 4 --lr 1e-4 \\
        --bwn runs/bwn_exp/e4_lr1e-4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cnnzip
from cnnzip.runs import load_run
from cnnzip.train import TrainConfig, evaluate, fit


def float_more(source: Path, out: Path, data: cnnzip.data.Dataset, cfg: TrainConfig) -> float:
    """The float model of ``source`` fine-tuned like the BWN one (kept under ``out``)."""
    if not (out / "run.json").exists():
        run = load_run(source)
        fit(run.model, data, cfg)
        acc = evaluate(run.model, data.test)["accuracy"]
        cnnzip.save_run(
            out, run.model, arch=run.arch, kwargs=run.kwargs, metrics={"test_accuracy": acc}
        )
    return load_run(out).meta["metrics"]["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="runs/lenet5", help="trained float run")
    parser.add_argument("--bwn", nargs="+", default=[], help="runs made by cnnzip binarize")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    data = cnnzip.data.load("fashion-mnist", limit=args.limit)
    source = load_run(args.source)
    base = source.meta["metrics"]["test_accuracy"]
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, seed=0)
    out = Path(args.source).parent / f"{Path(args.source).name}_ft{args.epochs}_lr{args.lr:g}"
    rows = [("float", base), (f"float+{args.epochs} lr {args.lr:g}", float_more(
        Path(args.source), out, data, cfg))]  # fmt: skip
    for path in args.bwn:
        rows.append((f"bwn {Path(path).name}", load_run(path).meta["metrics"]["test_accuracy"]))
    print(f"{'model':28} {'test acc':>9} {'vs float':>9} {'vs float+':>10}")
    for name, acc in rows:
        print(
            f"{name:28} {acc:9.4f} {100 * (acc - base):+8.2f}pp {100 * (acc - rows[1][1]):+9.2f}pp"
        )
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
