"""Decoding straight into the caller's buffer: ``codecs.decode(out=...)``,
``DiskStore.get_into`` and the tensor reads built on them (decoded on the decode threads)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_tensor, write_safetensors

from mgit import codecs, materialize
from mgit.errors import CodecError, CorruptObjectError
from mgit.objects.store import DiskStore
from mgit.repo import Repository


def _weights(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)


def _encodings() -> list[tuple[str, codecs.Encoded, int, bytes | None]]:
    """(label, encoded, content size, base) for every codec the store writes."""
    w = _weights(4096, 0)
    child = w + _weights(4096, 1) * 1e-3
    data, base = child.tobytes(), w.tobytes()
    odd = bytes(range(256)) * 12  # itemsize 3: no word kernel, the byte-wise delta path
    odd_child = bytes((b + (i % 5 == 0)) % 256 for i, b in enumerate(odd))
    noise = np.random.default_rng(2).bytes(4096)
    cases = [
        ("raw", codecs.encode_standalone(noise, itemsize=1, is_float=False), 4096, None),
        ("zstd", codecs.encode_standalone(b"abc" * 4000, itemsize=1, is_float=False), 12000, None),
        ("planes", codecs.encode_standalone(data, itemsize=4, is_float=True), len(data), None),
        ("sub", codecs.encode_delta(data, base, itemsize=4, is_float=True), len(data), base),
        ("xor", codecs.encode_delta(data, base, itemsize=4, is_float=True, transform="xor"),
         len(data), base),
        ("sub itemsize 3", codecs.encode_delta(odd_child, odd, itemsize=3, is_float=False),
         len(odd), odd),
        ("lossy", codecs.encode_lossy(data, base, dtype="F32", eps=1e-3), len(data), base),
    ]
    expected = {"raw": codecs.RAW, "zstd": codecs.ZSTD, "planes": codecs.PLANES_ZSTD,
                "sub": codecs.SUB_PLANES_ZSTD, "xor": codecs.XOR_PLANES_ZSTD,
                "lossy": codecs.QUANT_PLANES_ZSTD}
    for label, enc, _, _ in cases:
        assert enc is not None and enc.codec == expected.get(label, enc.codec), label
    return cases  # type: ignore[return-value]


@pytest.mark.parametrize("case", _encodings(), ids=lambda c: c[0])
def test_decode_into_gives_what_decode_gives(case: tuple[str, codecs.Encoded, int, bytes | None]) -> None:
    label, enc, size, base = case
    params = json.loads(json.dumps(enc.params))
    want = codecs.decode(enc.codec, enc.payload, params, size=size, base=base)
    for out in (bytearray(size), np.empty(size, np.uint8), memoryview(bytearray(size + 8))[4:-4]):
        got = codecs.decode(enc.codec, enc.payload, params, size=size, base=base, out=out)
        assert got is out, label
        assert bytes(memoryview(out)) == bytes(want), label


def test_decode_into_a_buffer_of_the_wrong_size_is_refused() -> None:
    data = _weights(1024, 3).tobytes()
    enc = codecs.encode_standalone(data, itemsize=4, is_float=True)
    for n in (len(data) - 4, len(data) + 4):
        with pytest.raises(CodecError, match="output buffer"):
            codecs.decode(enc.codec, enc.payload, enc.params, size=len(data), out=bytearray(n))


def test_a_corrupt_payload_decoded_into_a_buffer_raises() -> None:
    data = _weights(1024, 4).tobytes()
    enc = codecs.encode_standalone(data, itemsize=4, is_float=True)
    bad = bytearray(enc.payload)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(CodecError):
        codecs.decode(enc.codec, bytes(bad), enc.params, size=len(data), out=bytearray(len(data)))


def test_get_into_matches_get_for_standalone_and_delta_chains(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "objects")
    w0 = _weights(16384, 5)
    w1 = w0 + _weights(16384, 6) * 1e-3
    w2 = w1 + _weights(16384, 7) * 1e-3
    a = store.put_chunk(w0.tobytes(), itemsize=4, is_float=True).oid
    b = store.put_chunk(w1.tobytes(), itemsize=4, is_float=True, base=a).oid
    c = store.put_chunk(w2.tobytes(), itemsize=4, is_float=True, base=b).oid
    assert store.header(c).base == b and store.header(b).base == a  # a real chain
    for oid in (a, b, c):
        out = np.empty(w0.nbytes, np.uint8)
        store.get_into(oid, out, kind="chunk")
        assert out.tobytes() == store.get(oid)


def test_get_into_refuses_wrong_sizes_kinds_and_damage(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "objects")
    data = _weights(4096, 8).tobytes()
    oid = store.put_chunk(data, itemsize=4, is_float=True).oid
    with pytest.raises(CorruptObjectError, match="were expected"):
        store.get_into(oid, bytearray(len(data) - 4))
    meta = store.put("commit", b'{"x": 1}')
    with pytest.raises(CorruptObjectError, match="expected a chunk"):
        store.get_into(meta, bytearray(8), kind="chunk")
    path = store.path_for(oid)
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObjectError):
        store.get_into(oid, bytearray(len(data)))


def _big_tensor_repo(tmp_path: Path) -> tuple[Repository, dict[str, np.ndarray]]:
    tensors = {
        "w": make_tensor("BF16", (1024, 512), 1),  # 1 MiB: 16 chunks of 64 KiB
        "b": make_tensor("F32", (512,), 2),
        "e": make_tensor("F32", (0, 4), 3),
    }
    write_safetensors(tmp_path / "src" / "model.safetensors", tensors)
    repo = Repository.init(tmp_path / "repo", model="m", chunk_size=65536)
    repo.import_folder(tmp_path / "src", model="m", message="v1")
    return repo, tensors


@pytest.mark.parametrize("threads", ["1", "2"])
def test_tensors_of_many_chunks_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: str
) -> None:
    import torch

    monkeypatch.setenv("MGIT_THREADS", threads)
    repo, tensors = _big_tensor_repo(tmp_path)
    for name, want in tensors.items():
        got = repo.load_tensor("m", name)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        t = repo.load_tensor("m", name, torch=True)
        assert tuple(t.shape) == want.shape
        assert t.contiguous().view(torch.uint8).numpy().tobytes() == want.tobytes()


def _big_tensor_on_two_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Repository, dict[str, np.ndarray], Any]:
    """The repository of :func:`_big_tensor_repo`, two decode threads, and the manifest of
    its 16-chunk tensor."""
    monkeypatch.setenv("MGIT_THREADS", "2")
    repo, tensors = _big_tensor_repo(tmp_path)
    tree = repo.commit_tree(repo.resolve("m"))
    (m,) = [m for _, m in tree.files["model.safetensors"].tensors if m.shape == (1024, 512)]
    assert len(m.chunks) == 16
    return repo, tensors, m


def test_a_damaged_chunk_in_the_middle_raises_and_the_threads_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, tensors, m = _big_tensor_on_two_threads(tmp_path, monkeypatch)
    victim = m.chunks[len(m.chunks) // 2]
    path = repo.store.path_for(victim)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0x40
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObjectError):
        materialize.tensor_bytes(repo.store, m)
    with pytest.raises(CorruptObjectError):
        repo.load_tensor("m", "w")
    assert repo.load_tensor("m", "b").tobytes() == tensors["b"].tobytes()  # still usable


def test_a_read_from_inside_a_decode_thread_does_not_wait_on_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, tensors, m = _big_tensor_on_two_threads(tmp_path, monkeypatch)
    pool = materialize._decode_pool()
    assert pool is not None
    got: list[bytes] = []

    def nested() -> None:
        jobs = [pool.submit(lambda: (materialize._decoding.__setattr__("worker", True),
                                     bytes(materialize.tensor_bytes(repo.store, m)))[1])
                for _ in range(4)]
        got.extend(j.result() for j in jobs)

    t = threading.Thread(target=nested, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "a decode thread waited on jobs queued behind it"
    assert got == [tensors["w"].tobytes()] * 4


def test_prefetch_is_a_hint_that_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    store = DiskStore(tmp_path / "objects")
    oid = store.put_chunk(_weights(4096, 9).tobytes(), itemsize=4, is_float=True).oid
    advised: list[int] = []
    real = os.posix_fadvise

    def spy(fd: int, off: int, n: int, advice: int) -> None:
        advised.append(advice)
        real(fd, off, n, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    store.loose.prefetch([oid, "0" * 64])  # a missing object is skipped
    assert advised == [os.POSIX_FADV_WILLNEED]
    monkeypatch.delattr(os, "posix_fadvise")
    store.loose.prefetch([oid])  # a platform without it: nothing happens
    out = bytearray(4096 * 4)
    store.get_into(oid, out)
    assert bytes(out) == store.get(oid)
