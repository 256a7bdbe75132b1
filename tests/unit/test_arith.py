"""mgit.lifecycle.arith: round-to-nearest-even casts against an enumeration of every value of the
target type, and the streamed version writer (kept tensors reuse the base's chunks, headers are
rebuilt validly on a dtype change, nothing is written on an error)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from helpers import write_model_folder

from mgit.errors import UsageError
from mgit.lifecycle.arith import build_header, cast_rne, write_version
from mgit.objects.model import ParentLink


def _ref_round(x: np.ndarray, table_dtype: Any, uint: Any) -> np.ndarray:
    """Nearest value of a 16-bit float type by brute force over all its finite non-negative bit
    patterns; ties to the even bit pattern; from max + half an ulp on: inf."""
    bits = np.arange(0, 0x8000, dtype=np.uint32).astype(uint)
    vals = bits.view(table_dtype).astype(np.float64)
    ok = np.isfinite(vals)
    vals, bits = vals[ok], bits[ok]  # increasing with the bits for non-negative floats
    top = vals[-1] + (vals[-1] - vals[-2]) / 2
    inf = int(np.array(np.inf, dtype=table_dtype).view(uint))
    out = np.empty(x.size, dtype=uint)
    for i, v in enumerate(x.reshape(-1)):
        a = abs(float(v))
        if a >= top:
            b = inf
        else:
            j = int(np.searchsorted(vals, a))
            cand = [k for k in (j - 1, j) if 0 <= k < len(vals)]
            d = [abs(vals[k] - a) for k in cand]
            if len(cand) == 2 and d[0] == d[1]:
                k = cand[0] if int(bits[cand[0]]) % 2 == 0 else cand[1]
            else:
                k = cand[int(np.argmin(d))]
            b = int(bits[k])
        out[i] = b | (0x8000 if np.signbit(v) else 0)
    return out.reshape(x.shape)


def _hard_values(table_dtype: Any, n: int, seed: int) -> np.ndarray:
    """float64 values at, just off and between the midpoints of neighbouring values of the type
    (the double-rounding traps), plus random ones and a few out of range."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 0x7F00 if table_dtype is ml_dtypes.bfloat16 else 0x7BFF, size=n).astype(
        np.uint16
    )
    lo = bits.view(table_dtype).astype(np.float64)
    hi = (bits + 1).view(table_dtype).astype(np.float64)
    mid = (lo + hi) / 2
    eps = np.abs(mid) * 2.0**-30
    vals = np.concatenate(
        [mid, mid + eps, mid - eps, lo, rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)]
    )
    sign = np.where(rng.random(vals.size) < 0.5, -1.0, 1.0)
    return np.concatenate([vals * sign, [0.0, -0.0, 1e300, -1e300, 5e-324]])


@pytest.mark.parametrize(
    "name,tdt,src",
    [
        ("BF16", ml_dtypes.bfloat16, np.float64),
        ("BF16", ml_dtypes.bfloat16, np.float32),
        ("F16", np.float16, np.float64),
    ],
)
def test_cast_rne_matches_brute_force_rounding(name: str, tdt: Any, src: Any) -> None:
    x = _hard_values(tdt, 300, seed=1).astype(src)
    with np.errstate(over="ignore"):
        x = x[np.isfinite(x)]
    got = cast_rne(x, name)
    assert got.dtype == np.dtype(tdt)
    want = _ref_round(x.astype(np.float64), tdt, np.uint16)
    bad = np.flatnonzero(got.view(np.uint16) != want)
    assert bad.size == 0, [(x[i], hex(got.view(np.uint16)[i]), hex(want[i])) for i in bad[:5]]


def test_cast_rne_keeps_nan_and_inf_and_f32() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1.0, -2.5, 1e39], dtype=np.float64)
    for name in ("BF16", "F16", "F32"):
        y = cast_rne(x, name).astype(np.float64)
        assert (
            np.isnan(y[0]) and y[1] == np.inf and y[2] == -np.inf and y[3] == 1.0 and y[4] == -2.5
        )
        assert y[5] == np.inf
    r = np.random.default_rng(0).standard_normal(1000)
    assert np.array_equal(cast_rne(r, "F32"), r.astype(np.float32))
    assert cast_rne(r, "F64") is not r and np.array_equal(cast_rne(r, "F64"), r)
    with pytest.raises(UsageError):
        cast_rne(r, "I8")


def test_build_header_recomputes_offsets_in_key_order() -> None:
    from mgit.objects.model import TensorManifest

    raw = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "b": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]},
        }
    ).encode()
    order = [
        ("b", TensorManifest("F32", (2, 3), 65536, ())),
        ("a", TensorManifest("F32", (4,), 65536, ())),
    ]
    assert build_header(raw, {}, order) is raw
    h = build_header(raw, {"b": "BF16"}, order)
    assert len(h) % 8 == 0
    d = json.loads(h)
    assert list(d) == ["__metadata__", "b", "a"]
    assert d["b"] == {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}
    assert d["a"]["data_offsets"] == [12, 28]


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "emb.weight": rng.standard_normal((300, 64)).astype(np.float32),  # 76 KiB: chunked
        "l0.weight": rng.standard_normal((16, 16)).astype(np.float32),  # packed
        "l0.bias": rng.standard_normal(16).astype(np.float32),
        "ids": np.arange(8, dtype=np.int64),
    }


@pytest.fixture
def two(make_repo: Any, tmp_path: Path) -> Any:
    r = make_repo("repo", model="base")
    write_model_folder(tmp_path / "a", _tensors(0))
    r.import_folder(tmp_path / "a", model="base", message="a")
    return r


def test_write_version_rebuilds_and_reuses(two: Any, tmp_path: Path) -> None:
    r = two
    base = r.resolve("base")
    calls: list[str] = []

    def fn(file: str, name: str, m: Any) -> Any:
        calls.append(name)
        if name == "l0.weight":
            return r.load_tensor("base", name).astype(np.float64) * 2
        return None

    info = write_version(
        r,
        model="out",
        message="x2",
        parents=[ParentLink(base, "finetune")],
        base_ref="base",
        tensors=fn,
        meta={"k": "v"},
        recipe={"what": "test"},
    )
    assert calls == ["emb.weight", "l0.weight", "l0.bias", "ids"]  # data order, each once
    assert info.parents == [(base, "finetune")] and info.recipe == {"what": "test"}
    old, new = r.tensors("base"), r.tensors("out")
    for n in ("emb.weight", "l0.bias", "ids"):
        assert new[n].content_id == old[n].content_id
    assert new["emb.weight"].chunks == old["emb.weight"].chunks
    assert np.array_equal(r.load_tensor("out", "l0.weight"), _tensors(0)["l0.weight"] * 2)
    r.export("out", tmp_path / "exp")
    from safetensors.numpy import load_file

    got = load_file(str(tmp_path / "exp" / "model.safetensors"))
    assert np.array_equal(got["l0.weight"], _tensors(0)["l0.weight"] * 2)
    assert (tmp_path / "exp" / "config.json").read_bytes() == (
        tmp_path / "a" / "config.json"
    ).read_bytes()
    assert not list((r.mgit_dir / "tmp").iterdir())  # temp files removed


def test_write_version_all_kept_reuses_the_entry(two: Any) -> None:
    r = two
    base = r.resolve("base")
    info = write_version(
        r,
        model="same",
        message="m",
        parents=[ParentLink(base, "finetune")],
        base_ref="base",
        tensors=lambda f, n, m: None,
    )
    assert info.tree == r.read_commit(base).tree


def test_write_version_dtype_change_and_errors(two: Any, tmp_path: Path) -> None:
    r = two
    base = r.resolve("base")
    info = write_version(
        r,
        model="half",
        message="m",
        parents=[ParentLink(base, "quantize")],
        base_ref="base",
        tensors=lambda f, n, m: None,
        dtype=lambda f, n, m: "BF16" if m.dtype == "F32" else m.dtype,
        lookahead=0,
    )
    r.export(info.oid, tmp_path / "h")
    from safetensors.numpy import load_file

    data = (tmp_path / "h" / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert list(json.loads(data[8 : 8 + n])) == list(
        json.loads(
            (tmp_path / "a" / "model.safetensors").read_bytes()[
                8 : 8
                + struct.unpack("<Q", (tmp_path / "a" / "model.safetensors").read_bytes()[:8])[0]
            ]
        )
    )
    got = load_file(str(tmp_path / "h" / "model.safetensors"))
    assert got["ids"].dtype == np.int64
    assert np.array_equal(
        got["l0.bias"].view(np.uint16),
        _tensors(0)["l0.bias"].astype(ml_dtypes.bfloat16).view(np.uint16),
    )
    heads = r.model_heads() if hasattr(r, "model_heads") else None
    with pytest.raises(UsageError, match="shape"):
        write_version(
            r,
            model="bad",
            message="m",
            parents=[ParentLink(base, "finetune")],
            base_ref="base",
            tensors=lambda f, n, m: np.zeros(3) if n == "l0.bias" else None,
        )
    assert "bad" not in r.model_heads()
    assert heads is None or r.model_heads() == heads
    assert not list((r.mgit_dir / "tmp").iterdir())


@pytest.mark.parametrize("lookahead", [0, 2])
def test_write_version_streamed_values(two: Any, lookahead: int) -> None:
    """A Streamed value (flat slices, computed as the file is written) gives the same version as
    the whole array; the dtype cast is applied slice by slice (BF16 here)."""
    from mgit.lifecycle.arith import Streamed

    r = two
    base = r.resolve("base")
    emb = _tensors(0)["emb.weight"].astype(np.float64) * 1.5 + 1e-3

    def whole(file: str, name: str, m: Any) -> Any:
        return emb if name == "emb.weight" else None

    def sliced(file: str, name: str, m: Any) -> Any:
        if name != "emb.weight":
            return None
        flat = emb.reshape(-1)
        return Streamed(flat[a : a + 1000] for a in range(0, flat.size, 1000))

    dt = lambda f, n, m: "BF16" if n == "emb.weight" else m.dtype
    a = write_version(
        r,
        model="w",
        message="m",
        parents=[ParentLink(base, "finetune")],
        base_ref="base",
        tensors=whole,
        dtype=dt,
        lookahead=lookahead,
    )
    b = write_version(
        r,
        model="s",
        message="m",
        parents=[ParentLink(base, "finetune")],
        base_ref="base",
        tensors=sliced,
        dtype=dt,
        lookahead=lookahead,
    )
    assert a.tree == b.tree
    got = r.load_tensor("s", "emb.weight")
    assert np.array_equal(got.view(np.uint16), cast_rne(emb, "BF16").view(np.uint16))


@pytest.mark.parametrize("extra", [-1, 1])
def test_write_version_streamed_wrong_count_writes_nothing(two: Any, extra: int) -> None:
    from mgit.lifecycle.arith import Streamed

    r = two
    base = r.resolve("base")
    heads = r.model_heads()
    n = 300 * 64 + extra

    def fn(file: str, name: str, m: Any) -> Any:
        return (
            Streamed(iter([np.zeros(n // 2), np.zeros(n - n // 2)]))
            if name == "emb.weight"
            else None
        )

    with pytest.raises(UsageError, match="elements"):
        write_version(
            r,
            model="bad",
            message="m",
            parents=[ParentLink(base, "finetune")],
            base_ref="base",
            tensors=fn,
        )
    assert r.model_heads() == heads
    assert not list((r.mgit_dir / "tmp").iterdir())
