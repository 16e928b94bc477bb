"""Binary ResNet-18 (zoo ``binary_resnet18``): whole-network speed against float ResNet-18,
and a small Fashion-MNIST training run.

``speed``: batch 1 at 224x224, the float32 ResNet-18 against the same network with
XNOR blocks compiled for the C kernels, with packed bits between each block's two
convs (``compile_binary``) and, beside it, with float between (``chain=False``);
calls interleaved in one process, median of ``--repeats``, at ``--threads``. Weights
and batch-norm statistics are random: speed does not depend on them.

``train``: binary ResNet-18 from scratch (BWN weights, XNOR activations, stem conv and
fc float) on the first ``--limit`` Fashion-MNIST images padded to 32x32, at one
thread; resumable (a rerun continues from the checkpoint under ``--out``, a finished
run only evaluates). Reports the test accuracy in torch and on the C kernels.

    .venv/bin/python benchmarks/binary_resnet18.py speed --threads 1 --repeats 7
    .venv/bin/python benchmarks/binary_resnet18.py train --limit 4000 --epochs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import cnnzip
from cnnzip.binary import BWN, XnorConv2d
from cnnzip.models import get_model
from cnnzip.runs import CHECKPOINT, load_run, save_run
from cnnzip.runtime import compile_binary, default_path, raced_paths, set_threads
from cnnzip.runtime.bench import keep_freed_memory, median_ms
from cnnzip.train import TrainConfig, evaluate, fit
from cnnzip.transforms import add_transform

DABNN_SPEEDUP = 3.6  # daBNN, Bi-Real Net-18 vs float ResNet-18 on ARM (REFERENCE.md)
XNOR_NET_THEORY = 58.0  # XNOR-Net's theoretical speedup of a binary conv layer


def binary_model(**kwargs: Any) -> nn.Module:
    """binary_resnet18 with its BWN transforms, as a trained run is loaded."""
    model = get_model("binary_resnet18", **kwargs)
    for name, module in model.named_modules():
        if isinstance(module, XnorConv2d):
            add_transform(model, f"{name}.weight", BWN())
    return model


def randomized(model: nn.Module) -> nn.Module:
    """Random batch-norm statistics (signs on both sides of zero), eval mode."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(-1, 1)
                module.bias.uniform_(-1, 1)
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model.eval()


def speed(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    set_threads(args.threads)
    keep_freed_memory()
    binary = randomized(binary_model())
    nets = {
        "float": randomized(get_model("resnet18")),
        "binary": compile_binary(binary),
        "binary_float_between": compile_binary(binary, chain=False),
    }
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(nets["binary"](x), nets["binary_float_between"](x))
        ms = median_ms({k: (lambda n=n: n(x)) for k, n in nets.items()}, args.repeats)
    path = "/".join(raced_paths()) if len(raced_paths()) > 1 else default_path()
    result: dict[str, Any] = {"threads": args.threads, "repeats": args.repeats, "path": path}
    print(f"ResNet-18 224x224, batch 1, {args.threads} thread(s), path {path}")
    for name in nets:
        result[f"{name}_ms"] = ms[name]["wall"]
        result[f"{name}_speedup"] = ms["float"]["wall"] / ms[name]["wall"]
        print(f"  {name:22s} {ms[name]['wall']:8.2f} ms  {result[f'{name}_speedup']:5.2f}x")
    print(f"  daBNN (Bi-Real-18, ARM): {DABNN_SPEEDUP}x; XNOR-Net theory: {XNOR_NET_THEORY}x")
    return result


def padded(data: cnnzip.data.Dataset, side: int) -> cnnzip.data.Dataset:
    """Each split's 28x28 images zero-padded (the normalised mean) to side x side."""
    pad = (side - data.input_shape[1]) // 2

    def grow(split: Any) -> Any:
        return dataclasses.replace(split, x=F.pad(split.x, (pad,) * 4))

    return dataclasses.replace(
        data, train=grow(data.train), val=grow(data.val), test=grow(data.test)
    )


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    set_threads(1)
    out = Path(args.out)
    data = padded(cnnzip.data.load("fashion-mnist", limit=args.limit), args.size)
    kwargs = {"num_classes": 10, "in_chans": 1, "img_size": args.size}
    start = time.perf_counter()
    if (out / "run.json").exists():
        model = load_run(out).model
    else:
        torch.manual_seed(0)
        model = binary_model(**kwargs)
        config = TrainConfig(epochs=args.epochs, batch_size=64, lr=args.lr, seed=0)
        checkpoint = out / CHECKPOINT
        fit(model, data, config, checkpoint=checkpoint, resume=checkpoint.exists())
        save_run(out, model, arch="binary_resnet18", kwargs=kwargs, config=vars(args))
    model.eval()
    acc = evaluate(model, data.test)["accuracy"]
    kernel_acc = evaluate(compile_binary(model), data.test)["accuracy"]
    result = {
        "limit": args.limit,
        "train_images": len(data.train),
        "test_images": len(data.test),
        "size": args.size,
        "epochs": args.epochs,
        "test_accuracy": acc,
        "kernel_test_accuracy": kernel_acc,
        "seconds_this_call": time.perf_counter() - start,
    }
    print(f"binary ResNet-18, Fashion-MNIST {args.size}x{args.size}, {len(data.train)} train")
    print(f"  images, {args.epochs} epoch(s): test {acc:.4f}, on the kernels {kernel_acc:.4f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fast = sub.add_parser("speed", help="224x224 whole network vs float ResNet-18")
    fast.add_argument("--threads", type=int, default=1)
    fast.add_argument("--repeats", type=int, default=7)
    learn = sub.add_parser("train", help="Fashion-MNIST, small budget, resumable")
    learn.add_argument("--limit", type=int, default=4000, help="first N train/test images")
    learn.add_argument("--epochs", type=int, default=2)
    learn.add_argument("--size", type=int, default=32)
    learn.add_argument("--lr", type=float, default=2e-3)
    learn.add_argument("--out", default="runs/binary_resnet18_fmnist")
    args = parser.parse_args()
    result = speed(args) if args.command == "speed" else train(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
