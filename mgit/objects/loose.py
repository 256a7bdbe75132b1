"""Loose-object files: the on-disk layer shared by :class:`~mgit.objects.store.DiskStore` and
the path transport (a path remote is a bare store, byte for byte).

One file per object at ``<root>/ab/cdef...`` (``root`` is the ``objects`` folder; the id's first
two hex digits shard it). This layer moves opaque stored bytes: it does not hash, parse, encode
or verify them (that is the store's job).

Files are write-once: the bytes go to a temp file with a process-unique name in the object's
own folder (:func:`mgit._fs.temp_name`; file locks lie on NFS, unique names don't), created
read-only (``0o444``), then renamed over the final name. Another writer of the same id writes
the same bytes, so "already exists" is success and either rename may win. A reader sees a
whole object or none.

Durability is the caller's choice per write: ``durable=True`` fsyncs the file and its folder
before returning (the path transport: every object it is handed is final); otherwise the file's
writeback is only started (:func:`mgit._fs.start_writeback`) and the path is recorded, and
:meth:`LooseObjects.sync` later fsyncs everything recorded, on a few threads (the store: a
commit syncs all its new objects once, before it moves a ref).
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mgit._fs import file_kind, fsync_dir, open_regular, start_writeback, temp_name
from mgit.errors import (
    CorruptObjectError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    UnreadableFileError,
)
from mgit.objects.ids import is_oid

__all__ = ["SYNC_THREADS", "LooseObjects", "path_for"]

#: Threads that fsync a batch of objects: fsync waits on the disk, not the CPU.
SYNC_THREADS = 4


def path_for(root: Path, oid: str) -> Path:
    """The file of object ``oid`` under the objects folder ``root`` (whether or not it exists).

    Raises:
        ObjectNotFoundError: ``oid`` is not a full lowercase 64-hex id (it could name no file).
    """
    if not is_oid(oid):
        raise ObjectNotFoundError(oid, context="not an object id")
    return root / oid[:2] / oid[2:]


def _fsync_files(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_folders(paths: list[Path]) -> None:
    for path in paths:
        fsync_dir(path)


def fsync_all(paths: list[Path], *, folders: bool = False) -> None:
    """fsync every file (or folder: errors ignored where folders cannot be synced) in
    ``paths``, on up to :data:`SYNC_THREADS` threads; the first error is raised."""
    one = _fsync_folders if folders else _fsync_files
    n = min(SYNC_THREADS, len(paths))
    if n <= 1:
        one(paths)
        return
    from mgit._pool import WorkerPool

    with WorkerPool(n) as pool:
        jobs = [pool.submit(one, paths[i::n]) for i in range(n)]
        for job in jobs:
            job.result()


class LooseObjects:
    """The loose-object files under one objects folder. Thread-safe; several processes may
    write the same folder at once.

    Args:
        root: the objects folder (``.mgit/objects``, or ``<remote>/objects``). It need not
            exist yet: the first write makes it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._unsynced: deque[Path] = deque()  # files written with durable=False, not fsynced
        # one sync at a time: a thread's sync returns only when every file queued before it is
        # durable, even those another thread's sync had taken out and is still fsyncing
        self._sync_lock = threading.Lock()
        self._root_dirty = False  # a shard folder was made since the last sync
        self._dirs: set[Path] = set()  # shard folders known to exist

    def path_for(self, oid: str) -> Path:
        """See :func:`path_for`."""
        return path_for(self.root, oid)

    # -- reading --------------------------------------------------------------------------

    def exists(self, oid: str) -> bool:
        """Whether the object's file exists (False for a string that is not an id)."""
        return is_oid(oid) and os.path.exists(self.root / oid[:2] / oid[2:])

    def prefetch(self, oids: list[str]) -> None:
        """Ask the kernel to start reading these objects' files now (``POSIX_FADV_WILLNEED``),
        so that a cold read of several chunks overlaps their disk reads instead of waiting
        for each in turn. A hint only: missing files and platforms without it are skipped."""
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:
            return
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        for oid in oids:
            try:
                fd = os.open(self.root / oid[:2] / oid[2:], flags)
            except OSError:
                continue
            try:
                advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def read(self, oid: str, *, context: str | None = None, max_size: int | None = None) -> bytes:
        """The stored bytes of an object, unverified.

        The file is opened without blocking and must be a regular file (a FIFO put in its
        place would otherwise hang the reader forever); with ``max_size``, a larger file is
        refused before it is read.

        Raises:
            ObjectNotFoundError: absent (``context``, e.g. a remote's URL, goes in the message).
            CorruptObjectError: not a regular file (the message names the file).
            ObjectTooLargeError: larger than ``max_size``.
            OSError: the file exists but cannot be read.
        """
        path = self.path_for(oid)
        try:
            fd = open_regular(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(oid, context=context) from None
        except UnreadableFileError as exc:
            raise CorruptObjectError(oid, f"{path}: {exc.reason}") from None
        with os.fdopen(fd, "rb") as f:
            if max_size is not None:
                size = os.fstat(f.fileno()).st_size
                if size > max_size:
                    raise ObjectTooLargeError(oid, size, max_size, what="stored bytes")
            return f.read()

    def check_regular(self, oid: str) -> None:
        """Raise :class:`CorruptObjectError` when the object's path holds something that is
        not a regular file (a FIFO, a folder): the one check done before opening it."""
        path = self.path_for(oid)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            raise CorruptObjectError(oid, f"{path}: {file_kind(mode)}, not a regular file")

    def _shard_entries(self, *, ordered: bool) -> Iterator[tuple[str, list[str]]]:
        """``(shard, names in it)`` for every two-character shard folder (sorted with
        ``ordered``, else in directory order); folders that vanish meanwhile are skipped."""
        try:
            shards = os.listdir(self.root)
        except (FileNotFoundError, NotADirectoryError):
            return
        if ordered:
            shards.sort()
        for shard in shards:
            if len(shard) != 2:
                continue
            try:
                names = os.listdir(self.root / shard)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if ordered:
                names.sort()
            yield shard, names

    def iter_oids(self, *, ordered: bool = False) -> Iterator[str]:
        """Every object id under the folder (temp files and foreign names skipped); sorted
        with ``ordered``, else in directory order."""
        for shard, names in self._shard_entries(ordered=ordered):
            for name in names:
                oid = shard + name
                if is_oid(oid):
                    yield oid

    def oids_with_prefix(self, prefix: str) -> list[str]:
        """Stored object ids starting with ``prefix`` (at least two hex digits), sorted."""
        if len(prefix) < 2:
            return []
        try:
            names = os.listdir(self.root / prefix[:2])
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(
            oid for oid in (prefix[:2] + n for n in names) if oid.startswith(prefix) and is_oid(oid)
        )

    # -- writing --------------------------------------------------------------------------

    def write(
        self,
        oid: str,
        data: bytes | Iterable[bytes],
        *,
        durable: bool = False,
        replace: bool = False,
    ) -> bool:
        """Store an object's bytes (``data``, or its parts in order) under ``oid``, once (with
        ``replace``, over whatever file is there: a verified copy replacing a damaged one).

        Returns:
            True if this call created the file; False if it existed already (success: the
            same id means the same content).

        Raises:
            OSError: the file or its folder could not be written; no partial file is left.
        """
        path = self.path_for(oid)
        if not replace and self._touch(path):
            return False
        made_shard = False
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_shard = True
            with self._lock:
                self._dirs.add(path.parent)
                self._root_dirty = self._root_dirty or not durable
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        tmp = temp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb") as f:
                for p in parts:
                    f.write(p)
                f.flush()
                if durable:
                    os.fsync(fd)
                else:
                    start_writeback(fd)
            os.replace(tmp, path)  # same bytes if another writer won: harmless
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if durable:
            fsync_dir(path.parent)
            if made_shard:
                fsync_dir(self.root)
        else:
            with self._lock:
                self._unsynced.append(path)
        return True

    @staticmethod
    def _touch(path: Path) -> bool:
        """Refresh an existing object's mtime ("reused now": ``gc`` spares what a writer is
        about to reference); False when there is no such file."""
        try:
            os.utime(path, None)
        except FileNotFoundError:
            return False
        except OSError:  # not ours to touch (a shared remote): it exists
            return path.exists()
        # utime looks the name up before it sets the time, and succeeds even if ``gc``
        # (:meth:`remove`) renames the file aside in between and reads its mtime before the
        # new time lands: gc then deletes it while we report it reused. So the name must
        # still be there *after* the time is set. gc renames, then reads the mtime; we set
        # the mtime, then look up the name: either gc sees our time (and puts the file back)
        # or we see the name gone (and the object is written again).
        return os.path.exists(path)

    def remove(self, oid: str, *, keep: Callable[[os.stat_result], bool] | None = None) -> int:
        """Delete an object's file (what ``gc`` does to unreachable objects); returns the bytes
        freed, 0 when it was already gone or was kept.

        With ``keep``, the file is first renamed to a unique temp name, so that no writer can
        reuse it any more (a writer reusing an object refreshes its mtime; once renamed, the
        refresh fails, or :meth:`_touch` finds the name gone after it, and the writer writes the
        object again), then ``keep`` is asked about it as it is now: True puts it back (a writer
        refreshed it before the rename).
        """
        path = self.path_for(oid)
        if keep is None:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return 0
            return size
        moved = temp_name(path)
        try:
            os.rename(path, moved)
        except FileNotFoundError:
            return 0
        try:
            st = os.stat(moved)
            if keep(st):
                os.rename(moved, path)  # same bytes if a writer wrote it again meanwhile
                return 0
            os.unlink(moved)
        except BaseException:
            if os.path.exists(moved):
                os.rename(moved, path)
            raise
        return st.st_size

    def iter_temp_files(self) -> Iterator[Path]:
        """Temp files in the shard folders: writes in progress, or left by a killed process."""
        for shard, names in self._shard_entries(ordered=True):
            for name in names:
                if name.endswith(".tmp"):
                    yield self.root / shard / name

    def unsynced(self) -> list[Path]:
        """Files written with ``durable=False`` that :meth:`sync` has not made durable yet."""
        with self._lock:
            return list(self._unsynced)

    def sync(self) -> None:
        """Make every file written so far with ``durable=False`` durable: an fsync per file,
        then per folder that got one, then of the objects folder when a shard was made.

        Raises:
            OSError: a file or folder could not be synced; what is not durable yet is tried
                again by the next call.
        """
        with self._sync_lock:
            with self._lock:
                files, root_dirty = list(self._unsynced), self._root_dirty
            if files:
                fsync_all(files)
                fsync_all(sorted({f.parent for f in files}), folders=True)
            if root_dirty:
                fsync_dir(self.root)
            with self._lock:
                for _ in files:
                    self._unsynced.popleft()
                if root_dirty:
                    self._root_dirty = False
