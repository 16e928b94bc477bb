"""YAML recipes: an ordered list of stages on disk, validated with clear errors.

    name: my-recipe
    stages:
      - prune: {sparsity: 0.9}
      - share: {bits: 6}
      - finetune: {epochs: 2}
      - encode: {dense_dtype: float32}

A recipe is a built-in name (``deep-compression``, ``slim-deep-compression``:
structured pruning first) or a path to such a file
of at most 64 KiB, plain YAML without anchors or aliases (``&a``/``*a``:
nested ones expand exponentially). Every stage's options are checked against
its dataclass: unknown names at any level (with the closest known one
suggested), wrong types, floats that are not finite and values out of range
(steps <= 1000, epochs <= 1000, batch sizes <= 65536, lr in (0, 10]; see
``cnnzip.recipes.stages``) fail naming the stage and the option. Layer names
in ``share.bits`` and ``prune.ratios`` are checked against the model when
``compress`` starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Hashable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cnnzip.recipes.stages import RECIPE_STAGES, RecipeError, unknown_name

__all__ = ["Recipe", "builtin_recipes", "load_recipe", "parse_recipe"]

MAX_RECIPE_BYTES = 64 << 10  # the built-in recipe is 0.9 KB
TRANSFORMING = ("prune", "share")  # stages that leave weight transforms (masks, codebooks)


@dataclass
class Recipe:
    name: str
    stages: list[tuple[str, Any]]  # (stage name, its config dataclass)
    description: str = ""

    def stage(self, name: str) -> Any | None:
        return next((cfg for n, cfg in self.stages if n == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stages": [{n: dataclasses.asdict(cfg)} for n, cfg in self.stages],
        }


def builtin_recipes() -> list[str]:
    files = resources.files("cnnzip.recipes").iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def _type_ok(value: Any, hint: Any) -> bool:
    """Does ``value`` (from YAML) fit the annotation ``hint``?"""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item_t,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item_t) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _type_ok(k, key_t) and _type_ok(v, val_t) for k, v in value.items()
        )
    return isinstance(value, hint)


_PLAIN_NAMES = {int: "a whole number", float: "a finite number", bool: "true or false",
                str: "a string", type(None): "null"}  # fmt: skip


def _type_name(hint: Any) -> str:
    """``hint`` as a recipe writer reads it: "a finite number or null", not
    ``float | None``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in args)
    if origin is list:
        return f"a list of ({_type_name(args[0])})"
    if origin is dict:
        return f"a mapping of ({_type_name(args[0])}) to ({_type_name(args[1])})"
    return _PLAIN_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _stage(where: str, item: Any) -> tuple[str, Any]:
    if not isinstance(item, dict) or len(item) != 1:
        raise RecipeError(
            f"{where}: each stage is one mapping like `- prune: {{...}}`, got {item!r:.80}"
        )
    ((name, options),) = item.items()
    if name not in RECIPE_STAGES:
        raise unknown_name(where, "stage", name, list(RECIPE_STAGES))
    options = options or {}
    if not isinstance(options, dict):
        raise RecipeError(f"{where} ({name}): options must be a mapping, got {options!r:.80}")
    cls = RECIPE_STAGES[name][0]
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        if key not in hints:
            raise unknown_name(f"{where} ({name})", "option", key, list(hints))
        if not _type_ok(value, hints[key]):
            raise RecipeError(
                f"{where} ({name}): option {key}={value!r:.80} should be {_type_name(hints[key])}"
            )
    return name, cls(**{k: float(v) if hints[k] is float else v for k, v in options.items()})


def parse_recipe(body: Any, source: str = "recipe") -> Recipe:
    """A Recipe from the parsed YAML ``body``."""
    if not isinstance(body, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with `name` and `stages`")
    for key in body:
        if key not in ("name", "description", "stages"):
            raise unknown_name(source, "key", key, ["name", "description", "stages"])
    for key in ("name", "description"):
        if not isinstance(body.get(key, ""), str):
            raise RecipeError(f"{source}: `{key}` must be a string")
    stages = body.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{source}: `stages` must be a non-empty list")
    parsed = [_stage(f"{source} stage {i + 1}", item) for i, item in enumerate(stages)]
    names = [n for n, _ in parsed]
    if names.count("encode") > 1 or ("encode" in names and names[-1] != "encode"):
        raise RecipeError(f"{source}: `encode` may appear once, as the last stage")
    last = max((i for i, n in enumerate(names) if n == "channels"), default=0)
    if any(n in TRANSFORMING for n in names[:last]):  # every channels stage, not the first
        raise RecipeError(
            f"{source}: `channels` (structured pruning) must come before prune and share: "
            "it cuts plain weights, not masked or shared ones"
        )
    return Recipe(
        name=str(body.get("name", source)),
        stages=parsed,
        description=str(body.get("description", "")),
    )


def load_recipe(recipe: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """A built-in recipe by name, or a YAML file by path; ``overrides`` maps
    ``"stage.option"`` to a value (e.g. ``{"prune.sparsity": 0.9}``), checked like the file."""
    body = _read_yaml(recipe)
    for key, value in (overrides or {}).items():
        stage, _, option = key.partition(".")
        hits = [item for item in _stage_items(body) if stage in item]
        if not option or not hits:
            raise RecipeError(f"override {key!r}: expected STAGE.OPTION with a stage of the recipe")
        for item in hits:
            item[stage] = {**(item[stage] or {}), option: value}
    return parse_recipe(body, str(recipe))


def _stage_items(body: Any) -> list[dict[str, Any]]:
    stages = body.get("stages") if isinstance(body, dict) else None
    return [item for item in stages or [] if isinstance(item, dict)]


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases: a recipe never needs them, and a few
    nested ones expand into gigabytes ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise RecipeError(
                f"line {event.start_mark.line + 1}: anchors and aliases (&name, *name) are not "
                "allowed in a recipe; write the values out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice in one mapping: YAML would keep the last one silently,
        so ``{sparsity: 0.5, sparsity: 0.9}`` would run with 0.9."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                break  # SafeLoader refuses it below with its own message
            if key in seen:
                raise RecipeError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in the "
                    "same mapping; keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(recipe: str | Path) -> Any:
    """The parsed YAML of a built-in recipe or a file, refused above MAX_RECIPE_BYTES."""
    if str(recipe) in builtin_recipes():
        source = resources.files("cnnzip.recipes").joinpath(f"{recipe}.yaml")
    elif Path(recipe).is_file():
        source = Path(recipe)
    else:
        raise RecipeError(
            f"no recipe {str(recipe)!r}: give a YAML file or one of {', '.join(builtin_recipes())}"
        )
    with source.open("rb") as f:
        data = f.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{recipe}: over {MAX_RECIPE_BYTES} bytes; a recipe is a short file")
    try:  # _PlainLoader is a SafeLoader: no Python objects either
        return yaml.load(data.decode("utf-8"), Loader=_PlainLoader)
    except RecipeError as exc:  # _PlainLoader's refusals know the line, not the file
        raise RecipeError(f"{recipe}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{recipe}: not valid YAML: not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{recipe}: not valid YAML: {_yaml_problem(exc)}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message in one line: its problem and where, without the quoted source lines."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
