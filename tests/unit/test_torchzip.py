"""torch zip checkpoints: layouts read from real ``torch.save`` output without executing anything;
regions tile the file, storages and strided views rebuild torch's own bytes and values, and
malicious, truncated, compressed or legacy files are told apart."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mgit.errors import InvalidModelFileError  # noqa: E402
from mgit.formats.dtypes import numpy_dtype  # noqa: E402
from mgit.formats.torchzip import (  # noqa: E402
    CompressedStorageError,
    TorchZipLayout,
    TorchZipUnsupportedError,
    is_legacy_torch_pickle,
    is_torch_zip,
    read_layout,
)

#: safetensors name -> torch dtype, for every dtype of the table torch can save.
DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2, "F8_E8M0": torch.float8_e8m0fnu, "C64": torch.complex64,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}  # fmt: skip


def random_tensor(dtype: Any, shape: tuple[int, ...], seed: int = 0) -> Any:
    """Random bits of any dtype (NaNs included for floats: compared bit for bit)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.empty(0, dtype=dtype).element_size()
    n = int(np.prod(shape)) * size
    raw = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def save(tmp_path: Path, obj: Any, name: str = "model.pt", **kw: Any) -> Path:
    path = tmp_path / name
    torch.save(obj, path, **kw)
    return path


def storage_bytes(t: Any) -> bytes:
    u = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())
    return bytes(u.numpy().tobytes())


def tensor_bytes(t: Any) -> bytes:
    t = t.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
    return bytes(t.view(torch.uint8).numpy().tobytes()) if t.numel() else b""


def rebuild(path: Path, layout: TorchZipLayout, name: str) -> np.ndarray:
    """The tensor ``name`` rebuilt with numpy from its storage's bytes, offset, shape, stride."""
    (t,) = [t for t in layout.tensors if t.name == name]
    st = layout.storage(t.storage_key)
    dt = numpy_dtype(st.dtype)
    with open(path, "rb") as f:
        f.seek(st.start)
        arr = np.frombuffer(f.read(st.nbytes), dtype=dt)
    if 0 in t.shape:
        return np.empty(t.shape, dt)
    bits = arr.view(f"<u{dt.itemsize}")  # as_strided cannot carry the ml_dtypes types
    view = np.lib.stride_tricks.as_strided(
        bits[t.storage_offset :], shape=t.shape, strides=[s * dt.itemsize for s in t.stride]
    )
    out = np.array(view).view(dt)
    if t.conj:
        out = np.conj(out)
    return -out if t.neg else out


def check_all(path: Path, obj: dict[str, Any], layout: TorchZipLayout | None = None) -> None:
    """Every named torch tensor rebuilds bit for bit, its storage is torch's storage."""
    layout = layout or read_layout(path)
    data = path.read_bytes()
    assert b"".join(data[r.start : r.end] for r in layout.regions) == data
    assert [t.name for t in layout.tensors] == list(obj)
    for t in layout.tensors:
        ref = obj[t.name]
        assert t.shape == tuple(ref.shape) and t.stride == tuple(ref.stride())
        assert t.storage_offset == ref.storage_offset()
        st = layout.storage(t.storage_key)
        assert data[st.start : st.end] == storage_bytes(ref)
        assert rebuild(path, layout, t.name).tobytes() == tensor_bytes(ref)


# -- real torch.save output ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_dtype(tmp_path: Path, name: str) -> None:
    obj = {"m": random_tensor(DTYPES[name], (3, 5), 1), "s": random_tensor(DTYPES[name], (), 2)}
    obj["t"] = obj["m"].t()
    path = save(tmp_path, obj)
    layout = read_layout(path)
    assert {s.dtype for s in layout.storages} == {name}
    assert {t.dtype for t in layout.tensors} == {name}
    assert [s.numel for s in layout.storages] == [15, 1]
    check_all(path, obj, layout)


def test_values_match_torch_numpy(tmp_path: Path) -> None:
    obj = {"w": torch.randn(4, 6)[:, 1::2], "i": torch.arange(10, dtype=torch.int64)[3:7]}
    path = save(tmp_path, obj)
    layout = read_layout(path)
    for name, ref in obj.items():
        np.testing.assert_array_equal(rebuild(path, layout, name), ref.numpy())


def test_regions_tile_the_file(tmp_path: Path) -> None:
    path = save(tmp_path, {f"t{i}": torch.randn(i + 1, 3) for i in range(5)})
    layout = read_layout(path)
    assert layout.regions[0].start == 0 and layout.regions[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(layout.regions, layout.regions[1:]))
    storage_regions = [r for r in layout.regions if r.kind == "storage"]
    assert [r.key for r in storage_regions] == [s.key for s in layout.storages]
    assert all(r.end > r.start for r in layout.regions if r.kind == "raw")
    # torch 2.13 pads local headers so that each storage starts on a 64-byte boundary
    assert all(s.start % 64 == 0 for s in layout.storages)
    assert layout.archive == "model" and layout.byteorder == "little"


def bert_like() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(30, 8, generator=g)
    sd: dict[str, Any] = {"bert.embeddings.word_embeddings.weight": emb}
    for i in range(2):
        for part in ("query", "key", "value"):
            p = f"bert.encoder.layer.{i}.attention.self.{part}"
            sd[f"{p}.weight"] = torch.randn(8, 8, generator=g)
            sd[f"{p}.bias"] = torch.randn(8, generator=g)
        sd[f"bert.encoder.layer.{i}.output.LayerNorm.weight"] = torch.ones(8, dtype=torch.float16)
    sd["bert.embeddings.position_ids"] = torch.arange(16).expand(2, -1)  # stride (0, 1)
    sd["cls.predictions.decoder.weight"] = emb  # tied: the same tensor object twice
    return sd


def test_bert_like_state_dict(tmp_path: Path) -> None:
    sd = bert_like()
    path = save(tmp_path, sd, name="pytorch_model.bin")
    layout = read_layout(path)
    check_all(path, sd, layout)
    assert layout.archive == "pytorch_model"
    by = {t.name: t for t in layout.tensors}
    emb, dec = "bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"
    assert by[dec] == replace(by[emb], name=dec)  # same storage, offset, shape, stride
    assert by["bert.embeddings.position_ids"].stride == (0, 1)
    assert len(layout.storages) == len(sd) - 1


def test_transformers_bert(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    for cls in (transformers.BertModel, transformers.BertForMaskedLM):
        sd = cls(config).state_dict()
        path = save(tmp_path, sd, name=f"{cls.__name__}.bin")
        layout = read_layout(path)
        check_all(path, dict(sd), layout)
        ptrs = {sd[t.name].untyped_storage().data_ptr(): t.storage_key for t in layout.tensors}
        assert len(ptrs) == len(layout.storages) == len(set(ptrs.values()))
    by = {t.name: t for t in layout.tensors}
    tied = ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight")
    assert by[tied[0]].storage_key == by[tied[1]].storage_key  # tied by the model


def test_nested_dicts_lists_and_values(tmp_path: Path) -> None:
    lin = torch.nn.Linear(3, 2)
    obj = {
        "model": lin.state_dict(),
        "epoch": 3,
        "optimizer": {"state": {0: {"exp_avg": torch.zeros(2, 3)}}, "param_groups": [{"lr": 0.1}]},
        "history": [torch.ones(2), (torch.zeros(1), "x")],
        "meta": {"name": "run", "size": torch.Size([2, 3]), "dev": torch.device("cpu"),
                 "dtype": torch.float16, "tags": {1, 2}, "blob": b"xy", "c": 1 + 2j},
        "params": lin.state_dict(keep_vars=True),
    }  # fmt: skip
    path = save(tmp_path, obj)
    layout = read_layout(path)
    flat = {
        "model.weight": obj["model"]["weight"], "model.bias": obj["model"]["bias"],
        "optimizer.state.0.exp_avg": obj["optimizer"]["state"][0]["exp_avg"],
        "history.0": obj["history"][0], "history.1.0": obj["history"][1][0],
        "params.weight": lin.weight, "params.bias": lin.bias,
    }  # fmt: skip
    check_all(path, flat, layout)
    by = {t.name: t.storage_key for t in layout.tensors}
    assert by["model.weight"] == by["params.weight"]  # state_dict() views the parameter


def test_tied_weights_two_objects_one_storage(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    obj = {"encoder.weight": w, "decoder.weight": w.detach(), "other": torch.randn(4)}
    path = save(tmp_path, obj)
    layout = read_layout(path)
    check_all(path, obj, layout)
    assert len(layout.storages) == 2
    assert layout.tensors[0].storage_key == layout.tensors[1].storage_key


def test_views_offsets_and_strides(tmp_path: Path) -> None:
    base = torch.randn(6, 8)
    obj = {
        "base": base, "t": base.t(), "rows": base[2:5], "cols": base[:, 3:7],
        "step": base[::2, 1::3], "elem": base[4, 5], "exp": torch.randn(5).expand(3, 5),
        "perm": torch.randn(2, 3, 4).permute(2, 0, 1),
    }  # fmt: skip
    path = save(tmp_path, obj)
    layout = read_layout(path)
    check_all(path, obj, layout)
    by = {t.name: t for t in layout.tensors}
    assert by["t"].stride == (1, 8) and by["rows"].storage_offset == 16
    assert by["elem"].shape == () and by["elem"].storage_offset == 37
    assert by["exp"].stride == (0, 1)


def test_empty_and_scalars(tmp_path: Path) -> None:
    obj = {
        "e": torch.empty(0), "e2": torch.empty(0, 5, dtype=torch.float16), "s": torch.tensor(1.5),
        "i": torch.tensor(7), "b": torch.tensor(True), "tail": torch.randn(4)[4:],
    }  # fmt: skip
    path = save(tmp_path, obj)
    layout = read_layout(path)
    check_all(path, obj, layout)
    by = {t.name: t for t in layout.tensors}
    assert layout.storage(by["e"].storage_key).nbytes == 0
    assert by["tail"].shape == (0,) and by["tail"].storage_offset == 4


def test_conj_and_neg_bits(tmp_path: Path) -> None:
    c = torch.randn(3, dtype=torch.complex64)
    path = save(tmp_path, {"conj": c.conj()})
    layout = read_layout(path)
    assert layout.tensors[0].conj and not layout.tensors[0].neg
    check_all(path, {"conj": c.conj()}, layout)
    path = save(tmp_path, {"neg": c.conj().imag}, name="neg.pt")
    layout = read_layout(path)
    assert layout.tensors[0].neg and layout.tensors[0].dtype == "F32"
    check_all(path, {"neg": c.conj().imag}, layout)


def test_stream_archive_name_protocol_4_and_attributes(tmp_path: Path) -> None:
    t = torch.randn(3)
    t.note = "hi"  # pickled through torch._tensor._rebuild_from_type_v2
    buf = io.BytesIO()
    torch.save({"a": t, "b": torch.ones(2)}, buf, pickle_protocol=4)  # FRAME, STACK_GLOBAL ...
    path = tmp_path / "stream.pt"
    path.write_bytes(buf.getvalue())
    layout = read_layout(path)
    assert layout.archive == "archive"
    check_all(path, {"a": t, "b": torch.ones(2)}, layout)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert "archive/.format_version" in names and "archive/.data/serialization_id" in names


def test_root_tensor_and_bare_storage(tmp_path: Path) -> None:
    t = torch.randn(2, 3)
    layout = read_layout(save(tmp_path, t))
    assert [x.name for x in layout.tensors] == [""]
    layout = read_layout(save(tmp_path, {"s": t.untyped_storage()}, name="s.pt"))
    assert layout.tensors == () and [(s.dtype, s.numel) for s in layout.storages] == [("U8", 24)]


# -- unsafe, malformed and unrepresentable files ---------------------------------------------------


class _System:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> Any:
        return (os.system, (self.cmd,))


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> Any:
        return (exec, (self.code,))


class _Custom:
    def __init__(self) -> None:
        self.x = 1


def _nested(depth: int) -> Any:
    out: Any = []
    for _ in range(depth):
        out = [out]
    return out


def _doubling(n: int) -> Any:
    out: Any = ["x"]
    for _ in range(n):
        out = [out, out]  # pickled once each (memo), 2**n paths
    return out


@pytest.mark.parametrize("kind", ["system", "exec", "custom"])
def test_malicious_pickle_rejected_and_not_run(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    payload = {
        "system": lambda: _System(f"touch {marker}"),
        "exec": lambda: _Exec(f"open({str(marker)!r}, 'w').close()"),
        "custom": _Custom,
    }[kind]()
    path = save(tmp_path, {"w": torch.ones(2), "evil": payload})
    assert is_torch_zip(path)
    with pytest.raises(InvalidModelFileError, match="not allowed"):
        read_layout(path)
    assert not marker.exists()
    if kind != "custom":  # the payload is live: an unrestricted load runs it
        torch.load(path, weights_only=False)
        assert marker.exists()


class _FakeStorage:
    def __init__(self, key: str, numel: int, cls: Any) -> None:
        self.key, self.numel, self.cls = key, numel, cls


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, offset: int, shape: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:  # fmt: skip
        self.args = (storage, offset, shape, stride, False, OrderedDict())

    def __reduce__(self) -> Any:
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def crafted(path: Path, obj: Any, members: dict[str, bytes],
            compress: int = zipfile.ZIP_STORED, byteorder: str = "little") -> Path:  # fmt: skip
    """A checkpoint written by hand: ``obj`` pickled as torch does, storages from ``members``."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return raw_zip(path, buf.getvalue(), members, compress, byteorder)


def raw_zip(path: Path, pkl: bytes, members: dict[str, bytes] | None = None,
            compress: int = zipfile.ZIP_STORED, byteorder: str = "little") -> Path:  # fmt: skip
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", byteorder)
        zf.writestr("archive/version", "3\n")  # torch.load requires it
        for key, data in (members or {}).items():
            zf.writestr(f"archive/data/{key}", data, compress_type=compress)
    return path


def f32(n: int) -> bytes:
    return np.arange(n, dtype="<f4").tobytes()


def test_crafted_checkpoint_loads_like_torch(tmp_path: Path) -> None:
    s = _FakeStorage("0", 12, torch.FloatStorage)
    path = crafted(tmp_path / "ok.pt", {"a": _FakeTensor(s, 2, (2, 3), (1, 2))}, {"0": f32(12)})
    ref = torch.load(path, weights_only=True)
    layout = read_layout(path)
    check_all(path, ref, layout)


@pytest.mark.parametrize(
    ("offset", "shape", "stride", "ok"),
    [(0, (3, 4), (4, 1), True), (1, (3, 4), (4, 1), False), (9, (3,), (1,), True),
     (10, (3,), (1,), False), (0, (2, 7), (6, 1), False), (50, (0, 3), (3, 1), True)],
)  # fmt: skip
def test_view_must_lie_within_storage(
    tmp_path: Path, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], ok: bool
) -> None:
    s = _FakeStorage("0", 12, torch.FloatStorage)
    path = crafted(tmp_path / "v.pt", {"a": _FakeTensor(s, offset, shape, stride)}, {"0": f32(12)})
    if ok:
        assert read_layout(path).tensors[0].shape == shape
    else:
        with pytest.raises(InvalidModelFileError, match="runs past its storage"):
            read_layout(path)


def test_storage_member_missing_or_wrong_size(tmp_path: Path) -> None:
    s = _FakeStorage("0", 12, torch.FloatStorage)
    obj = {"a": _FakeTensor(s, 0, (12,), (1,))}
    with pytest.raises(InvalidModelFileError, match="missing"):
        read_layout(crafted(tmp_path / "m.pt", obj, {"1": f32(12)}))
    with pytest.raises(InvalidModelFileError, match="the pickle says 48"):
        read_layout(crafted(tmp_path / "s.pt", obj, {"0": f32(11)}))


def test_compressed_storage_is_not_representable(tmp_path: Path) -> None:
    src = save(tmp_path, {"a": torch.zeros(1000)})
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            method = zipfile.ZIP_DEFLATED if "/data/" in info.filename else zipfile.ZIP_STORED
            zout.writestr(info.filename, zin.read(info), compress_type=method)
    assert torch.load(path)["a"].shape == (1000,)  # valid for torch
    with pytest.raises(CompressedStorageError, match="compressed"):
        read_layout(path)
    assert issubclass(CompressedStorageError, TorchZipUnsupportedError)
    assert not issubclass(CompressedStorageError, InvalidModelFileError)


@pytest.mark.parametrize("cut", [1, 100, 0.5, 40])
def test_truncated_file(tmp_path: Path, cut: float) -> None:
    data = save(tmp_path, {"a": torch.randn(64), "b": torch.randn(8)}).read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (len(data) - cut if cut > 1 else 1)
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:n] if cut != 40 else data[:40])
    with pytest.raises(InvalidModelFileError):
        read_layout(path)


def test_central_directory_claims_past_the_end(tmp_path: Path) -> None:
    path = save(tmp_path, {"a": torch.randn(16)})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model/data/0")
    at = data.rindex(b"model/data/0") - 46  # this member's central directory entry
    assert data[at : at + 4] == b"PK\x01\x02" and info.compress_size == 64
    struct.pack_into("<II", data, at + 20, 1 << 20, 1 << 20)  # compressed and real size
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError, match="past the end"):
        read_layout(path)


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(lambda: {"s": torch.eye(3).to_sparse()}, id="sparse"),
        pytest.param(lambda: {"c": torch.zeros(2, dtype=torch.complex128)}, id="complex128"),
        pytest.param(lambda: {"q": torch.zeros(2, dtype=torch.float8_e4m3fnuz)}, id="fnuz"),
        pytest.param(lambda: {(1, 2): torch.zeros(2)}, id="tuple-key"),
        pytest.param(lambda: {"a.b": torch.zeros(2), "a": {"b": torch.ones(2)}}, id="dup-name"),
    ],
)
def test_unrepresentable(tmp_path: Path, obj: Any) -> None:
    path = save(tmp_path, obj())
    with pytest.raises(TorchZipUnsupportedError) as info:
        read_layout(path)
    assert not isinstance(info.value, CompressedStorageError)


@pytest.mark.parametrize(
    ("pkl", "match"),
    [
        pytest.param(b"(S'touch x'\nios\nsystem\n.", "INST is not allowed", id="INST"),
        pytest.param(b"\x80\x02(cos\nsystem\nX\x01\x00\x00\x00xo.", "os.system", id="OBJ"),
        pytest.param(pickle.dumps(_System("touch x"), protocol=4), "system is not allowed",
                     id="STACK_GLOBAL"),
        pytest.param(b"\x80\x02X\x01\x00\x00\x00a)R.", "not an allowed global", id="REDUCE-str"),
        pytest.param(b"\x80\x02X\x01\x00\x00\x00aQ.", "not a storage", id="PERSID-str"),
        pytest.param(b"\x80\x02\x82\x01.", "EXT1 is not allowed", id="EXT1"),
        pytest.param(b"\x80\x02\xff", "malformed", id="garbage"),
        pytest.param(b"\x80\x02K\x01", "malformed|no STOP", id="no-STOP"),
        pytest.param(b"\x80\x02K\x01K\x02.", "not one object", id="two-objects"),
        pytest.param(b"\x80\x02t.", "malformed", id="TUPLE-without-MARK"),
        pytest.param(b"\x80\x02}s.", "short stack", id="SETITEM-short"),
        pytest.param(b"\x80\x02]K\x01K\x02s.", "SETITEM on a list", id="SETITEM-list"),
        pytest.param(pickle.dumps(_nested(300), protocol=2), "too deep", id="deep"),
        pytest.param(pickle.dumps(_doubling(60), protocol=2), "too large", id="exponential"),
    ],
)  # fmt: skip
def test_bad_pickles_rejected(tmp_path: Path, pkl: bytes, match: str) -> None:
    path = raw_zip(tmp_path / "bad.pt", pkl)
    with pytest.raises(InvalidModelFileError, match=match):
        read_layout(path)


def test_duplicate_member_and_big_endian(tmp_path: Path) -> None:
    s = _FakeStorage("0", 4, torch.FloatStorage)
    obj = {"a": _FakeTensor(s, 0, (4,), (1,))}
    path = crafted(tmp_path / "dup.pt", obj, {"0": f32(4)})
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("archive/data/0", f32(4))
    with pytest.raises(InvalidModelFileError, match="duplicate"):
        read_layout(path)
    with pytest.raises(TorchZipUnsupportedError, match="byteorder"):
        read_layout(crafted(tmp_path / "big.pt", obj, {"0": f32(4)}, byteorder="big"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_not_representable(tmp_path: Path) -> None:
    path = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    assert is_torch_zip(path)
    with pytest.raises(TorchZipUnsupportedError, match="TorchScript"):
        read_layout(path)


# -- sniffing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4])
def test_legacy_pickle_detected(tmp_path: Path, protocol: int) -> None:
    path = save(tmp_path, {"a": torch.ones(3)}, _use_new_zipfile_serialization=False,
                pickle_protocol=protocol)  # fmt: skip
    assert is_legacy_torch_pickle(path) and not is_torch_zip(path)
    with pytest.raises(InvalidModelFileError):
        read_layout(path)


def test_sniffers_on_other_files(tmp_path: Path) -> None:
    zpath = save(tmp_path, {"a": torch.ones(3)})
    assert is_torch_zip(zpath) and not is_legacy_torch_pickle(zpath)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("x/data.txt", "hi")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for p in (plain, other, empty, tmp_path / "missing"):
        assert not is_torch_zip(p) and not is_legacy_torch_pickle(p)
