"""The index: staged changes and the stat cache of the working tree.

``.mgit/index`` is JSON: ``{"version": 1, "staged": {path: snapshot | null}, "cache": {path:
snapshot}}`` where a snapshot is ``{"size", "mtime_ns", "xxh"}`` (``null`` stages a deletion).
The cache remembers the stat of working files known to match a checksum, so ``status`` only
re-reads files whose size or mtime changed. ``add`` records a snapshot; ``commit`` refuses a
staged file that changed after it was added, so what is committed is what was staged.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from mgit._fs import atomic_write, check_relpath, open_regular, read_regular
from mgit._lockfile import LockFile
from mgit.errors import CorruptIndexError, UnreadableFileError, UnsafePathError

__all__ = ["Snapshot", "Index", "file_xxh", "snapshot", "index_lock"]

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
        """From JSON.

        Raises:
            TypeError, KeyError, ValueError: not a snapshot.
        """
        if not isinstance(v, dict) or not isinstance(v.get("xxh"), str):
            raise TypeError("not a snapshot")
        return cls(int(v["size"]), int(v["mtime_ns"]), str(v["xxh"]), int(v.get("ctime_ns", 0)),
                   int(v.get("ino", 0)), int(v.get("taken_ns", 0)))


def file_xxh(path: Path) -> str:
    """XXH3-128 of a file, streamed (a regular file only: opened without blocking).

    Raises:
        UnreadableFileError: not a regular file, or unreadable.
    """
    h = xxhash.xxh3_128()
    with os.fdopen(open_regular(path), "rb") as f:
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


def _index_path(p: Any) -> str:
    """A path key of the index: a valid relative path.

    Raises:
        TypeError, ValueError: not one.
    """
    if not isinstance(p, str):
        raise TypeError("a path is not a string")
    try:
        return check_relpath(p)
    except UnsafePathError:
        raise ValueError(f"bad path {p!r}") from None


@contextmanager
def index_lock(mgit_dir: Path) -> Iterator[None]:
    """Exclusive lock on the index (``index.lock``); fails at once when held.

    Raises:
        LockHeldError: another process holds it.
    """
    with LockFile(mgit_dir / "index"):
        yield


@dataclass
class Index:
    """Staged changes and the stat cache."""

    staged: dict[str, Snapshot | None] = field(default_factory=dict)
    cache: dict[str, Snapshot] = field(default_factory=dict)

    @classmethod
    def load(cls, mgit_dir: Path) -> Index:
        """Read ``.mgit/index`` (empty when absent; read without blocking).

        Raises:
            CorruptIndexError: not a regular file, or valid JSON of another shape than an index.
        """
        path = mgit_dir / "index"
        try:
            v = json.loads(read_regular(path).decode("utf-8"))
        except FileNotFoundError:
            return cls()
        except UnreadableFileError as e:
            raise CorruptIndexError(path, e.reason) from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
            return cls()  # not JSON at all (a torn or garbage file): the cache is rebuilt
        if not isinstance(v, dict):
            raise CorruptIndexError(path, f"valid JSON, but a {type(v).__name__}, not an index object")
        staged_v, cache_v = v.get("staged", {}), v.get("cache", {})
        if not isinstance(staged_v, dict) or not isinstance(cache_v, dict):
            raise CorruptIndexError(path, "valid JSON, but its 'staged' or 'cache' is not an object")
        try:
            staged = {
                _index_path(p): (Snapshot.from_json(s) if s is not None else None)
                for p, s in staged_v.items()
            }
            cache = {_index_path(p): Snapshot.from_json(s) for p, s in cache_v.items()}
        except (TypeError, KeyError, ValueError, OverflowError) as e:
            raise CorruptIndexError(path, f"valid JSON, but an entry is not a snapshot ({e})") from None
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
