"""A whole binarized network's forward pass vs its float twin, batch 1, one process;
and single layers with packed activations in and out ("bits in, bits out").

A VGG-like net on 32x32 colour images: a float first conv, five XNOR blocks
(BatchNorm -> BinActiv -> 3x3 conv, max-pools between stages) run by the C
kernels, global average pooling and a float classifier. The twin has the same
layers in float32 (conv -> BatchNorm -> ReLU). Weights are random: speed does
not depend on them. With K (XNOR-Net's scaling map, the default as before) every
block needs its float input; ``--no-k`` drops K, so compile_binary chains the
blocks through packed bits (float only into the first block and out of the last);
the chained and the float-between runs are timed side by side.

``--layers``: the three standard layers of ``cnnzip bench xnor`` (3x3, cin = cout,
stride 1, pad 1) as torch float32 conv, as binary float in / float out, and as
binary bits in / bits out (the output thresholded into packed words), interleaved.

    .venv/bin/python benchmarks/xnor_network.py --threads 1 --repeats 21
    .venv/bin/python benchmarks/xnor_network.py --threads 1 --repeats 21 --no-k
    .venv/bin/python benchmarks/xnor_network.py --threads 1 --repeats 21 --layers
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnzip.binary import BWN, XnorConv2d
from cnnzip.binary.scales import filter_alpha
from cnnzip.runtime import compile_binary, default_path, raced_paths, set_threads
from cnnzip.runtime.bench import PAPER_LAYERS, keep_freed_memory, median_ms
from cnnzip.runtime.xnor import BinaryConvKernel, PackedActs, pack_signs
from cnnzip.transforms import add_transform

STAGES = (
    (128, 128, False),
    (128, 256, True),
    (256, 256, False),
    (256, 512, True),
    (512, 512, True),
)


def network(binary: bool, scale_k: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU()]
    for cin, cout, pool_before in STAGES:
        if pool_before:
            layers.append(nn.MaxPool2d(2))
        if binary:
            conv = XnorConv2d(cin, cout, 3, padding=1, bias=False, scale_k=scale_k)
            add_transform(conv, "weight", BWN())
            layers.append(conv)
        else:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU())
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers).eval()


def path_name() -> str:
    return "/".join(raced_paths()) if len(raced_paths()) > 1 else default_path()


def whole_network(threads: int, repeats: int, scale_k: bool) -> dict[str, Any]:
    """Float twin vs the compiled binary net, chained and (without K) float between."""
    binary = network(True, scale_k)
    nets = {"float": network(False), "binary": compile_binary(binary)}
    if not scale_k:
        nets["binary_float_between"] = compile_binary(binary, chain=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        calls = {name: (lambda net=net: net(x)) for name, net in nets.items()}
        ms = median_ms(calls, repeats)
    result: dict[str, Any] = {"threads": threads, "scale_k": scale_k, "path": path_name()}
    for name in nets:
        result[f"{name}_ms"] = ms[name]["wall"]
        if name != "float":
            result[f"{name}_speedup"] = ms["float"]["wall"] / ms[name]["wall"]
            if threads == 1:
                result[f"{name}_cpu_speedup"] = ms["float"]["cpu"] / ms[name]["cpu"]
    print(f"VGG-like 32x32, batch 1, {threads} thread(s), K {scale_k}, path {result['path']}")
    for name in nets:
        print(f"  {name:22s} {result[f'{name}_ms']:7.2f} ms", end="")
        print(f"   {result.get(f'{name}_speedup', 1.0):5.1f}x")
    return result


def bits_layers(threads: int, repeats: int) -> dict[str, Any]:
    """Per standard layer: torch float32 conv, binary float -> float, bits -> bits."""
    keep_freed_memory()
    rows = []
    for chans, hw in PAPER_LAYERS:
        gen = torch.Generator().manual_seed(chans + hw)
        x = torch.randn(1, chans, hw, hw, generator=gen)
        w = torch.randn(chans, chans, 3, 3, generator=gen)
        args = (pack_signs(w), chans, filter_alpha(w), torch.zeros(chans), 1, 1)
        floats = BinaryConvKernel(*args)
        thresholds = torch.stack([torch.zeros(chans), torch.zeros(chans)]).int()  # sign(dot)
        bits = BinaryConvKernel(*args, thresholds=thresholds)
        packed = PackedActs.of(x)
        fp, bp = floats.path_for(x, threads), bits.path_for(packed, threads)
        ms = median_ms(
            {
                "float": lambda x=x, w=w: F.conv2d(x, w, padding=1),
                "binary": lambda x=x, k=floats, p=fp: k(x, threads=threads, path=p),
                "bits": lambda x=packed, k=bits, p=bp: k(x, threads=threads, path=p),
            },
            repeats,
        )
        row = {"cin": chans, "cout": chans, "hw": hw, "path": f"{fp}/{bp}"}
        row.update({f"{k}_ms": ms[k]["wall"] for k in ms})
        row["binary_speedup"] = ms["float"]["wall"] / ms["binary"]["wall"]
        row["bits_speedup"] = ms["float"]["wall"] / ms["bits"]["wall"]
        if threads == 1:  # the calling thread's CPU time: leaves out what others took
            row["binary_cpu_speedup"] = ms["float"]["cpu"] / ms["binary"]["cpu"]
            row["bits_cpu_speedup"] = ms["float"]["cpu"] / ms["bits"]["cpu"]
        rows.append(row)
        print(
            f"{chans}@{hw}: float {row['float_ms']:.2f} ms, binary float->float "
            f"{row['binary_ms']:.3f} ms ({row['binary_speedup']:.1f}x), bits->bits "
            f"{row['bits_ms']:.3f} ms ({row['bits_speedup']:.1f}x"
            + (f", CPU time {row['bits_cpu_speedup']:.1f}x" if threads == 1 else "")
            + f"), path {row['path']}"
        )
    return {"threads": threads, "layers": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--no-k", action="store_true", help="XNOR blocks without K: chained")
    parser.add_argument("--layers", action="store_true", help="single layers, bits in/out")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    set_threads(args.threads)
    if args.layers:
        result = bits_layers(args.threads, args.repeats)
    else:
        result = whole_network(args.threads, args.repeats, not args.no_k)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
