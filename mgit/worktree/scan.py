"""Scanning a model folder: which files a version holds (``.mgitignore``, symlinks), and which
files it skips and why.

A symlink is followed when it resolves inside the folder, when the folder is (inside) a Hugging
Face hub cache snapshot and the link resolves into that cache repository's ``blobs/`` (every
file of a snapshot is such a link), or when the caller asks to follow links
(``follow_symlinks``: ``mgit import -L`` / ``mgit add -L``; ``status`` follows the links of
tracked files). A followed file is stored by content, so export writes a regular file. Anything
else is skipped, and reported to a ``skipped`` collector: a symlink out of the folder, a dangling
symlink, a symlinked folder, something that is not a regular file, an unreadable file.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit._fs import check_relpath
from mgit.errors import UnsafePathError, UsageError

__all__ = ["scan", "folder_bytes", "hub_blobs", "IGNORE_FILE", "Skipped", "FollowSymlinks"]

IGNORE_FILE = ".mgitignore"

#: Which symlinks (besides those inside the folder or into its hub cache) to follow: all
#: (``True``), none (``False``), or those whose relative path the predicate accepts.
FollowSymlinks = bool | Callable[[str], bool]


@dataclass(frozen=True)
class Skipped:
    """A path a scan left out, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"path": self.path, "reason": self.reason}


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


def _readable(path: Path) -> bool:
    return os.access(path, os.R_OK)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def hub_blobs(root: Path, real: Path | None = None) -> Path | None:
    """The ``blobs/`` folder when ``root`` is (in) a Hugging Face hub cache snapshot, else None
    (:func:`mgit.hf.cache_blobs_dir`, loaded only for a path that has a ``snapshots`` part)."""
    real = real if real is not None else root.resolve()
    if "snapshots" not in Path(os.path.abspath(root)).parts and "snapshots" not in real.parts:
        return None
    from mgit.hf import cache_blobs_dir

    return cache_blobs_dir(root)


class _Walk:
    def __init__(
        self, root: Path, strict: bool, follow: FollowSymlinks, skipped: list[Skipped] | None
    ) -> None:
        self.root = root
        self.root_real = root.resolve()
        self.blobs = hub_blobs(root, self.root_real)
        self.patterns = _ignore_patterns(root)
        self.strict = strict
        self.follow = follow
        self.skipped = skipped
        self.out: dict[str, Path] = {}

    def skip(self, rel: str, reason: str) -> None:
        if self.skipped is not None:
            self.skipped.append(Skipped(rel, reason))

    def _follows(self, rel: str) -> bool:
        return self.follow(rel) if callable(self.follow) else bool(self.follow)

    def link_ok(self, full: Path, rel: str, *, is_dir: bool) -> bool:
        """Whether to follow the symlink ``full`` (skipping it with a reason, or raising when
        strict, if not)."""
        target = full.resolve()
        if not target.exists():
            self.skip(rel, f"dangling symlink: {os.readlink(full)} does not exist")
            return False
        if self._follows(rel):
            return True
        if is_dir:
            if _inside(target, self.root_real):
                self.skip(rel, "symlinked folder (not followed)")
                return False
        elif _inside(target, self.root_real) or _inside(target, self.blobs):
            return True
        if self.strict:
            raise _unsafe(rel, target)
        self.skip(rel, f"symlink points outside the model folder: {target}")
        return False

    def walk(self, dirpath: Path, rel_dir: str, stack: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(dirpath), key=lambda e: e.name)
        except OSError as e:
            self.skip(rel_dir or ".", f"unreadable folder ({e.strerror or e})")
            return
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if rel == ".mgit" or _ignored(rel, self.patterns):
                continue
            full = dirpath / e.name
            try:
                is_link = e.is_symlink()
                is_dir = e.is_dir()  # follows a link
            except OSError:
                self.skip(rel, "unreadable")
                continue
            if is_dir:
                if is_link and not self.link_ok(full, rel, is_dir=True):
                    continue
                real = full.resolve()
                if real in stack:
                    self.skip(rel, "symlink loop")
                    continue
                self.walk(full, rel, stack | {real})
                continue
            if e.name.endswith(".mgit-tmp"):
                continue
            try:
                check_relpath(rel)
            except UnsafePathError:
                if self.strict:
                    raise
                self.skip(rel, "unsafe file name")
                continue
            if is_link and not self.link_ok(full, rel, is_dir=False):
                continue
            try:
                regular = full.is_file()
            except OSError:
                regular = False
            if not regular:
                self.skip(rel, "not a regular file")
                continue
            if not _readable(full):
                if self.strict:
                    raise UsageError(f"cannot read {rel}: permission denied")
                self.skip(rel, "unreadable (permission denied)")
                continue
            self.out[rel] = full


def _unsafe(rel: str, target: Path) -> UnsafePathError:
    err = UnsafePathError(rel, f"symlink points outside the model folder ({target})")
    err.hint = "-L/--follow-symlinks follows it"
    return err


def scan(
    root: Path,
    *,
    under: str = "",
    strict: bool = False,
    follow_symlinks: FollowSymlinks = False,
    skipped: list[Skipped] | None = None,
) -> dict[str, Path]:
    """Files of a model folder as ``{relative posix path: path}``, without ``.mgit``.

    Symlinks are followed when they resolve inside ``root``, into the hub cache repository
    ``root`` is a snapshot of, or when ``follow_symlinks`` says so (linked folders only then).

    Args:
        root: the folder.
        under: only files under this relative folder.
        strict: raise on a symlink pointing outside ``root`` or an unreadable file (else it is
            skipped).
        follow_symlinks: follow every symlink (True), or those whose relative path this
            predicate accepts.
        skipped: when given, each path left out (other than ignored ones) is appended with the
            reason (:class:`Skipped`), in path order.

    Raises:
        UnsafePathError: (strict) a symlink that points outside the folder.
        UsageError: (strict) an unreadable file.
    """
    w = _Walk(root, strict, follow_symlinks, skipped)
    start = root / under if under else root
    w.walk(start, under, frozenset({start.resolve()}))
    return w.out


def folder_bytes(folder: Path, *, follow_symlinks: bool = False) -> int:
    """Total size of the files :func:`scan` would find in ``folder`` (0 if it is not a folder)."""
    if not folder.is_dir():
        return 0
    total = 0
    for p in scan(folder, follow_symlinks=follow_symlinks).values():
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total
