"""File-system primitives: atomic writes, directory fsync, safe relative paths.

Every file mgit writes inside a repository goes through :func:`atomic_write` (objects, refs,
the index, config) or :class:`AtomicFile` (exported model files): a temp file in the same
directory with a process-unique name, fsync, ``os.replace``. A reader never sees half a file.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from mgit.errors import UnreadableFileError, UnsafePathError, UsageError

__all__ = [
    "start_writeback",
    "mallopt",
    "libc_function",
    "AtomicFile",
    "atomic_write",
    "fsync_dir",
    "temp_name",
    "check_relpath",
    "safe_join",
    "write_text_file",
    "open_regular",
    "read_regular",
    "file_kind",
    "mgit_dir_around",
    "check_not_in_mgit_dir",
]


def temp_name(final: Path) -> Path:
    """Process-unique temp name beside ``final`` (file locks lie on NFS; unique names don't)."""
    return final.with_name(f"{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


@functools.cache
def _native() -> Any:
    """:mod:`mgit._syscalls` (the C calls below without ctypes), or None where not built."""
    try:
        from mgit import _syscalls
    except ImportError:
        return None
    return _syscalls


_libc_fns: dict[str, Any] = {}


def libc_function(name: str, *argtypes: str) -> Any:
    """A function of the C library (Linux only; ``argtypes`` named as ctypes types, e.g.
    ``"c_int"``), or None where there is none. Looked up once per process."""
    if name not in _libc_fns:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = getattr(ctypes.CDLL(None, use_errno=True), name)
                if argtypes:
                    fn.argtypes = [getattr(ctypes, t) for t in argtypes]
            except (OSError, AttributeError):
                fn = None
        _libc_fns[name] = fn
    return _libc_fns[name]


_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing a file's dirty pages to disk now, without waiting.

    Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: the disk works while we go on computing,
    so the fsync that makes it durable later mostly finds the data already written. A no-op
    elsewhere. This is a hint for speed, never for durability.
    """
    native = _native()
    if native is not None:
        try:
            native.sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
        except OSError:
            pass
        return
    fn = libc_function("sync_file_range", "c_int", "c_int64", "c_int64", "c_uint")
    if fn is not None:
        fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def mallopt(param: int, value: int) -> bool | None:
    """glibc ``mallopt(param, value)``: True when applied, None where there is no glibc."""
    native = _native()
    if native is not None:
        return bool(native.mallopt(param, value))
    fn = libc_function("mallopt", "c_int", "c_int")
    return None if fn is None else bool(fn(param, value))


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes | Iterable[bytes], *, mode: int = 0o644, sync_dir: bool = True
) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync of the directory.

    Args:
        path: final path; its directory must exist.
        data: the bytes, or an iterable of byte strings written in order.
        mode: permission bits of the final file.
        sync_dir: fsync the directory after the rename (callers batching many writes may defer it).
    """
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                for part in data:
                    f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


class AtomicFile:
    """A file written in pieces that appears at its path only when closed without error.

    Example:
        >>> with AtomicFile(Path("out.bin")) as f:  # doctest: +SKIP
        ...     f.write(b"...")
    """

    def __init__(self, path: Path, *, mode: int = 0o644, durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        self.tmp = temp_name(path)
        self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        self._f = os.fdopen(self._fd, "wb")

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes."""
        self._f.write(data)

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        """Write bytes at ``offset`` (thread-safe; do not mix with :meth:`write`)."""
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def commit(self) -> None:
        """Flush, fsync and rename into place."""
        self._f.flush()
        if self.durable:
            os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.tmp, self.path)
        if self.durable:
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop the temp file."""
        try:
            self._f.close()
        finally:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_text_file(path: Path, text: str) -> None:
    """Write a view (HTML, DOT) atomically; its folder must exist.

    Raises:
        UsageError: the folder does not exist.
    """
    if not path.parent.is_dir():
        raise UsageError(f"no such folder: {path.parent}")
    atomic_write(path, text.encode("utf-8"))


def check_relpath(path: str) -> str:
    """Validate a repository-relative POSIX path from an untrusted source; return it normalized.

    Raises:
        UnsafePathError: empty, absolute, with ``..``, ``.`` or empty components, a backslash,
            a NUL, or reaching into ``.mgit``.
    """
    if not path or "\x00" in path or "\\" in path:
        raise UnsafePathError(path, "empty path or forbidden character")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(path.encode("utf-8", "replace").decode(), "file name is not valid UTF-8") from None
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UnsafePathError(path, "absolute path")
    parts = path.split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise UnsafePathError(path, "path escapes the model folder or is not normalized")
    if parts[0] == ".mgit":
        raise UnsafePathError(path, "paths inside .mgit are not model files")
    return str(PurePosixPath(path))


def safe_join(root: Path, relpath: str) -> Path:
    """Join a validated relative path under ``root``, refusing to go through symlinks.

    Raises:
        UnsafePathError: the path is unsafe, or one of its parent directories under ``root``
            is a symlink (writing through it could land outside ``root``).
    """
    check_relpath(relpath)
    target = root.joinpath(*relpath.split("/"))
    cur = root
    for part in relpath.split("/")[:-1]:
        cur = cur / part
        if cur.is_symlink():
            raise UnsafePathError(relpath, f"parent directory {cur} is a symlink")
    if target.is_symlink():
        raise UnsafePathError(relpath, "is a symlink")
    return target


def file_kind(mode: int) -> str:
    """What a stat mode is, in words: ``"a FIFO"``, ``"a socket"``, ``"a folder"``..."""
    for test, name in (
        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, hint: str | None = None) -> int:
    """Open a file for reading, refusing anything but a regular file, without ever blocking.

    The one way mgit opens a file it did not write itself. ``O_NONBLOCK`` makes a FIFO open at
    once instead of waiting for a writer (and has no effect on a regular file); the type is then
    checked on the open descriptor, so a file swapped for a FIFO after a ``stat`` is still caught.

    Returns:
        A file descriptor (the caller closes it).

    Raises:
        FileNotFoundError, NotADirectoryError: nothing at ``path`` (callers often expect it).
        UnreadableFileError: not a regular file (a FIFO, a socket, a device, a folder), a
            symlink loop, or no permission to read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise  # nothing there (a parent is a file): as ``open`` says it
    except OSError as e:
        if e.errno == errno.ELOOP:
            reason = "symlink loop"
        elif e.errno == errno.ENXIO:
            reason = "a socket"
        elif e.errno == errno.EISDIR:
            reason = "a folder"
        else:
            reason = e.strerror or str(e)
        raise UnreadableFileError(path, reason, hint=hint) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFileError(path, f"{file_kind(mode)}, not a regular file", hint=hint)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], *, limit: int | None = None, hint: str | None = None) -> bytes:
    """The bytes of a regular file (:func:`open_regular`), at most ``limit`` of them.

    Raises:
        FileNotFoundError: nothing at ``path``.
        UnreadableFileError: not a regular file, or unreadable.
    """
    fd = open_regular(path, hint=hint)
    try:
        with os.fdopen(fd, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as e:
        raise UnreadableFileError(path, e.strerror or str(e), hint=hint) from None


def _is_store(p: Path) -> bool:
    """A repository folder: a ``.mgit`` holding a ``config``, or a bare store (``config``,
    ``objects/`` and ``refs/`` side by side)."""
    try:
        if not (p / "config").is_file():
            return False
        return p.name == ".mgit" or ((p / "objects").is_dir() and (p / "refs").is_dir())
    except OSError:
        return False


def mgit_dir_around(path: str | os.PathLike[str]) -> Path | None:
    """The repository folder (``.mgit``, or a bare store) that ``path`` is inside or is, or
    None. Both the path as given (made absolute) and its symlinks resolved are checked."""
    given = Path(os.path.abspath(path))
    for candidate in (given, Path(os.path.realpath(given))):
        for p in (candidate, *candidate.parents):
            if _is_store(p):
                return p
    return None


def check_not_in_mgit_dir(path: str | os.PathLike[str], *, action: str) -> None:
    """Refuse to write model files at or under a repository's ``.mgit`` (this repository's or
    any other), ``--force`` or not: they would overwrite its refs, config or HEAD.

    Raises:
        UnsafePathError: ``path`` is inside a ``.mgit`` folder.
    """
    found = mgit_dir_around(path)
    if found is not None:
        err = UnsafePathError(path, f"{action} into the repository folder {found} is refused")
        err.hint = "choose a folder outside any .mgit"
        raise err
