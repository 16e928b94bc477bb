"""``cnnzip prune --structured`` and the slim-deep-compression recipe through the real CLI:
a tiny LeNet-5 run on the synthetic set is slimmed to half its MACs, evaluated and
profiled as a run (load_run rebuilds it slim), compressed into a .cnnz that reloads
slim; bad targets end in one ``error:`` line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.codec import load as cz_load
from cnnzip.data import synthetic
from cnnzip.models import get_model
from cnnzip.profiling import profile
from cnnzip.prune.structured import allocate as allocate_module
from cnnzip.prune.structured.latency import GroupSpeed
from cnnzip.recipes import RecipeError, compress, load_recipe, parse_recipe
from cnnzip.recipes.stages import ChannelsStage
from cnnzip.runs import load_run, save_run
from cnnzip.train import TrainConfig, fit

SHAPE = (1, 28, 28)
DATA = ("--data", "synthetic")


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """LeNet-5 after one epoch on the synthetic set (the CLI's --data synthetic)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_model("lenet5")
    fit(model, synthetic(seed=0), TrainConfig(epochs=1, batch_size=64), progress=False)
    path = tmp_path_factory.mktemp("runs") / "lenet5"
    save_run(path, model, arch="lenet5", kwargs={}, input_shape=list(SHAPE))
    return str(path)


@pytest.fixture(scope="module")
def slim_run(run_dir: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("slim") / "half")
    code, text = run_cli(
        "prune", run_dir, "--structured", "--macs", "0.5", "--uniform", "--epochs", "1",
        "-o", out, *DATA, "--json",
    )  # fmt: skip
    assert code == 0, text
    return out, last_json(text)


def test_prune_structured_halves_the_macs(run_dir: str, slim_run: tuple[str, dict]) -> None:
    out, res = slim_run
    full = profile(get_model("lenet5"), SHAPE).macs
    assert res["macs"][0] == full == 2_293_000
    assert res["macs"][1] <= full / 2
    assert res["profile"]["mac_ratio"] == pytest.approx(full / res["macs"][1])
    assert res["profile"]["latency_ms"][0] > 0 and res["profile"]["latency_ms"][1] > 0
    run = load_run(out)  # rebuilt slim from the arch name and the recorded plan
    report = profile(run.model, SHAPE)
    assert (report.macs, report.params) == (res["macs"][1], res["params"][1])
    assert run.model.conv1.out_channels < 20 and run.model.fc1.out_features < 500
    assert run.model.fc2.out_features == 10  # the classifier stays whole
    assert run.meta["metrics"]["test_accuracy"] == res["test_accuracy"]
    code, text = run_cli("eval", out, *DATA, "--json")
    assert code == 0 and last_json(text)["accuracy"] == res["test_accuracy"]
    code, text = run_cli("profile", out, "--json")
    assert code == 0, text
    assert last_json(text)["macs"] == res["macs"][1]


def test_prune_structured_text_report(run_dir: str, tmp_path: Path) -> None:
    code, text = run_cli(
        "prune", run_dir, "--structured", "--params", "0.5", "--uniform", "--epochs", "0",
        "--round-to", "4", "-o", str(tmp_path / "p"), *DATA,
    )  # fmt: skip
    assert code == 0, text
    assert "left whole" in text and "fc2" in text  # the classifier, named with its reason
    assert "x the MACs" in text and "test accuracy" in text
    run = load_run(tmp_path / "p")
    assert sum(p.numel() for p in run.model.parameters()) <= 431_080 / 2
    widths = [
        run.model.conv1.out_channels,
        run.model.conv2.out_channels,
        run.model.fc1.out_features,
    ]
    assert all(w % 4 == 0 for w in widths if w not in (20, 50, 500)) and widths != [20, 50, 500]


def test_prune_structured_by_latency_follows_the_table(
    run_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--by-latency reaches the same MAC target, cutting most where the (here fixed)
    latency table says time falls most per MAC: fc1."""
    table = {n: GroupSpeed(n, ms, 1_000_000) for n, ms in [("conv1", 1.0), ("conv2", 1.0),
                                                           ("fc1", 8.0)]}  # fmt: skip
    monkeypatch.setattr(allocate_module, "latency_table", lambda *a, **k: table)
    code, text = run_cli(
        "prune", run_dir, "--structured", "--macs", "0.5", "--uniform", "--by-latency",
        "--epochs", "0", "-o", str(tmp_path / "p"), *DATA, "--json",
    )  # fmt: skip
    assert code == 0, text
    res = last_json(text)
    ratios = {g["name"]: g["ratio"] for g in res["groups"]}
    assert res["macs"][1] <= res["macs"][0] / 2
    assert ratios["fc1"] > max(ratios["conv1"], ratios["conv2"])


@pytest.mark.slow
def test_slim_deep_compression_reloads_slim(run_dir: str, tmp_path: Path) -> None:
    out = str(tmp_path / "slim.cnnz")
    code, text = run_cli(
        "compress", run_dir, "--recipe", "slim-deep-compression", *DATA, "-o", out, "--json",
        "-s", "channels.epochs=0", "-s", "channels.sweep_images=64", "-s", "prune.steps=2",
        "-s", "prune.epochs=1", "-s", "finetune.epochs=0",
    )  # fmt: skip
    assert code == 0, text
    summary = last_json(text)
    assert summary["speed"]["mac_ratio"] >= 2.0  # the file's model is the slim one
    code, text = run_cli("eval", out, *DATA, "--json")
    assert code == 0 and last_json(text)["accuracy"] == summary["test_accuracy"]
    code, text = run_cli("profile", out, "--json")
    assert code == 0 and last_json(text)["macs"] == summary["speed"]["macs"][0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--macs", "0.5"], "go with --structured"),
        (["--structured"], "exactly one of --macs, --params, --latency-ms"),
        (["--structured", "--macs", "0.5", "--params", "0.5"], "exactly one of"),
        (["--structured", "--macs", "0.5", "--sparsity", "0.5"], "prune single weights"),
        (["--structured", "--macs", "1.5"], "--macs"),
        (["--structured", "--macs", "nan"], "--macs"),
        (["--structured", "--latency-ms", "0"], "--latency-ms"),
        (["--structured", "--macs", "0.5", "--importance", "l3"], "--importance"),
        (["--structured", "--macs", "0.5", "--round-to", "0"], "--round-to"),
        (["--sparsity", "0.5", "--round-to", "8"], "go with --structured"),
        (["--sparsity", "0.5", "--by-latency"], "go with --structured"),
        (["--sparsity", "0.5", "--uniform"], "go with --structured"),
        (["--sparsity", "0.5", "--importance", "bn"], "go with --structured"),
        (["--structured", "--macs", "0.5", "--steps", "5"], "--steps is for weight pruning"),
        (["--sparsity", "0.5", "--branches", "1"], "go with --structured"),
        (["--structured", "--macs", "0.5", "--branches", "1"], "branches 1 must be a whole"),
    ],
)
def test_bad_structured_options_are_one_error_line(
    run_dir: str, tmp_path: Path, args: list[str], says: str
) -> None:
    result = CliRunner().invoke(main, ["prune", run_dir, *args, "-o", str(tmp_path / "x"), *DATA])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert says in result.output
    assert not (tmp_path / "x").exists()


def test_teacher_and_a_latency_target_already_met(run_dir: str, tmp_path: Path) -> None:
    """A latency far above the model's own needs no pruning: the empty plan, a run whose
    model is the original's shape; the retraining distills from the teacher run."""
    code, text = run_cli(
        "prune", run_dir, "--structured", "--latency-ms", "100000", "--uniform", "--epochs", "1",
        "--teacher", run_dir, "-o", str(tmp_path / "t"), *DATA, "--json",
    )  # fmt: skip
    assert code == 0, text
    res = last_json(text)
    assert res["met"] and res["macs"] == [2_293_000, 2_293_000]
    assert all(g["after"] == g["before"] for g in res["groups"])
    model = load_run(tmp_path / "t").model
    assert (model.conv1.out_channels, model.conv2.out_channels, model.fc1.out_features) == (
        20,
        50,
        500,
    )


def test_bn_importance_without_batchnorm_is_one_error_line(run_dir: str, tmp_path: Path) -> None:
    code, text = run_cli(
        "prune", run_dir, "--structured", "--macs", "0.5", "--importance", "bn", "--uniform",
        "-o", str(tmp_path / "bn"), *DATA,
    )  # fmt: skip
    assert code == 2 and text.count("\n") == 1 and "BatchNorm" in text, text


def test_the_builtin_recipe_and_its_channels_stage() -> None:
    recipe = load_recipe("slim-deep-compression", {"channels.macs": 0.3})
    assert [name for name, _ in recipe.stages] == [
        "channels",
        "prune",
        "share",
        "finetune",
        "encode",
    ]
    channels = recipe.stage("channels")
    assert isinstance(channels, ChannelsStage) and channels.macs == 0.3
    assert channels.importance == "l1" and channels.sensitivity
    with pytest.raises(RecipeError, match=r"exactly one target.*clear another with null"):
        load_recipe("slim-deep-compression", {"channels.latency_ms": 5.0})
    timed = load_recipe("slim-deep-compression", {"channels.macs": None, "channels.latency_ms": 5})
    assert timed.stage("channels").latency_ms == 5.0


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({}, "exactly one target"),
        ({"macs": 0.5, "latency_ms": 3.0}, "exactly one target"),
        ({"params": 0.0}, r"\(0, 1\]"),
        ({"macs": 0.5, "importance": "l3"}, "l1, l2, bn"),
        ({"macs": 0.5, "epochs": -1}, "epochs"),
        ({"macs": 0.5, "sweep_images": 0}, "sweep_images"),
        ({"macs": "half"}, "macs"),
        ({"macs": 0.5, "round_to": 0}, "round_to"),
        ({"macs": 0.5, "branches": -1}, "branches -1 must be >= 0"),
    ],
)
def test_bad_channels_stages_are_refused(options: dict, says: str) -> None:
    with pytest.raises(RecipeError, match=says) as info:
        parse_recipe({"name": "x", "stages": [{"channels": options}]})
    assert "channels" in str(info.value)


@pytest.mark.slow
def test_a_slim_run_compresses_into_a_slim_file(slim_run: tuple[str, dict], tmp_path: Path) -> None:
    """The plan rides from run.json into the .cnnz header: the file rebuilds slim."""
    out, res = slim_run
    file = str(tmp_path / "half.cnnz")
    code, text = run_cli(
        "compress", out, *DATA, "-o", file, "--json", "-s", "prune.steps=1",
        "-s", "prune.epochs=1", "-s", "finetune.epochs=0",
    )  # fmt: skip
    assert code == 0, text
    summary = last_json(text)
    assert summary["speed"]["macs"] == [res["macs"][1], res["macs"][1]]
    code, text = run_cli("eval", file, *DATA, "--json")
    assert code == 0 and last_json(text)["accuracy"] == summary["test_accuracy"]


def test_a_channels_stage_file_rebuilds_the_slim_model(tmp_path: Path) -> None:
    """compress with a channels stage (uniform, no retraining): the .cnnz loads back as
    the slim model, computing what the compressed model does, at half the MACs."""
    torch.manual_seed(0)
    model = get_model("lenet5")
    data = synthetic(n_train=64, n_val=32, n_test=32, seed=0)
    recipe = parse_recipe(
        {
            "name": "slim-only",
            "stages": [
                {"channels": {"macs": 0.5, "sensitivity": False, "epochs": 0}},
                {"encode": {"dense_dtype": "float32"}},
            ],
        }
    )
    result = compress(
        model, data, recipe, arch={"name": "lenet5", "kwargs": {}}, log=lambda _: None
    )
    result.save(tmp_path / "slim.cnnz")
    loaded = cz_load(tmp_path / "slim.cnnz").eval()
    assert profile(loaded, SHAPE).macs == result.log[0]["macs"][1] <= 2_293_000 / 2
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_channels_after_prune_or_share_is_refused_when_parsed() -> None:
    stages = [{"prune": {"sparsity": 0.5}}, {"channels": {"macs": 0.5}}]
    with pytest.raises(RecipeError, match="must come before prune and share"):
        parse_recipe({"name": "x", "stages": stages})
    parse_recipe({"name": "x", "stages": stages[::-1]})  # the right order parses
    again = [stages[1], *stages]  # a first channels stage in place hides nothing
    with pytest.raises(RecipeError, match="must come before prune and share"):
        parse_recipe({"name": "x", "stages": again})
