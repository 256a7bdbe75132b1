"""safetensors files: every malformation refused with a clear error and the repository unchanged;
odd but valid files (0-d, empty tensors, metadata, padding) rebuilt byte for byte."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    ALL_DTYPES,
    list_objects,
    make_tensor,
    objects_of_kind,
    raw_safetensors,
    safetensors_bytes,
    same_array,
    sha256_tree,
    write_safetensors,
)

from mgit.errors import InvalidModelFileError
from mgit.formats.safetensors import UnknownDtypeError, parse_header, read_header


def f32(n: int, seed: int = 0) -> bytes:
    return make_tensor("F32", (n,), seed).tobytes()


def hdr(**tensors: Any) -> dict[str, Any]:
    return dict(tensors)


def t(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


MALFORMED: dict[str, bytes] = {
    "empty file": b"",
    "shorter than 8 bytes": b"\x05\x00\x00",
    "header length only": struct.pack("<Q", 0),
    "header cut": raw_safetensors(json.dumps(hdr(a=t("F32", [2], 0, 8))).encode()[:-5], length=40),
    "header length past the end": raw_safetensors(b'{"a":1}', length=10_000),
    "header length huge": raw_safetensors(b"{}", length=1 << 62),
    "header not JSON": raw_safetensors(b"{not json at all}   "),
    "header not UTF-8": raw_safetensors(b'{"\xff\xfe":1}  '),
    "header a list": raw_safetensors(b"[1, 2, 3]"),
    "header a string": raw_safetensors(b'"hello"'),
    "header null": raw_safetensors(b"null    "),
    "duplicate names": raw_safetensors(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        '"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}',
        f32(4),
    ),
    "overlapping offsets": raw_safetensors(
        hdr(a=t("F32", [2], 0, 8), b=t("F32", [2], 4, 12)), f32(3)
    ),
    "same offsets twice": raw_safetensors(
        hdr(a=t("F32", [2], 0, 8), b=t("F32", [2], 0, 8)), f32(2)
    ),
    "hole between tensors": raw_safetensors(
        hdr(a=t("F32", [2], 0, 8), b=t("F32", [2], 12, 20)), f32(5)
    ),
    "hole at the start": raw_safetensors(hdr(a=t("F32", [2], 4, 12)), f32(3)),
    "offsets out of range": raw_safetensors(
        hdr(a=t("F32", [2], 0, 8), b=t("F32", [2], 8, 16)), f32(3)
    ),
    "trailing bytes": raw_safetensors(hdr(a=t("F32", [2], 0, 8)), f32(2) + b"\x00\x01\x02\x03"),
    "shape disagrees with bytes": raw_safetensors(hdr(a=t("F32", [3], 0, 8)), f32(2)),
    "dtype disagrees with bytes": raw_safetensors(hdr(a=t("F64", [2], 0, 8)), f32(2)),
    "reversed offsets": raw_safetensors(hdr(a=t("F32", [2], 8, 0)), f32(2)),
    "negative offset": raw_safetensors(hdr(a=t("F32", [2], -8, 0)), f32(2)),
    "offsets not ints": raw_safetensors(
        hdr(a={"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8.0]}), f32(2)
    ),
    "offsets bools": raw_safetensors(
        hdr(a={"dtype": "U8", "shape": [1], "data_offsets": [False, True]}), b"\x01"
    ),
    "three offsets": raw_safetensors(
        hdr(a={"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 8]}), f32(2)
    ),
    "missing offsets": raw_safetensors(hdr(a={"dtype": "F32", "shape": [2]}), f32(2)),
    "negative shape": raw_safetensors(hdr(a=t("F32", [-2], 0, 8)), f32(2)),
    "shape not a list": raw_safetensors(
        hdr(a={"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}), f32(2)
    ),
    "missing dtype": raw_safetensors(hdr(a={"shape": [2], "data_offsets": [0, 8]}), f32(2)),
    "entry not an object": raw_safetensors(hdr(a=[0, 8]), f32(2)),
    "__metadata__ with int value": raw_safetensors(
        {"__metadata__": {"format": 1}, "a": t("F32", [2], 0, 8)}, f32(2)
    ),
    "__metadata__ a string": raw_safetensors(
        {"__metadata__": "pt", "a": t("F32", [2], 0, 8)}, f32(2)
    ),
    "__metadata__ a list": raw_safetensors(
        {"__metadata__": ["pt"], "a": t("F32", [2], 0, 8)}, f32(2)
    ),
    "__metadata__ nested": raw_safetensors(
        {"__metadata__": {"a": {"b": "c"}}, "a": t("F32", [2], 0, 8)}, f32(2)
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_parse_refuses(tmp_path: Path, case: str) -> None:
    p = tmp_path / "model.safetensors"
    p.write_bytes(MALFORMED[case])
    with pytest.raises(InvalidModelFileError) as ei:
        read_header(p)
    assert ei.value.reason
    assert str(p) in str(ei.value)


def _repo_state(repo: Any) -> tuple[dict[str, str], str | None, set[str], set[str]]:
    return (
        repo.refs.iter_refs(),
        repo.refs.read("HEAD"),
        objects_of_kind(repo, "commit"),
        objects_of_kind(repo, "tree"),
    )


@pytest.mark.parametrize("case", list(MALFORMED))
def test_import_of_malformed_file_changes_nothing(repo: Any, tmp_path: Path, case: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(MALFORMED[case])
    before = _repo_state(repo)
    with pytest.raises(InvalidModelFileError):
        repo.import_folder(src, model="m", message="bad")
    assert _repo_state(repo) == before


@pytest.mark.parametrize(
    "case", ["header not JSON", "overlapping offsets", "trailing bytes", "reversed offsets"]
)
def test_commit_of_malformed_file_changes_nothing(repo: Any, case: str) -> None:
    (repo.root / "config.json").write_text("{}")
    repo.add([repo.root])
    first = repo.commit("base").commit.oid
    (repo.root / "model.safetensors").write_bytes(MALFORMED[case])
    repo.add([repo.root / "model.safetensors"])
    before = _repo_state(repo)
    with pytest.raises(InvalidModelFileError):
        repo.commit("bad")
    assert _repo_state(repo) == before
    assert repo.head() == first
    assert repo.status().staged_new == ["model.safetensors"]  # still staged: nothing was lost


def test_non_safetensors_name_is_a_blob(repo: Any, tmp_path: Path) -> None:
    # the same bytes under another name are just a file
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(MALFORMED["trailing bytes"])
    repo.import_folder(src, model="m", message="ok")
    out = tmp_path / "out"
    repo.export("m", out)
    assert sha256_tree(out) == sha256_tree(src)


# -- valid files ----------------------------------------------------------------------------------


def _round_trip(repo: Any, tmp_path: Path, data: bytes, name: str = "model.safetensors") -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(data)
    repo.import_folder(src, model="m", message="x")
    out = tmp_path / "out"
    repo.export("m", out, force=True)
    assert (out / name).read_bytes() == data
    return out


def test_scalar_tensors(repo: Any, tmp_path: Path) -> None:
    tensors = {f"s_{d}": make_tensor(d, (), i) for i, d in enumerate(ALL_DTYPES)}
    data = safetensors_bytes(tensors)
    h = parse_header("x", data, len(data))
    assert all(s.shape == () for s in h.tensors)
    _round_trip(repo, tmp_path, data)
    sd = repo.load_state_dict("m")
    for k, v in tensors.items():
        assert sd[k].shape == () and same_array(sd[k], v)


def test_empty_tensors(repo: Any, tmp_path: Path) -> None:
    tensors = {
        "a": make_tensor("F32", (3,), 1),
        "empty": make_tensor("F16", (0, 5), 2),
        "empty2": make_tensor("I64", (4, 0), 3),
        "b": make_tensor("BF16", (2, 2), 4),
    }
    data = safetensors_bytes(tensors)
    h = parse_header("x", data, len(data))
    assert [s.nbytes for s in h.tensors if s.name.startswith("empty")] == [0, 0]
    _round_trip(repo, tmp_path, data)
    sd = repo.load_state_dict("m")
    assert sd["empty"].shape == (0, 5) and sd["empty2"].shape == (4, 0)
    assert same_array(sd["b"], tensors["b"])
    assert repo.load_tensor("m", "empty", torch=True).shape == (0, 5)


def test_only_empty_tensors_and_no_tensors(repo: Any, tmp_path: Path) -> None:
    data = safetensors_bytes({"e": make_tensor("F32", (0,), 0)}, {"k": "v"})
    _round_trip(repo, tmp_path, data, "a.safetensors")
    data2 = raw_safetensors(b'{"__metadata__":{"k":"v"}}     ')
    _round_trip(repo, tmp_path, data2, "b.safetensors")
    data3 = raw_safetensors(b"{}")
    _round_trip(repo, tmp_path, data3, "c.safetensors")


def test_metadata_and_padding_kept(repo: Any, tmp_path: Path) -> None:
    tensors = {"w": make_tensor("F32", (5, 3), 7)}
    meta = {"format": "pt", "note": "ünïcode ✓", "empty": ""}
    data = safetensors_bytes(tensors, meta, extra_padding=37)
    h = parse_header("x", data, len(data))
    assert h.metadata == meta
    assert h.header_bytes.endswith(b" " * 37)
    _round_trip(repo, tmp_path, data)


def test_header_order_differs_from_data_order(repo: Any, tmp_path: Path) -> None:
    tensors = {
        "z": make_tensor("F32", (4,), 1),
        "a": make_tensor("I8", (3,), 2),
        "m": make_tensor("F64", (2,), 3),
    }
    data = safetensors_bytes(tensors, order=["m", "z", "a"], align=0)
    h = parse_header("x", data, len(data))
    assert [s.name for s in h.tensors] == ["m", "z", "a"]  # data order
    _round_trip(repo, tmp_path, data)
    sd = repo.load_state_dict("m")
    assert all(same_array(sd[k], v) for k, v in tensors.items())


def test_unknown_dtype_is_kept_as_a_blob(repo: Any, tmp_path: Path) -> None:
    data = raw_safetensors(hdr(q=t("F4", [4], 0, 2)), b"\x12\x34")
    with pytest.raises(UnknownDtypeError):
        parse_header("x", data, len(data))
    _round_trip(repo, tmp_path, data)
    tree = repo.read_tree(repo.read_commit(repo.resolve("m")).tree)
    assert tree.files["model.safetensors"].kind == "blob"


def test_unknown_dtype_still_validated(tmp_path: Path) -> None:
    # an unknown dtype does not excuse overlapping offsets
    data = raw_safetensors(hdr(a=t("F4", [4], 0, 2), b=t("F4", [4], 1, 3)), b"\x00" * 3)
    with pytest.raises(InvalidModelFileError):
        parse_header("x", data, len(data))


def test_real_safetensors_numpy_file(repo: Any, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = {
        f"t_{d}": make_tensor(d, (3, 5), i)
        for i, d in enumerate(("F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "BOOL"))
    }
    tensors["scalar"] = make_tensor("F32", (), 50)
    tensors["empty"] = make_tensor("F32", (0, 3), 51)
    src = tmp_path / "src"
    src.mkdir()
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "np"})
    repo.import_folder(src, model="m", message="np")
    out = tmp_path / "out"
    repo.export("m", out)
    assert sha256_tree(out) == sha256_tree(src)
    sd = repo.load_state_dict("m")
    assert set(sd) == set(tensors)
    for k, v in tensors.items():
        assert sd[k].dtype == v.dtype and same_array(sd[k], v), k


def test_real_safetensors_torch_file(repo: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        "bf16": torch.randn(7, 9, generator=g).to(torch.bfloat16),
        "f16": torch.randn(4, 4, generator=g).to(torch.float16),
        "f32": torch.randn(130, 129, generator=g),  # > one 64 KiB chunk
        "fp8a": torch.randn(5, 6, generator=g).to(torch.float8_e4m3fn),
        "fp8b": torch.randn(5, 6, generator=g).to(torch.float8_e5m2),
        "i64": torch.arange(10, dtype=torch.int64),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
    }
    tensors["bf16"][0, :4] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-40]).to(
        torch.bfloat16
    )
    src = tmp_path / "src"
    src.mkdir()
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
    repo.import_folder(src, model="m", message="pt")
    out = tmp_path / "out"
    repo.export("m", out)
    assert sha256_tree(out) == sha256_tree(src)
    sd = repo.load_state_dict("m", torch=True)
    for k, v in tensors.items():
        assert sd[k].dtype == v.dtype, k
        assert same_array(sd[k], v), k
    import ml_dtypes

    arr = repo.load_tensor("m", "bf16")
    assert arr.dtype == np.dtype(ml_dtypes.bfloat16)
    assert same_array(arr, tensors["bf16"])


def test_truncated_real_file_refused(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    p = write_safetensors(src / "model.safetensors", {"w": make_tensor("F32", (100,), 0)})
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(InvalidModelFileError):
        repo.import_folder(src, model="m", message="x")
    assert repo.refs.iter_refs() == {}
    assert list_objects(repo.mgit_dir) == set()
