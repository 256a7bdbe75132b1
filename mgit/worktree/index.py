"""The working tree: scanning the model folder, the index (staged changes + stat cache), status.

``.mgit/index`` is JSON: ``{"version": 1, "staged": {path: snapshot | null}, "cache": {path:
snapshot}}`` where a snapshot is ``{"size", "mtime_ns", "xxh"}`` (``null`` stages a deletion).
The cache remembers the stat of working files known to match a checksum, so ``status`` only
re-reads files whose size or mtime changed. ``add`` records a snapshot; ``commit`` refuses a
staged file that changed after it was added, so what is committed is what was staged.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from mgit._fs import atomic_write, check_relpath
from mgit.errors import LockHeldError, UnsafePathError

__all__ = [
    "Snapshot",
    "Index",
    "StatusResult",
    "scan",
    "file_xxh",
    "snapshot",
    "index_lock",
    "folder_bytes",
    "IGNORE_FILE",
]

IGNORE_FILE = ".mgitignore"
_BLOCK = 8 << 20


#: A file modified this close to when its snapshot was taken may have changed again within the
#: same timestamp tick without its stat changing ("racy" entries, as git calls them): re-hash it.
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class Snapshot:
    """What a working file looked like: stat fields, content checksum, when it was taken."""

    size: int
    mtime_ns: int
    xxh: str
    ctime_ns: int = 0
    ino: int = 0
    taken_ns: int = 0

    @classmethod
    def of(cls, st: os.stat_result, xxh: str) -> Snapshot:
        """A snapshot of a file whose stat is ``st`` and checksum ``xxh``, taken now."""
        return cls(st.st_size, st.st_mtime_ns, xxh, st.st_ctime_ns, st.st_ino, time.time_ns())

    def matches_stat(self, st: os.stat_result) -> bool:
        """Same size, mtime, ctime and inode as ``st``, and not racily close to the snapshot."""
        return (
            st.st_size == self.size
            and st.st_mtime_ns == self.mtime_ns
            and st.st_ctime_ns == self.ctime_ns
            and st.st_ino == self.ino
            and self.taken_ns - self.mtime_ns > _RACY_NS
        )

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"size": self.size, "mtime_ns": self.mtime_ns, "xxh": self.xxh,
                "ctime_ns": self.ctime_ns, "ino": self.ino, "taken_ns": self.taken_ns}

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Snapshot:
        """From JSON."""
        return cls(int(v["size"]), int(v["mtime_ns"]), str(v["xxh"]), int(v.get("ctime_ns", 0)),
                   int(v.get("ino", 0)), int(v.get("taken_ns", 0)))


def file_xxh(path: Path) -> str:
    """XXH3-128 of a file, streamed."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def snapshot(path: Path) -> Snapshot:
    """Stat and checksum a file."""
    st = path.stat()
    return Snapshot.of(st, file_xxh(path))


def _ignore_patterns(root: Path) -> list[str]:
    try:
        lines = (root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for p in patterns:
        p = p.rstrip("/")
        if fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) or rel.startswith(p + "/"):
            return True
    return False


def scan(root: Path, *, under: str = "", strict: bool = False) -> dict[str, Path]:
    """Files of a model folder as ``{relative posix path: path}``, without ``.mgit``.

    Symlinks are followed only when they resolve inside ``root``.

    Args:
        root: the folder.
        under: only files under this relative folder.
        strict: raise on a symlink pointing outside ``root`` (else it is skipped).

    Raises:
        UnsafePathError: (strict) a symlink that points outside the folder.
    """
    root_real = root.resolve()
    patterns = _ignore_patterns(root)
    out: dict[str, Path] = {}
    start = root / under if under else root
    for dirpath, dirs, files in os.walk(start, followlinks=False):
        dp = Path(dirpath)
        rel_dir = dp.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirs):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if rel == ".mgit" or _ignored(rel, patterns):
                continue
            full = dp / d
            if full.is_symlink():
                _check_link(full, root_real, rel, strict)
                continue  # linked directories are not followed
            keep.append(d)
        dirs[:] = keep
        for fn in sorted(files):
            rel = f"{rel_dir}/{fn}" if rel_dir else fn
            if _ignored(rel, patterns) or fn.endswith(".mgit-tmp"):
                continue
            try:
                check_relpath(rel)
            except UnsafePathError:
                if strict:
                    raise
                continue
            full = dp / fn
            if full.is_symlink():
                if not _check_link(full, root_real, rel, strict):
                    continue
                if not full.resolve().is_file():
                    continue
            elif not full.is_file():
                continue
            out[rel] = full
    return out


def _check_link(full: Path, root_real: Path, rel: str, strict: bool) -> bool:
    target = full.resolve()
    try:
        target.relative_to(root_real)
        return True
    except ValueError:
        if strict:
            raise UnsafePathError(rel, f"symlink points outside the model folder ({target})") from None
        return False


def folder_bytes(folder: Path) -> int:
    """Total size of the files :func:`scan` would find in ``folder`` (0 if it is not a folder)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in scan(folder).values())


@contextmanager
def index_lock(mgit_dir: Path) -> Iterator[None]:
    """Exclusive lock on the index (``index.lock``, ``O_EXCL``).

    Raises:
        LockHeldError: another process holds it.
    """
    lock = mgit_dir / "index.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise LockHeldError(lock) from None
    os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass


@dataclass
class Index:
    """Staged changes and the stat cache."""

    staged: dict[str, Snapshot | None] = field(default_factory=dict)
    cache: dict[str, Snapshot] = field(default_factory=dict)

    @classmethod
    def load(cls, mgit_dir: Path) -> Index:
        """Read ``.mgit/index`` (empty when absent)."""
        try:
            v = json.loads((mgit_dir / "index").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return cls()  # the index is a cache of the working tree; a bad one is rebuilt
        staged = {
            p: (Snapshot.from_json(s) if s is not None else None)
            for p, s in v.get("staged", {}).items()
        }
        cache = {p: Snapshot.from_json(s) for p, s in v.get("cache", {}).items()}
        return cls(staged, cache)

    def save(self, mgit_dir: Path) -> None:
        """Write ``.mgit/index`` atomically."""
        v = {
            "version": 1,
            "staged": {p: (s.to_json() if s else None) for p, s in sorted(self.staged.items())},
            "cache": {p: s.to_json() for p, s in sorted(self.cache.items())},
        }
        atomic_write(mgit_dir / "index", json.dumps(v, sort_keys=True).encode())

    def current_xxh(self, rel: str, path: Path) -> str:
        """Checksum of a working file, from the cache when its stat is unchanged."""
        st = path.stat()
        c = self.cache.get(rel)
        if c is not None and c.matches_stat(st):
            return c.xxh
        snap = Snapshot.of(st, file_xxh(path))
        self.cache[rel] = snap
        return snap.xxh


@dataclass(frozen=True)
class StatusResult:
    """What ``mgit status`` reports. Paths are relative POSIX paths, sorted."""

    model: str | None
    head: str | None
    detached: bool
    staged_new: list[str]
    staged_modified: list[str]
    staged_deleted: list[str]
    modified: list[str]
    deleted: list[str]
    untracked: list[str]

    @property
    def clean(self) -> bool:
        """No staged or unstaged change to tracked files."""
        return not (
            self.staged_new or self.staged_modified or self.staged_deleted or self.modified or self.deleted
        )

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "model": self.model,
            "head": self.head,
            "detached": self.detached,
            "staged": {
                "new": self.staged_new,
                "modified": self.staged_modified,
                "deleted": self.staged_deleted,
            },
            "modified": self.modified,
            "deleted": self.deleted,
            "untracked": self.untracked,
            "clean": self.clean,
        }
