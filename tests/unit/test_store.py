"""The object store: write-once, read-only, verified on every read, bounded delta chains."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from mgit.errors import CorruptObjectError, ObjectNotFoundError
from mgit.objects.ids import hash_object
from mgit.objects.store import MAGIC, MAX_CHAIN_DEPTH, DiskStore


@pytest.fixture
def store(tmp_path: Path) -> DiskStore:
    return DiskStore(tmp_path / "objects")


def rand_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def tweak(data: bytes, seed: int, k: int = 4) -> bytes:
    """``data`` with ``k`` bytes changed (a "finetune" of a chunk)."""
    b = bytearray(data)
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(b), size=k, replace=False):
        b[i] ^= 0x5A
    return bytes(b)


def files_in(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def flip(path: Path, pos: int, mask: int = 0x01) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


def split_raw(raw: bytes) -> tuple[bytes, dict, bytes]:
    (mlen,) = struct.unpack_from("<I", raw, 5)
    return raw[:5], json.loads(raw[9 : 9 + mlen]), raw[9 + mlen :]


def join_raw(prefix: bytes, meta: dict, payload: bytes) -> bytes:
    mb = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    return prefix + struct.pack("<I", len(mb)) + mb + payload


# -- put / get ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chunk", "tensor", "tree", "commit"])
def test_put_get_round_trip(store: DiskStore, kind: str) -> None:
    content = b'{"x":1}' * 100
    oid = store.put(kind, content)
    assert oid == hash_object(kind, content)
    assert oid in store
    assert store.get(oid) == content
    assert store.get(oid, kind=kind) == content
    assert store.kind_of(oid) == kind
    assert DiskStore(store.root).get(oid) == content  # fresh instance: from disk, not a cache


def test_put_empty_object(store: DiskStore) -> None:
    oid = store.put("chunk", b"")
    assert DiskStore(store.root).get(oid) == b""


def test_layout_is_sharded_by_first_two_hex(store: DiskStore) -> None:
    oid = store.put("chunk", b"hello")
    assert store.path_for(oid) == store.root / oid[:2] / oid[2:]
    assert store.path_for(oid).read_bytes().startswith(MAGIC)
    assert set(store.iter_oids()) == {oid}


def test_put_is_write_once(store: DiskStore) -> None:
    oid = store.put("chunk", b"abc" * 1000)
    path = store.path_for(oid)
    before = (path.stat().st_ino, path.read_bytes(), files_in(store.root))
    os.utime(path, (1_000_000, 1_000_000))  # an old object, as gc would see it
    assert store.put("chunk", b"abc" * 1000) == oid
    assert DiskStore(store.root).put("chunk", b"abc" * 1000) == oid
    put = store.put_chunk(b"abc" * 1000, itemsize=1, is_float=False)
    assert put.oid == oid and put.new is False and put.stored_bytes == 0
    # the same file, untouched in content, but its mtime refreshed: reusing an object protects
    # it from a concurrent gc's age guard
    assert (path.stat().st_ino, path.read_bytes(), files_in(store.root)) == before
    assert path.stat().st_mtime > 1_000_000 + 3600


def test_object_files_are_read_only_and_no_temp_left(store: DiskStore) -> None:
    oid = store.put("chunk", rand_bytes(5000, 1))
    mode = stat.S_IMODE(store.path_for(oid).stat().st_mode)
    assert mode & 0o222 == 0
    assert not [p for p in files_in(store.root) if p.name.endswith(".tmp")]


def test_missing_object(store: DiskStore) -> None:
    oid = hash_object("chunk", b"never stored")
    assert oid not in store
    with pytest.raises(ObjectNotFoundError) as ei:
        store.get(oid)
    assert ei.value.oid == oid
    assert isinstance(ei.value, KeyError)
    with pytest.raises(ObjectNotFoundError):
        store.read_raw(oid)


@pytest.mark.parametrize("bad", ["", "xyz", "A" * 64, "../" + "a" * 61])
def test_not_an_oid_is_not_found(store: DiskStore, bad: str) -> None:
    assert bad not in store
    with pytest.raises(ObjectNotFoundError):
        store.get(bad)


# -- corruption -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["magic", "kind", "meta", "payload_start", "payload_end"])
def test_flipped_byte_is_detected(store: DiskStore, where: str) -> None:
    content = rand_bytes(3000, 2)
    oid = store.put("chunk", content)
    path = store.path_for(oid)
    raw = path.read_bytes()
    (mlen,) = struct.unpack_from("<I", raw, 5)
    pos = {
        "magic": 1,
        "kind": 4,
        "meta": 9 + mlen // 2,
        "payload_start": 9 + mlen,
        "payload_end": len(raw) - 1,
    }[where]
    flip(path, pos)
    with pytest.raises(CorruptObjectError) as ei:
        DiskStore(store.root).get(oid)
    assert ei.value.oid == oid
    assert oid in str(ei.value)


def test_every_single_byte_flip_is_detected(store: DiskStore) -> None:
    content = b"tiny object content"
    oid = store.put("tree", content)
    path = store.path_for(oid)
    good = path.read_bytes()
    for pos in range(len(good)):
        for mask in (0x01, 0x80):
            os.chmod(path, 0o644)
            bad = bytearray(good)
            bad[pos] ^= mask
            path.write_bytes(bytes(bad))
            with pytest.raises(CorruptObjectError):
                DiskStore(store.root).get(oid)


@pytest.mark.parametrize("keep", [0, 3, 8, 12, "half", "minus1"])
def test_truncated_object(store: DiskStore, keep: object) -> None:
    oid = store.put("chunk", rand_bytes(4000, 3))
    path = store.path_for(oid)
    raw = path.read_bytes()
    n = {"half": len(raw) // 2, "minus1": len(raw) - 1}.get(keep, keep)  # type: ignore[call-overload]
    os.chmod(path, 0o644)
    path.write_bytes(raw[:n])
    with pytest.raises(CorruptObjectError) as ei:
        DiskStore(store.root).get(oid)
    assert ei.value.oid == oid


def test_wrong_kind(store: DiskStore) -> None:
    oid = store.put("chunk", b"{}")
    with pytest.raises(CorruptObjectError):
        store.get(oid, kind="tree")
    # the kind is part of the id: the same bytes stored under another kind's id do not verify
    raw = bytearray(store.read_raw(oid))
    raw[4:5] = b"r"
    with pytest.raises(CorruptObjectError):
        DiskStore(store.root / "other").write_raw(oid, bytes(raw))


def test_wrong_kind_on_a_cache_hit(store: DiskStore) -> None:
    """get(kind=...) checks the kind also when the content comes from the cache."""
    oid = store.put("tree", b'{"files": {}}')
    assert store.get(oid, kind="tree") == b'{"files": {}}'  # now cached
    assert store.get(oid) == b'{"files": {}}'  # a hit, no kind asked
    for other in ("commit", "chunk"):
        with pytest.raises(CorruptObjectError, match="expected a"):
            store.get(oid, kind=other)
    assert store.get(oid, kind="tree") == b'{"files": {}}'


def test_object_moved_to_another_id_is_detected(store: DiskStore) -> None:
    a = store.put("chunk", b"aaaa")
    b = store.put("chunk", b"bbbb")
    pb = store.path_for(b)
    os.chmod(pb, 0o644)
    pb.write_bytes(store.path_for(a).read_bytes())
    with pytest.raises(CorruptObjectError) as ei:
        DiskStore(store.root).get(b)
    assert ei.value.oid == b


# -- deltas ---------------------------------------------------------------------------------------


def _delta_pair(store: DiskStore) -> tuple[str, str, bytes]:
    parent = rand_bytes(20000, 4)
    child = tweak(parent, 5)
    pa = store.put_chunk(parent, itemsize=4, is_float=True)
    ch = store.put_chunk(child, itemsize=4, is_float=True, base=pa.oid)
    assert ch.oid == hash_object("chunk", child)  # the id is the content's, never the encoding's
    assert ch.depth == 1
    assert store.header(ch.oid).base == pa.oid
    assert ch.stored_bytes < len(child) // 4  # a small change stores as a small delta
    return pa.oid, ch.oid, child


def test_a_chunk_already_stored_is_reused_without_reading_its_base(
    store: DiskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lossless: an unchanged chunk of a finetune costs a hash, never a decode of its base."""
    base_oid, child_oid, child = _delta_pair(store)
    reads: list[str] = []
    real_read = DiskStore._read
    monkeypatch.setattr(DiskStore, "_read", lambda self, oid: reads.append(oid) or real_read(self, oid))
    again = store.put_chunk(child, itemsize=4, is_float=True, base=base_oid)
    assert (again.oid, again.new, again.stored_bytes) == (child_oid, False, 0)
    same = store.put_chunk(store.get(base_oid), itemsize=4, is_float=True, base=base_oid)
    assert (same.oid, same.new) == (base_oid, False)
    assert reads == [base_oid]  # only the get() above read anything


def test_delta_round_trip(store: DiskStore) -> None:
    _, child_oid, child = _delta_pair(store)
    assert DiskStore(store.root).get(child_oid) == child


def test_delta_with_missing_base(store: DiskStore) -> None:
    base_oid, child_oid, _ = _delta_pair(store)
    store.path_for(base_oid).unlink()
    with pytest.raises(ObjectNotFoundError) as ei:
        DiskStore(store.root).get(child_oid)
    assert ei.value.oid == base_oid
    assert child_oid in str(ei.value)


def test_delta_with_corrupt_base(store: DiskStore) -> None:
    base_oid, child_oid, _ = _delta_pair(store)
    p = store.path_for(base_oid)
    flip(p, len(p.read_bytes()) - 2)
    with pytest.raises(CorruptObjectError) as ei:
        DiskStore(store.root).get(child_oid)
    assert ei.value.oid == base_oid


@pytest.mark.parametrize("damaged_level", [0, 1])
def test_substituted_base_deep_in_a_chain_is_named(store: DiskStore, damaged_level: int) -> None:
    # Bases inside a chain are not hashed on their own (the top chunk's hash covers them), so
    # a base that decodes cleanly to the wrong bytes must still be caught, and named.
    g = rand_bytes(20000, 4)
    p = tweak(g, 5)
    c = tweak(p, 6)
    go = store.put_chunk(g, itemsize=4, is_float=True).oid
    po = store.put_chunk(p, itemsize=4, is_float=True, base=go).oid
    co = store.put_chunk(c, itemsize=4, is_float=True, base=po).oid
    assert store.header(co).depth == 2
    victim = [go, po][damaged_level]
    other = store.put_chunk(rand_bytes(20000, 9), itemsize=4, is_float=True).oid
    if damaged_level == 1:  # a delta of the same depth and size, against the same base
        other = store.put_chunk(tweak(g, 11), itemsize=4, is_float=True, base=go).oid
    path = store.path_for(victim)
    os.chmod(path, 0o644)
    path.write_bytes(store.path_for(other).read_bytes())
    with pytest.raises(CorruptObjectError) as ei:
        DiskStore(store.root).get(co)
    assert ei.value.oid == victim


def test_base_of_other_size_is_not_used(store: DiskStore) -> None:
    parent = rand_bytes(1000, 6)
    pa = store.put_chunk(parent, itemsize=1, is_float=False)
    ch = store.put_chunk(tweak(parent, 7) + b"x", itemsize=1, is_float=False, base=pa.oid)
    assert ch.depth == 0 and store.header(ch.oid).base is None


def test_chain_depth_is_bounded(store: DiskStore) -> None:
    data = rand_bytes(8192, 8)
    prev = store.put_chunk(data, itemsize=4, is_float=True).oid
    versions = {prev: data}
    depths = []
    for i in range(MAX_CHAIN_DEPTH + 4):
        data = tweak(data, 100 + i)
        put = store.put_chunk(data, itemsize=4, is_float=True, base=prev)
        depths.append(store.header(put.oid).depth)
        versions[put.oid] = data
        prev = put.oid
    assert max(depths) == MAX_CHAIN_DEPTH
    assert all(0 <= d <= MAX_CHAIN_DEPTH for d in depths)
    assert depths[MAX_CHAIN_DEPTH] == 0  # past the bound: stored whole, a new chain starts
    fresh = DiskStore(store.root)
    for oid, content in versions.items():
        assert fresh.get(oid) == content


def test_depth_past_the_bound_is_corrupt(store: DiskStore, tmp_path: Path) -> None:
    base_oid, child_oid, _ = _delta_pair(store)
    prefix, meta, payload = split_raw(store.read_raw(child_oid))
    meta["depth"] = MAX_CHAIN_DEPTH + 1
    other = DiskStore(tmp_path / "other")
    other.write_raw(base_oid, store.read_raw(base_oid))
    with pytest.raises(CorruptObjectError):
        other.write_raw(child_oid, join_raw(prefix, meta, payload))
    assert child_oid not in other


def test_depth_inconsistent_with_base_is_corrupt(store: DiskStore, tmp_path: Path) -> None:
    base_oid, child_oid, _ = _delta_pair(store)
    prefix, meta, payload = split_raw(store.read_raw(child_oid))
    meta["depth"] = 3  # the base is stored whole (depth 0)
    other = DiskStore(tmp_path / "other")
    other.write_raw(base_oid, store.read_raw(base_oid))
    with pytest.raises(CorruptObjectError):
        other.write_raw(child_oid, join_raw(prefix, meta, payload))


def test_self_referencing_delta_is_corrupt(store: DiskStore, tmp_path: Path) -> None:
    _, child_oid, _ = _delta_pair(store)
    prefix, meta, payload = split_raw(store.read_raw(child_oid))
    meta["base"] = child_oid
    with pytest.raises(CorruptObjectError):
        DiskStore(tmp_path / "other").write_raw(child_oid, join_raw(prefix, meta, payload))


# -- write_raw ------------------------------------------------------------------------------------


def test_write_raw_round_trip(store: DiskStore, tmp_path: Path) -> None:
    oid = store.put("commit", b'{"a":1}')
    other = DiskStore(tmp_path / "other")
    assert other.write_raw(oid, store.read_raw(oid)) is True
    assert other.write_raw(oid, store.read_raw(oid)) is False
    assert other.get(oid) == b'{"a":1}'
    assert stat.S_IMODE(other.path_for(oid).stat().st_mode) & 0o222 == 0


def test_write_raw_refuses_substituted_bytes(store: DiskStore, tmp_path: Path) -> None:
    good = store.put("chunk", b"the real content")
    evil = store.put("chunk", b"something else!!")
    other = DiskStore(tmp_path / "other")
    with pytest.raises(CorruptObjectError):
        other.write_raw(good, store.read_raw(evil))
    assert good not in other
    assert files_in(other.root) == []


@pytest.mark.parametrize(
    "raw", [b"", b"MGO", b"XXXX" + b"c" + b"\x00" * 20, MAGIC + b"c\xff\xff\xff\xff{}"]
)
def test_write_raw_refuses_garbage(tmp_path: Path, raw: bytes) -> None:
    other = DiskStore(tmp_path / "other")
    oid = hash_object("chunk", b"x")
    with pytest.raises(CorruptObjectError):
        other.write_raw(oid, raw)
    assert files_in(other.root) == []


def test_write_raw_delta_needs_its_base(store: DiskStore, tmp_path: Path) -> None:
    base_oid, child_oid, child = _delta_pair(store)
    other = DiskStore(tmp_path / "other")
    with pytest.raises(ObjectNotFoundError) as ei:
        other.write_raw(child_oid, store.read_raw(child_oid))
    assert ei.value.oid == base_oid
    assert files_in(other.root) == []
    other.write_raw(base_oid, store.read_raw(base_oid))
    assert other.write_raw(child_oid, store.read_raw(child_oid)) is True
    assert other.get(child_oid) == child


def test_meta_lying_about_size_is_corrupt(store: DiskStore, tmp_path: Path) -> None:
    oid = store.put("chunk", rand_bytes(1000, 9))
    prefix, meta, payload = split_raw(store.read_raw(oid))
    for size in (999, 1001, 0, 1 << 40, -1):
        meta["size"] = size
        with pytest.raises(CorruptObjectError):
            DiskStore(tmp_path / "other").write_raw(oid, join_raw(prefix, meta, payload))


def test_unknown_codec_is_corrupt(store: DiskStore, tmp_path: Path) -> None:
    oid = store.put("chunk", rand_bytes(1000, 10))
    prefix, meta, payload = split_raw(store.read_raw(oid))
    meta["codec"] = "no-such-codec/9"
    with pytest.raises(CorruptObjectError):
        DiskStore(tmp_path / "other").write_raw(oid, join_raw(prefix, meta, payload))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds via /proc")
def test_sync_reports_a_failed_fsync_and_tries_again_next_time(
    store: DiskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync() fsyncs every new object and its folder; an fsync that fails is sync()'s error,
    and the object stays queued until an fsync succeeds."""
    real_fsync = os.fsync
    failing = {"on": True}
    synced: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if failing["on"] and os.path.isfile(path):
            raise OSError(5, "Input/output error")
        synced.append(path)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    put = store.put_chunk(rand_bytes(5000, 1), itemsize=4, is_float=True)
    with pytest.raises(OSError, match="Input/output error"):
        store.sync()
    failing["on"] = False
    store.sync()
    assert str(store.path_for(put.oid)) in synced
    assert str(store.path_for(put.oid).parent) in synced
    synced.clear()
    store.sync()  # nothing new: nothing to do
    assert synced == []


def test_store_files_go_through_the_loose_layer(store: DiskStore) -> None:
    put = store.put_chunk(rand_bytes(5000, 2), itemsize=4, is_float=True)
    assert store.path_for(put.oid) == store.loose.path_for(put.oid)
    assert store.loose.unsynced() == [store.path_for(put.oid)]
    assert list(store.iter_oids()) == [put.oid]
    assert store.oids_with_prefix(put.oid[:5]) == [put.oid]
    store.sync()
    assert store.loose.unsynced() == []


def test_lossy_chunk_stored_and_reused(store: DiskStore) -> None:
    parent = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    child = parent + np.float32(1e-3) * np.random.default_rng(1).standard_normal(4096).astype(np.float32)
    pa = store.put_chunk(parent.tobytes(), itemsize=4, is_float=True)
    kw = dict(itemsize=4, is_float=True, base=pa.oid, dtype="F32", eps=1e-4)
    first = store.put_chunk(child.tobytes(), **kw)
    assert first.new and first.codec == "quant-planes-zstd/1" and first.depth == 1
    assert first.content is not None and 0 < first.max_err <= 1e-4
    assert first.oid == hash_object("chunk", first.content) != hash_object("chunk", child.tobytes())
    assert store.get(first.oid) == first.content
    again = store.put_chunk(child.tobytes(), **kw)
    assert (again.oid, again.new, again.codec, again.depth, again.content) == (
        first.oid, False, first.codec, 1, first.content)
    # an error bound on an int dtype stores losslessly (a delta against the same base)
    ints = store.put_chunk(child.tobytes(), itemsize=4, is_float=False, base=pa.oid, dtype="I32", eps=1e-4)
    assert ints.oid == hash_object("chunk", child.tobytes()) and ints.codec != "quant-planes-zstd/1"
    assert ints.content is None
    # without a base, an error bound changes nothing
    alone = store.put_chunk(rand_bytes(4096, 9), itemsize=4, is_float=True, dtype="F32", eps=1e-4)
    assert alone.depth == 0 and alone.codec != "quant-planes-zstd/1"
