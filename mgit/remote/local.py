"""LocalTransport: a remote bare store on a path (a local disk or a shared filesystem).

A path remote is a bare repository, byte for byte: the same config, object files and ref
files as a local repository's ``.mgit`` folder (see :mod:`mgit.remote.protocol`). Objects go
through the same loose-object layer as the local store (:mod:`mgit.objects.loose`), and refs
through the same lock file as :class:`mgit.refs.store.RefStore` (:mod:`mgit._lockfile`).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from mgit._fs import atomic_write, fsync_dir, read_regular, temp_name
from mgit._lockfile import LockFile, break_if_stale, env_timeout, read_holder
from mgit.errors import (
    InvalidRefNameError,
    LockHeldError,
    ObjectNotFoundError,
    RefConflictError,
    RemoteError,
    UnreadableFileError,
)
from mgit.objects.loose import LooseObjects
from mgit.refs.store import check_packed_conflict, packed_lines_dropped, read_packed
from mgit.remote.protocol import (
    MARKER_PREFIX,
    Marker,
    StoredObject,
    encode_store_config,
    parse_ref_value,
    parse_store_config,
    validate_marker_name,
    validate_oid,
    validate_ref_name,
)

__all__ = ["LocalTransport"]

# What a store's root holds (a concurrent first push may have made some of it already).
_STORE_ENTRIES = frozenset({"config", "objects", "refs", MARKER_PREFIX.rstrip("/")})
# Wait policy for a held ref lock: retry every 2 ms, doubling up to 50 ms, for lock_timeout s.
_LOCK_POLL = 0.002
_LOCK_MAX_POLL = 0.05


class LocalTransport:
    """A bare store on a path: a local disk or a shared filesystem (NFS, Lustre, a mount).

    Objects are written as a process-unique temp file in their final directory, fsynced and
    renamed into place (:class:`~mgit.objects.loose.LooseObjects`, durable writes), so a
    reader never sees a partial object and two writers of the same object cannot hurt each
    other. Refs change by compare-and-swap under an ``O_CREAT|O_EXCL`` ``<ref>.lock`` file
    (:class:`~mgit._lockfile.LockFile`), git's protocol: the new value is written into the
    lock file, which is then renamed over the ref.

    Args:
        root: The store's root directory (it need not exist before :meth:`init`).
        lock_timeout: Seconds to keep retrying a ref lock held by someone else before
            raising :class:`~mgit.errors.LockHeldError` (default ``MGIT_LOCK_TIMEOUT`` or 5).
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float | None = None) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.url = str(self.root)
        self.lock_timeout = lock_timeout if lock_timeout is not None else env_timeout()
        self._objects = LooseObjects(self.root / "objects")

    def __repr__(self) -> str:
        return f"LocalTransport({self.url!r})"

    # -- config -----------------------------------------------------------------------------

    def read_config(self) -> dict[str, object] | None:
        """Return the store's config, or None when there is no store at the path.

        Raises:
            RemoteError: The config exists but is not a JSON object, or cannot be read.
        """
        path = self.root / "config"
        try:
            data = read_regular(path, limit=1 << 20)  # never blocks on a FIFO
        except (FileNotFoundError, NotADirectoryError):
            return None
        except UnreadableFileError as exc:
            raise RemoteError(f"cannot read {path}: {exc.reason}") from None
        except OSError as exc:
            raise RemoteError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return parse_store_config(data, self.url)

    def init(self, config: dict[str, object]) -> None:
        """Create the bare store if absent; an existing config is left as it is.

        Args:
            config: The config to write when the store is new.

        Raises:
            RemoteError: The path cannot be created or written, or is a folder holding other
                things than a store (mgit never scatters a store among someone's files).
        """
        if not (self.root / "config").exists() and self.root.is_dir():
            foreign = sorted(
                n for n in os.listdir(self.root) if n not in _STORE_ENTRIES and not n.endswith(".tmp")
            )
            if foreign:
                raise RemoteError(
                    f"{self.root} is not empty and holds no mgit store (found {foreign[0]})",
                    hint="use an empty or new folder for a remote",
                )
        try:
            for sub in ("objects", "refs/heads", "refs/tags"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            final = self.root / "config"
            if final.exists():
                return
            data = encode_store_config(config)
            tmp = temp_name(final)
            try:
                with open(tmp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    # link() fails if the config appeared meanwhile: the first writer wins.
                    os.link(tmp, final)
                except FileExistsError:
                    pass
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    if not final.exists():  # filesystem without hard links
                        os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(self.root)
        except OSError as exc:
            raise RemoteError(
                f"cannot create remote store at {self.root}: {exc.strerror or exc}"
            ) from exc

    # -- refs -------------------------------------------------------------------------------

    def _ref_path(self, name: str) -> Path:
        validate_ref_name(name)
        path = self.root.joinpath(*name.split("/"))
        # The name cannot escape the root by construction; a symlinked refs/ tree could.
        real_refs = os.path.realpath(self.root / "refs")
        real_parent = os.path.realpath(path.parent)
        if real_parent != real_refs and not real_parent.startswith(real_refs + os.sep):
            raise RemoteError(f"ref {name} on {self.url} resolves outside the store's refs/")
        return path

    def _read_ref_file(self, name: str, path: Path) -> str | None:
        try:
            data = read_regular(path, limit=4096)  # never blocks: a FIFO is refused
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except UnreadableFileError as exc:
            raise RemoteError(
                f"cannot read ref {name} on {self.url}: {path} is {exc.reason}",
                hint="repair or delete the ref on the remote",
            ) from None
        except OSError as exc:
            raise RemoteError(
                f"cannot read ref {name} on {self.url}: {exc.strerror or exc}"
            ) from exc
        return parse_ref_value(name, data, self.url)

    def read_ref(self, name: str) -> str | None:
        """Return the id ``name`` points at, or None if the ref does not exist.

        Raises:
            InvalidRefNameError: ``name`` is not a valid ref name.
            RemoteError: The ref cannot be read or is damaged.
        """
        path = self._ref_path(name)
        value = self._read_ref_file(name, path)
        if value is None and not (path.exists() or path.is_symlink()):
            return read_packed(self.root)[0].get(name)  # packed by 'mgit gc' on that store
        return value

    def list_refs(self) -> dict[str, str]:
        """Return every ref of the store, ``{name: oid}`` (lock and temp files skipped).

        Raises:
            RemoteError: A ref cannot be read or is damaged.
        """
        refs: dict[str, str] = {}
        files: set[str] = set()
        base = self.root / "refs"
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for fname in sorted(filenames):
                name = f"{rel_dir}/{fname}"
                try:
                    validate_ref_name(name)
                except InvalidRefNameError:
                    continue  # lock/temp files and foreign files are not refs
                files.add(name)
                value = self._read_ref_file(name, Path(dirpath) / fname)
                if value is not None:
                    refs[name] = value
        for name, oid in read_packed(self.root)[0].items():  # a ref file overrides its line
            if name not in files:
                refs[name] = oid
        return dict(sorted(refs.items()))

    def _check_df_conflict(self, name: str, path: Path) -> None:
        """Refuse a ref whose path is a directory of refs, or lies below an existing ref."""
        if path.is_dir() and any(True for _ in _walk_files(path)):
            raise InvalidRefNameError(name, "refs exist below this name")
        parts = name.split("/")
        for i in range(2, len(parts)):
            prefix = "/".join(parts[:i])
            if (self.root.joinpath(*parts[:i])).is_file():
                raise InvalidRefNameError(name, f"conflicts with existing ref {prefix}")
        packed = read_packed(self.root)[0]
        if packed:
            check_packed_conflict(name, packed)

    def _lock(self, name: str, path: Path) -> LockFile:
        """Take ``<ref>.lock`` (waiting up to ``lock_timeout``), making the ref's folder."""
        lock = LockFile(
            path,
            timeout=self.lock_timeout,
            poll=_LOCK_POLL,
            max_poll=_LOCK_MAX_POLL,
            make_parents=True,
        )
        try:
            return lock.acquire()
        except (FileExistsError, NotADirectoryError):
            # Making the ref's folder failed: a ref is in the way (the lock's own
            # FileExistsError is a held lock, handled by LockFile).
            self._check_df_conflict(name, path)
            raise InvalidRefNameError(name, "conflicts with an existing ref") from None
        except OSError as exc:
            raise RemoteError(
                f"cannot lock ref {name} on {self.url}: {exc.strerror or exc}"
            ) from exc

    def check_ref_locks(self, names: Iterable[str]) -> None:
        """Before a push uploads anything: wait (up to ``lock_timeout``, as a ref update
        would) while a ref it will move is locked by a running process, and fail then; break
        a lock whose holder provably no longer runs (with a warning).

        Raises:
            LockHeldError: a ref's lock is still held (or cannot be shown stale).
        """
        for name in names:
            path = self._ref_path(name)
            lock = path.with_name(path.name + ".lock")
            deadline = time.monotonic() + self.lock_timeout
            delay = _LOCK_POLL
            while lock.exists() and break_if_stale(lock) is None:
                if time.monotonic() >= deadline:
                    holder, ino = read_holder(lock)
                    if ino is None:
                        break  # released just now
                    raise LockHeldError(lock, holder=None if holder is None else str(holder))
                time.sleep(delay)
                delay = min(delay * 2, _LOCK_MAX_POLL)

    def update_ref(self, name: str, old: str | None, new: str | None) -> None:
        """Compare-and-swap ``name`` from ``old`` to ``new``.

        Under ``<ref>.lock`` (``O_CREAT|O_EXCL``) the ref is re-read and compared with ``old``;
        the new value is written into the lock file, fsynced, and renamed over the ref.

        Args:
            name: The ref, e.g. ``refs/heads/org/bert``.
            old: The value expected now; None means the ref must not exist.
            new: The value to set; None deletes the ref.

        Raises:
            InvalidRefNameError: ``name`` is not a valid ref name, or collides with another
                ref (``refs/heads/a`` and ``refs/heads/a/b`` cannot both exist).
            RefConflictError: The ref's current value is not ``old``.
            LockHeldError: Another process held the lock for longer than ``lock_timeout``.
            RemoteError: The filesystem refused the update.
        """
        if old is not None:
            validate_oid(old)
        if new is not None:
            validate_oid(new)
        path = self._ref_path(name)
        if new is not None and old is None:
            self._check_df_conflict(name, path)
        lock = self._lock(name, path)
        try:
            actual = self.read_ref(name)  # re-read under the lock (the file, else packed-refs)
            if actual != old:
                raise RefConflictError(name, old, actual)
            if new is None:
                if old is not None:
                    with packed_lines_dropped(self.root, [name], timeout=self.lock_timeout):
                        try:
                            path.unlink()
                        except FileNotFoundError:
                            pass  # it was packed only
                        fsync_dir(path.parent)
            else:
                if path.is_dir():
                    path.rmdir()  # an empty directory left by deleted refs below this name
                lock.write(f"{new}\n".encode("ascii"))
                # fsync, then the rename publishes the value and releases the lock in one step.
                lock.commit()
        except OSError as exc:
            raise RemoteError(
                f"cannot update ref {name} on {self.url}: {exc.strerror or exc}"
            ) from exc
        finally:
            lock.abort()  # no-op after commit()
        if new is None:
            self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, directory: Path) -> None:
        stop = {self.root / "refs", self.root / "refs" / "heads", self.root / "refs" / "tags"}
        while directory not in stop and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or raced with a writer): leave it
            directory = directory.parent

    # -- objects ----------------------------------------------------------------------------

    def has_objects(self, oids: Iterable[str]) -> set[str]:
        """Return the subset of ``oids`` present in the store."""
        return {oid for oid in set(oids) if self._objects.exists(validate_oid(oid))}

    def get_object(self, oid: str, *, max_size: int | None = None) -> bytes:
        """Return the stored bytes of ``oid``.

        Raises:
            ObjectNotFoundError: The store does not hold it.
            CorruptObjectError: Its file is not a regular file (a FIFO would hang the reader).
            ObjectTooLargeError: It is larger than ``max_size`` (refused before it is read).
            RemoteError: It cannot be read.
        """
        validate_oid(oid)
        try:
            return self._objects.read(oid, context=self.url, max_size=max_size)
        except OSError as exc:
            raise RemoteError(
                f"cannot read object {oid} on {self.url}: {exc.strerror or exc}"
            ) from exc

    def put_object(self, oid: str, data: bytes) -> None:
        """Store ``data`` as ``oid``: temp file, fsync, rename, fsync dir; present = success.

        Raises:
            RemoteError: The filesystem refused the write.
        """
        validate_oid(oid)
        try:
            # A concurrent writer of the same id writes the same bytes: either rename wins.
            self._objects.write(oid, data, durable=True)
        except OSError as exc:
            raise RemoteError(
                f"cannot write object {oid} to {self.url}: {exc.strerror or exc}"
            ) from exc

    def iter_objects(self) -> Iterator[str]:
        """Yield the id of every object in the store, sorted (temp files skipped).

        Not part of :class:`~mgit.remote.protocol.Transport` (push and fetch never list a
        store); for inspecting a remote, as the tests do.
        """
        yield from self._objects.iter_oids(ordered=True)

    # -- remote gc (MaintainedTransport) ----------------------------------------------------

    def _marker_dir(self) -> Path:
        return self.root / MARKER_PREFIX.rstrip("/")

    def write_marker(self, name: str, data: bytes) -> None:
        """Create or refresh the in-flight marker ``inflight/<name>`` (atomic write).

        Raises:
            RemoteError: The filesystem refused the write.
        """
        path = self._marker_dir() / validate_marker_name(name)
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise RemoteError(
                f"cannot write {path} on {self.url}: {exc.strerror or exc}"
            ) from exc

    def delete_marker(self, name: str) -> None:
        """Remove ``inflight/<name>``; absent is success.

        Raises:
            RemoteError: The filesystem refused.
        """
        path = self._marker_dir() / validate_marker_name(name)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise RemoteError(
                f"cannot remove {path} on {self.url}: {exc.strerror or exc}"
            ) from exc

    def list_markers(self) -> list[Marker]:
        """Every in-flight marker, by name, with its file's mtime (temp files skipped).

        Raises:
            RemoteError: The folder cannot be listed.
        """
        out = []
        try:
            names = sorted(os.listdir(self._marker_dir()))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise RemoteError(f"cannot list markers on {self.url}: {exc.strerror or exc}") from exc
        for name in names:
            try:
                validate_marker_name(name)
                mtime = os.stat(self._marker_dir() / name).st_mtime
            except (ValueError, FileNotFoundError):
                continue
            out.append(Marker(name, mtime))
        return out

    def iter_stored_objects(self) -> Iterator[StoredObject]:
        """Every object with its size and mtime (one that vanishes meanwhile is skipped)."""
        for oid in self._objects.iter_oids(ordered=True):
            try:
                st = os.stat(self._objects.path_for(oid))
            except FileNotFoundError:
                continue
            yield StoredObject(oid, st.st_size, st.st_mtime)

    def get_object_head(self, oid: str, size: int) -> bytes:
        """The first ``size`` bytes of ``oid``.

        Raises:
            ObjectNotFoundError: The store does not hold it.
            CorruptObjectError: Its file is not a regular file.
            RemoteError: It cannot be read.
        """
        validate_oid(oid)
        self._objects.check_regular(oid)
        try:
            with open(self._objects.path_for(oid), "rb") as f:
                return f.read(size)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(oid, context=self.url) from None
        except OSError as exc:
            raise RemoteError(
                f"cannot read object {oid} on {self.url}: {exc.strerror or exc}"
            ) from exc

    def delete_object(self, oid: str, *, written_before: float) -> bool:
        """Delete ``oid`` unless its mtime is ``written_before`` or later. The file is renamed
        aside first and its mtime read there, so a writer that refreshed it just before is
        seen, and one just after finds it gone and writes it again
        (:meth:`~mgit.objects.loose.LooseObjects.remove`).

        Raises:
            RemoteError: The filesystem refused.
        """
        validate_oid(oid)
        try:
            return self._objects.remove(oid, keep=lambda st: st.st_mtime >= written_before) > 0
        except OSError as exc:
            raise RemoteError(
                f"cannot delete object {oid} on {self.url}: {exc.strerror or exc}"
            ) from exc


def _walk_files(path: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            yield Path(dirpath) / f
