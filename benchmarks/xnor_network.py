"""A whole binarized network's forward pass vs its float twin, batch 1, one process.

A VGG-like net on 32x32 colour images: a float first conv, five XNOR blocks
(BatchNorm -> BinActiv -> 3x3 conv, max-pools between stages) run by the C
kernels, global average pooling and a float classifier. The twin has the same
layers in float32 (conv -> BatchNorm -> ReLU). Weights are random: speed does
not depend on them.

    .venv/bin/python benchmarks/xnor_network.py --threads 1 --repeats 21
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn as nn

from cnnzip.binary import BWN, XnorConv2d
from cnnzip.runtime import compile_binary, default_path, raced_paths, set_threads
from cnnzip.runtime.bench import median_ms
from cnnzip.transforms import add_transform

STAGES = (
    (128, 128, False),
    (128, 256, True),
    (256, 256, False),
    (256, 512, True),
    (512, 512, True),
)


def network(binary: bool) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU()]
    for cin, cout, pool_before in STAGES:
        if pool_before:
            layers.append(nn.MaxPool2d(2))
        if binary:
            conv = XnorConv2d(cin, cout, 3, padding=1, bias=False)
            add_transform(conv, "weight", BWN())
            layers.append(conv)
        else:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU())
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    set_threads(args.threads)
    float_net, binary_net = network(False), compile_binary(network(True))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ms = median_ms(
            {"float": lambda: float_net(x), "binary": lambda: binary_net(x)}, args.repeats
        )
    result = {
        "threads": args.threads,
        "path": "/".join(raced_paths()) if len(raced_paths()) > 1 else default_path(),
        "float_ms": ms["float"]["wall"],
        "binary_ms": ms["binary"]["wall"],
        "speedup": ms["float"]["wall"] / ms["binary"]["wall"],
    }
    if args.threads == 1:
        result["cpu_speedup"] = ms["float"]["cpu"] / ms["binary"]["cpu"]
    print(f"VGG-like 32x32, batch 1, {args.threads} thread(s), path {result['path']}")
    print(f"float32 {result['float_ms']:.2f} ms   binary {result['binary_ms']:.2f} ms   ", end="")
    print(
        f"speedup {result['speedup']:.1f}x"
        + (f" (CPU time {result['cpu_speedup']:.1f}x)" if args.threads == 1 else "")
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
