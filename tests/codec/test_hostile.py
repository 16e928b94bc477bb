"""Hostile and careless .cnnz files (issue 11): each case one CnnzFormatError naming what
is wrong, within a time and memory budget; tied and float16-unsafe tensors stored right."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn

import cnnzip
from cnnzip.codec import container, decode_state, encode, inspect, streams
from cnnzip.codec.errors import CnnzFormatError, CnnzLimitError
from cnnzip.codec.model import dense_storage
from cnnzip.prune import Mask
from cnnzip.transforms import add_transform


def _load(data: bytes, tmp_path, **kwargs) -> nn.Module:
    path = tmp_path / "x.cnnz"
    path.write_bytes(data)
    return cnnzip.load(path, **kwargs)


def test_the_fixture_loads(small, tmp_path) -> None:
    assert isinstance(_load(small, tmp_path), nn.Module)


# ---- 1. a gaps stream of fillers only ------------------------------------------------


@pytest.mark.parametrize("coder", ["raw", "const"])
def test_gaps_of_fillers_only_are_a_format_error(tools, small, tmp_path, coder: str) -> None:
    def edit(header, sections):
        t = tools.tensor(header, "fc2.weight")
        skip = (1 << t["index_bits"]) - 1
        coded = streams.encode_stream(np.full(3, skip), skip + 1, coder=coder)
        sections[t["gaps"]["section"]] = coded.table + coded.data
        t["gaps"] = {**coded.describe(), "section": t["gaps"]["section"]}

    bad = tools.repack(small, edit)
    (tmp_path / "f.cnnz").write_bytes(bad)
    with pytest.raises(CnnzFormatError, match="relative indices give 0 weights"):
        inspect(tmp_path / "f.cnnz")
    with pytest.raises(CnnzFormatError, match="relative indices"):
        _load(bad, tmp_path)


# ---- 2. every header field's type -----------------------------------------------------

FIELDS = [
    ("fc1.weight", ("encoding",), ["shared"], "unknown encoding"),
    ("fc1.weight", ("encoding",), {"a": 1}, "unknown encoding"),
    ("fc1.bias", ("dtype",), ["float32"], "unknown dtype"),
    ("fc1.bias", ("stored",), {"x": 1}, "cannot be stored as"),
    ("fc1.weight", ("gaps", "coder"), ["rans"], "coder"),
    ("fc1.weight", ("codes", "n"), 3.0, "codes n"),
    ("fc1.weight", ("k",), "16", "k="),
    ("fc1.weight", ("index_bits",), True, "index_bits"),
    ("fc1.weight", ("codebook",), [0], "section"),
    ("fc1.weight", ("codebook",), True, "section True"),
    ("fc1.bias", ("section",), False, "section False"),
    ("fc1.weight", ("gaps", "section"), False, "gaps section"),
    ("fc1.weight", ("gaps", "alphabet"), 2.0, "alphabet"),
    ("fc1.weight", ("shape",), {"0": 30}, "bad shape"),
    ("fc1.weight", ("name",), ["fc1.weight"], "has no name"),
    ("fc1.bias", ("buffer",), "yes", "buffer"),
    ("fc1.weight", ("extra",), 1, "unknown fields"),
]


@pytest.mark.parametrize(("name", "path", "value", "message"), FIELDS)
def test_header_fields_of_the_wrong_type_are_format_errors(
    tools, small, tmp_path, name, path, value, message
) -> None:
    def edit(header, sections):
        obj = tools.tensor(header, name)
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    with pytest.raises(CnnzFormatError, match=message):
        _load(tools.repack(small, edit), tmp_path)


# ---- 3. arch kwargs ---------------------------------------------------------------------


def test_arch_that_cannot_be_built_is_a_format_error(tools, small, tmp_path) -> None:
    def edit(header, sections):
        header["arch"]["kwargs"]["num_classes"] = -1

    with pytest.raises(CnnzFormatError, match=r"header arch 'lenet300' .* cannot be built"):
        _load(tools.repack(small, edit), tmp_path)


def test_absurd_arch_kwargs_are_refused_before_building(tools, small, tmp_path) -> None:
    def edit(header, sections):
        header["arch"] = {"name": "mlp", "kwargs": {"hidden": [1] * 20_000}}

    start = time.perf_counter()
    with pytest.raises(CnnzLimitError, match="kwargs of more than"):
        _load(tools.repack(small, edit), tmp_path)
    assert time.perf_counter() - start < 1


# ---- 4. the resource budget ----------------------------------------------------------------


def test_constant_streams_decode_in_about_the_outputs_memory(tools, tmp_path) -> None:
    data = tools.constant_lenet300([4000, 4000])
    assert len(data) < 600
    output = 4 * (784 * 4000 + 4000 + 4000 * 4000 + 4000 + 10 * 4000 + 10)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        model = _load(data, tmp_path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert torch.all(model.fc2.weight == 0.25)
    assert peak < 1.3 * output  # the state itself (assigned, not copied) and little more
    assert seconds < 2
    start = time.perf_counter()
    assert inspect(tmp_path / "x.cnnz").layers[2]["kept"] == 16_000_000
    assert time.perf_counter() - start < 3


def test_element_budget_is_checked_before_anything_is_built(tools, tmp_path) -> None:
    data = tools.constant_lenet300([15000, 15000])  # 237M elements: under the default budget
    with pytest.raises(CnnzLimitError, match=r"more than 1000000 elements.*max_params"):
        _load(data, tmp_path, max_params=1_000_000)
    with pytest.raises(CnnzLimitError, match="max_params"):
        decode_state(container.unpack(data), max_params=1_000_000)


def test_max_params_admits_a_file_over_the_default(small, tmp_path) -> None:
    with pytest.raises(CnnzLimitError):
        _load(small, tmp_path, max_params=100)
    assert isinstance(_load(small, tmp_path, max_params=10**10), nn.Module)


# ---- 5. silently accepted before ----------------------------------------------------------


def test_duplicate_tensor_name_is_refused(tools, small, tmp_path) -> None:
    def edit(header, sections):
        header["tensors"].append({**tools.tensor(header, "fc1.bias")})

    with pytest.raises(CnnzFormatError, match=r"'fc1\.bias': appears twice"):
        _load(tools.repack(small, edit), tmp_path)


@pytest.mark.parametrize("dtype", ["bool", "int64", "uint8"])
def test_dense_entry_relabelled_to_another_dtype_is_refused(tools, small, tmp_path, dtype) -> None:
    def edit(header, sections):
        tools.tensor(header, "fc1.bias")["dtype"] = dtype

    with pytest.raises(CnnzFormatError, match=f"'fc1.bias': a {dtype} tensor cannot be stored"):
        _load(tools.repack(small, edit), tmp_path)


@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_stream_with_edited_counts_that_still_sum_right_is_refused(coder: str) -> None:
    rng = np.random.default_rng(0)
    symbols = rng.choice(8, size=5000, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02])
    coded = streams.encode_stream(symbols, 8, coder=coder)
    desc = coded.describe()
    assert np.array_equal(streams.decode_stream(desc, coded.table + coded.data), symbols)
    counts = np.bincount(symbols, minlength=8)
    # (a swap of two counts whose code lengths swap too is a consistent other file: it
    # decodes to other symbols with exactly those counts, and no decoder can tell)
    for a, b, moved in [(2, 7, 10), (6, 7, 1), (0, 3, 50)]:
        edited = counts.copy()
        edited[a] -= moved
        edited[b] += moved
        table = streams.write_varints(np.concatenate([[8], edited]))
        with pytest.raises(CnnzFormatError, match=r"does not|ends"):
            streams.decode_stream({**desc, "table_bytes": len(table)}, table + coded.data)


def test_constant_stream_symbol_true_is_not_symbol_1() -> None:
    desc = streams.encode_stream(np.full(5, 1), 4).describe()
    assert desc["coder"] == "const" and desc["symbol"] == 1
    with pytest.raises(CnnzFormatError, match="constant stream with a bad symbol"):
        streams.decode_stream({**desc, "symbol": True}, b"")


@pytest.mark.parametrize("coder", ["huffman", "rans", "raw"])
def test_stream_with_extra_bytes_is_refused(coder: str) -> None:
    symbols = np.random.default_rng(1).integers(0, 5, size=3000)
    coded = streams.encode_stream(symbols, 5, coder=coder)
    for extra in (b"\0", b"\0\0", b"\x55"):
        with pytest.raises(CnnzFormatError):
            streams.decode_stream(coded.describe(), coded.table + coded.data + extra)


def test_trailing_garbage_and_nonzero_padding_are_refused(tools, small) -> None:
    with pytest.raises(CnnzFormatError, match="bytes after the last section"):
        container.unpack(small + b"\0" * 8)
    _, _, _, length = struct.unpack_from("<4sHHI", small)
    after_header = 12 + length + 4
    assert after_header % 8, "the fixture needs padding after its header"
    bad = bytearray(small)
    bad[after_header] = 1
    with pytest.raises(CnnzFormatError, match="non-zero padding after the header"):
        container.unpack(bytes(bad))
    header, sections = tools.parts(small)
    i = next(i for i, s in enumerate(sections) if len(s) % 8)
    start = after_header + (-after_header % 8)
    bad = bytearray(small)
    bad[start + header["sections"][i][0] + len(sections[i])] = 7
    with pytest.raises(CnnzFormatError, match=f"non-zero padding after section {i}"):
        container.unpack(bytes(bad))


def test_section_table_out_of_layout_is_refused(tools, small) -> None:
    header, sections = tools.parts(small)
    header["sections"][1][0] += 8  # a gap before section 1
    raw = zlib.compress(json.dumps(header).encode())
    prefix = struct.pack("<4sHHI", b"CNNZ", container.VERSION, 1, len(raw)) + raw
    prefix += struct.pack("<I", zlib.crc32(raw))
    prefix += b"\0" * (-len(prefix) % 8)
    body = b"".join(s + b"\0" * (-len(s) % 8) for s in sections)
    with pytest.raises(CnnzFormatError, match=r"section 1 starts at \d+, not where the one"):
        container.unpack(prefix + body)


def test_a_file_cut_short_says_it_is_truncated(small) -> None:
    """Cut by 1 to 16 bytes (into the last section's padding or its bytes): the error says
    truncated, never a negative count of trailing bytes."""
    for cut in range(1, 17):
        with pytest.raises(CnnzFormatError, match="truncated") as caught:
            container.unpack(small[:-cut])
        assert "-" not in str(caught.value).split("bytes")[0], cut


def test_repeated_header_key_is_refused(tools, small) -> None:
    header, _ = tools.parts(small)
    body = json.dumps(header)[:-1] + ', "meta": {}}'
    raw = zlib.compress(body.encode())
    data = struct.pack("<4sHHI", b"CNNZ", container.VERSION, 1, len(raw)) + raw
    with pytest.raises(CnnzFormatError, match="repeats a key"):
        container.unpack(data + struct.pack("<I", zlib.crc32(raw)) + b"\0" * 8)


# ---- 7. float16 only where the values survive it ---------------------------------------------


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        ([0.5, -3.0, 1000.0], "float16"),
        ([1.0, 70000.0], "float32"),  # overflows to inf in float16
        ([1.0, 1e-7], "float32"),  # a subnormal: relative error of ~20%
        ([0.1, 0.0, float("inf"), float("nan")], "float16"),  # inf and nan survive
    ],
)
def test_dense_storage_keeps_float16_only_where_values_survive(values, stored) -> None:
    assert dense_storage(torch.tensor(values), "float16") == stored
    assert dense_storage(torch.tensor(values), "float32") == "float32"
    assert dense_storage(torch.tensor([1, 2]), "float16") == "int64"


def test_batchnorm_variance_above_float16_range_round_trips(tmp_path) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_var.copy_(torch.tensor([1.0, 7e4, 2.5, 1e6]))
    path = tmp_path / "bn.cnnz"
    cnnzip.codec.save(path, net, dense_dtype="float16")
    loaded = cnnzip.load(path, model=nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)))
    assert torch.equal(loaded[1].running_var, net[1].running_var)
    assert torch.equal(loaded[0].bias, net[0].bias.half().float())  # this one survives


# ---- 8. tied weights --------------------------------------------------------------------------


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_tied_weight_is_stored_once_and_loads_tied(tmp_path) -> None:
    torch.manual_seed(0)
    net = Tied()
    data = encode(net)
    entries = {t["name"]: t for t in container.unpack(data).header["tensors"]}
    assert entries["b.weight"] == {
        "name": "b.weight", "shape": [16, 16], "encoding": "alias", "of": "a.weight"
    }  # fmt: skip
    untied = Tied()
    untied.b.weight = nn.Parameter(net.a.weight.detach().clone())
    assert len(encode(untied)) - len(data) >= 4 * 16 * 16
    (tmp_path / "t.cnnz").write_bytes(data)
    loaded = cnnzip.load(tmp_path / "t.cnnz", model=Tied())
    assert loaded.b.weight is loaded.a.weight
    x = torch.randn(5, 16)
    assert torch.equal(loaded(x), net.eval()(x))
    state = decode_state(container.unpack(data))
    assert state["b.weight"] is state["a.weight"]
    assert inspect(tmp_path / "t.cnnz").dense_bytes == 4 * (16 * 16 + 16 + 16)


def test_tied_parametrized_weight_is_stored_once(tmp_path) -> None:
    torch.manual_seed(0)
    net = Tied()
    add_transform(net, "a.weight", Mask(net.a.weight.detach().abs() > 0.1))
    assert net.b.parametrizations.weight is net.a.parametrizations.weight  # the tie kept
    data = encode(net)
    entries = {t["name"]: t for t in container.unpack(data).header["tensors"]}
    assert entries["b.weight"]["encoding"] == "alias"
    state = decode_state(container.unpack(data))
    assert torch.equal(state["b.weight"], net.b.weight.detach())


@pytest.mark.parametrize(
    ("of", "shape", "message"),
    [("b.weight", [16, 16], "no stored tensor before it"), ("a.bias", [16, 16], "alias of shape"),
     ("zz", [16, 16], "no stored tensor"), ("b.bias", [16], "no stored tensor before it")],
)  # fmt: skip
def test_alias_chains_and_dangling_aliases_are_refused(tools, of, shape, message) -> None:
    data = encode(Tied())

    def edit(header, sections):
        tools.tensor(header, "b.weight").update(of=of, shape=shape)
        if of == "b.bias":  # b.bias itself an alias: a chain
            tools.tensor(header, "b.bias").update(encoding="alias", of="a.bias")
            del tools.tensor(header, "b.bias")["dtype"], tools.tensor(header, "b.bias")["stored"]
            del tools.tensor(header, "b.bias")["section"]

    with pytest.raises(CnnzFormatError, match=message):
        decode_state(container.unpack(tools.repack(data, edit)))
