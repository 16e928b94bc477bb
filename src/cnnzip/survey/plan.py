"""What the survey measures: its rows (zoo models and settings), its budgets, its data.

One setting for every row: Fashion-MNIST upsampled to 64x64, 10 classes, one channel,
seed 0. The budgets are the only thing ``--quick`` changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from cnnzip.data import Dataset, Split, load
from cnnzip.errors import RunError

__all__ = [
    "FULL",
    "IMG_SIZE",
    "QUICK",
    "ROWS",
    "STUDENT",
    "TEACHERS",
    "Budget",
    "Row",
    "model_kwargs",
    "select_rows",
    "survey_data",
]

IMG_SIZE = 64
SEED = 0


@dataclass(frozen=True)
class Row:
    """One model of the survey: a zoo architecture and its builder options. ``table`` is
    the comparison it belongs to; ``binary``: it also gets BWN and XNOR rows; ``lr``: its
    training learning rate where the budget's does not suit it (its compression stages then
    train at it too: pruning at ``lr``, fine-tuning at a tenth, as the recipe scales them);
    ``compress``: recipe overrides (``"stage.option": value``) of this row's full budget."""

    name: str
    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    table: str = "zoo"
    binary: bool = False
    lr: float | None = None
    compress: dict[str, Any] = field(default_factory=dict)


# Deep Compression of the compact nets: the recipe's 94% is for nets with fat fc layers.
# SqueezeNet 1.0 pruned to 94% at 8 bits: 98,448 bytes but -16.2 pp (70.01%); the paper
# compressed SqueezeNet to 6 bits at a third of its weights pruned (510x at no loss). 60%
# pruned at 6 bits: ~0.4 bits of file per parameter less than 8 bits, still under the
# 570,293 bytes that 400x below float32 AlexNet allows.
COMPACT = {"prune.sparsity": 0.6, "share.bits": 6}

ROWS: tuple[Row, ...] = (
    # Adam at 1e-3 on AlexNet's 57M parameters (no batch norm) is unstable: a tenth of it.
    # Pruned to the recipe's 94% at lr 1e-3 it lost 2.75 pp (67.6x); the paper's AlexNet
    # keeps 11% (89% pruned): 90% at its own lr leaves room for the 35x at <= 0.5 pp
    Row(
        "alexnet",
        "alexnet",
        table="alexnet",
        binary=True,
        lr=1e-4,
        compress={"prune.sparsity": 0.9},
    ),
    Row("squeezenet1_0", "squeezenet1_0", table="squeezenet", compress=COMPACT),
    Row(
        "squeezenet1_0_bypass",
        "squeezenet1_0",
        {"bypass": "simple"},
        table="squeezenet",
        compress=COMPACT,
    ),
    Row("squeezenet1_1", "squeezenet1_1", table="squeezenet", compress=COMPACT),
    Row(
        "squeezenet1_1_bypass",
        "squeezenet1_1",
        {"bypass": "simple"},
        table="squeezenet",
        compress=COMPACT,
    ),
    Row("mobilenet_1.0", "mobilenet_v1", {"width_mult": 1.0}, "mobilenet", compress=COMPACT),
    Row("mobilenet_0.5", "mobilenet_v1", {"width_mult": 0.5}, "mobilenet", compress=COMPACT),
    Row("shufflenet_g1", "shufflenet_v1", {"groups": 1}, "shufflenet", compress=COMPACT),
    Row("shufflenet_g3", "shufflenet_v1", {"groups": 3}, "shufflenet", compress=COMPACT),
    Row("shufflenet_g8", "shufflenet_v1", {"groups": 8}, "shufflenet", compress=COMPACT),
    Row(
        "shufflenet_g3_noshuffle",
        "shufflenet_v1",
        {"groups": 3, "shuffle": False},
        table="shufflenet",
        compress=COMPACT,
    ),
    # 11M parameters, all conv: VGG-16's 92.5% pruned (the paper's conv-heavy net) is the
    # model; 90% as AlexNet's
    Row("resnet18", "resnet18", table="resnet", binary=True, compress={"prune.sparsity": 0.9}),
)

# The distillation row: the compact student learns from the better of the large teachers
STUDENT = "shufflenet_g3"
TEACHERS = ("alexnet", "resnet18")


@dataclass(frozen=True)
class Budget:
    """How much of everything each row gets; recorded in results.json and the tables.

    Training: ``epochs`` over the first ``train_images`` of the fixed-seed training split
    (the split ``cnnzip.data.load`` cuts with seed 0 after taking ``val_images`` for
    validation); test on the first ``test_images`` of the official test set (None: all
    10,000). Deep Compression: the built-in recipe with ``compress`` overrides
    (``"stage.option": value``); ``prune_ratio`` (quick only) prunes every layer to that
    ratio instead of the sensitivity sweep's allocation. ``width`` scales the models of
    quick runs down (``width_mult``/``scale`` of the named rows)."""

    name: str
    train_images: int
    val_images: int
    test_images: int | None
    epochs: int
    batch_size: int
    lr: float
    compress: dict[str, Any]
    binary_epochs: int
    latency_runs: int
    prune_ratio: float | None = None
    width: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Full budget, from four timed training steps (batch 64, 2 threads) and one timed
# evaluation of each model on this 2-core CPU. Quiet (load < 1): one step of every row
# 2.6 s (AlexNet 0.64, ResNet-18 0.34, ShuffleNet g=8 0.25 ...), 0.5-1.9 s per 1,000
# images evaluated, the bounded sensitivity sweep of ShuffleNet's 50 layers on 128 images
# ~75 s. Estimates, then: training 1,250 steps a row (~55 min), pruning and fine-tuning
# (~40 min), BWN/XNOR (~25 min), distillation, test passes, sweeps and coding (~25 min):
# 2-3 hours. While other processes loaded both cores the same steps took 10-20x longer
# (OpenMP threads waiting on each other): run it alone.
FULL = Budget(
    name="full",
    train_images=10_000,
    val_images=2_000,
    test_images=None,
    epochs=8,
    batch_size=64,
    lr=1e-3,
    compress={
        "prune.epochs": 4,
        "prune.batch_size": 64,
        "prune.sweep_images": 256,  # the sensitivity sweep: layers x ratios x these
        "finetune.epochs": 1,
    },
    binary_epochs=3,
    latency_runs=30,
)

# A few dozen images, one step per epoch, small-width stand-ins for the models with many
# parameters (the codec's cost is per parameter): the whole pipeline in well under a
# minute, for the test.
QUICK = Budget(
    name="quick",
    train_images=48,
    val_images=16,
    test_images=32,
    epochs=1,
    batch_size=48,
    lr=1e-3,
    compress={
        "prune.schedule": "iterative",  # prune, then retrain: one step is enough to prune
        "prune.epochs": 1,
        "prune.steps": 1,
        "prune.batch_size": 48,
        "finetune.epochs": 1,
        "finetune.batch_size": 48,
    },
    binary_epochs=1,
    latency_runs=3,
    prune_ratio=0.8,
    width={
        "alexnet": {"width_mult": 0.0625},
        "mobilenet_1.0": {"width_mult": 0.25},
        "mobilenet_0.5": {"width_mult": 0.125},
        "shufflenet_g1": {"scale": 0.25},
        "shufflenet_g3": {"scale": 0.25},
        "shufflenet_g8": {"scale": 0.25},
        "shufflenet_g3_noshuffle": {"scale": 0.25},
        "resnet18": {"width_mult": 0.125},
    },
)


def model_kwargs(row: Row, budget: Budget) -> dict[str, Any]:
    """The row's builder options for this budget, with the data's (10 classes, 1 channel,
    64 px)."""
    data = {"num_classes": 10, "in_chans": 1, "img_size": IMG_SIZE}
    return {**row.kwargs, **budget.width.get(row.name, {}), **data}


def select_rows(only: tuple[str, ...] | list[str] = ()) -> list[Row]:
    """The rows named in ``only`` (all when empty), in the survey's order."""
    known = {row.name for row in ROWS}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise RunError(
            f"unknown survey row(s) {', '.join(unknown)}: pick --only from "
            f"{', '.join(row.name for row in ROWS)}"
        )
    return [row for row in ROWS if not only or row.name in only]


def _upsample(split: Split, count: int | None) -> Split:
    """The first ``count`` images (all: None) at IMG_SIZE px, bilinear (N, 1, 64, 64)."""
    x, y = split.x[:count], split.y[:count]
    x = F.interpolate(x, size=(IMG_SIZE, IMG_SIZE), mode="bilinear", align_corners=False)
    return Split(x=x.contiguous(), y=y.clone())


def survey_data(budget: Budget) -> Dataset:
    """Fashion-MNIST (normalised 28x28 grey) upsampled to 64x64.

    Why 64: it is the smallest size at which every model of the zoo runs in its standard
    (ImageNet) form: the zoo switches to the small stem (first stride and max-pool
    dropped) below 64 px, and at 64 AlexNet's 11x11/4 stem and three max-pools still
    leave a 1x1 map that its adaptive pool spreads over the fixed 6x6 grid, so the fc
    layers keep their full 57M parameters; ResNet-18, MobileNet and ShuffleNet end at
    2x2 after their five halvings, SqueezeNet at 3x3. Bilinear, because nearest would
    only repeat pixels in blocks, a texture no model would meet at this size. The
    normalisation is the 28x28 set's (interpolation is linear: mean and scale hold).
    """
    base = load("fashion-mnist", val_size=budget.val_images, seed=SEED)
    with torch.no_grad():
        return replace(
            base,
            name=f"fashion-mnist@{IMG_SIZE}",
            train=_upsample(base.train, budget.train_images),
            val=_upsample(base.val, None),
            test=_upsample(base.test, budget.test_images),
        )
