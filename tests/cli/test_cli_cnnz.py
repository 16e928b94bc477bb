"""Hostile .cnnz files through the real CLI: one ``error:`` line, exit code 2;
``--max-params`` sets the decoding budget of every verb that reads a .cnnz."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cnnzip.cli import main
from cnnzip.codec import container, streams


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_inspect_of_a_filler_only_gaps_stream_is_one_error_line(tools, small, tmp_path) -> None:
    def edit(header, sections):
        t = tools.tensor(header, "fc2.weight")
        skip = (1 << t["index_bits"]) - 1
        coded = streams.encode_stream(np.full(3, skip), skip + 1, coder="raw")
        sections[t["gaps"]["section"]] = coded.data
        t["gaps"] = {**coded.describe(), "section": t["gaps"]["section"]}

    (tmp_path / "f.cnnz").write_bytes(tools.repack(small, edit))
    code, out = _cli("inspect", str(tmp_path / "f.cnnz"))
    assert code == 2
    assert out.startswith("error: ") and "relative indices" in out
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "verb",
    [("inspect",), ("eval",), ("profile",), ("bench", "sparse")],
)
def test_max_params_bounds_every_verb_that_reads_a_cnnz(tools, tmp_path, verb) -> None:
    path = tmp_path / "c.cnnz"
    path.write_bytes(tools.constant_lenet300([50, 20]))  # 40,480 elements
    code, out = _cli(*verb, str(path), "--max-params", "40000")
    assert code == 2
    assert "more than 40000 elements" in out and len(out.strip().splitlines()) == 1
    if verb == ("inspect",):
        assert _cli(*verb, str(path), "--max-params", "40480")[0] == 0


def test_inspect_of_a_file_with_no_tensors_has_no_ratio(tmp_path) -> None:
    path = tmp_path / "e.cnnz"
    header = {"arch": {"name": "lenet300", "kwargs": {}}, "format": "cnnz", "meta": {}}
    container.write(path, {**header, "tensors": []}, [])
    code, out = _cli("inspect", str(path))
    assert code == 0
    assert "dense 0.0 KB (-)" in out and "0 float32 parameter bytes: 0.0x" in out
    code, out = _cli("inspect", "--json", str(path))
    report = json.loads(out)
    assert code == 0 and report["layers"] == [] and report["ratio"] == 0.0
    assert report["stages"]["dense"] == {"bytes": 0, "ratio": None}
    assert report["stages"]["coded"]["bytes"] == path.stat().st_size
