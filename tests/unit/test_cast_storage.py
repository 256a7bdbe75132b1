"""A model that is a dtype cast of its parent (``model.to(torch.bfloat16)``) is stored as casts of
the parent's chunks (``cast-planes-zstd/1``): near zero bytes, bit-exact, for every pair of float
dtypes, NaN payloads, -0.0, infinities and denormals included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
from helpers import NP_DTYPES, make_tensor, same_array, sha256_tree, write_model_folder

from mgit import codecs
from mgit.codecs import cast as castmod
from mgit.codecs.choose import MAX_CHAIN_DEPTH
from mgit.errors import CodecError
from mgit.objects.model import tensor_chunk_size

CAST = codecs.CAST_PLANES_ZSTD
FLOATS = ["F64", "F32", "F16", "BF16"]
PAIRS = [(a, b) for a in FLOATS for b in FLOATS if a != b]
_TORCH = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_INT = {8: torch.int64, 4: torch.int32, 2: torch.int16}
_UINT = {8: np.uint64, 4: np.uint32, 2: np.uint16}
_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def to_torch(a: np.ndarray, dtype: str) -> torch.Tensor:
    k = _SIZE[dtype]
    return torch.from_numpy(a.view(_UINT[k]).astype(_UINT[k]).view({8: np.int64, 4: np.int32, 2: np.int16}[k]).copy()).view(_TORCH[dtype])


def to_numpy(t: torch.Tensor, dtype: str) -> np.ndarray:
    k = _SIZE[dtype]
    return t.contiguous().view(_INT[k]).numpy().view(_UINT[k]).view(NP_DTYPES[dtype])


def torch_cast(a: np.ndarray, src: str, dst: str) -> np.ndarray:
    """What ``tensor.to(dtype)`` gives (torch's own NaN handling included)."""
    return to_numpy(to_torch(a, src).to(_TORCH[dst]), dst)


def parent_tensor(dtype: str, n: int, seed: int = 0) -> np.ndarray:
    """Normal values, the specials of :func:`make_tensor` (NaN payloads, -0.0, inf, denormals)
    at the start, and more NaN payloads and denormals spread through."""
    a = make_tensor(dtype, (n,), seed).copy()
    u = a.view(_UINT[_SIZE[dtype]])
    _, ms, k = castmod.FORMATS[dtype]
    exp_ones = ((1 << (8 * k - 1)) - 1) ^ ((1 << ms) - 1)
    rng = np.random.default_rng(seed + 1)
    idx = rng.choice(np.arange(64, n), size=min(200, n - 64), replace=False)
    payload = rng.integers(1, 1 << ms, size=len(idx), dtype=np.uint64)
    sign = rng.integers(0, 2, size=len(idx), dtype=np.uint64) << np.uint64(8 * k - 1)
    u[idx[:100]] = (np.uint64(exp_ones) | payload[:100] | sign[:100]).astype(u.dtype)  # NaNs
    u[idx[100:]] = (payload[100:] | sign[100:]).astype(u.dtype)  # denormals
    return a


# ----------------------------------------------------------------------------------------------
# the cast itself


def _bits16(dtype: str) -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint16).view(NP_DTYPES[dtype])


@pytest.mark.parametrize("src", ["F16", "BF16"])
@pytest.mark.parametrize("dst", FLOATS)
def test_cast_of_every_16_bit_pattern_matches_torch(src: str, dst: str) -> None:
    if src == dst:
        return
    a = _bits16(src)
    got = np.frombuffer(castmod.cast_bits(a.tobytes(), src, dst), dtype=_UINT[_SIZE[dst]])
    ref = torch_cast(a, src, dst).view(_UINT[_SIZE[dst]])
    nan = to_torch(a, src).isnan().numpy()
    assert np.array_equal(got[~nan], ref[~nan])
    assert to_torch(got.view(NP_DTYPES[dst]), dst).isnan().numpy().tolist() == nan.tolist()


@pytest.mark.parametrize(("src", "dst"), [("F32", "BF16"), ("F32", "F16"), ("F32", "F64"),
                                          ("F64", "F32"), ("F64", "F16")])
def test_cast_of_wide_patterns_is_one_ieee_rounding(src: str, dst: str) -> None:
    rng = np.random.default_rng(5)
    k = _SIZE[src]
    u = rng.integers(0, np.iinfo(_UINT[k]).max, size=100_000, dtype=_UINT[k], endpoint=True)
    a = u.view(NP_DTYPES[src])
    got = np.frombuffer(castmod.cast_bits(a.tobytes(), src, dst), dtype=_UINT[_SIZE[dst]])
    # numpy converts with one rounding (torch goes F64 -> F32 -> F16: two); bf16 from torch
    with np.errstate(all="ignore"):
        ref = (torch_cast(a, src, dst) if dst == "BF16" else a.astype(NP_DTYPES[dst])).view(_UINT[_SIZE[dst]])
    with np.errstate(all="ignore"):
        nan = np.isnan(a.astype(np.float64))
    assert np.array_equal(got[~nan], ref[~nan])
    assert np.isnan(got.view(NP_DTYPES[dst]).astype(np.float64))[nan].all()


def test_f64_to_bf16_rounds_once() -> None:
    """1 + 2^-8 + 2^-40 is above the halfway point between two bf16 values: it rounds up;
    rounding through fp32 first (1 + 2^-8, a tie) would round to even, down."""
    x = np.array([1 + 2.0**-8 + 2.0**-40, -(1 + 2.0**-8 + 2.0**-40), 1 + 2.0**-8], dtype=np.float64)
    got = np.frombuffer(castmod.cast_bits(x.tobytes(), "F64", "BF16"), dtype=np.uint16)
    assert got.tolist() == [0x3F81, 0xBF81, 0x3F80]


def test_nan_keeps_sign_and_payload_top_bits() -> None:
    f32 = np.array([0x7FC00001, 0xFF812345, 0x7F800001, 0x7F800000, 0x80000000], dtype=np.uint32)
    out = np.frombuffer(castmod.cast_bits(f32.tobytes(), "F32", "BF16"), dtype=np.uint16)
    assert out.tolist() == [0x7FC0, 0xFFC1, 0x7FC0, 0x7F80, 0x8000]
    wide = np.frombuffer(castmod.cast_bits(out.tobytes(), "BF16", "F32"), dtype=np.uint32)
    assert wide.tolist() == [0x7FC00000, 0xFFC10000, 0x7FC00000, 0x7F800000, 0x80000000]


# ----------------------------------------------------------------------------------------------
# the codec


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_codec_round_trips_every_dtype_pair(src: str, dst: str) -> None:
    parent = parent_tensor(src, 20_000)
    child = torch_cast(parent, src, dst)
    enc = codecs.encode_cast(child.tobytes(), parent.tobytes(), src=src, dst=dst)
    assert enc.codec == CAST
    out = codecs.decode(enc.codec, enc.payload, enc.params, size=child.nbytes, base=parent.tobytes())
    assert out == child.tobytes()
    assert len(enc.payload) < child.nbytes // 50  # the corrections are the few NaNs torch sets otherwise
    # any content round-trips, whatever its relation to the base
    noise = np.random.default_rng(1).integers(0, 255, size=child.nbytes, dtype=np.uint8).tobytes()
    enc = codecs.encode_cast(noise, parent.tobytes(), src=src, dst=dst)
    assert codecs.decode(enc.codec, enc.payload, enc.params, size=len(noise), base=parent.tobytes()) == noise


def test_codec_casts_an_element_range_of_a_longer_base() -> None:
    parent = parent_tensor("BF16", 8192)
    child = torch_cast(parent[4096:6144], "BF16", "F32")
    enc = codecs.encode_cast(child.tobytes(), parent.tobytes(), src="BF16", dst="F32", start=4096)
    assert enc.params["start"] == 4096 and len(enc.payload) < 200
    assert codecs.decode(CAST, enc.payload, enc.params, size=child.nbytes, base=parent.tobytes()) == child.tobytes()


def test_codec_refuses_bad_parameters() -> None:
    base = np.zeros(100, np.float32).tobytes()
    enc = codecs.encode_cast(np.zeros(50, ml_dtypes.bfloat16).tobytes(), base, src="F32", dst="BF16", start=50)
    for bad in ({**enc.params, "start": 51}, {**enc.params, "src": "I8"}, {**enc.params, "start": -1},
                {**enc.params, "itemsize": 4}):
        with pytest.raises(CodecError):
            codecs.decode(CAST, enc.payload, bad, size=100, base=base)
    with pytest.raises(CodecError):
        codecs.decode(CAST, enc.payload, enc.params, size=100, base=None)
    with pytest.raises(CodecError):
        codecs.encode_cast(b"\0" * 300, base, src="F32", dst="BF16")  # beyond the base


# ----------------------------------------------------------------------------------------------
# storage: commit, export, fsck


def _model(dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A big tensor (several 64 KiB chunks in every dtype), a mid-sized one, a small (packed) one."""
    return {
        "embeddings.weight": parent_tensor(dtype, 70_000, seed).reshape(700, 100),
        "layer.0.dense.weight": parent_tensor(dtype, 40_000, seed + 2).reshape(200, 200),
        "layer.0.norm.weight": parent_tensor(dtype, 300, seed + 4),
    }


def _cast_model(tensors: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {n: torch_cast(a, src, dst) for n, a in tensors.items()}


def _stored(repo: Any, ref: str) -> int:
    oid = repo.resolve(ref)
    return next(c["stored_bytes"] for c in repo.stats().commits if c["oid"] == oid)


def _codecs(repo: Any, ref: str, name: str) -> set[str]:
    return {repo.store.header(c).codec for c in repo.tensors(ref)[name].chunks}


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_a_cast_model_is_stored_as_casts(repo: Any, tmp_path: Path, src: str, dst: str) -> None:
    base = _model(src)
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    child = _cast_model(base, src, dst)
    folder = write_model_folder(tmp_path / "cast", child)
    repo.import_folder(tmp_path / "cast", model="cast", parent="base", relation="quantize", message="cast")
    for name in ("embeddings.weight", "layer.0.dense.weight"):
        assert _codecs(repo, "cast", name) == {CAST}, name
        assert same_array(repo.load_tensor("cast", name), child[name])
    big = child["embeddings.weight"].nbytes + child["layer.0.dense.weight"].nbytes
    assert _stored(repo, "cast") < big // 20  # packs, header, tree, commit and ~100 B per chunk
    repo.export("cast", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)
    assert repo.fsck().findings == []


def test_a_cast_except_a_few_elements(repo: Any, tmp_path: Path) -> None:
    base = _model("F32")
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    child = _cast_model(base, "F32", "BF16")
    w = child["embeddings.weight"].copy()
    w.reshape(-1)[[5, 999, 40_000, 69_999]] = ml_dtypes.bfloat16(3.5)
    w.reshape(-1)[77] = np.array([0x7F81], np.uint16).view(ml_dtypes.bfloat16)[0]  # a signalling NaN
    child["embeddings.weight"] = w
    folder = write_model_folder(tmp_path / "cast", child)
    repo.import_folder(tmp_path / "cast", model="cast", parent="base", message="edited cast")
    assert _codecs(repo, "cast", "embeddings.weight") == {CAST}
    assert _stored(repo, "cast") < w.nbytes // 20
    repo.export("cast", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)
    assert same_array(repo.load_tensor("cast", "embeddings.weight", torch=True), w)


def test_narrowing_lines_up_with_the_parent_and_widening_keeps_default_chunks(repo: Any, tmp_path: Path) -> None:
    from mgit.objects.chunking import tensor_content_id
    from mgit.formats.safetensors import read_header

    base = _model("F32")
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    narrow = _cast_model(base, "F32", "BF16")
    write_model_folder(tmp_path / "narrow", narrow)
    repo.import_folder(tmp_path / "narrow", model="narrow", parent="base", message="n")
    pm, cm = repo.tensors("base")["embeddings.weight"], repo.tensors("narrow")["embeddings.weight"]
    assert cm.chunk_size == 32768 and len(cm.chunks) == len(pm.chunks)  # chunk k over parent chunk k
    assert [repo.store.header(c).base for c in cm.chunks] == list(pm.chunks)
    wide = _cast_model(narrow, "BF16", "F32")
    folder = write_model_folder(tmp_path / "wide", wide)
    repo.import_folder(tmp_path / "wide", model="wide", parent="narrow", message="w")
    wm = repo.tensors("wide")["embeddings.weight"]
    assert wm.chunk_size == tensor_chunk_size("F32", 65536)  # the default: ids predictable
    assert _codecs(repo, "wide", "embeddings.weight") == {CAST}
    spec = next(s for s in read_header(folder / "model.safetensors").tensors if s.name == "embeddings.weight")
    assert tensor_content_id(folder / "model.safetensors", spec, 65536) == wm.content_id


def test_a_finetune_of_a_cast_is_cut_like_it_and_stored_as_deltas(repo: Any, tmp_path: Path) -> None:
    base = _model("F32")
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    cast = _cast_model(base, "F32", "BF16")
    write_model_folder(tmp_path / "cast", cast)
    repo.import_folder(tmp_path / "cast", model="cast", parent="base", message="c")
    ft = dict(cast)
    w = cast["embeddings.weight"].astype(np.float32)
    ft["embeddings.weight"] = (w + np.float32(0.01) * np.sign(w)).astype(ml_dtypes.bfloat16)
    folder = write_model_folder(tmp_path / "ft", ft)
    repo.import_folder(tmp_path / "ft", model="ft", parent="cast", message="f")
    cm, fm = repo.tensors("cast")["embeddings.weight"], repo.tensors("ft")["embeddings.weight"]
    assert fm.chunk_size == cm.chunk_size
    assert [repo.store.header(c).base for c in fm.chunks] == list(cm.chunks)
    assert _codecs(repo, "ft", "embeddings.weight") == {codecs.SUB_PLANES_ZSTD}
    assert repo.tensors("ft")["layer.0.dense.weight"] == repo.tensors("cast")["layer.0.dense.weight"]
    repo.export("ft", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)


def test_a_chain_of_casts_respects_the_depth_cap(repo: Any, tmp_path: Path) -> None:
    cur = _model("F32")
    dtype = "F32"
    write_model_folder(tmp_path / "v0", cur)
    repo.import_folder(tmp_path / "v0", model="m", message="v0")
    folders = {}
    for i in range(1, MAX_CHAIN_DEPTH + 3):
        nxt = "BF16" if dtype == "F32" else "F32"
        cur, dtype = _cast_model(cur, dtype, nxt), nxt
        # a cast except one element per chunk, so that no version repeats an earlier one
        w = cur["embeddings.weight"].copy()
        w.reshape(-1)[::4096] = w.dtype.type(i)
        cur["embeddings.weight"] = w
        folders[i] = write_model_folder(tmp_path / f"v{i}", cur)
        repo.import_folder(folders[i], model="m", message=f"v{i}")
    depths = [repo.store.header(c).depth for c in repo.tensors("m")["embeddings.weight"].chunks]
    all_depths = [repo.store.header(o).depth for o in repo.store.iter_oids()]
    assert max(all_depths) == MAX_CHAIN_DEPTH
    assert max(depths) < MAX_CHAIN_DEPTH  # a new chain started at the cap
    for i in (MAX_CHAIN_DEPTH, MAX_CHAIN_DEPTH + 1, MAX_CHAIN_DEPTH + 2):
        ref = f"m~{MAX_CHAIN_DEPTH + 2 - i}"
        repo.export(ref, tmp_path / f"out{i}")
        assert sha256_tree(tmp_path / f"out{i}") == sha256_tree(folders[i])
    assert repo.fsck().findings == []


def test_casts_travel_to_a_remote_and_back(repo: Any, tmp_path: Path) -> None:
    from mgit.remote.clone import clone
    from mgit.remote.push import push

    base = _model("F32")
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    folder = write_model_folder(tmp_path / "cast", _cast_model(base, "F32", "F16"))
    repo.import_folder(tmp_path / "cast", model="cast", parent="base", message="c")
    push(repo, str(tmp_path / "remote"), ["cast"])
    res = clone(str(tmp_path / "remote"), tmp_path / "clone", model="cast")
    from mgit.repo import Repository

    other = Repository.open(tmp_path / "clone")
    other.export("cast", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)
    assert other.fsck().findings == []
    assert res is not None


def test_a_lossy_commit_stores_a_cast_exactly(repo: Any, tmp_path: Path) -> None:
    base = _model("F32")
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    folder = write_model_folder(tmp_path / "cast", _cast_model(base, "F32", "BF16"))
    repo.import_folder(tmp_path / "cast", model="cast", parent="base", message="c", eps=1e-3)
    assert _codecs(repo, "cast", "embeddings.weight") == {CAST}
    repo.export("cast", tmp_path / "out")
    assert sha256_tree(tmp_path / "out") == sha256_tree(folder)


def test_the_cast_policy() -> None:
    from mgit.codecs import choose as policy

    def never() -> int:
        raise AssertionError("not asked")

    base = policy.Base("chunk", 8000, 2)
    assert policy.choose_cast(4000, base_bytes=8000, stored=lambda: True, base=never,
                              cast_size=never, standalone_size=never).action == policy.REUSE
    for b in (None, policy.Base("chunk", 7996, 0), policy.Base("tree", 8000, 0),
              policy.Base("chunk", 8000, MAX_CHAIN_DEPTH)):
        got = policy.choose_cast(4000, base_bytes=8000, base=lambda b=b: b, cast_size=never,
                                 standalone_size=never)
        assert got == policy.Choice(policy.STANDALONE)
    assert policy.choose_cast(4000, base_bytes=8000, base=lambda: base, cast_size=lambda: 100,
                              standalone_size=never) == policy.Choice(policy.CAST, 3)
    assert policy.choose_cast(4000, base_bytes=8000, base=lambda: base, cast_size=lambda: 3000,
                              standalone_size=lambda: 2999).action == policy.STANDALONE
    assert policy.choose_cast(4000, base_bytes=8000, base=lambda: base, cast_size=lambda: 3000,
                              standalone_size=lambda: 3001) == policy.Choice(policy.CAST, 3)
