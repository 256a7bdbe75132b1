"""Scanning a model folder: which files a version holds (``.mgitignore``, symlinks)."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from mgit._fs import check_relpath
from mgit.errors import UnsafePathError

__all__ = ["scan", "folder_bytes", "IGNORE_FILE"]

IGNORE_FILE = ".mgitignore"


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
