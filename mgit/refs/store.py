"""Refs: model lines (``refs/heads/<model>``), tags, remote-tracking refs, HEAD and the reflog.

A ref is a file holding an object id. Every change is a compare-and-swap under ``<ref>.lock``
(created with ``O_CREAT | O_EXCL``, git's protocol): take the lock, re-read the ref, compare with
the value the caller expects, write the new value to the lock file, fsync, rename it over the
ref (:class:`mgit._lockfile.LockFile`; a held lock is waited for ``MGIT_LOCK_TIMEOUT`` seconds,
default 5). Several refs change all-or-nothing: lock all (in sorted order), verify all, then write all.

Refs may also be packed, as git packs them: ``packed-refs`` holds ``<id> <name>`` lines, and a
ref file (a "loose" ref) overrides its packed line. ``mgit gc`` packs every ref
(:meth:`RefStore.pack`): with 100,000 model lines, reading the refs is one file instead of
100,000 (about 1 s of every query). Updates still write loose refs; deleting a packed ref
rewrites ``packed-refs`` under ``packed-refs.lock``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mgit._fs import atomic_write, fsync_dir, read_regular
from mgit._lockfile import LockFile, env_timeout
from mgit.errors import (
    CorruptRefError,
    InvalidRefNameError,
    LockHeldError,
    MgitError,
    RefConflictError,
    ReflogWarning,
    UnreadableFileError,
)
from mgit.objects.ids import is_oid

__all__ = [
    "HEADS",
    "PACKED",
    "REBASE",
    "REMOTES",
    "TAGS",
    "TESTS",
    "RefStore",
    "check_name",
    "check_packed_conflict",
    "packed_bytes",
    "packed_lines_dropped",
    "read_packed",
    "scan_refs",
]

HEADS = "refs/heads/"
TAGS = "refs/tags/"
REMOTES = "refs/remotes/"
#: The one ref of the test notes (specs and results, :mod:`mgit.lifecycle.notes`): not a model
#: line, so history views leave it out, but gc, fsck, push and fetch follow it.
TESTS = "refs/tests"
#: ``refs/rebase/<model>``: the version a rebase wrote whose tests failed, kept (not pushed)
#: for inspection (:mod:`mgit.lifecycle.rebase_attempts`).
REBASE = "refs/rebase/"

#: A ref file is one id and a newline (or ``ref: NAME``); more than this is not a ref.
_REF_MAX = 4096

#: The packed refs file (beside ``refs/``) and its first line.
PACKED = "packed-refs"
_PACKED_HEADER = "# mgit packed-refs 1"
_PACKED_MAX = 1 << 30

_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")
#: A packed line: an id and a full ref name (group 3: the name after the namespace).
_PACKED_LINE = re.compile(
    r"([0-9a-f]{64}) (refs/tests|refs/(?:heads|tags|remotes|rebase)/"
    r"([A-Za-z0-9_][A-Za-z0-9._+-]*(?:/[A-Za-z0-9_][A-Za-z0-9._+-]*)*))"
)


def check_name(name: str, *, what: str = "name") -> str:
    """Validate a model, tag or remote name (the part after ``refs/heads/`` etc).

    Raises:
        InvalidRefNameError: empty, too long, ``..``, a component starting with ``.`` or ``-``,
            ending in ``.lock``, or characters outside letters, digits, ``._+-`` and ``/``.
    """
    if not name or len(name) > 200:
        raise InvalidRefNameError(name, f"{what} must be 1 to 200 characters")
    if ".." in name:
        raise InvalidRefNameError(name, f"{what} may not contain '..'")
    for comp in name.split("/"):
        if not _COMPONENT.match(comp):
            raise InvalidRefNameError(name, f"bad component {comp!r}")
        if comp.endswith(".lock"):
            raise InvalidRefNameError(name, f"{what} may not end in '.lock'")
    if name in ("HEAD",):
        raise InvalidRefNameError(name, f"{name} is reserved")
    return name


def _check_full(ref: str) -> None:
    if ref in ("HEAD", TESTS):
        return
    for prefix in (HEADS, TAGS, REMOTES, REBASE):
        if ref.startswith(prefix):
            check_name(ref[len(prefix) :])
            return
    raise InvalidRefNameError(ref, "not refs/tests nor under refs/heads, refs/tags, refs/remotes or refs/rebase")


def scan_refs(root: Path, prefix: str = "refs/") -> dict[str, str]:
    """Every ref under ``root/refs`` whose name starts with ``prefix``, as ``{name: oid}``
    sorted by name: regular files holding an object id (lock and temp files skipped, anything
    else never opened in a way that blocks, symlinked folders not entered). One ``scandir``
    per folder and four system calls per ref, starting at the deepest folder ``prefix``
    names: 10,000 refs read 5x faster than a ``pathlib`` walk.
    """
    loose, files = _scan_loose(root, prefix)
    packed = read_packed(root)[0]
    if packed:  # a loose file (even a damaged one) overrides its packed line
        for name, oid in packed.items():
            if name.startswith(prefix) and name not in files:
                loose[name] = oid
    return dict(sorted(loose.items()))


def _scan_loose(root: Path, prefix: str) -> tuple[dict[str, str], set[str]]:
    """The loose refs under ``prefix`` holding an id, and the names of every ref file seen."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    parts = prefix.split("/")[:-1]  # "refs/heads/" -> ["refs", "heads"]; "refs/hea" -> ["refs"]
    if not parts or parts[0] != "refs":
        parts = ["refs"]
    stack = [("/".join(parts), str(root.joinpath(*parts)))]
    while stack:
        name, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                found = list(it)
        except OSError:
            continue
        for e in found:
            fn = e.name
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not e.is_symlink():
                    stack.append((f"{name}/{fn}", e.path))
                continue
            full = f"{name}/{fn}"
            if fn.endswith((".lock", ".tmp")) or not full.startswith(prefix):
                continue
            seen.add(full)
            try:
                fd = os.open(e.path, flags)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                text = os.read(fd, _REF_MAX).decode("utf-8", "replace").strip()
            except OSError:
                continue
            finally:
                os.close(fd)
            if is_oid(text):
                out[full] = text
    return out, seen


_packed_cache: dict[str, tuple[tuple[int, int, int], dict[str, str], list[int]]] = {}
_packed_lock = threading.Lock()


def read_packed(root: Path) -> tuple[dict[str, str], list[int]]:
    """The packed refs of the store at ``root`` (``{name: id}``) and the numbers of its lines
    that are not ``<id> <valid ref name>`` (skipped; ``fsck`` reports them). Parsed once per
    version of the file (its inode, size and mtime)."""
    path = root / PACKED
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}, []
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _packed_lock:
        hit = _packed_cache.get(str(path))
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    try:
        text = read_regular(path, limit=_PACKED_MAX).decode("utf-8", "replace")
    except (OSError, MgitError):
        return {}, [0]
    refs: dict[str, str] = {}
    bad: list[int] = []
    match = _PACKED_LINE.fullmatch
    for n, line in enumerate(text.splitlines(), 1):
        if n == 1 and line == _PACKED_HEADER:
            continue
        m = match(line)
        sub = m and m.group(3)
        if m is None or (sub is not None and (
            len(sub) > 200 or ".." in sub or ".lock/" in sub + "/" or sub == "HEAD"
        )):  # the rules of check_name, in one regular expression and three tests
            bad.append(n)
            continue
        refs[m.group(2)] = m.group(1)
    with _packed_lock:
        _packed_cache[str(path)] = (key, refs, bad)
    return refs, bad


def packed_bytes(refs: dict[str, str]) -> bytes:
    """The ``packed-refs`` file holding ``refs`` (sorted by name)."""
    lines = [_PACKED_HEADER] + [f"{oid} {name}" for name, oid in sorted(refs.items())]
    return ("\n".join(lines) + "\n").encode()


@contextmanager
def packed_lines_dropped(root: Path, names: Sequence[str], *, timeout: float) -> Iterator[None]:
    """Around deleting the ref files of ``names`` (in the block): hold ``packed-refs.lock``
    for the whole block, and first rewrite ``packed-refs`` without their lines. A packing
    (:meth:`RefStore.pack`, which reads the ref files under the same lock) can then run only
    before (and its lines are dropped here) or after (the files are gone): it never writes
    back the line of a ref being deleted. The one rule for a store's refs and a path
    remote's."""
    if not names:
        yield
        return
    with LockFile(root / PACKED, timeout=timeout, poll=0.01):  # a mutex, kept past the rewrite
        packed = read_packed(root)[0]
        gone = set(names) & packed.keys()
        if gone:
            atomic_write(root / PACKED, packed_bytes({k: v for k, v in packed.items() if k not in gone}))
        yield


def check_packed_conflict(ref: str, packed: dict[str, str]) -> None:
    """Refuse a new ref that would be a folder of a packed ref, or lie below one."""
    parts = ref.split("/")
    for i in range(2, len(parts)):
        if "/".join(parts[:i]) in packed:
            raise InvalidRefNameError(ref, f"conflicts with existing ref {'/'.join(parts[:i])}")
    below = ref + "/"
    if any(name.startswith(below) for name in packed):
        raise InvalidRefNameError(ref, "conflicts with existing refs below it")


class RefStore:
    """Refs of one repository, stored under ``root`` (the ``.mgit`` folder or a bare store)."""

    def __init__(self, root: Path, *, who: str = "mgit") -> None:
        self.root = root
        self.who = who

    def _path(self, ref: str) -> Path:
        _check_full(ref)
        return self.root.joinpath(*ref.split("/"))

    # -- reading ----------------------------------------------------------------------------

    def read(self, ref: str) -> str | None:
        """The id a ref points at, or None. For ``HEAD``, follows the symbolic ref."""
        if ref == "HEAD":
            target = self.head_target()
            if target is None:  # detached: an id (garbage is a damaged HEAD, not "no commit")
                return self._read_file(self.root / "HEAD")
            return self.read(target)
        return self._read_ref(ref)

    def _read_ref(self, ref: str) -> str | None:
        """The loose ref's id, else its packed line's (a loose file overrides it)."""
        path = self._path(ref)
        value = self._read_file(path)
        if value is None and not (path.exists() or path.is_symlink()):
            return read_packed(self.root)[0].get(ref)
        return value

    def _read_file(self, path: Path, *, strict: bool = True) -> str | None:
        try:
            # Never blocks: a FIFO (or anything not a regular file) in a ref's place is refused.
            text = read_regular(path, limit=_REF_MAX).decode("utf-8", "replace").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except UnreadableFileError:
            if strict:
                raise
            return None
        if text.startswith("ref: "):
            return None
        if is_oid(text):
            return text
        if strict:
            raise CorruptRefError(path.relative_to(self.root).as_posix())
        return None

    def damaged_refs(self) -> list[str]:
        """Ref files that do not hold an object id (for ``fsck``)."""
        out = []
        base = self.root / "refs"
        for dirpath, _dirs, files in os.walk(base):
            for fn in files:
                if fn.endswith(".lock") or fn.endswith(".tmp"):
                    continue
                full = Path(dirpath) / fn
                if self._read_file(full, strict=False) is None:
                    out.append(full.relative_to(self.root).as_posix())
        if self._head_damaged():
            out.append("HEAD")
        out += [f"{PACKED}:{n}" for n in read_packed(self.root)[1]]
        return sorted(out)

    def _head_damaged(self) -> bool:
        """HEAD exists but holds neither a commit id nor ``ref: <a valid ref name>``."""
        head = self.root / "HEAD"
        if not (head.exists() or head.is_symlink()):
            return False
        target = self.head_target()
        if target is None:
            return self._read_file(head, strict=False) is None
        try:
            _check_full(target)
        except InvalidRefNameError:
            return True
        return False

    def head_target(self) -> str | None:
        """The ref HEAD points at (``refs/heads/x``), or None when HEAD is detached."""
        try:
            text = read_regular(self.root / "HEAD", limit=_REF_MAX).decode("utf-8", "replace").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if text.startswith("ref: "):
            return text[5:]
        return None

    def iter_refs(self, prefix: str = "refs/") -> dict[str, str]:
        """All refs under ``prefix`` as ``{name: oid}``, sorted by name (:func:`scan_refs`)."""
        return scan_refs(self.root, prefix)

    # -- writing ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, refs: Sequence[str]) -> Iterator[dict[str, LockFile]]:
        """Hold ``<ref>.lock`` for every ref (taken in sorted order, so two writers of
        overlapping sets cannot deadlock); yields ``{ref: lock}``. Locks not committed are
        released on leaving."""
        held: dict[str, LockFile] = {}
        try:
            for ref in sorted(set(refs)):
                path = self._path(ref) if ref != "HEAD" else self.root / "HEAD"
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise InvalidRefNameError(ref, "conflicts with an existing ref (a ref cannot also be a folder)") from None
                if path.is_dir():
                    raise InvalidRefNameError(ref, "conflicts with existing refs below it")
                held[ref] = LockFile(path, timeout=env_timeout(), poll=0.01).acquire()
            yield held
        finally:
            for lock in held.values():
                lock.abort()

    def update_many(
        self, updates: Sequence[tuple[str, str | None, str | None]], *, message: str
    ) -> None:
        """Change several refs all-or-nothing, each compared with the value expected.

        Args:
            updates: ``(ref, expected_old, new)``; ``expected_old`` None means "must not exist",
                ``new`` None deletes the ref.
            message: written to the reflog.

        Raises:
            RefConflictError: a ref does not hold the value expected; nothing was changed.
            LockHeldError: another process holds one of the locks.
        """
        for ref, _old, new in updates:
            _check_full(ref)
            if new is not None and not is_oid(new):
                raise ValueError(f"not an object id: {new}")
        with self._locked([u[0] for u in updates]) as locks:
            packed = read_packed(self.root)[0]
            for ref, old, new in updates:
                actual = self._read_ref(ref)
                if actual != old:
                    raise RefConflictError(ref, old, actual)
                if old is None and new is not None and packed:
                    check_packed_conflict(ref, packed)
            deleted = [ref for ref, _old, new in updates if new is None]
            with packed_lines_dropped(self.root, deleted, timeout=env_timeout()):
                for ref in deleted:
                    path = self._path(ref)
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
                    fsync_dir(path.parent)
            for ref, old, new in updates:
                if new is not None:
                    locks[ref].write((new + "\n").encode())
                    locks[ref].commit()
                self._log(ref, old, new, message)

    def pack(self) -> int:
        """Pack every loose ref under ``refs/`` into ``packed-refs`` and remove the loose files
        that still hold the packed value (a ref busy or changed meanwhile stays loose). Safe
        beside any update: a file is removed only under its ref's lock. Returns the number of
        loose refs removed.

        Raises:
            LockHeldError: another process is rewriting ``packed-refs``.
        """
        with LockFile(self.root / PACKED, timeout=env_timeout(), poll=0.01) as lock:
            packed = dict(read_packed(self.root)[0])
            loose, files = _scan_loose(self.root, "refs/")
            if not files:
                return 0
            packed.update(loose)  # a damaged loose file stays, overriding its line (as in git)
            lock.write(packed_bytes(packed))
            lock.commit()
        removed: set[Path] = set()
        for name, oid in sorted(loose.items()):
            path = self._path(name)
            try:
                with LockFile(path, timeout=0) as ref_lock:
                    if self._read_file(path, strict=False) == oid:
                        path.unlink()
                        removed.add(path)
                    ref_lock.abort()
            except (LockHeldError, OSError):
                continue  # busy: it stays loose, overriding its packed line
        for folder in {p.parent for p in removed}:
            fsync_dir(folder)
        return len(removed)

    def set_if_equals(self, ref: str, old: str | None, new: str, *, message: str) -> None:
        """Compare-and-swap one ref (see :meth:`update_many`)."""
        self.update_many([(ref, old, new)], message=message)

    def delete_if_equals(self, ref: str, old: str, *, message: str) -> None:
        """Delete a ref if it still holds ``old``."""
        self.update_many([(ref, old, None)], message=message)

    def set_head(self, *, ref: str | None = None, oid: str | None = None, message: str = "") -> None:
        """Point HEAD at a model ref (symbolic) or detach it at a commit id."""
        if (ref is None) == (oid is None):
            raise ValueError("give exactly one of ref and oid")
        if ref is not None:
            _check_full(ref)
            text = f"ref: {ref}\n"
        else:
            assert oid is not None and is_oid(oid)
            text = oid + "\n"
        with self._locked(["HEAD"]) as locks:
            try:
                old = self.read("HEAD")
            except (CorruptRefError, InvalidRefNameError):  # a damaged HEAD is what this repairs
                old = None
            locks["HEAD"].write(text.encode())
            locks["HEAD"].commit()
            self._log("HEAD", old, self.read("HEAD"), message)

    def _log(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        """Append a reflog entry. The ref has already moved: a failure here (disk full) is a
        :class:`~mgit.errors.ReflogWarning`, never an error, or a retried command would make
        its change twice (a second version of the same commit)."""
        try:
            self._append_log(ref, old, new, message)
        except OSError as exc:
            warnings.warn(
                ReflogWarning(f"{ref} moved to {(new or '(deleted)')[:12]}, but its reflog entry "
                              f"could not be written: {exc.strerror or exc}"),
                stacklevel=3,
            )

    def _append_log(self, ref: str, old: str | None, new: str | None, message: str) -> None:
        path = self.root / "logs" / Path(*ref.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"old": old, "new": new, "time": int(time.time()), "who": self.who, "message": message},
            sort_keys=True,
        )
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def reflog(self, ref: str) -> list[dict[str, object]]:
        """The reflog entries of a ref, oldest first."""
        path = self.root / "logs" / Path(*ref.split("/"))
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
