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


def test_a_lock_file_is_never_seen_without_its_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock name appears with the holder line already in it: a process killed right after
    taking the lock leaves a lock the next command can judge (CI found an empty one that
    blocked a push's rerun)."""
    from mgit import _lockfile

    seen: list[object] = []
    real_link = os.link

    def link(src: object, dst: object) -> None:
        real_link(src, dst)  # type: ignore[arg-type]
        seen.append(_lockfile.read_holder(Path(str(dst)))[0])

    monkeypatch.setattr(os, "link", link)
    with LockFile(tmp_path / "ref"):
        pass
    assert len(seen) == 1 and seen[0] is not None and seen[0].pid == os.getpid()  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp file left behind


def test_a_holder_killed_the_moment_it_took_the_lock_is_broken_by_the_next(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys

    child = (
        "import os, signal, sys\n"
        "from mgit._lockfile import LockFile\n"
        "real = os.link\n"
        "def link(a, b):\n"
        "    real(a, b)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.link = link\n"
        "LockFile(sys.argv[1]).acquire()\n"
    )
    proc = subprocess.run([sys.executable, "-c", child, str(tmp_path / "ref")], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "ref.lock").exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # the temp the lock was linked from: gc's to remove
    with pytest.warns(Warning, match="stale lock"), LockFile(tmp_path / "ref", timeout=0) as lock:
        assert lock.held


@pytest.mark.parametrize("err", ["EPERM", "ENOTSUP"])
def test_filesystems_without_hard_links_still_get_a_named_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: str
) -> None:
    import errno

    from mgit import _lockfile

    def no_link(src: object, dst: object) -> None:
        raise OSError(getattr(errno, err), "no hard links here")

    monkeypatch.setattr(os, "link", no_link)
    with LockFile(tmp_path / "ref") as lock:
        holder, _ = _lockfile.read_holder(lock.lock_path)
        assert holder is not None and holder.pid == os.getpid()
        with pytest.raises(LockHeldError):
            LockFile(tmp_path / "ref").acquire()
    assert list(tmp_path.iterdir()) == []


def test_a_link_error_other_than_no_links_is_raised_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OSError, match="No space"):
        LockFile(tmp_path / "ref").acquire()
    assert list(tmp_path.iterdir()) == []
