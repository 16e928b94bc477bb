"""The public API: every stage package under ``cnnzip``, and no module shadowed by a function."""

from __future__ import annotations

import importlib
import inspect as pyinspect

import cnnzip

STAGE_PACKAGES = [
    "binary", "codec", "data", "distill", "models", "profiling",
    "prune", "quantize", "recipes", "runtime", "train",
]  # fmt: skip


def test_every_stage_package_is_exported() -> None:
    for name in STAGE_PACKAGES:
        assert pyinspect.ismodule(getattr(cnnzip, name)), name
        assert name in cnnzip.__all__
    assert callable(cnnzip.binary.binarize_run) and callable(cnnzip.recipes.compress)


def test_no_submodule_is_shadowed_by_a_function_of_its_package() -> None:
    for name in STAGE_PACKAGES:
        package = importlib.import_module(f"cnnzip.{name}")
        for attr, value in vars(package).items():
            if pyinspect.isfunction(value) or pyinspect.isclass(value):
                try:
                    sub = importlib.import_module(f"cnnzip.{name}.{attr}")
                except ModuleNotFoundError:
                    continue
                raise AssertionError(f"cnnzip.{name}.{attr} is both {sub} and {value}")
    report = importlib.import_module("cnnzip.codec.report")
    assert cnnzip.codec.inspect is report.inspect
