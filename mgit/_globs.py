"""The one file-pattern matcher: which paths of a version (or a folder) a glob selects.

``export --include/--exclude``, ``materialize(include=, exclude=)``, the default ignore list of
training state and ``.mgitignore`` all match the same way (:func:`path_matches`): a glob
(``fnmatch``, case-sensitive) matches a relative POSIX path when it matches the whole path, the
file name, or one of the folders above it, so ``checkpoint-*`` selects
``checkpoint-30/model.safetensors`` and ``*.json`` selects ``tokenizer/vocab.json``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from mgit.errors import UsageError

__all__ = ["norm_path", "path_matches", "patterns", "select"]


def norm_path(path: str) -> str:
    """A path or pattern as mgit compares it: ``/`` separators, no leading ``./``, no slash at
    either end."""
    p = str(path).replace("\\", "/").strip("/")
    while p.startswith("./"):
        p = p[2:]
    return p


def patterns(value: str | Iterable[str] | None) -> list[str]:
    """``include``/``exclude`` arguments (one glob, several, or None) as a list of globs.

    Raises:
        UsageError: an empty pattern, or one that is not a string.
    """
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for p in items:
        if not isinstance(p, str) or not norm_path(p):
            raise UsageError(f"bad file pattern {p!r}")
        out.append(norm_path(p))
    return out


def path_matches(rel: str, globs: list[str]) -> bool:
    """Whether one of ``globs`` matches the whole path ``rel``, its file name, or one of its
    folders (``checkpoint-*`` matches ``checkpoint-30/model.safetensors``)."""
    name = rel.rsplit("/", 1)[-1]
    parts = rel.split("/")
    folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
    return any(
        fnmatch.fnmatchcase(rel, p)
        or fnmatch.fnmatchcase(name, p)
        or any(fnmatch.fnmatchcase(f, p) for f in folders)
        for p in globs
    )


def select(
    paths: Iterable[str],
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> list[str]:
    """The paths (sorted) that match a glob of ``include`` (all when None) and none of
    ``exclude``.

    Raises:
        UsageError: an empty pattern.
    """
    inc, exc = patterns(include), patterns(exclude)
    return [
        rel
        for rel in sorted(paths)
        if (not inc or path_matches(rel, inc)) and not (exc and path_matches(rel, exc))
    ]
