"""Recipes: the built-in one loads, bad ones fail naming the stage and option, compress runs."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import cnnzip
from cnnzip.cli import main
from cnnzip.models import get_model
from cnnzip.recipes import RecipeError, builtin_recipes, compress, load_recipe, parse_recipe
from cnnzip.recipes.stages import PruneStage, ShareStage
from cnnzip.runs import save_run
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
        ({"stages": [{"prune": {"sparsity": "high"}}]}, "sparsity='high' should be a finite num"),
        ({"stages": [{"channels": {"round_to": 2.5}}]}, "round_to=2.5 should be a whole number$"),
        ({"stages": [{"channels": {"macs": 0.5, "params": 0.4}}]}, "given: macs=0.5, params=0.4;"),
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


@pytest.mark.slow
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


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
description: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
stages: [prune: {}]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "line 1: anchors and aliases"),
        ("stages:\n  - prune: &p {steps: 2}\n  - finetune: *p\n", "line 2: anchors and aliases"),
        ("stages: [prune: {}]\n" + "#" * (64 << 10), "over 65536 bytes"),
        (b"stages: [prune: {}]\n\xff".decode("latin-1"), "not valid YAML"),
        ("name: [1]\nstages: [prune: {}]\n", "`name` must be a string"),
        ("name: t\nname: u\nstages: [prune: {}]\n", "line 2: key 'name' is given twice"),
        (
            "stages:\n  - prune: {sparsity: 0.5, sparsity: 0.9}\n",
            "line 2: key 'sparsity' is given twice",
        ),
        ("stages:\n  - prune:\n      steps: 1\n      steps: 2\n", "line 4: key 'steps' is given"),
        ("stages: [\n  - prune: {}\n", r"not valid YAML: [^\n]* \(line 2, column 3\)$"),
    ],
)
def test_hostile_yaml_is_refused_before_it_expands(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"prune": {"steps": 1_000_000_000_000, "epochs": 0}}, r"steps 1000000000000 .* 1\.\.1000"),
        ({"prune": {"epochs": 1001}}, r"epochs 1001 must be in 0\.\.1000"),
        ({"prune": {"lr": float("inf")}}, "lr=inf should be .*finite"),
        ({"prune": {"lr": float("nan")}}, "lr=nan should be .*finite"),
        ({"prune": {"ratios": {"fc1": 1.0}}}, r"every ratio must be in \[0, 1\)"),
        ({"finetune": {"lr": 11}}, r"lr 11.0 must be in \(0, 10\]"),
        ({"finetune": {"batch_size": 10**9}}, r"batch_size 1000000000 must be in 1\.\.65536"),
        ({"prune": {"sparsty": 0.9}}, "unknown option 'sparsty'. Did you mean 'sparsity'"),
        ({"prnue": {}}, "unknown stage 'prnue'. Did you mean 'prune'"),
    ],
)
def test_values_have_finite_bounded_ranges(stage: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"stages": [stage]}, "r.yaml")


def test_the_yaml_infinity_is_refused(tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stages:\n  - finetune: {lr: .inf}\n")
    with pytest.raises(RecipeError, match="lr=inf"):
        load_recipe(path)


def test_overrides_go_through_the_same_checks() -> None:
    with pytest.raises(RecipeError, match="steps 1000000000000"):
        load_recipe("deep-compression", {"prune.steps": 10**12})
    with pytest.raises(RecipeError, match="lr=inf"):
        load_recipe("deep-compression", {"finetune.lr": float("inf")})
    with pytest.raises(RecipeError, match="unknown option 'sparsty'"):
        load_recipe("deep-compression", {"prune.sparsty": 0.5})


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (
            {"share": {"bits": {"conv": 8, "transformer": 5}}},
            "share.bits: unknown layer 'transformer'",
        ),
        ({"share": {"bits": {"conv": 8, "linaer": 5}}}, "Did you mean 'linear'"),
        ({"share": {"bits": {"fc4": 5}}}, "Did you mean 'fc3'"),
        ({"prune": {"ratios": {"fc1.wieght": 0.5}}}, "prune.ratios: .*Did you mean 'fc1.weight'"),
    ],
)
def test_layer_names_in_options_must_name_layers_of_the_model(
    toy_data, stage: dict, message: str
) -> None:
    model = get_model("lenet300", hidden=(8, 4))
    recipe = parse_recipe({"stages": [{"finetune": {"epochs": 0}}, stage]})
    with pytest.raises(RecipeError, match=message):  # before the first stage runs
        compress(model, toy_data, recipe, log=lambda _: None)
    recipe = parse_recipe({"stages": [{"share": {"bits": {"linear": 2, "fc1": 3}}}]})
    result = compress(model, toy_data, recipe, log=lambda _: None)
    assert result.log[0]["bits"] == {"fc1.weight": 3, "fc2.weight": 2, "fc3.weight": 2}


def test_cli_override_out_of_range_is_one_error_line(tmp_path) -> None:
    save_run(tmp_path / "run", get_model("lenet300", hidden=[8, 4]), arch="lenet300",
             kwargs={"hidden": [8, 4]})  # fmt: skip
    args = ["compress", str(tmp_path / "run"), "-o", str(tmp_path / "m.cnnz")]
    result = CliRunner().invoke(main, [*args, "-s", "prune.steps=1000000000000"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "steps 1000000000000 must be in 1..1000" in result.output
