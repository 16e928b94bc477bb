"""Run directories: what ``cnnzip train`` writes and every later command reads.

RUN/model.safetensors   the weights (never pickle)
RUN/run.json            architecture name, builder kwargs, weight transforms
                        (masks, codebooks: see cnnzip.transforms), the data and its
                        per-channel normalization, metrics, history
                        and, for a structurally pruned model, the channels kept
                        ("slim": cnnzip.models.slim), applied before the weights load
RUN/checkpoint.pt       training state for --resume (read with weights_only=True)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from cnnzip.data import Normalization
from cnnzip.errors import DataError, ModelError, RunError
from cnnzip.fileio import atomic_path, atomic_write_text
from cnnzip.models import get_model
from cnnzip.models.registry import untrusted
from cnnzip.models.slim import (
    apply_slim,
    check_removed,
    check_slim_plan,
    record_input_shape,
    run_error,
    slim_input_shape_of,
    slim_plan_of,
    valid_input_shape,
)
from cnnzip.transforms import describe, rebuild

__all__ = ["Run", "load_run", "save_run", "stored_normalization"]

WEIGHTS = "model.safetensors"
META = "run.json"
CHECKPOINT = "checkpoint.pt"
MAX_META_BYTES = 16 << 20  # run.json: arch, kwargs, transforms, metrics, history
VERSION = 1  # of run.json; every cnnzip so far writes 1


@dataclass
class Run:
    """A loaded run: the model with its weights, and the metadata it was saved with."""

    path: Path
    model: nn.Module
    meta: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.meta.get("kwargs", {}))

    @property
    def normalization(self) -> Normalization | None:
        """The statistics the model's inputs were normalised with in training (None in a
        run written before cnnzip recorded them: the data's own are measured then)."""
        return stored_normalization(self.meta, self.path / META)


def stored_normalization(meta: dict[str, Any], where: str | Path) -> Normalization | None:
    """The ``normalization`` field of run.json or of a .cnnz file's metadata, checked; a
    malformed one is one RunError naming ``where``."""
    if meta.get("normalization") is None:
        return None
    try:
        return Normalization.from_json(meta["normalization"])
    except DataError as exc:
        raise RunError(f"{where}: field {exc}") from None


def save_run(
    path: str | Path, model: nn.Module, *, arch: str, kwargs: dict[str, Any], **meta: Any
) -> Path:
    """Write weights and metadata atomically; ``meta`` holds metrics, config, history.
    A slim model's plan (``slim_plan_of``) is recorded as ``slim`` unless ``meta`` gives one,
    with the input shape it was slimmed for (``record_input_shape``) as ``input_shape``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    body = {
        "format": "cnnzip-run",
        "version": VERSION,
        "arch": arch,
        "kwargs": kwargs,
        "transforms": describe(model),
        **meta,
    }
    if "slim" not in body and slim_plan_of(model) is not None:
        body["slim"] = slim_plan_of(model)
    if "input_shape" not in body and slim_input_shape_of(model) is not None:
        body["input_shape"] = list(slim_input_shape_of(model))
    atomic_write_text(path / META, json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """run.json of a run directory, checked field by field (see ``_check_meta``)."""
    meta_path = Path(path) / META
    if not meta_path.is_file():
        raise RunError(f"{path} is not a run directory (no {META}); create one with `cnnzip train`")
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise RunError(f"{meta_path} is over {MAX_META_BYTES} bytes: not one cnnzip wrote")
    try:
        meta = json.loads(meta_path.read_text(), object_pairs_hook=_unique_keys(meta_path))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RunError(f"{meta_path} is corrupt: {exc}") from None
    _check_meta(meta, meta_path)
    return meta


def _unique_keys(where: Path) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A json ``object_pairs_hook`` refusing a key given twice in one object: json keeps the
    last one silently, so ``"arch": "lenet5", "arch": "lenet300"`` would load lenet300."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise RunError(f"{where}: field {key!r:.80} is given twice in one object; keep one")
            out[key] = value
        return out

    return build


def _check_meta(meta: Any, where: Path) -> None:
    """The fields ``load_run`` uses have the types ``save_run`` writes; the values are
    checked where they are used (``get_model``, the transforms) and named as fields of
    ``where`` when they fail."""
    if not isinstance(meta, dict):
        raise RunError(f"{where} must hold a JSON object, not {type(meta).__name__}")
    if meta.get("format") != "cnnzip-run" or "arch" not in meta:
        raise RunError(f"{where} was not written by cnnzip (no format/arch fields)")
    if type(meta.get("version")) is not int or meta["version"] != VERSION:
        raise RunError(
            f"{where}: field version is {meta.get('version')!r:.80}; this cnnzip reads run.json "
            f"version {VERSION} only (was the run written by another cnnzip?)"
        )
    if not isinstance(meta["arch"], str) or not meta["arch"]:
        raise RunError(f"{where}: field arch must be a model name, got {meta['arch']!r:.80}")
    if not isinstance(meta.get("kwargs", {}), dict):
        raise RunError(f"{where}: field kwargs must be an object, got {meta['kwargs']!r:.80}")
    stored_normalization(meta, where)
    if meta.get("slim") is not None:
        try:
            check_slim_plan(meta["slim"], "field slim")
        except ModelError as exc:
            raise RunError(f"{where}: {exc}") from None
    specs = meta.get("transforms", [])
    if not isinstance(specs, list) or not all(map(_is_spec, specs)):
        raise RunError(
            f"{where}: field transforms must be a list of "
            '{"target": str, "kind": str, "spec": {name: number or string}}, '
            f"got {specs!r:.80}"
        )


def _is_spec(item: Any) -> bool:
    """One entry of ``transforms.describe``: a target, a kind and flat scalar arguments."""
    spec = item.get("spec", {}) if isinstance(item, dict) else None
    return (
        isinstance(item, dict)
        and isinstance(item.get("target"), str)
        and isinstance(item.get("kind"), str)
        and isinstance(spec, dict)
        and all(isinstance(v, int | float | str | bool | None) for v in spec.values())
    )


def _model(meta: dict[str, Any], where: Path) -> nn.Module:
    """The model run.json describes, its transforms rebuilt; whatever they raise on bad
    values ends as a RunError naming the field."""
    try:
        with untrusted():  # run.json is shared like a .cnnz: its factory only if trusted
            model = get_model(meta["arch"], **meta.get("kwargs", {}))
    except ModelError as exc:
        raise RunError(f"{where}: fields arch/kwargs: {exc}") from None
    if meta.get("slim") is not None:  # channels cut before transforms and weights fit
        try:
            apply_slim(model, meta["slim"])
        except ModelError as exc:
            raise RunError(f"{where}: field slim: {exc}") from None
    _check_targets(model, meta.get("transforms", []), where)
    try:
        rebuild(model, meta.get("transforms", []))  # masks, codebooks... before buffers load
    except Exception as exc:  # a spec's values reach torch: it raises anything
        raise RunError(f"{where}: field transforms: {type(exc).__name__}: {exc}") from None
    return model


def _check_targets(model: nn.Module, specs: list[dict[str, Any]], where: Path) -> None:
    """Every transform target names a weight of the fresh model (``module.tensor``): a module
    name (``fc1``) would reach torch as a module where a tensor is meant."""
    weights = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    for target in (item["target"] for item in specs):
        if target not in weights:
            raise RunError(
                f"{where}: field transforms: target {target!r:.80} is not a weight of the model; "
                f"name one as module.tensor, e.g. {next(iter(sorted(weights)), 'fc1.weight')!r}"
            )


def _check_specs(skeleton: nn.Module, specs: list[dict[str, Any]], where: Path) -> None:
    """The rebuilt transforms describe themselves exactly as run.json does: a spec with an
    argument its kind does not take (a mask with ``{"k": -5}``) is refused, not ignored."""

    def canonical(items: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps({"spec": {}, **item}, sort_keys=True) for item in items)

    rebuilt = describe(skeleton)
    if canonical(rebuilt) != canonical(specs):
        raise RunError(
            f"{where}: field transforms {specs!r:.120} is not what its kinds take; rebuilt "
            f"they read {rebuilt!r:.120}"
        )


def _check_weights(path: Path, skeleton: nn.Module) -> None:
    """The weights file holds exactly the tensors of ``skeleton``, in their shapes: read
    from its header, so a lying run.json (a codebook of 2**40) allocates nothing."""
    expected = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
    try:
        with safe_open(str(path / WEIGHTS), "pt") as f:
            stored = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise RunError(f"cannot load the weights of {path}: {exc}") from None
    missing, extra = sorted(expected.keys() - stored), sorted(stored.keys() - expected)
    wrong = sorted(k for k in expected.keys() & stored if expected[k] != stored[k])
    if missing or extra or wrong:
        raise RunError(
            f"cannot load the weights of {path}: {WEIGHTS} does not fit the model {META} "
            f"describes (missing {missing[:3]}, unexpected {extra[:3]}, other shape {wrong[:3]})"
        )


def _check_slim_runs(skeleton: nn.Module, meta: dict[str, Any], where: Path) -> None:
    """A slim run's meta-device model runs once on its recorded input shape: a plan that
    cuts a layer's channels but not its consumer's fits every tensor yet cannot run."""
    shape = valid_input_shape(meta.get("input_shape"))
    error = run_error(skeleton, shape) if meta.get("slim") is not None and shape else None
    if error is not None:
        raise RunError(
            f"{where}: field slim: the slim model does not run on one {list(shape)} input "
            f"({error}); the plan cuts a layer's channels without its consumers' (or the "
            "recorded input shape is not the model's)"
        )


def load_run(path: str | Path) -> Run:
    """Rebuild the model named in run.json and load its safetensors weights. Everything is
    first built on the meta device and checked against the weights file's header, so a
    bad run directory fails before any memory is spent. A run directory is shared like a
    .cnnz, so an arch naming a ``package.module:factory`` is imported only where the
    caller trusts it (``trust_factories``, $CNNZIP_TRUST: see cnnzip.models.registry)."""
    path = Path(path)
    meta = read_meta(path)
    with torch.device("meta"):
        skeleton = _model(meta, path / META)
    _check_specs(skeleton, meta.get("transforms", []), path / META)
    _check_weights(path, skeleton)
    _check_slim_runs(skeleton, meta, path / META)
    model = _model(meta, path / META)
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    except (SafetensorError, FileNotFoundError, RuntimeError, OSError) as exc:
        raise RunError(f"cannot load the weights of {path}: {exc}") from None
    shape = valid_input_shape(meta.get("input_shape"))  # None: unusable, as in a .cnnz
    try:  # a plan removing layers whole must compute the masked model's outputs
        check_removed(model, shape, f"{path / META}: field slim")
    except ModelError as exc:
        raise RunError(str(exc)) from None
    if meta.get("slim") is not None and shape is not None:
        record_input_shape(model, shape)  # so that a .cnnz of it records the shape too
    return Run(path=path, model=model, meta=meta)
