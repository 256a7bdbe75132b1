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
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from mgit._fs import fsync_dir, start_writeback, temp_name
from mgit.errors import ObjectNotFoundError
from mgit.objects.ids import is_oid

__all__ = ["LooseObjects", "path_for", "SYNC_THREADS"]

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
        self._root_dirty = False  # a shard folder was made since the last sync
        self._dirs: set[Path] = set()  # shard folders known to exist

    def path_for(self, oid: str) -> Path:
        """See :func:`path_for`."""
        return path_for(self.root, oid)

    # -- reading --------------------------------------------------------------------------

    def exists(self, oid: str) -> bool:
        """Whether the object's file exists (False for a string that is not an id)."""
        return is_oid(oid) and os.path.exists(self.root / oid[:2] / oid[2:])

    def read(self, oid: str, *, context: str | None = None) -> bytes:
        """The stored bytes of an object, unverified.

        Raises:
            ObjectNotFoundError: absent (``context``, e.g. a remote's URL, goes in the message).
            OSError: the file exists but cannot be read.
        """
        try:
            return self.path_for(oid).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(oid, context=context) from None

    def iter_oids(self, *, ordered: bool = False) -> Iterator[str]:
        """Every object id under the folder (temp files and foreign names skipped); sorted
        with ``ordered``, else in directory order."""
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

    def write(self, oid: str, data: bytes | Iterable[bytes], *, durable: bool = False) -> bool:
        """Store an object's bytes (``data``, or its parts in order) under ``oid``, once.

        Returns:
            True if this call created the file; False if it existed already (success: the
            same id means the same content).

        Raises:
            OSError: the file or its folder could not be written; no partial file is left.
        """
        path = self.path_for(oid)
        if path.exists():
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

    def remove(self, oid: str) -> int:
        """Delete an object's file (what ``gc`` does to unreachable objects); returns the bytes
        freed, 0 when it was already gone."""
        path = self.path_for(oid)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

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
            self._root_dirty = False
