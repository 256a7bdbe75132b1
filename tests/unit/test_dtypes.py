"""The one dtype table (``mgit.formats.dtypes``) against numpy, ml_dtypes and torch, and every
layer that used to keep a table of its own now answering from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from helpers import NP_DTYPES, make_tensor, write_model_folder

from mgit.formats import dtypes as D
from mgit.formats.safetensors import UnknownDtypeError, parse_header

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(D.DTYPES)


def test_the_table_lists_every_safetensors_dtype_mgit_chunks() -> None:
    assert set(NAMES) == {
        "BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I16", "U16", "F16", "BF16",
        "I32", "U32", "F32", "I64", "U64", "F64", "C64",
    }
    assert all(name == d.name for name, d in D.DTYPES.items())
    assert D.DTYPE_SIZES == {n: D.DTYPES[n].itemsize for n in NAMES}
    assert D.FLOAT_DTYPES == {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F16", "BF16", "F32", "F64", "C64"}


@pytest.mark.parametrize("name", NAMES)
def test_numpy_dtype_matches_the_table(name: str) -> None:
    d = D.DTYPES[name]
    dt = D.numpy_dtype(name)
    assert dt.itemsize == d.itemsize == D.itemsize(name) == D.DTYPE_SIZES[name]
    assert dt.name == d.numpy  # not a fallback: this numpy/ml_dtypes has every type
    assert dt.byteorder in "<|="
    assert D.dtype_from_numpy(dt) == name
    if d.is_complex:
        assert dt.kind == "c" and d.is_float and not d.is_floating_point
    elif d.is_floating_point:
        # ml_dtypes.finfo knows numpy's floats and its own; nmant is the explicit mantissa
        assert d.mantissa == ml_dtypes.finfo(dt).nmant
        assert d.is_float and D.is_float(name) and D.is_floating_point(name)
    else:
        assert dt.kind in "biu" and d.mantissa is None
        assert not d.is_float and not D.is_float(name) and not D.is_floating_point(name)


@pytest.mark.parametrize("name", NAMES)
def test_torch_dtype_matches_the_table(name: str) -> None:
    torch = pytest.importorskip("torch")
    d = D.DTYPES[name]
    t = D.torch_dtype(name)
    assert isinstance(t, torch.dtype)
    assert t == getattr(torch, d.torch)
    assert t.itemsize == d.itemsize
    assert t.is_floating_point == d.is_floating_point
    assert t.is_complex == d.is_complex
    # the same bytes read through numpy and through torch are the same values
    arr = make_tensor(name, (5,), 1) if name in NP_DTYPES else np.zeros(5, D.numpy_dtype(name))
    tt = torch.frombuffer(bytearray(arr.tobytes()), dtype=t)
    assert tt.numel() == 5


@pytest.mark.parametrize("name", sorted(NP_DTYPES))
def test_the_tests_own_numpy_table_agrees(name: str) -> None:
    assert D.numpy_dtype(name) == NP_DTYPES[name]


def test_unknown_names() -> None:
    for fn in (D.itemsize, D.is_float, D.is_floating_point, D.numpy_dtype, D.torch_dtype):
        with pytest.raises(ValueError, match="unknown dtype name"):
            fn("F4")
    assert D.dtype_from_numpy(ml_dtypes.float8_e4m3fnuz) is None
    assert D.dtype_from_numpy(np.complex128) is None


def test_every_layer_uses_the_one_table() -> None:
    from mgit.codecs import LOSSY_DTYPES, lossy
    from mgit.diff import source
    from mgit.materialize import numpy_dtype
    from mgit.objects import model

    import mgit._dtypes

    for attr in D.__all__:  # the formats layer's name for the one table
        assert getattr(D, attr) is getattr(mgit._dtypes, attr)
    assert model.DTYPE_SIZES is D.DTYPE_SIZES
    assert model.FLOAT_DTYPES is D.FLOAT_DTYPES
    assert numpy_dtype is D.numpy_dtype
    for name in NAMES:
        assert source.numpy_dtype(name) == D.numpy_dtype(name)
        assert source.dtype_name(D.numpy_dtype(name)) == name
        # the diff computes float statistics for real floats only
        assert source.is_float_dtype(name) == D.DTYPES[name].is_floating_point
    # names the diff gives to numpy dtypes safetensors lacks
    assert source.dtype_name(np.dtype(ml_dtypes.float8_e4m3fnuz)) == "FLOAT8_E4M3FNUZ"
    assert source.is_float_dtype("FLOAT8_E4M3FNUZ") and not source.is_float_dtype("COMPLEX128")
    # the lossy codec: real floats of the table, its bit words and mantissas from the table
    assert frozenset(lossy._SPECS) == LOSSY_DTYPES
    for name in LOSSY_DTYPES:
        d, spec = D.DTYPES[name], lossy._SPECS[name]
        assert d.is_floating_point
        assert np.dtype(spec.bits).itemsize == d.itemsize and np.dtype(spec.bits).kind == "u"
        assert spec.mantissa == d.mantissa
        assert np.dtype(spec.compute).itemsize >= d.itemsize


@pytest.mark.parametrize("name", NAMES)
def test_the_safetensors_parser_knows_exactly_the_table(name: str) -> None:
    size = D.itemsize(name)

    def header(dtype: str) -> bytes:
        t = {"dtype": dtype, "shape": [3], "data_offsets": [0, 3 * size]}
        h = json.dumps({"t": t}).encode()
        return len(h).to_bytes(8, "little") + h

    good, bad = header(name), header("F4")
    hdr = parse_header("t", good, len(good) + 3 * size)
    assert [(t.dtype, t.nbytes) for t in hdr.tensors] == [(name, 3 * size)]
    with pytest.raises(UnknownDtypeError):
        parse_header("t", bad, len(bad) + 3 * size)


def test_the_table_imports_neither_numpy_nor_torch() -> None:
    code = (
        "import sys, mgit.objects.model, mgit.materialize, mgit.codecs\n"
        "assert 'mgit.formats' not in sys.modules  # export parses no safetensors header\n"
        "import mgit.formats.dtypes, mgit.formats.names, mgit.ingest\n"
        "heavy = sorted(m for m in ('numpy', 'ml_dtypes', 'torch') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr


# ----------------------------------------------------------------------------------------------
# chunking of a tensor: what ingest stores, computed without storing


def test_tensor_chunk_size_is_whole_elements() -> None:
    from mgit.objects.chunking import tensor_chunk_size

    for name in NAMES:
        cs = tensor_chunk_size(name, 65536 + 3)
        assert cs % D.itemsize(name) == 0 and 65536 + 3 - D.itemsize(name) < cs <= 65536 + 3


def test_tensor_chunk_ids_are_what_ingest_stores(repo: Any, tmp_path: Path) -> None:
    from mgit.formats.safetensors import read_header
    from mgit.objects.chunking import tensor_chunk_ids, tensor_content_id

    tensors: dict[str, np.ndarray] = {}
    for i, name in enumerate(sorted(NP_DTYPES)):
        tensors[f"big.{name}"] = make_tensor(name, (3 * 65536 // NP_DTYPES[name].itemsize + 7,), i)
        tensors[f"small.{name}"] = make_tensor(name, (33,), 100 + i)
    tensors["empty"] = np.zeros((0, 4), np.float32)
    folder = write_model_folder(tmp_path / "m", tensors, sharded=2)
    repo.import_folder(folder, model="base", message="m")
    stored = repo.tensors("base")
    seen = 0
    for path in sorted(folder.glob("*.safetensors")):
        with open(path, "rb") as f:
            for spec in read_header(path).tensors:
                m = stored[spec.name]
                assert tensor_chunk_ids(f, spec, repo.chunk_size) == list(m.data_ids), spec.name
                assert tensor_chunk_ids(path, spec, repo.chunk_size) == list(m.data_ids)
                assert tensor_content_id(path, spec, repo.chunk_size) == m.content_id, spec.name
                seen += 1
    assert seen == len(tensors)
    # the diff's working-tree side gives every tensor the content id it will have once committed
    from mgit.sources import FolderTensorSource

    infos = FolderTensorSource(folder, chunk_size=repo.chunk_size).tensors()
    assert {n: i.content_id for n, i in infos.items()} == {
        n: m.content_id for n, m in stored.items()
    }
    assert any(m.packed for m in stored.values())
    assert any(len(m.chunks) > 2 for m in stored.values())
