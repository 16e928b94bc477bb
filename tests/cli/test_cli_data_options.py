"""The CLI's data options (--val-fraction, --workers, --input, --augment/--no-augment) and
the normalisation recorded with a model: `train` stores the statistics in run.json, every
verb that writes a run or a file from it carries them on (prune, distill, compress into
the .cnnz metadata), and every verb that reads one with data normalises with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnzip.cli import distill as distill_cli
from cnnzip.cli import main
from cnnzip.cli.options import DataSpec
from cnnzip.codec import read as read_cnnz
from cnnzip.data import Normalization, crop_flip, load_path

SMALL = ["-k", "hidden=[16,8]", "--epochs", "1"]
CUSTOM = {"mean": [0.25, 0.5, 0.75], "std": [0.5, 0.25, 0.125]}


def _npz(tmp: Path) -> str:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8)
    x[..., 0] = np.where(y[:, None, None] == 0, 255, x[..., 0])  # class 0 is learnable: red
    x[..., 1] //= 4  # a dark green channel: the statistics differ by channel
    np.savez(tmp / "d.npz", x_train=x[:96], y_train=y[:96], x_test=x[96:], y_test=y[96:])
    return str(tmp / "d.npz")


def _run(args: list[str]) -> dict:
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output.strip().splitlines()[-1])


def _error(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    return lines[0]


def _meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _set_stats(run: Path, stats: dict | None) -> None:
    meta = _meta(run)
    meta.pop("normalization")
    if stats is not None:
        meta["normalization"] = stats
    (run / "run.json").write_text(json.dumps(meta))


@pytest.fixture
def trained(tmp_path: Path) -> tuple[str, Path, dict]:
    data, run = _npz(tmp_path), tmp_path / "run"
    result = _run(["train", "lenet300", "--data", data, *SMALL, "--val-fraction", "0.25",
                   "-o", str(run)])  # fmt: skip
    return data, run, result


def test_train_records_the_measured_statistics_and_eval_reuses_them(trained) -> None:
    data, run, result = trained
    assert _meta(run)["normalization"] == load_path(data).stats.to_json()
    for fraction in ([], ["--val-fraction", "0.5"], ["--val-fraction", "0.1"]):
        evaluated = _run(["eval", str(run), "--data", data, *fraction])
        assert evaluated["accuracy"] == result["test_accuracy"]
        assert evaluated["loss"] == pytest.approx(result["test_loss"], rel=1e-6)
    _set_stats(run, CUSTOM)  # the run's statistics, not re-measured ones, normalise
    assert _run(["eval", str(run), "--data", data])["loss"] != pytest.approx(result["test_loss"])
    _set_stats(run, None)  # an older run: the data's own (the same, measured before the cut)
    assert _run(["eval", str(run), "--data", data])["loss"] == pytest.approx(result["test_loss"])


def test_compress_stores_the_statistics_in_the_cnnz_meta(trained, tmp_path: Path) -> None:
    data, run, _ = trained
    _set_stats(run, CUSTOM)
    cnnz = str(tmp_path / "m.cnnz")
    over = ["-s", "prune.steps=1", "-s", "prune.epochs=0", "-s", "finetune.epochs=0"]
    compressed = _run(["compress", str(run), "--data", data, *over, "-o", cnnz])
    assert read_cnnz(cnnz).header["meta"]["normalization"] == CUSTOM
    evaluated = _run(["eval", cnnz, "--data", data, "--val-fraction", "0.5"])
    assert evaluated["accuracy"] == compressed["test_accuracy"]


def test_prune_distill_and_binarize_carry_the_sources_statistics(trained, tmp_path: Path) -> None:
    data, run, _ = trained
    _set_stats(run, CUSTOM)
    pruned = tmp_path / "pruned"
    _run(["prune", str(run), "--data", data, "--sparsity", "0.5", "--steps", "1",
          "--epochs", "0", "-o", str(pruned)])  # fmt: skip
    assert _meta(pruned)["normalization"] == CUSTOM
    student = tmp_path / "student"
    _run(["distill", "--teacher", str(run), "--student", "lenet300", "-k", "hidden=[8,8]",
          "--data", data, "--epochs", "0", "-o", str(student)])  # fmt: skip
    assert _meta(student)["normalization"] == CUSTOM  # normalised as the teacher saw it
    binary, cnnz = tmp_path / "bwn", tmp_path / "bwn.cnnz"
    _run(["binarize", str(run), "--mode", "bwn", "--data", data, "--epochs", "0",
          "-o", str(binary), "--cnnz", str(cnnz)])  # fmt: skip
    assert _meta(binary)["normalization"] == CUSTOM
    assert read_cnnz(cnnz).header["meta"]["normalization"] == CUSTOM


def test_a_malformed_recorded_normalization_is_one_error(trained) -> None:
    data, run, _ = trained
    _set_stats(run, {"mean": [0.5, 0.5, 0.5], "std": [1.0, 0.0, 1.0]})
    line = _error(["eval", str(run), "--data", data])
    assert "run.json: field normalization std" in line and "must be > 0" in line


def test_a_run_evaluated_on_data_of_other_channels_is_one_error(trained, tmp_path) -> None:
    _, run, _ = trained
    grey = np.random.default_rng(2).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    labels = np.arange(12) % 3
    np.savez(tmp_path / "grey.npz", x_train=grey, y_train=labels, x_test=grey, y_test=labels)
    line = _error(["eval", str(run), "--data", str(tmp_path / "grey.npz")])
    assert "grey.npz: the normalization has 3 channel(s) but the data has 1" in line


def test_val_fraction_cuts_a_paths_train_and_evaluating_ignores_it(tmp_path: Path) -> None:
    data = _npz(tmp_path)
    spec = DataSpec(data, None, None, None, val_fraction=0.5)
    assert (len(spec.load().train), len(spec.load().val)) == (48, 48)
    assert len(spec.load(validation=False).val) == 8  # the default 1/12 of 96
    assert DataSpec(data, None, None, None).load().augment is None  # 8 px: off by default
    assert DataSpec(data, None, None, None, augment=True).load().augment is crop_flip


def test_input_and_workers_reach_an_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(8):
        folder = tmp_path / "imgs" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        side = 34 + i  # mixed sizes: --input makes them one
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    spec = DataSpec(str(tmp_path / "imgs"), None, None, None, workers=1, size=32)
    data = spec.load()
    assert data.input_shape == (3, 32, 32) and data.test.workers == 1
    assert data.augment is crop_flip  # 32 px: on by default
    assert isinstance(data.normalization, Normalization)
    assert DataSpec(str(tmp_path / "imgs"), None, None, None, size=32, augment=False).load(
    ).augment is None  # fmt: skip


@pytest.mark.parametrize(
    ("option", "named"), [(["--input", "28"], "--input"), (["--workers", "2"], "--workers")]
)
def test_folder_options_are_refused_for_a_named_set(tmp_path: Path, option, named) -> None:
    line = _error(["train", "lenet300", "--data", "mnist", *option, "-o", str(tmp_path / "r")])
    assert line.startswith(f"error: {named}: only for a PATH")


def test_impossible_val_fraction_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["train", "lenet300", "--val-fraction", "1.5"])
    assert res.exit_code == 2 and "--val-fraction" in res.output


@pytest.mark.parametrize(("flag", "cached"), [("--augment", False), ("--no-augment", True)])
def test_distill_caches_teacher_outputs_only_without_augmentation(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, cached: bool
) -> None:
    """An augmented row never recurs: a cache would only grow."""
    data, run, _ = trained
    seen: list[bool] = []
    real = distill_cli.Teachers

    def spy(models, *, cache: bool):
        seen.append(cache)
        return real(models, cache=cache)

    monkeypatch.setattr(distill_cli, "Teachers", spy)
    _run(["distill", "--teacher", str(run), "--student", "lenet300", "-k", "hidden=[8,8]",
          "--data", data, "--epochs", "1", flag, "-o", str(tmp_path / "s")])  # fmt: skip
    assert seen == [cached]


def test_a_missing_path_is_named_as_neither_a_set_nor_a_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.npz")
    line = _error(["train", "lenet300", "--data", missing, "--input", "5",
                   "-o", str(tmp_path / "r")])  # fmt: skip
    assert line == (
        f"error: unknown dataset {missing!r}: neither a named set (fashion-mnist, mnist, "
        "synthetic) nor an existing file or folder"
    )
