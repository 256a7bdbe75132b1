"""One lock-file class for every lock in mgit: git's ``<target>.lock`` protocol.

A lock on ``target`` is the file ``<target>.lock``, created atomically with its content: a temp
file holding the holder line is hard-linked to the lock name, which fails when the name exists
as ``O_CREAT | O_EXCL`` does (atomic on every local filesystem and on NFS; where there are no
hard links, ``O_EXCL`` and then the line). Whoever created it holds the lock. The lock file
always names its holder, even when its maker was killed the moment after: one JSON line
``{"pid", "host", "start", "time"}`` (``start``: the process's start time in clock ticks since
boot, which tells a live process from a later one that reused its pid). What the lock guards is written to a temp file beside the target (:meth:`LockFile.write`)
and renamed over the target by :meth:`LockFile.commit`, which then unlinks the lock file;
:meth:`LockFile.abort` unlinks both. A reader sees the old or the new target, never a mix.

A lock whose holder provably no longer runs (same host, and no process with its pid and start
time) is broken automatically, with a :class:`~mgit.errors.StaleLockWarning`: a SIGKILL or a
power cut must not leave a lock that blocks every later command. A lock whose holder cannot
be checked (another host, a lock file without holder line, as an older mgit wrote) is never
broken: it is reported (:class:`~mgit.errors.LockHeldError` naming the file and its holder)
and the user removes it. Breaking renames the stale file away and checks it moved the very
inode it judged stale (putting back what it moved otherwise), so two processes breaking the
same stale lock cannot both take it.

Every user picks its own wait policy: ``timeout`` seconds of retrying (0: fail at once) and the
``poll`` interval between tries (doubling up to ``max_poll`` when that is larger)::

    # a ref: compare-and-swap, wait up to MGIT_LOCK_TIMEOUT seconds
    with LockFile(ref_path, timeout=env_timeout()) as lock:
        ...re-read and compare the ref...
        lock.write(b"<oid>\\n")
        lock.commit()            # fsync, rename over ref_path, unlink the lock, fsync the folder

    # a mutex (the working-tree index, gc): fail at once, release on leaving the block
    with LockFile(mgit_dir / "gc"):     # holds mgit_dir/"gc.lock"
        ...

Leaving the ``with`` block without :meth:`~LockFile.commit` (normally or by an exception)
unlinks the lock file and leaves the target untouched.
"""

from __future__ import annotations

import errno
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mgit._fs import fsync_dir, read_regular, temp_name
from mgit.errors import LockHeldError, MgitError, StaleLockWarning

__all__ = [
    "DEFAULT_TIMEOUT",
    "LockFile",
    "LockHolder",
    "break_if_stale",
    "create_with_holder",
    "env_timeout",
    "holder_line",
    "process_alive",
    "read_holder",
]

#: Seconds a ref lock is waited for when ``MGIT_LOCK_TIMEOUT`` is not set.
DEFAULT_TIMEOUT = 5.0

_HOLDER_MAX = 4096


def env_timeout(default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds to wait for a held lock: ``MGIT_LOCK_TIMEOUT`` (>= 0), else ``default``."""
    try:
        return max(0.0, float(os.environ.get("MGIT_LOCK_TIMEOUT", default)))
    except ValueError:
        return default


def _host() -> str:
    return os.uname().nodename if hasattr(os, "uname") else ""


def _start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


_SELF: dict[int, bytes] = {}


def holder_line() -> bytes:
    """This process's holder line (what a lock file or a writer mark holds)."""
    pid = os.getpid()
    if pid not in _SELF:  # per pid: a forked child is another holder
        _SELF.clear()
        info = {"pid": pid, "host": _host(), "start": _start_ticks(pid)}
        _SELF[pid] = json.dumps(info, sort_keys=True).encode()
    data = json.loads(_SELF[pid])
    data["time"] = round(time.time(), 3)
    return (json.dumps(data, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a lock, as its lock file says."""

    pid: int
    host: str
    start: int | None
    time: float

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"pid {self.pid} on {self.host or '?'} since {when}"


def read_holder(path: Path) -> tuple[LockHolder | None, int | None]:
    """The holder a lock (or mark) file names and the file's inode: ``(None, inode)`` when it
    names none (empty, foreign content), ``(None, None)`` when there is no such file. Never
    blocks (a FIFO is refused, as anything that is not a regular file)."""
    try:
        ino = os.stat(path).st_ino
        data = read_regular(path, limit=_HOLDER_MAX)
    except (OSError, MgitError):
        return None, None
    try:
        info = json.loads(data.decode("utf-8"))
        holder = LockHolder(
            int(info["pid"]),
            str(info["host"]),
            None if info.get("start") is None else int(info["start"]),
            float(info.get("time", 0.0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return None, ino
    return (holder if holder.pid > 0 else None), ino


def process_alive(holder: LockHolder) -> bool | None:
    """Whether the holder still runs: True, False (provably gone: same host and no process with
    its pid, or one started at another time), or None (cannot tell: another host)."""
    if holder.host != _host():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a process of another user: it exists
    except OSError:
        return None
    if holder.start is not None:
        now = _start_ticks(holder.pid)
        if now is not None and now != holder.start:
            return False  # the pid was reused by a later process
    return True


def break_if_stale(lock_path: Path) -> LockHolder | None:
    """Remove ``lock_path`` if its holder provably no longer runs; return that holder (None
    when the lock was left alone). Warns with :class:`~mgit.errors.StaleLockWarning`.

    Only the inode judged stale is removed: it is renamed to a unique name first, and put back
    if what moved is another (a concurrent breaker took the lock meanwhile).
    """
    holder, ino = read_holder(lock_path)
    if holder is None or ino is None or process_alive(holder) is not False:
        return None
    moved = temp_name(lock_path)
    try:
        os.rename(lock_path, moved)
    except OSError:
        return None  # gone already (released or broken by another)
    try:
        same = os.stat(moved).st_ino == ino
    except OSError:
        same = False
    if not same:
        try:
            os.link(moved, lock_path)  # not ours to break: put it back
        except OSError:
            pass
    try:
        os.unlink(moved)
    except OSError:
        pass
    if not same:
        return None
    warnings.warn(
        StaleLockWarning(
            f"removed stale lock {lock_path} (held by {holder}, which no longer runs)"
        ),
        stacklevel=3,
    )
    return holder


_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)

#: link() errors that mean "no hard links on this filesystem" (some FUSE and SMB mounts).
_NO_LINKS = {
    errno.EPERM, errno.EMLINK, errno.ENOSYS, errno.EXDEV,
    getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EOPNOTSUPP,
}


def create_with_holder(lock_path: Path) -> bool:
    """Create ``lock_path`` already holding this process's holder line; False when it exists
    (a lock file, or a writer mark).

    The line is written to a temp file that is then hard-linked to the lock name (``link``
    fails when the name exists, as ``O_EXCL`` does), so a lock file never exists without its
    holder: a process killed between creating the lock and naming itself would otherwise
    leave an empty lock that no later command may break. Where the filesystem has no hard
    links, the lock is created with ``O_EXCL`` and named right after.

    Raises:
        FileNotFoundError, NotADirectoryError: the lock's folder is missing.
        OSError: anything else that stops the lock file from being made.
    """
    tmp = temp_name(lock_path)
    fd = os.open(tmp, _CREATE_FLAGS, 0o644)
    try:
        try:
            _write_all(fd, holder_line())
        finally:
            os.close(fd)
        try:
            os.link(tmp, lock_path)
        except FileExistsError:
            return False
        except OSError as exc:
            try:  # NFS may report a failed link() that did happen: count the links
                if os.stat(tmp).st_nlink == 2:
                    return True
            except OSError:
                pass
            if exc.errno not in _NO_LINKS:
                raise
            return _create_excl(lock_path)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _create_excl(lock_path: Path) -> bool:
    """``O_EXCL``-create ``lock_path`` and write the holder line (filesystems without hard
    links); False when it exists."""
    try:
        fd = os.open(lock_path, _CREATE_FLAGS, 0o644)
    except FileExistsError:
        return False
    try:
        _write_all(fd, holder_line())
    except BaseException:
        os.close(fd)
        os.unlink(lock_path)
        raise
    os.close(fd)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class LockFile:
    """An exclusive ``<target>.lock`` file, optionally guarding the target's next content.

    Args:
        target: the file the lock guards; the lock is ``<target>.lock`` beside it. For a pure
            mutex, any name: ``LockFile(mgit_dir / "index")`` holds ``index.lock``.
        timeout: seconds to keep retrying while another process holds the lock; 0 tries once.
        poll: seconds between tries.
        max_poll: when larger than ``poll``, the interval doubles after each try up to this
            (exponential back-off); by default the interval stays ``poll``.
        make_parents: create the target's folder before each try, and treat a folder that
            vanished between the two (pruned by a concurrent delete) as one more retry. Errors
            from creating it (``FileExistsError``, ``NotADirectoryError``: a file is in the
            way) are raised as they are.
        mode: permission bits of the target after :meth:`commit`.

    Raises (from :meth:`acquire` / entering the ``with`` block):
        LockHeldError: the lock was still held by someone else after ``timeout`` seconds (a
            lock whose holder provably no longer runs is broken instead, with a warning).
        OSError: the lock file could not be created for another reason.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        timeout: float = 0.0,
        poll: float = 0.01,
        max_poll: float | None = None,
        make_parents: bool = False,
        mode: int = 0o644,
    ) -> None:
        self.target = Path(target)
        self.lock_path = self.target.with_name(self.target.name + ".lock")
        self.timeout = max(0.0, timeout)
        self.poll = poll
        self.max_poll = poll if max_poll is None else max(poll, max_poll)
        self.make_parents = make_parents
        self.mode = mode
        self._fd = -1  # the content's temp file, once written to
        self._tmp: Path | None = None
        self._held = False

    def __repr__(self) -> str:
        return f"LockFile({str(self.lock_path)!r}, held={self._held})"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now (acquired, not yet committed or aborted)."""
        return self._held

    def acquire(self) -> LockFile:
        """Create the lock file (naming this process), waiting for it as the policy says.
        Returns ``self``.

        Raises:
            LockHeldError: still held by another after ``timeout`` seconds (a lock whose holder
                cannot be shown gone is left alone).
            RuntimeError: this object already holds it.
        """
        if self._held:
            raise RuntimeError(f"{self.lock_path} is already held by this LockFile")
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        while True:
            if self.make_parents:
                self.target.parent.mkdir(parents=True, exist_ok=True)
            try:
                created = create_with_holder(self.lock_path)
            except (FileNotFoundError, NotADirectoryError):
                if not self.make_parents:
                    raise
            else:
                if created:
                    self._held = True
                    return self
                if break_if_stale(self.lock_path) is not None:
                    continue  # a dead holder's lock was removed: try again at once
            if time.monotonic() >= deadline:
                holder, _ = read_holder(self.lock_path)
                raise LockHeldError(
                    self.lock_path, holder=None if holder is None else str(holder)
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, self.max_poll)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the target's next content (a temp file beside it until
        :meth:`commit`)."""
        self._check_held()
        if self._fd < 0:
            self._tmp = temp_name(self.target)
            self._fd = os.open(
                self._tmp,
                _CREATE_FLAGS,
                self.mode,
            )
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def commit(self, *, sync_dir: bool = True) -> None:
        """Make what was written the target's content and release the lock.

        fsync the content, rename it over the target (atomic: a reader sees the old or the
        new content, never a mix), unlink the lock, then with ``sync_dir`` fsync the folder so
        the rename is durable. On failure the lock is released and the target is untouched.
        """
        self._check_held()
        try:
            if self._fd < 0:
                self.write(b"")
            os.fsync(self._fd)
            self._close()
            assert self._tmp is not None
            os.replace(self._tmp, self.target)
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        self.abort()  # the target is in place: unlink the lock
        if sync_dir:
            fsync_dir(self.target.parent)

    def abort(self) -> None:
        """Release the lock without touching the target (unlink the content's temp file and
        the lock file). Idempotent."""
        self._close()
        if self._tmp is not None:
            tmp, self._tmp = self._tmp, None
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if self._held:
            self._held = False
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass

    #: For a pure mutex: releasing is the same as aborting.
    release = abort

    def __enter__(self) -> LockFile:
        if not self._held:
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()  # no-op after commit()

    def _check_held(self) -> None:
        if not self._held:
            raise RuntimeError(f"{self.lock_path} is not held by this LockFile")

    def _close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
