"""One lock-file class for every lock in mgit: git's ``<target>.lock`` protocol.

A lock on ``target`` is the file ``<target>.lock``, created with ``O_CREAT | O_EXCL`` (atomic on
every local filesystem and on NFSv3+). Whoever created it holds the lock; it is released by
renaming it over the target (:meth:`LockFile.commit`, which publishes the new content and
releases the lock in one step) or by unlinking it (:meth:`LockFile.abort`). A lock is never
stolen: one left behind by a killed process is reported (:class:`~mgit.errors.LockHeldError`
naming the file) and the user removes it.

Every user picks its own wait policy: ``timeout`` seconds of retrying (0: fail at once) and the
``poll`` interval between tries (doubling up to ``max_poll`` when that is larger)::

    # a ref: compare-and-swap, wait up to MGIT_LOCK_TIMEOUT seconds
    with LockFile(ref_path, timeout=env_timeout()) as lock:
        ...re-read and compare the ref...
        lock.write(b"<oid>\\n")
        lock.commit()            # fsync, rename over ref_path, fsync the folder

    # a mutex (the working-tree index, gc): fail at once, release on leaving the block
    with LockFile(mgit_dir / "gc"):     # holds mgit_dir/"gc.lock"
        ...

Leaving the ``with`` block without :meth:`~LockFile.commit` (normally or by an exception)
unlinks the lock file and leaves the target untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from mgit._fs import fsync_dir
from mgit.errors import LockHeldError

__all__ = ["LockFile", "env_timeout", "DEFAULT_TIMEOUT"]

#: Seconds a ref lock is waited for when ``MGIT_LOCK_TIMEOUT`` is not set.
DEFAULT_TIMEOUT = 5.0


def env_timeout(default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds to wait for a held lock: ``MGIT_LOCK_TIMEOUT`` (>= 0), else ``default``."""
    try:
        return max(0.0, float(os.environ.get("MGIT_LOCK_TIMEOUT", default)))
    except ValueError:
        return default


class LockFile:
    """An exclusive ``<target>.lock`` file, optionally holding the target's next content.

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
        mode: permission bits of the lock file, hence of the target after :meth:`commit`.

    Raises (from :meth:`acquire` / entering the ``with`` block):
        LockHeldError: the lock was still held by someone else after ``timeout`` seconds.
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
        self._fd = -1
        self._held = False

    def __repr__(self) -> str:
        return f"LockFile({str(self.lock_path)!r}, held={self._held})"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now (acquired, not yet committed or aborted)."""
        return self._held

    def acquire(self) -> LockFile:
        """Create the lock file, waiting for it as the policy says. Returns ``self``.

        Raises:
            LockHeldError: still held by another after ``timeout`` seconds (the file is left
                alone: a stale lock is reported, never removed).
            RuntimeError: this object already holds it.
        """
        if self._held:
            raise RuntimeError(f"{self.lock_path} is already held by this LockFile")
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        while True:
            if self.make_parents:
                self.target.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._fd = os.open(self.lock_path, flags, self.mode)
            except FileExistsError:
                pass
            except (FileNotFoundError, NotADirectoryError):
                if not self.make_parents:
                    raise
            else:
                self._held = True
                return self
            if time.monotonic() >= deadline:
                raise LockHeldError(self.lock_path) from None
            time.sleep(delay)
            delay = min(delay * 2, self.max_poll)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the lock file: the target's content after :meth:`commit`."""
        self._check_held()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def commit(self, *, sync_dir: bool = True) -> None:
        """Make what was written the target's content and release the lock.

        fsync the lock file, rename it over the target (atomic: a reader sees the old or the
        new content, never a mix), then with ``sync_dir`` fsync the folder so the rename is
        durable. On failure the lock is released and the target is untouched.
        """
        self._check_held()
        try:
            os.fsync(self._fd)
            self._close()
            os.replace(self.lock_path, self.target)
        except BaseException:
            self.abort()
            raise
        self._held = False
        if sync_dir:
            fsync_dir(self.target.parent)

    def abort(self) -> None:
        """Release the lock without touching the target (unlink the lock file). Idempotent."""
        self._close()
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
