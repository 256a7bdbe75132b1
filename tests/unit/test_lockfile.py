"""LockFile: git's ``<target>.lock`` protocol, with each caller's wait policy."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mgit._lockfile import LockFile, env_timeout
from mgit.errors import LockHeldError


def test_exclusive(tmp_path: Path) -> None:
    target = tmp_path / "ref"
    first = LockFile(target).acquire()
    assert first.held and first.lock_path == tmp_path / "ref.lock" and first.lock_path.exists()
    with pytest.raises(LockHeldError) as ei:
        LockFile(target).acquire()
    assert Path(str(ei.value.path)) == tmp_path / "ref.lock"
    first.abort()
    assert not first.lock_path.exists()
    with LockFile(target) as again:  # free again
        assert again.held


def test_second_locker_waits_then_fails_after_the_timeout(tmp_path: Path) -> None:
    target = tmp_path / "ref"
    with LockFile(target):
        t0 = time.monotonic()
        with pytest.raises(LockHeldError):
            LockFile(target, timeout=0.3, poll=0.02).acquire()
        waited = time.monotonic() - t0
    assert 0.3 <= waited < 3.0


def test_zero_timeout_fails_at_once(tmp_path: Path) -> None:
    with LockFile(tmp_path / "gc"):
        t0 = time.monotonic()
        with pytest.raises(LockHeldError):
            LockFile(tmp_path / "gc", poll=1.0).acquire()
        assert time.monotonic() - t0 < 0.5


def test_waiter_gets_the_lock_when_released(tmp_path: Path) -> None:
    target = tmp_path / "ref"
    holder = LockFile(target).acquire()
    threading.Timer(0.1, holder.abort).start()
    with LockFile(target, timeout=5.0, poll=0.005, max_poll=0.05) as lock:
        assert lock.held
        lock.write(b"x\n")
        lock.commit()
    assert target.read_bytes() == b"x\n"


def test_back_off_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    clock = iter(range(100))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock) * 0.001)
    (tmp_path / "ref.lock").write_bytes(b"")
    with pytest.raises(LockHeldError):
        LockFile(tmp_path / "ref", timeout=0.0075, poll=0.002, max_poll=0.005).acquire()
    assert sleeps[:4] == [0.002, 0.004, 0.005, 0.005]
    sleeps.clear()
    clock = iter(range(100))
    with pytest.raises(LockHeldError):
        LockFile(tmp_path / "ref", timeout=0.0035, poll=0.01).acquire()
    assert sleeps and set(sleeps) == {0.01}


def test_commit_replaces_the_target_atomically(tmp_path: Path) -> None:
    target = tmp_path / "ref"
    target.write_bytes(b"old\n")
    lock = LockFile(target).acquire()
    lock.write(b"new")
    lock.write(memoryview(b"\n"))
    assert target.read_bytes() == b"old\n"  # nothing visible before commit
    # The content goes to a temp file beside the target (the lock file names its holder).
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1
    inode = temps[0].stat().st_ino
    lock.commit()
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_ino == inode  # renamed, not copied
    assert not lock.lock_path.exists() and not lock.held
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]
    with pytest.raises(RuntimeError):
        lock.write(b"late")


def test_commit_creates_a_missing_target(tmp_path: Path) -> None:
    with LockFile(tmp_path / "HEAD") as lock:
        lock.write(b"ref: refs/heads/x\n")
        lock.commit()
    assert (tmp_path / "HEAD").read_bytes() == b"ref: refs/heads/x\n"
    assert (tmp_path / "HEAD").stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_abort_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "ref"
    target.write_bytes(b"old\n")
    lock = LockFile(target).acquire()
    lock.write(b"new\n")
    lock.abort()
    lock.abort()  # idempotent
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]


def test_released_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "ref"
    target.write_bytes(b"old\n")
    with pytest.raises(KeyError):
        with LockFile(target) as lock:
            lock.write(b"new\n")
            raise KeyError("boom")
    assert target.read_bytes() == b"old\n"
    assert not (tmp_path / "ref.lock").exists()


def test_mutex_use_releases_on_leaving(tmp_path: Path) -> None:
    with LockFile(tmp_path / "index") as lock:
        assert (tmp_path / "index.lock").exists()
        with pytest.raises(LockHeldError):
            LockFile(tmp_path / "index").acquire()
    assert not lock.held
    assert list(tmp_path.iterdir()) == []  # no target was created


def test_stale_lock_is_reported_not_stolen(tmp_path: Path) -> None:
    stale = tmp_path / "gc.lock"
    stale.write_bytes(b"left by a killed process")
    old = time.time() - 86400
    os.utime(stale, (old, old))
    for timeout in (0.0, 0.05):
        with pytest.raises(LockHeldError) as ei:
            with LockFile(tmp_path / "gc", timeout=timeout, poll=0.01):
                pytest.fail("a stale lock was taken")
        assert "gc.lock" in str(ei.value)
    assert stale.read_bytes() == b"left by a killed process"
    assert stale.stat().st_mtime == pytest.approx(old)


def test_make_parents(tmp_path: Path) -> None:
    target = tmp_path / "refs" / "heads" / "a" / "b"
    with pytest.raises(FileNotFoundError):
        LockFile(target).acquire()
    with LockFile(target, make_parents=True) as lock:
        lock.write(b"v\n")
        lock.commit()
    assert target.read_bytes() == b"v\n"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises((FileExistsError, NotADirectoryError)):
        LockFile(tmp_path / "file" / "x", make_parents=True).acquire()


def test_acquire_twice_is_an_error(tmp_path: Path) -> None:
    with LockFile(tmp_path / "t") as lock:
        with pytest.raises(RuntimeError):
            lock.acquire()


def test_env_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MGIT_LOCK_TIMEOUT", raising=False)
    assert env_timeout() == 5.0
    assert env_timeout(2.0) == 2.0
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "0.25")
    assert env_timeout() == 0.25
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "-3")
    assert env_timeout() == 0.0
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "soon")
    assert env_timeout() == 5.0
