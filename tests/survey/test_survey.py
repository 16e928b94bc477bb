"""``cnnzip survey --quick`` end to end (the real pipeline on tiny budgets), and the
table writer, results file and refusals on hand-made inputs."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner, Result
from safetensors.torch import load_file

from cnnzip.cli import main
from cnnzip.data import load, synthetic
from cnnzip.errors import ModelError, RunError
from cnnzip.models import get_model
from cnnzip.recipes import load_recipe
from cnnzip.survey import FULL, QUICK, ROWS, Results, pipeline, render, run_survey, survey_data
from cnnzip.survey.pipeline import Survey
from cnnzip.survey.plan import Row, model_kwargs
from cnnzip.survey.report import PENDING, PLOT_BYTES, PLOT_LATENCY, REPORT, points_bytes
from cnnzip.train import Callback, TrainState
from cnnzip.transforms import transforms_of

PNG = b"\x89PNG\r\n\x1a\n"
STAMPED = ("latency_ms", "load_avg_1min", "latency_pass", "fresh_weights")  # a pass sets
STEPS = 3 * len(ROWS) + 2 * 2 + 1  # train/profile/compress, BWN/XNOR of two, distillation


pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One quick survey, shared by the tests that read what it wrote."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("survey")
    result = cli("survey", "--quick", "-o", str(out))
    torch.set_num_threads(before)
    return out, result


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_quick_survey_writes_every_row_with_numbers(quick: tuple[Path, Result]) -> None:
    out, result = quick
    assert result.exit_code == 0, result.output
    assert f"0 of {STEPS} steps done, {STEPS} to run" in result.output
    text = (out / REPORT).read_text()
    for row in ROWS:  # a zoo line and a Deep Compression line, every cell measured
        lines = [line for line in text.splitlines() if line.startswith(f"| {row.name} |")]
        assert len(lines) >= 2, row.name
        assert all(PENDING not in line for line in lines), lines
    assert PENDING not in text
    for plot in (PLOT_BYTES, PLOT_LATENCY):
        assert (out / plot).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_quick_survey_results_are_the_files_and_models(quick: tuple[Path, Result]) -> None:
    out, _ = quick
    data = _results(out)
    assert data["setting"]["budget"]["name"] == "quick"
    for row in ROWS:
        steps = data["rows"][row.name]
        params, file = steps["profile"]["params"], steps["compress"]["file"]
        assert params > 0 and steps["profile"]["float32_bytes"] == 4 * params
        assert steps["profile"]["macs"] > 0
        assert all(v > 0 for v in steps["profile"]["latency_ms"].values())
        assert steps["compress"]["bytes"] == os.path.getsize(file)
        assert steps["compress"]["ratio"] == pytest.approx(4 * params / os.path.getsize(file))
        assert steps["compress"]["ratio"] > 1
        assert 0.0 <= steps["compress"]["test_accuracy"] <= 1.0
        assert steps["compress"]["kept_fraction"] == pytest.approx(1 - QUICK.prune_ratio, abs=0.02)
        assert (out / "runs" / row.name / "model.safetensors").is_file()
    for row in (r for r in ROWS if r.binary):
        xnor = data["rows"][row.name]["xnor"]
        assert xnor["bytes"] == os.path.getsize(out / "cnnz" / f"{row.name}-xnor.cnnz")
        assert xnor["speedup"]["1"] == pytest.approx(xnor["float_ms"]["1"] / xnor["xnor_ms"]["1"])
    distill = data["rows"]["distill"]["train"]
    alone = data["rows"][distill["student"]]["train"]["test_accuracy"]
    assert distill["alone_accuracy"] == alone
    assert distill["teacher"] in ("alexnet", "resnet18")


@pytest.mark.slow
def test_a_second_survey_reuses_everything(quick: tuple[Path, Result]) -> None:
    out, _ = quick
    weights = sorted((out / "runs").glob("*/model.safetensors"))
    files = sorted((out / "cnnz").glob("*.cnnz"))
    stamps = {p: p.stat().st_mtime_ns for p in weights + files}
    before = _results(out)["rows"]
    result = cli("survey", "--quick", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{STEPS} of {STEPS} steps done, 0 to run" in result.output
    assert "epoch" not in result.output  # nothing trained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert _results(out)["rows"] == before


@pytest.mark.slow  # reads Fashion-MNIST twice
@pytest.mark.slow
def test_the_latency_pass_times_every_finished_row_again(
    quick: tuple[Path, Result], tmp_path: Path
) -> None:
    """On a copy of the quick study: every row's float model and the two XNOR twins are
    timed again, their numbers replaced and stamped, the rest of each step kept, nothing
    trained, and the tables rewritten."""
    out = tmp_path / "study"
    shutil.copytree(quick[0], out)
    before = _results(out)["rows"]
    (out / REPORT).unlink()
    gone = "squeezenet1_1"  # its folder lost (a new checkout): timed freshly built
    shutil.rmtree(out / "runs" / gone)
    shutil.rmtree(out / "runs" / "alexnet-xnor")  # its XNOR numbers stay the study's
    result = cli("survey", "--latency", "-o", str(out))
    assert result.exit_code == 0, result.output
    binary = [r.name for r in ROWS if r.binary]
    assert f"timed {len(ROWS) + len(binary) - 1} model(s) again" in result.output
    assert f"no trained model here for {gone}: timed freshly built" in result.output
    assert "epoch" not in result.output
    after = _results(out)["rows"]
    assert after[gone]["profile"]["fresh_weights"] is True
    assert not any(after[r.name]["profile"].get("fresh_weights") for r in ROWS if r.name != gone)
    for row in ROWS:
        old, new = before[row.name]["profile"], after[row.name]["profile"]
        assert new["latency_ms"] != old["latency_ms"] and all(
            v > 0 for v in new["latency_ms"].values()
        )
        assert new["latency_pass"] and {k: new[k] for k in old if k not in STAMPED} == {
            k: old[k] for k in old if k not in STAMPED
        }
        assert after[row.name]["compress"] == before[row.name]["compress"]
    assert after["alexnet"]["xnor"] == before["alexnet"]["xnor"]
    for name in (n for n in binary if n != "alexnet"):
        xnor = after[name]["xnor"]
        assert xnor["float_ms"] != before[name]["xnor"]["float_ms"]
        assert xnor["speedup"]["2"] == pytest.approx(xnor["float_ms"]["2"] / xnor["xnor_ms"]["2"])
        assert xnor["bytes"] == before[name]["xnor"]["bytes"]
    text = (out / REPORT).read_text()
    assert "every model timed in one interleaved pass" in text
    assert f"{gone} timed on freshly built weights" in text
    assert "timed during the study" in (quick[0] / REPORT).read_text()


def test_the_data_is_the_first_images_of_the_split_upsampled() -> None:
    data = survey_data(QUICK)
    base = load("fashion-mnist", val_size=QUICK.val_images, seed=0)
    assert data.input_shape == (1, 64, 64) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (48, 16, 32)
    want = F.interpolate(base.train.x[:2], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(data.train.x[:2], want)
    assert torch.equal(data.train.y, base.train.y[:48])


def _hand_made() -> dict:
    """AlexNet: 240 MB of float32 in a 6 MB file (40x) and BWN; SqueezeNet 1.1 at 0.48 MB;
    the rest pending."""
    alexnet_bytes = 240_000_000
    return {
        "setting": {"budget": QUICK.to_dict(), "cpu": "a CPU", "date": "today"},
        "rows": {
            "alexnet": {
                "train": {"test_accuracy": 0.9},
                "profile": {
                    "params": 60_000_000,
                    "macs": 95_000_000,
                    "float32_bytes": alexnet_bytes,
                    "latency_ms": {"1": 20.0, "2": 12.5},
                },
                "compress": {
                    "bytes": 6_000_000,
                    "ratio": 40.0,
                    "test_accuracy": 0.899,
                    "drop_pp": 0.1,
                },
                "bwn": {"test_accuracy": 0.88, "bytes": 8_000_000, "memory_ratio": 30.0},
            },
            "squeezenet1_1": {
                "train": {"test_accuracy": 0.88},
                "compress": {"bytes": 480_000, "test_accuracy": 0.85},
            },
        },
    }


def test_the_tables_compute_ratios_and_say_pending() -> None:
    text = render(_hand_made())
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    zoo = next(ln for ln in text.splitlines() if ln.startswith("| alexnet | 90.00%"))
    assert "| 60,000,000 | 95.0M | 240.0M | 20.00 | 12.50 | 4.75 |" in zoo  # 95M MACs / 20 ms
    assert "| 6,000,000 | 40.0x | 40.0x | 90.00% | 89.90% | +0.10 |" in text
    # 240 MB / 0.48 MB: 500x smaller than float32 AlexNet, short of the paper's 510x
    assert "| 480,000 | pending | 500.0x | 88.00% | 85.00% | pending |" in lines["squeezenet1_1"]
    assert "500.0x smaller than float32 AlexNet, -5.00 pp" in text
    assert "falls short of the paper's 510x" in text
    assert "40.0x smaller than float32 at +0.10 pp" in text and "agrees with" in text
    resnet = next(ln for ln in text.splitlines() if ln.startswith("| resnet18 |"))
    assert resnet.count(PENDING) == 7
    assert "| pending | pending | pending | pending | pending | pending |" in text  # distill
    assert "alexnet BWN: -2.00 pp test accuracy against the float net (paper, ImageNet " in text
    assert "Fewer MACs are not the same" not in text  # one model timed: nothing to compare
    assert "| alexnet | BWN | 90.00% | 88.00% | 8,000,000 | 30.0x |" in text


@pytest.mark.parametrize(
    ("size", "acc", "verdict"),
    [
        (98_448, 0.70, "falls short of (accuracy lost) the paper's 510x"),  # 2438x, -16 pp
        (257_528, 0.8692, "agrees with the paper's 510x"),  # 932x, +0.79 pp
        (257_528, 0.8500, "falls short of (accuracy lost) the paper's 510x"),  # -1.13 pp
        (480_000, 0.8613, "falls short of the paper's 510x"),  # 500x at AlexNet's accuracy
    ],
)
def test_the_squeezenet_verdict_needs_the_size_and_the_accuracy(
    size: int, acc: float, verdict: str
) -> None:
    results = _hand_made()
    results["rows"]["squeezenet1_1"]["compress"] = {"bytes": size, "test_accuracy": acc}
    results["rows"]["alexnet"]["train"]["test_accuracy"] = 0.8613
    assert f"; this {verdict} at AlexNet's accuracy." in render(results)


def test_the_timing_note_names_rows_timed_after_the_pass() -> None:
    """A row profiled after a latency pass (a later survey added it) is named as timed
    during the study, beside the pass's count."""
    results = _hand_made()
    results["rows"]["alexnet"]["profile"] |= {"latency_pass": "noon", "load_avg_1min": 0.1}
    results["rows"]["resnet18"] = {"profile": {"latency_ms": {"1": 9.0}, "load_avg_1min": 1.5}}
    assert (
        "Latencies: 1 of 2 models timed in one interleaved pass (`cnnzip survey --latency`), "
        "noon; resnet18 timed during the study, beside other work (1-minute load average "
        "0.10-1.50)." in render(results)
    )


def test_the_zoo_table_names_fewer_macs_running_slower() -> None:
    results = _hand_made()
    results["rows"]["shufflenet_g3"] = {
        "profile": {"macs": 12_000_000, "latency_ms": {"1": 30.0}},  # 7.9x fewer, 1.5x slower
    }
    results["rows"]["mobilenet_0.5"] = {
        "profile": {"macs": 19_000_000, "latency_ms": {"1": 25.0}},  # 5x fewer, 1.25x slower
    }
    assert (
        "Fewer MACs are not the same as speed: shufflenet_g3 has 7.9x fewer MACs than alexnet "
        "but takes 1.5x as long at 1 thread." in render(results)
    )


def test_the_plots_take_only_measured_points() -> None:
    points = points_bytes(_hand_made()["rows"])
    assert points == [
        ("alexnet", 240_000_000, 0.9, "float32"),
        ("alexnet DC", 6_000_000, 0.899, "Deep Compression"),
        ("squeezenet1_1 DC", 480_000, 0.85, "Deep Compression"),
        ("alexnet BWN", 8_000_000, 0.88, "BWN"),
    ]


def test_tables_only_writes_the_report_and_runs_nothing(tmp_path: Path) -> None:
    results = Results(tmp_path)
    results.data = _hand_made()
    results.put("resnet18", "train", {"test_accuracy": 0.75})
    result = cli("survey", "-o", str(tmp_path), "--tables-only")
    assert result.exit_code == 0, result.output
    assert result.output == f"survey: tables in {tmp_path / REPORT}\n"
    assert (tmp_path / REPORT).read_text() == render(Results(tmp_path).data)
    assert "| resnet18 | 75.00% |" in (tmp_path / REPORT).read_text()
    assert (tmp_path / PLOT_BYTES).read_bytes()[:8] == PNG
    assert not (tmp_path / "runs").exists()


def test_results_merge_and_survive_a_reload(tmp_path: Path) -> None:
    first = Results(tmp_path)
    first.put("alexnet", "train", {"test_accuracy": 0.5})
    first.put("alexnet", "profile", {"params": 3})
    again = Results(tmp_path)
    assert again.get("alexnet", "train") == {"test_accuracy": 0.5}
    assert again.get("alexnet", "profile") == {"params": 3}
    assert again.get("alexnet", "compress") is None


def test_a_broken_results_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(RunError, match="move it away"):
        Results(tmp_path)


def test_quick_and_full_results_never_mix(tmp_path: Path) -> None:
    """Refused before any data is loaded or model trained."""
    done = Results(tmp_path)
    done.set_setting({"budget": {"name": "quick"}})
    done.put("alexnet", "train", {"test_accuracy": 0.1})
    with pytest.raises(RunError, match="holds the survey's quick results"):
        run_survey(tmp_path, log=lambda line: None)
    result = cli("survey", "-o", str(tmp_path), "--only", "alexnet")
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and "another folder" in result.output


def test_a_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = cli("survey", "--quick", "-o", str(tmp_path / "file" / "survey"))
    assert result.exit_code == 2
    assert result.output == (
        f"error: cannot create the survey's folder {tmp_path / 'file' / 'survey'}: "
        "Not a directory; pick another -o\n"
    )


def test_a_second_survey_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    """While one survey holds the folder, another one stops before it runs a step."""
    with Results(tmp_path).hold():
        result = cli("survey", "--quick", "-o", str(tmp_path))
    assert result.exit_code == 2
    assert result.output == (
        f"error: another survey is running in {tmp_path}; wait for it, or see its tables so "
        "far with --tables-only\n"
    )
    assert not (tmp_path / "runs").exists()
    with Results(tmp_path).hold():  # released when the first holder is done
        pass


def test_an_unknown_row_is_refused() -> None:
    result = cli("survey", "--quick", "--only", "vgg16")
    assert result.exit_code == 2 and "vgg16" in result.output


def test_the_quick_stand_ins_are_narrow_zoo_models() -> None:
    """AlexNet at width 1/16: convs 4, 12, 24, 16, 16 wide, fc 256, counted by hand
    (weights + biases); at width 1 the zoo's count stays torchvision's."""
    convs = [(1, 4, 11), (4, 12, 5), (12, 24, 3), (24, 16, 3), (16, 16, 3)]
    fcs = [(16 * 36, 256), (256, 256), (256, 10)]
    want = sum(i * o * k * k + o for i, o, k in convs) + sum(i * o + o for i, o in fcs)
    assert want == 226_182
    alexnet = next(r for r in ROWS if r.name == "alexnet")
    model = get_model("alexnet", **model_kwargs(alexnet, QUICK))
    assert sum(p.numel() for p in model.parameters()) == want
    full = get_model("alexnet", **model_kwargs(alexnet, FULL))
    assert sum(p.numel() for p in full.parameters()) == 57_029_322  # >= 57M: fc kept
    resnet = get_model("resnet18", num_classes=10, width_mult=0.125)
    assert resnet.fc.in_features == 64 and resnet.stem.conv.out_channels == 8


def test_a_failed_step_leaves_the_others_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AlexNet's training fails: its later steps fail for want of its numbers, ResNet-18's
    all run, the tables are written, and the error names every failed step."""

    def train(self: Survey, row: Row) -> dict:
        if row.name == "alexnet":
            raise ModelError("out of memory, say")
        return {"test_accuracy": 0.5, "val_accuracy": 0.5}

    def later(self: Survey, row: Row, *mode: str) -> dict:
        return {"test_accuracy": self.need(row.name, "train")["test_accuracy"]}

    for name, fake in {
        "train": train,
        "profile": later,
        "compress": later,
        "binary": later,
    }.items():
        monkeypatch.setattr(Survey, name, fake)
    with pytest.raises(RunError) as caught:
        run_survey(tmp_path, quick=True, only=("alexnet", "resnet18"), log=lambda line: None)
    message = str(caught.value)
    assert message.startswith("survey: 5 step(s) failed: alexnet train (ModelError: out of")
    assert "alexnet xnor (RunError: survey: alexnet's train step has not run" in message
    done = Results(tmp_path).data["rows"]
    assert set(done) == {"resnet18"}
    assert set(done["resnet18"]) == {"train", "profile", "compress", "bwn", "xnor"}
    assert "| alexnet | pending |" in (tmp_path / REPORT).read_text()


class _Killed(Exception):
    """Stands in for a kill between two epochs."""


def test_an_interrupted_training_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its first of two epochs (its checkpoint written), the rerun trains only
    the second epoch and ends with the weights of a run never interrupted."""
    budget = replace(QUICK, epochs=2, batch_size=8)
    row = next(r for r in ROWS if r.name == "mobilenet_0.5")
    data = synthetic(n_train=16, n_val=8, n_test=8, shape=(1, 64, 64))

    def survey(folder: Path) -> Survey:
        s = Survey(folder, budget, log=lambda line: None)
        s.data = data  # instead of Fashion-MNIST: the resume is what is tested
        return s

    class Kill(Callback):
        def on_epoch_start(self, state: TrainState) -> None:
            if state.epoch == 1:
                raise _Killed

    real_fit = pipeline.fit
    monkeypatch.setattr(pipeline, "fit", lambda *a, **k: real_fit(*a, **k, callbacks=[Kill()]))
    with pytest.raises(_Killed):
        survey(tmp_path / "a").train(row)
    checkpoint = tmp_path / "a" / "runs" / row.name / "checkpoint.pt"
    assert checkpoint.is_file() and not (checkpoint.parent / "run.json").exists()
    started: list[int] = []

    class Count(Callback):
        def on_epoch_start(self, state: TrainState) -> None:
            started.append(state.epoch)

    monkeypatch.setattr(pipeline, "fit", lambda *a, **k: real_fit(*a, **k, callbacks=[Count()]))
    resumed = survey(tmp_path / "a").train(row)
    assert started == [1]  # the second epoch only
    monkeypatch.setattr(pipeline, "fit", real_fit)
    straight = survey(tmp_path / "b").train(row)
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    weights = [load_file(tmp_path / f / "runs" / row.name / "model.safetensors") for f in "ab"]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_missing_run_folder_is_trained_again_to_the_same_weights(tmp_path: Path) -> None:
    """Run folders are not committed: on a new checkout a row whose train step is done
    but whose folder is gone is trained again, from its seed, before a later step reads
    it, to the same weights, and its train numbers are the new run's."""
    row = next(r for r in ROWS if r.name == "mobilenet_0.5")
    lines: list[str] = []
    survey = Survey(tmp_path, replace(QUICK, batch_size=8), log=lines.append)
    survey.data = synthetic(n_train=16, n_val=8, n_test=8, shape=(1, 64, 64))
    survey.results.put(row.name, "train", survey.train(row))
    folder = tmp_path / "runs" / row.name
    first = load_file(folder / "model.safetensors")
    shutil.rmtree(folder)
    assert survey.profile(row)["params"] > 0
    assert any("trained model is not in" in line for line in lines)
    again = load_file(folder / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first) and first.keys() == again.keys()
    assert survey.results.get(row.name, "train")["seconds"] > 0


def test_alexnet_compresses_at_its_own_lr_and_sparsity(tmp_path: Path) -> None:
    """The full budget prunes AlexNet at its training lr (1e-4, not the recipe's 1e-3),
    fine-tunes at a tenth, to its row's 90%; ResNet-18 at the recipe's lr to its own 90%;
    the compact nets 60% at 6 bits; quick runs keep their fixed ratio and ignore the row's
    sparsity."""
    alexnet = next(r for r in ROWS if r.name == "alexnet")
    resnet = next(r for r in ROWS if r.name == "resnet18")
    model = get_model("alexnet", **model_kwargs(alexnet, QUICK))
    full = Survey(tmp_path / "full", FULL, log=lambda line: None)
    stages = load_recipe("deep-compression", full.recipe_overrides(alexnet, model)).to_dict()
    prune_cfg, finetune_cfg = stages["stages"][0]["prune"], stages["stages"][2]["finetune"]
    assert (prune_cfg["lr"], prune_cfg["sparsity"]) == (1e-4, 0.9)
    assert finetune_cfg["lr"] == pytest.approx(1e-5)
    own = load_recipe("deep-compression", full.recipe_overrides(resnet, model)).to_dict()
    assert own["stages"][0]["prune"]["lr"] == 1e-3 and own["stages"][0]["prune"]["sparsity"] == 0.9
    squeeze = next(r for r in ROWS if r.name == "squeezenet1_0")
    compact = load_recipe("deep-compression", full.recipe_overrides(squeeze, model)).to_dict()
    assert compact["stages"][0]["prune"]["sparsity"] == 0.6
    assert compact["stages"][1]["share"]["bits"] == 6
    quick = Survey(tmp_path / "quick", QUICK, log=lambda line: None).recipe_overrides(
        alexnet, model
    )
    assert "prune.sparsity" not in quick and set(quick["prune.ratios"].values()) == {0.8}


def test_the_trade_off_sentences_follow_each_papers_direction() -> None:
    """MobileNet's alpha: the thinner net is less accurate in the paper; ShuffleNet g=3
    against MobileNet 0.5: ShuffleNet is the more accurate one. Slower is said as such."""
    results = _hand_made()

    def row(macs: int, ms: float, acc: float) -> dict:
        return {"profile": {"macs": macs, "latency_ms": {"1": ms}}, "train": {"test_accuracy": acc}}

    results["rows"] |= {
        "mobilenet_1.0": row(40_000_000, 4.0, 0.85),
        "mobilenet_0.5": row(10_000_000, 2.0, 0.82),
        "shufflenet_g3": row(8_000_000, 5.0, 0.87),
    }
    text = render(results)
    assert (
        "Here alpha 0.5 has 4.0x fewer MACs than alpha 1.0 and runs 2.0x faster at 1 thread, "
        "at -3.00 pp accuracy (as in the paper)." in text
    )
    assert (
        "Here ShuffleNet g=3 has 1.2x fewer MACs than MobileNet 0.5 and takes 2.5x as long at "
        "1 thread, at +5.00 pp accuracy (as in the paper)." in text
    )
    results["rows"]["shufflenet_g3"]["train"]["test_accuracy"] = 0.80
    assert "(unlike the paper, ShuffleNet g=3 is less accurate)" in render(results)


def test_xnor_is_timed_against_the_float_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """binarize_run converts the float run's model in place: the XNOR step must time a
    freshly loaded float model, not the converted one (ResNet-18 once measured 32.9x
    against its own torch-emulated XNOR twin)."""
    row = next(r for r in ROWS if r.name == "resnet18")
    survey = Survey(tmp_path, replace(QUICK, batch_size=8), log=lambda line: None)
    survey.data = synthetic(n_train=16, n_val=8, n_test=8, shape=(1, 64, 64))
    survey.results.put(row.name, "train", survey.train(row))
    survey.results.put(row.name, "profile", {"float32_bytes": 1})
    timed: list[nn.Module] = []
    monkeypatch.setattr(Survey, "xnor_speed", lambda self, dense, fast: timed.append(dense) or {})
    survey.binary(row, "xnor")
    assert len(timed) == 1
    assert not [
        n for n, m in timed[0].named_modules() if type(m).__module__.startswith("cnnzip.binary")
    ]
    assert not transforms_of(timed[0])
