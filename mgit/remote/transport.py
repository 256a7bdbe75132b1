"""Transports: byte-level access to a remote bare mgit store.

A remote is a *bare mgit store*, laid out identically on a path and under an S3 prefix::

    <root>/config                JSON: {"format_version": 1, "hash": "blake3", "bare": true, ...}
    <root>/objects/ab/<62 hex>   one file per object, named by its id; bytes opaque here
    <root>/refs/heads/<model>    "<64 hex>\\n" (model names may contain '/')
    <root>/refs/tags/<tag>

A transport moves opaque object bytes and compare-and-swaps refs; it never parses objects.
Verifying what comes back (the id is a hash of the decoded content) is the job of the
receiving object store, see :mod:`mgit.remote.sync`.

:class:`LocalTransport` serves a path (a local disk or a shared filesystem such as NFS);
``mgit.remote.s3.S3Transport`` serves S3-compatible object storage. :func:`open_transport`
picks one from a URL. boto3 is imported only when an ``s3://`` URL is opened.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from mgit._fs import fsync_dir, temp_name
from mgit.errors import (
    InvalidRefNameError,
    LockHeldError,
    ObjectNotFoundError,
    RefConflictError,
    RemoteError,
)
from mgit.objects.ids import is_oid
from mgit.refs.store import check_name

__all__ = [
    "REMOTE_FORMAT_VERSION",
    "REMOTE_REF_PREFIXES",
    "LocalTransport",
    "Transport",
    "default_remote_config",
    "object_path",
    "open_transport",
    "parse_config",
    "parse_ref_value",
    "validate_oid",
    "validate_ref_name",
]

REMOTE_REF_PREFIXES = ("refs/heads/", "refs/tags/")
"""The refs a remote store holds: model lines and tags."""

REMOTE_FORMAT_VERSION = 2
"""The bare-store format this mgit writes and reads."""

_SHARD_RE = re.compile(r"[0-9a-f]{2}\Z")
_REST_RE = re.compile(r"[0-9a-f]{62}\Z")
# Suffixes of the transport's own scratch files; a ref name may not end with them.
_RESERVED_SUFFIXES = (".lock", ".tmp")
# What a store's root holds (a concurrent first push may have made some of it already).
_STORE_ENTRIES = frozenset({"config", "objects", "refs"})


def default_remote_config() -> dict[str, object]:
    """Return the config a new bare remote store is created with.

    Returns:
        ``{"format_version": 1, "hash": "blake3", "bare": True}``.
    """
    return {"format_version": REMOTE_FORMAT_VERSION, "hash": "blake3", "bare": True}


def validate_oid(oid: str) -> str:
    """Return ``oid`` if it is a well-formed object id.

    Args:
        oid: The candidate id.

    Returns:
        The same string.

    Raises:
        ValueError: ``oid`` is not 64 lowercase hex digits (a programming error: ids handed
            to a transport come from the local store or from validated remote refs).
    """
    if not isinstance(oid, str) or not is_oid(oid):
        raise ValueError(f"not an object id: {oid!r}")
    return oid


def validate_ref_name(name: str) -> str:
    """Return ``name`` if it is a ref name a remote store may hold.

    A remote holds ``refs/heads/<model>`` and ``refs/tags/<tag>``; the part after the prefix
    follows the local rules (:func:`mgit.refs.store.check_name`: letters, digits, ``._+-``
    and ``/``, no ``..``, no component starting with ``.`` or ``-`` or ending in ``.lock``),
    and no component may end in ``.tmp`` (the transports' temp files). Such a name can never
    reach outside the store's root, on a path or under an S3 prefix.

    Args:
        name: The candidate name, e.g. ``refs/heads/org/bert``.

    Returns:
        The same string.

    Raises:
        InvalidRefNameError: The name is not allowed.
    """
    if not isinstance(name, str):
        raise InvalidRefNameError(str(name), "not a string")
    prefix = next((p for p in REMOTE_REF_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        raise InvalidRefNameError(name, "a remote ref is refs/heads/NAME or refs/tags/NAME")
    rest = name[len(prefix) :]
    check_name(rest, what="ref name")
    if any(part.endswith(_RESERVED_SUFFIXES) for part in rest.split("/")):
        raise InvalidRefNameError(name, "a component may not end with '.lock' or '.tmp'")
    return name


def parse_ref_value(name: str, data: bytes, where: str) -> str:
    """Parse the stored bytes of a remote ref into an object id.

    Args:
        name: The ref's name (for the message).
        data: The ref file's bytes, ``b"<64 hex>\\n"``.
        where: The remote's URL (for the message).

    Returns:
        The object id.

    Raises:
        RemoteError: The stored value is not an object id (nothing read from a remote is
            trusted).
    """
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not is_oid(text):  # nothing read from a remote is trusted
        raise RemoteError(
            f"ref {name} on {where} is damaged: not an object id",
            hint="repair or delete the ref on the remote",
        )
    return text


def object_path(oid: str) -> str:
    """Return the store-relative path of an object: ``objects/ab/<62 hex>``."""
    return f"objects/{oid[:2]}/{oid[2:]}"


@runtime_checkable
class Transport(Protocol):
    """Byte-level access to a remote bare store. Implementations are thread-safe."""

    url: str

    def read_config(self) -> dict[str, object] | None:
        """Return the store's config, or None when there is no store at the URL."""
        ...

    def init(self, config: dict[str, object]) -> None:
        """Create the bare store with ``config`` if it is absent (idempotent)."""
        ...

    def list_refs(self) -> dict[str, str]:
        """Return every ref: ``{"refs/heads/x": oid, "refs/tags/t": oid}``."""
        ...

    def read_ref(self, name: str) -> str | None:
        """Return the id a ref points at, or None if it does not exist."""
        ...

    def update_ref(self, name: str, old: str | None, new: str | None) -> None:
        """Compare-and-swap a ref: ``old`` None = must not exist, ``new`` None = delete."""
        ...

    def has_objects(self, oids: Iterable[str]) -> set[str]:
        """Return the subset of ``oids`` the store holds."""
        ...

    def get_object(self, oid: str) -> bytes:
        """Return an object's stored bytes; ObjectNotFoundError if absent."""
        ...

    def put_object(self, oid: str, data: bytes) -> None:
        """Store an object atomically, write-once; already present is success."""
        ...

    def iter_objects(self) -> Iterator[str]:
        """Yield the id of every object in the store."""
        ...


def _default_lock_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("MGIT_LOCK_TIMEOUT", "5")))
    except ValueError:
        return 5.0




class LocalTransport:
    """A bare store on a path: a local disk or a shared filesystem (NFS, Lustre, a mount).

    Objects are written as a process-unique temp file in their final directory, fsynced and
    renamed into place, so a reader never sees a partial object and two writers of the same
    object cannot hurt each other. Refs change by compare-and-swap under an
    ``O_CREAT|O_EXCL`` ``<ref>.lock`` file, git's protocol: the new value is written into the
    lock file, which is then renamed over the ref.

    Args:
        root: The store's root directory (it need not exist before :meth:`init`).
        lock_timeout: Seconds to keep retrying a ref lock held by someone else before
            raising :class:`~mgit.errors.LockHeldError` (default ``MGIT_LOCK_TIMEOUT`` or 5).
    """

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float | None = None) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.url = str(self.root)
        self.lock_timeout = lock_timeout if lock_timeout is not None else _default_lock_timeout()

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
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise RemoteError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return parse_config(data, self.url)

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
            data = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
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
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
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
        return self._read_ref_file(name, self._ref_path(name))

    def list_refs(self) -> dict[str, str]:
        """Return every ref of the store, ``{name: oid}`` (lock and temp files skipped).

        Raises:
            RemoteError: A ref cannot be read or is damaged.
        """
        refs: dict[str, str] = {}
        base = self.root / "refs"
        if not base.is_dir():
            return refs
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for fname in sorted(filenames):
                name = f"{rel_dir}/{fname}"
                try:
                    validate_ref_name(name)
                except InvalidRefNameError:
                    continue  # lock/temp files and foreign files are not refs
                value = self._read_ref_file(name, Path(dirpath) / fname)
                if value is not None:
                    refs[name] = value
        return refs

    def _check_df_conflict(self, name: str, path: Path) -> None:
        """Refuse a ref whose path is a directory of refs, or lies below an existing ref."""
        if path.is_dir() and any(True for _ in _walk_files(path)):
            raise InvalidRefNameError(name, "refs exist below this name")
        parts = name.split("/")
        for i in range(2, len(parts)):
            prefix = "/".join(parts[:i])
            if (self.root.joinpath(*parts[:i])).is_file():
                raise InvalidRefNameError(name, f"conflicts with existing ref {prefix}")

    def _acquire_lock(self, name: str, path: Path) -> int:
        lock = path.with_name(path.name + ".lock")
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.002
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                self._check_df_conflict(name, path)
                raise InvalidRefNameError(name, "conflicts with an existing ref") from None
            try:
                return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if time.monotonic() >= deadline:
                    raise LockHeldError(lock) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except (FileNotFoundError, NotADirectoryError):
                # The parent directory was pruned by a concurrent delete; make it again.
                if time.monotonic() >= deadline:
                    raise LockHeldError(lock) from None
            except OSError as exc:
                raise RemoteError(
                    f"cannot lock ref {name} on {self.url}: {exc.strerror or exc}"
                ) from exc

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
        fd = self._acquire_lock(name, path)
        lock = path.with_name(path.name + ".lock")
        lock_released = False
        try:
            actual = self._read_ref_file(name, path)  # re-read under the lock
            if actual != old:
                raise RefConflictError(name, old, actual)
            if new is None:
                if old is not None:
                    path.unlink()
                    fsync_dir(path.parent)
            else:
                if path.is_dir():
                    path.rmdir()  # an empty directory left by deleted refs below this name
                os.write(fd, f"{new}\n".encode("ascii"))
                os.fsync(fd)
                os.close(fd)
                fd = -1
                # The rename publishes the value and releases the lock in one step.
                os.replace(lock, path)
                lock_released = True
                fsync_dir(path.parent)
        except OSError as exc:
            raise RemoteError(
                f"cannot update ref {name} on {self.url}: {exc.strerror or exc}"
            ) from exc
        finally:
            if fd >= 0:
                os.close(fd)
            if not lock_released:
                try:
                    os.unlink(lock)
                except FileNotFoundError:
                    pass
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

    def _object_file(self, oid: str) -> Path:
        validate_oid(oid)
        return self.root / "objects" / oid[:2] / oid[2:]

    def has_objects(self, oids: Iterable[str]) -> set[str]:
        """Return the subset of ``oids`` present in the store."""
        present: set[str] = set()
        for oid in set(oids):
            if self._object_file(oid).is_file():
                present.add(oid)
        return present

    def get_object(self, oid: str) -> bytes:
        """Return the stored bytes of ``oid``.

        Raises:
            ObjectNotFoundError: The store does not hold it.
            RemoteError: It cannot be read.
        """
        path = self._object_file(oid)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(oid, context=self.url) from None
        except OSError as exc:
            raise RemoteError(
                f"cannot read object {oid} on {self.url}: {exc.strerror or exc}"
            ) from exc

    def put_object(self, oid: str, data: bytes) -> None:
        """Store ``data`` as ``oid``: temp file, fsync, rename, fsync dir; present = success.

        Raises:
            RemoteError: The filesystem refused the write.
        """
        final = self._object_file(oid)
        if final.is_file():
            return
        tmp = temp_name(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o444)
                # A concurrent writer of the same id writes the same bytes: either rename wins.
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(final.parent)
        except OSError as exc:
            raise RemoteError(
                f"cannot write object {oid} to {self.url}: {exc.strerror or exc}"
            ) from exc

    def iter_objects(self) -> Iterator[str]:
        """Yield the id of every object in the store (temp files skipped)."""
        base = self.root / "objects"
        try:
            shards = sorted(os.listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            return
        for shard in shards:
            if not _SHARD_RE.match(shard):
                continue
            try:
                names = sorted(os.listdir(base / shard))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for rest in names:
                if _REST_RE.match(rest):
                    yield shard + rest


def _walk_files(path: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            yield Path(dirpath) / f


def parse_config(data: bytes, where: str) -> dict[str, object]:
    """Parse a remote store's config file.

    Raises:
        RemoteError: Not a JSON object.
    """
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteError(f"the config of remote {where} is not valid JSON") from exc
    if not isinstance(config, dict):
        raise RemoteError(f"the config of remote {where} is not a JSON object")
    return config


def open_transport(url: str) -> Transport:
    """Open the transport a remote URL names.

    Args:
        url: A path (``/mnt/models``, ``../shared``; a repository with a working tree is
            read through its ``.mgit`` folder), ``file:///path``, or
            ``s3://bucket/prefix``. For S3, the endpoint comes from ``MGIT_S3_ENDPOINT_URL``,
            ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, and credentials and region from
            the usual AWS environment variables and config files.

    Returns:
        A :class:`LocalTransport` or an ``S3Transport``.

    Raises:
        RemoteError: The URL's scheme is not supported, or it names no bucket.
    """
    if not url:
        raise RemoteError("empty remote URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        from mgit.remote.s3 import S3Transport  # boto3 only on this path

        if not parts.netloc:
            raise RemoteError(f"no bucket in remote URL {url!r}", hint="use s3://BUCKET/PREFIX")
        return S3Transport(parts.netloc, unquote(parts.path).strip("/"))
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RemoteError(f"file URL with a host is not supported: {url!r}")
        return _local(unquote(parts.path))
    if scheme and len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise RemoteError(
            f"unsupported remote URL {url!r}",
            hint="use a path, file:///PATH or s3://BUCKET/PREFIX",
        )
    return _local(os.path.expanduser(url))


def _local(path: str) -> LocalTransport:
    """A path transport; a repository with a working tree is served from its ``.mgit``."""
    inner = Path(path) / ".mgit"
    if (inner / "config").is_file():
        return LocalTransport(inner)
    return LocalTransport(path)
