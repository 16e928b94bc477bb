"""Recipes: the built-in one loads, bad ones fail naming the stage and option, compress runs."""

from __future__ import annotations

import pytest
import torch

import cnnzip
from cnnzip.models import get_model
from cnnzip.recipes import RecipeError, builtin_recipes, compress, load_recipe, parse_recipe
from cnnzip.recipes.stages import PruneStage, ShareStage
from cnnzip.train import evaluate


def test_builtin_deep_compression_follows_the_paper() -> None:
    assert "deep-compression" in builtin_recipes()
    recipe = load_recipe("deep-compression")
    assert [n for n, _ in recipe.stages] == ["prune", "share", "finetune", "encode"]
    assert recipe.stage("share").bits == {"conv": 8, "linear": 5}
    assert recipe.stage("share").init == "linear"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], "a recipe is a mapping"),
        ({"stages": []}, "non-empty list"),
        ({"stages": [{"prnue": {}}]}, "unknown stage 'prnue'"),
        ({"stages": [{"prune": {"sparsty": 0.9}}]}, "unknown option 'sparsty'"),
        ({"stages": [{"prune": {"sparsity": "high"}}]}, "sparsity='high' should be"),
        ({"stages": [{"prune": {"sparsity": 1.5}}]}, r"must be in \[0, 1\)"),
        ({"stages": [{"share": {"bits": 17}}]}, "1..16"),
        ({"stages": [{"share": {"init": "kmeans++"}}]}, "init 'kmeans\\+\\+'"),
        ({"stages": [{"encode": {}}, {"prune": {}}]}, "last stage"),
        ({"stages": [{"prune": {}, "share": {}}]}, "one mapping"),
        ({"stages": [{"share": {}}], "extra": 1}, "unknown key"),
    ],
)
def test_bad_recipes_name_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(body, "r.yaml")


def test_yaml_files_and_overrides(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nstages:\n  - prune: {sparsity: 0.5}\n  - share: {bits: 4}\n")
    recipe = load_recipe(path, {"prune.sparsity": 0.7})
    assert recipe.stage("prune") == PruneStage(sparsity=0.7)
    assert recipe.stage("share") == ShareStage(bits=4)
    with pytest.raises(RecipeError, match=r"STAGE\.OPTION"):
        load_recipe(path, {"finetune.epochs": 1})
    path.write_text("stages: [prune: {sparsity: 0.5}\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="no recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_compress_prunes_shares_and_writes_what_it_evaluated(toy_data, tmp_path) -> None:
    torch.manual_seed(0)
    model = get_model("lenet300", hidden=(32, 16))
    recipe = parse_recipe(
        {
            "stages": [
                {"prune": {"sparsity": 0.8, "steps": 1, "epochs": 1, "lr": 1e-3}},
                {"share": {"bits": 4}},
                {"finetune": {"epochs": 1, "lr": 1e-3}},
                {"encode": {"dense_dtype": "float32"}},
            ]
        }
    )
    arch = {"name": "lenet300", "kwargs": {"hidden": [32, 16]}}
    result = compress(model, toy_data, recipe, arch=arch, log=lambda _: None)
    weights = [model.fc1.weight, model.fc2.weight, model.fc3.weight]
    kept = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert kept == pytest.approx(0.2, abs=0.01)
    assert all(len(torch.unique(w[w != 0])) <= 16 for w in weights)
    size = result.save(tmp_path / "m.cnnz")
    assert size == (tmp_path / "m.cnnz").stat().st_size
    loaded = cnnzip.load(tmp_path / "m.cnnz")
    assert evaluate(loaded, toy_data.test) == evaluate(model, toy_data.test)
    assert [s["stage"] for s in result.log] == ["prune", "share", "finetune", "encode"]
