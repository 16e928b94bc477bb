"""Binarize a trained run and fine-tune it through the ordinary training loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch.nn as nn

from cnnzip.binary.conversion import convert, skipped_layers
from cnnzip.data import Dataset
from cnnzip.errors import RunError
from cnnzip.runs import CHECKPOINT, Run, save_run
from cnnzip.train import TrainConfig, cross_entropy, evaluate, fit
from cnnzip.train.loop import LossFn

__all__ = ["binarize_run"]


def binarize_run(
    run: Run,
    data: Dataset,
    out: str | Path,
    *,
    mode: str,
    config: TrainConfig,
    keep: list[str] | None = None,
    scale_k: bool = True,
    loss_fn: LossFn = cross_entropy,
    log: Callable[[str], None] | None = print,
    resume: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Convert ``run``'s float model to ``mode``, fine-tune it, save it as run ``out``.

    The saved run names the "binarized" builder, so ``load_run`` rebuilds it. ``loss_fn``
    is the fine-tuning loss, e.g. ``cnnzip.distill.make_loss`` to learn from a float teacher.
    The metrics list the layers left float that ``keep`` did not ask for (``skipped``);
    ``log`` (None: silent) gets one line for each of them. With ``resume`` an interrupted
    fine-tuning continues from ``out``'s checkpoint.
    """
    if run.arch == "binarized":
        raise RunError(f"{run.path} is already binary; binarize its float source run instead")
    skipped = skipped_layers(run.model, keep, mode)
    model = convert(run.model, mode, keep=keep, scale_k=scale_k, log=log)
    checkpoint = Path(out) / CHECKPOINT
    result = fit(model, data, config, loss_fn=loss_fn, checkpoint=checkpoint, resume=resume)
    test = evaluate(model, data.test)
    kwargs = {"base": run.arch, "base_kwargs": run.kwargs, "mode": mode, "keep": keep}
    kwargs["scale_k"] = scale_k
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": result.final.get("val_accuracy"),
        "source_test_accuracy": run.meta.get("metrics", {}).get("test_accuracy"),
        "skipped": [[name, reason] for name, reason in skipped],
    }
    save_run(
        out,
        model,
        arch="binarized",
        kwargs=kwargs,
        **data.record(),  # name, classes, input shape (a factory's profile reads it)
        normalization=data.stats.to_json(),  # the statistics its inputs are normalised with
        metrics=metrics,
        config=asdict(config),
        history=result.history,
        source=str(run.path),
    )
    return model, metrics
