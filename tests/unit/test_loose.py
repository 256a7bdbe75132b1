"""The loose-object file layer (``mgit.objects.loose``): paths, write-once, listing, fsyncs."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from mgit.errors import ObjectNotFoundError
from mgit.objects.loose import LooseObjects, path_for

A = "ab" + "0" * 62
A2 = "ab" + "1" * 62
B = "cd" + "2" * 62


@pytest.fixture
def loose(tmp_path: Path) -> LooseObjects:
    return LooseObjects(tmp_path / "objects")


def test_path_for(tmp_path: Path) -> None:
    assert path_for(tmp_path, A) == tmp_path / "ab" / ("0" * 62)
    for bad in ("", "ab", A.upper(), A[:-1], A + "0", "../" + A[3:], "zz" + A[2:]):
        with pytest.raises(ObjectNotFoundError):
            path_for(tmp_path, bad)


def test_write_once_read_only(loose: LooseObjects) -> None:
    assert loose.write(A, [b"he", b"llo"]) is True
    p = loose.path_for(A)
    assert p.read_bytes() == b"hello"
    assert stat.S_IMODE(p.stat().st_mode) & 0o222 == 0  # read-only
    assert loose.write(A, b"other bytes") is False  # present is success, never rewritten
    assert p.read_bytes() == b"hello"
    assert sorted(os.listdir(p.parent)) == [p.name]  # no temp file left


def test_failed_write_leaves_nothing(loose: LooseObjects) -> None:
    def parts():
        yield b"half"
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        loose.write(A, parts())
    assert not loose.exists(A)
    assert os.listdir(loose.root / "ab") == []
    assert loose.unsynced() == []


def test_read_and_exists(loose: LooseObjects) -> None:
    assert not loose.exists(A)
    assert not loose.exists("not an id")
    with pytest.raises(ObjectNotFoundError) as ei:
        loose.read(A, context="some remote")
    assert "some remote" in str(ei.value) and ei.value.oid == A
    loose.write(A, b"x")
    assert loose.exists(A) and loose.read(A) == b"x"


def test_listing_skips_temp_and_foreign_files(loose: LooseObjects) -> None:
    assert list(loose.iter_oids()) == [] and loose.oids_with_prefix("ab") == []  # no folder yet
    for oid in (B, A2, A):
        loose.write(oid, oid.encode())
    (loose.root / "ab" / (A[2:] + ".123.deadbeef.tmp")).write_bytes(b"")
    (loose.root / "ab" / "README").write_bytes(b"")
    (loose.root / "xyz").mkdir()
    (loose.root / "zz").write_bytes(b"")  # a file where a shard would be
    assert list(loose.iter_oids(ordered=True)) == [A, A2, B]
    assert sorted(loose.iter_oids()) == [A, A2, B]
    assert loose.oids_with_prefix("ab") == [A, A2]
    assert loose.oids_with_prefix("ab1") == [A2]
    assert loose.oids_with_prefix("cd2") == [B]
    assert loose.oids_with_prefix("ef") == [] and loose.oids_with_prefix("a") == []


def test_concurrent_writers_of_one_object(loose: LooseObjects) -> None:
    results: list[bool] = []
    others = [LooseObjects(loose.root) for _ in range(8)]

    def go(lo: LooseObjects) -> None:
        results.append(lo.write(A, b"same bytes" * 1000))

    threads = [threading.Thread(target=go, args=(lo,)) for lo in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loose.read(A) == b"same bytes" * 1000
    assert os.listdir(loose.root / "ab") == [A[2:]]
    assert True in results


def _trace_fsync(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds via /proc")
def test_batched_sync_records_what_needs_fsync(loose: LooseObjects, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = _trace_fsync(monkeypatch)
    loose.write(A, b"a")
    loose.write(B, b"b")
    assert synced == []  # not durable yet
    assert loose.unsynced() == [loose.path_for(A), loose.path_for(B)]
    loose.sync()
    want = {str(loose.path_for(A)), str(loose.path_for(B)), str(loose.root / "ab"),
            str(loose.root / "cd"), str(loose.root)}
    assert set(synced) == want
    assert loose.unsynced() == []
    synced.clear()
    loose.sync()
    assert synced == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds via /proc")
def test_durable_write(loose: LooseObjects, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = _trace_fsync(monkeypatch)
    assert loose.write(A, b"a", durable=True)
    # the temp file, then the shard folder and (new shard) the objects folder
    assert synced[1:] == [str(loose.root / "ab"), str(loose.root)]
    assert synced[0].startswith(str(loose.path_for(A)) + ".") and synced[0].endswith(".tmp")
    assert loose.unsynced() == []
    synced.clear()
    loose.sync()
    assert synced == []  # nothing left to do


def test_concurrent_syncs(loose: LooseObjects, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads that write and sync at once (a rebase cascade's ``-j``): no sync fails, and when
    a thread's sync returns, every file it wrote before is durable, even one another thread's
    sync took out of the queue and is still fsyncing."""
    import time

    from mgit.objects import loose as loose_mod

    durable: set[str] = set()
    real = loose_mod.fsync_all

    def slow_fsync(paths: Any, **kw: Any) -> None:
        time.sleep(0.002)  # widen the window between taking files out and their fsync
        real(paths, **kw)
        durable.update(str(p) for p in paths)

    monkeypatch.setattr(loose_mod, "fsync_all", slow_fsync)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(40):
                oid = f"{t:02x}{i:062x}"
                loose.write(oid, f"{t}-{i}".encode())
                loose.sync()
                if str(loose.path_for(oid)) not in durable:
                    raise AssertionError(f"{oid} not durable after sync returned")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert loose.unsynced() == []
