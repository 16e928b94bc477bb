"""Fashion-MNIST: the same LeNet-5 in float32, BWN and XNOR-Net (REFERENCE.md section 3).

Trains the float model, then fine-tunes a BWN and an XNOR copy from it (first
and last layers kept in full precision) and, for a fair baseline, the float
model itself for as many more epochs ("float32+"). Prints one table: test accuracy,
the XNOR model's accuracy when run by the C kernels, and the bytes of the
binarized layers' weights and biases (1 bit per weight, a float32 alpha per
output channel, float32 biases)
against float32. Runs are kept under --out, so a rerun only evaluates.

    .venv/bin/python benchmarks/xnor_fmnist.py --limit 20000 --epochs 3 --binary-epochs 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn as nn

import cnnzip
from cnnzip.binary import binary_layers
from cnnzip.binary.finetune import binarize_run
from cnnzip.codec.sizes import FLOAT32_BYTES, binary_bytes
from cnnzip.runs import load_run
from cnnzip.runtime import compile_binary
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.transforms import original_tensor


def float_run(out: Path, data: cnnzip.data.Dataset, epochs: int) -> cnnzip.runs.Run:
    if not (out / "run.json").exists():
        torch.manual_seed(0)
        model = cnnzip.models.get_model("lenet5", num_classes=10)
        fit(model, data, TrainConfig(epochs=epochs, seed=0))
        acc = evaluate(model, data.test)["accuracy"]
        kwargs = {"num_classes": 10, "in_chans": 1, "img_size": 28}
        cnnzip.save_run(out, model, arch="lenet5", kwargs=kwargs, metrics={"test_accuracy": acc})
    return load_run(out)


def float_more(out: Path, source: Path, data: cnnzip.data.Dataset, args) -> float:
    """The float model trained as long as the binary ones (fine-tuned the same way): fair."""
    if not (out / "run.json").exists():
        run = load_run(source)
        fit(run.model, data, TrainConfig(epochs=args.binary_epochs, seed=0, lr=1e-3))
        acc = evaluate(run.model, data.test)["accuracy"]
        cnnzip.save_run(
            out, run.model, arch=run.arch, kwargs=run.kwargs, metrics={"test_accuracy": acc}
        )
    return load_run(out).meta["metrics"]["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N train/test images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--binary-epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/xnor_fmnist")
    args = parser.parse_args()
    out = Path(args.out)
    data = cnnzip.data.load("fashion-mnist", limit=args.limit)
    base = float_run(out / "float", data, args.epochs)
    rows = [("float32", base.meta["metrics"]["test_accuracy"], None, None)]
    rows.append(("float32+", float_more(out / "float_more", out / "float", data, args), None, None))
    for mode in ("bwn", "xnor"):
        path = out / mode
        if (path / "run.json").exists():
            model = load_run(path).model
        else:
            cfg = TrainConfig(epochs=args.binary_epochs, seed=0, lr=1e-3)
            model, _ = binarize_run(load_run(out / "float"), data, path, mode=mode, config=cfg)
        acc = evaluate(model, data.test)["accuracy"]
        kernel_acc = evaluate(compile_binary(model), data.test)["accuracy"]
        names = binary_layers(base.model)
        sizes = [layer_bytes(model.get_submodule(n)) for n in names]
        ratio = sum(dense for dense, _ in sizes) / sum(stored for _, stored in sizes)
        rows.append((mode, acc, kernel_acc if mode == "xnor" else None, ratio))
    print(f"LeNet-5, Fashion-MNIST (limit {args.limit}), binarized: {binary_layers(base.model)}")
    print(f"{'model':8} {'test acc':>9} {'on kernels':>11} {'layers smaller':>15}")
    for mode, acc, kacc, ratio in rows:
        k = f"{kacc:11.4f}" if kacc is not None else f"{'-':>11}"
        r = f"{ratio:14.1f}x" if ratio else f"{'-':>15}"
        print(f"{mode:8} {acc:9.4f} {k} {r}")
    print(json.dumps({"rows": rows}))


def layer_bytes(layer: nn.Module) -> tuple[int, int]:
    """(float32 bytes, binary bytes as stored) of a binarized layer's weight and bias."""
    w = original_tensor(layer, "weight")  # (cout, ...)
    bias = 0 if layer.bias is None else FLOAT32_BYTES * layer.bias.numel()
    return FLOAT32_BYTES * w.numel() + bias, binary_bytes(w.numel(), w.shape[0]) + bias


if __name__ == "__main__":
    main()
