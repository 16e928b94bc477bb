"""``compress``: run a recipe's stages on a model, then write the .cnnz file.

result = cnnzip.compress(model, data, "deep-compression", arch={"name": "lenet5", "kwargs": {}})
result.save("lenet5.cnnz")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cnnzip.codec import decode_state, encode
from cnnzip.codec import save as save_cnnz
from cnnzip.codec.container import unpack
from cnnzip.data import Dataset
from cnnzip.fileio import atomic_write_text
from cnnzip.models.running import state_digest
from cnnzip.recipes.loader import Recipe, load_recipe
from cnnzip.recipes.stages import (
    RECIPE_STAGES,
    EncodeStage,
    RecipeError,
    StageRun,
    check_layer_names,
)
from cnnzip.train import cross_entropy, evaluate
from cnnzip.train.loop import LossFn

__all__ = ["Compressed", "compress"]


@dataclass
class Compressed:
    """A compressed model (with its weight transforms) and what each stage did."""

    model: nn.Module
    recipe: Recipe
    arch: dict[str, Any] | None
    log: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def encoding(self) -> EncodeStage:
        """How the file is written: the recipe's encode stage, or the defaults."""
        return self.recipe.stage("encode") or EncodeStage()

    def save(self, path: str | Path) -> int:
        """Write the .cnnz file (atomically); returns its size in bytes."""
        return save_cnnz(
            path,
            self.model,
            arch=self.arch,
            meta=_rounded({**self.meta, "recipe": self.recipe.to_dict(), "stages": self.log}),
            dense_dtype=self.encoding.dense_dtype,
            index_bits=self.encoding.index_bits,
        )


def _rounded(value: Any, digits: int = 5) -> Any:
    """Floats to ``digits`` significant digits: metadata is part of the file's size."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v, digits) for v in value]
    return value


def compress(
    model: nn.Module,
    data: Dataset,
    recipe: str | Path | Recipe = "deep-compression",
    *,
    arch: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    loss_fn: LossFn = cross_entropy,
    work_dir: str | Path | None = None,
) -> Compressed:
    """Apply ``recipe``'s stages to ``model`` in place (it ends up pruned and shared).

    ``arch`` ({"name", "kwargs"} of a zoo model) lets ``cnnzip.load`` rebuild the
    model from the file alone; ``meta`` is stored in the file (e.g. accuracies).
    ``loss_fn`` is the loss of every stage that retrains: one
    ``cnnzip.distill.make_loss`` makes the whole recipe distillation-aware.

    ``work_dir``: a folder where every retraining stage checkpoints each epoch, so a
    killed compression of a large model, called again with the same model, data,
    recipe and folder, redoes the cheap deterministic steps (sweep, masks, k-means) and
    continues training where its last epoch ended, ending with the same weights as an
    uninterrupted run (the iterative prune schedule restarts its stage). The folder is
    bound to one recipe and one starting model (a digest of its weights): another of
    either is refused.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    check_layer_names(model, recipe.stages)
    work = _claim_work_dir(work_dir, recipe, model)
    result = Compressed(model=model, recipe=recipe, arch=arch, meta=dict(meta or {}))
    for i, (name, cfg) in enumerate(recipe.stages, start=1):
        # each stage announced before it runs: its own progress (the sweep's layers, the
        # training bar) follows on a terminal with an ETA
        log(f"stage {i}/{len(recipe.stages)}: {name}")
        start = time.perf_counter()
        checkpoint = work / f"stage{i}-{name}.pt" if work else None
        info = RECIPE_STAGES[name][1](model, cfg, StageRun(data, log, loss_fn, checkpoint))
        seconds = time.perf_counter() - start
        result.log.append({"stage": name, "seconds": seconds, **info})
        log(f"stage {i}/{len(recipe.stages)}: {name} done in {seconds:.1f}s")
    _hold_the_file(model, result.encoding)
    result.meta["test_accuracy"] = evaluate(model, data.test)["accuracy"]  # the file's
    return result


def _claim_work_dir(work_dir: str | Path | None, recipe: Recipe, model: nn.Module) -> Path | None:
    """The checkpoint folder, made and bound to ``recipe`` (its recipe.json) and to the
    weights it starts from (source.json): a folder holding another recipe's or another
    model's checkpoints would resume the wrong training, silently."""
    if work_dir is None:
        return None
    work = Path(work_dir)
    bindings = {
        "recipe.json": ("another recipe", json.dumps(recipe.to_dict(), sort_keys=True)),
        "source.json": ("a model of other weights", json.dumps({"sha256": state_digest(model)})),
    }
    try:
        work.mkdir(parents=True, exist_ok=True)
        for name, (what, wanted) in bindings.items():
            if (work / name).exists() and (work / name).read_text() != wanted:
                raise RecipeError(
                    f"{work} holds the checkpoints of {what} ({work / name}); remove the "
                    "folder or pick another work folder"
                )
        for name, (_, wanted) in bindings.items():
            atomic_write_text(work / name, wanted)
    except OSError as exc:
        raise RecipeError(f"cannot use {work} as the work folder: {exc}") from None
    return work


@torch.no_grad()
def _hold_the_file(model: nn.Module, enc: EncodeStage) -> None:
    """Make ``model`` compute exactly what its .cnnz file will: encode it, decode the bytes
    with the codec (the source of truth) and copy each plain tensor's stored value (a bias
    or BatchNorm statistic rounded to float16, say) into the model in place. Transformed
    weights (pruned, shared, binary) decode bit-exactly already; their names are not
    plain entries of the state dict, so they are left alone."""
    data = encode(model, dense_dtype=enc.dense_dtype, index_bits=enc.index_bits)
    plain = model.state_dict(keep_vars=True)
    for name, value in decode_state(unpack(data)).items():
        if name in plain:
            plain[name].copy_(value)
