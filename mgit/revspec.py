"""REF syntax -> commit id.

A REF is a model name (its latest version), a tag, ``remote/model``, ``HEAD`` (or ``@``), a
commit id or a unique prefix of one (at least 4 hex digits), followed by any number of ``~N``
(N-th first-parent ancestor) and ``^N`` (N-th parent).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mgit.errors import (
    AmbiguousRefError,
    CorruptObjectError,
    InvalidRefNameError,
    ObjectNotFoundError,
    RefNotFoundError,
)
from mgit.objects.store import DiskStore
from mgit.refs.store import HEADS, REMOTES, TAGS, RefStore

__all__ = ["resolve", "parse", "commits_with_prefix"]

_REV_RE = re.compile(r"^(?P<base>[^~^]+)(?P<ops>(?:[~^]\d*)*)$")
_OP_RE = re.compile(r"([~^])(\d*)")
_HEX_RE = re.compile(r"[0-9a-f]{4,64}")


def parse(ref: str) -> tuple[str, list[tuple[str, int]]]:
    """Split a REF into its base name and its ``~N`` / ``^N`` steps (``~`` alone is ``~1``).

    Raises:
        RefNotFoundError: not REF syntax.
    """
    m = _REV_RE.match(ref.strip())
    if not m:
        raise RefNotFoundError(ref)
    steps = [(op, int(num) if num else 1) for op, num in _OP_RE.findall(m.group("ops"))]
    return m.group("base"), steps


def resolve(ref: str, *, refs: RefStore, store: DiskStore, parents_of: Callable[[str], list[str]]) -> str:
    """A REF to a commit id.

    Raises:
        RefNotFoundError: nothing by that name, or an ancestor that does not exist.
        AmbiguousRefError: a prefix matching several commits.
    """
    base, steps = parse(ref)
    oid = _resolve_base(base, ref, refs, store)
    for op, n in steps:
        if op == "~":
            for _ in range(n):
                parents = parents_of(oid)
                if not parents:
                    raise RefNotFoundError(ref, reason="history is not that long")
                oid = parents[0]
        elif n:
            parents = parents_of(oid)
            if len(parents) < n:
                raise RefNotFoundError(ref, reason=f"commit has {len(parents)} parent(s)")
            oid = parents[n - 1]
    return oid


def _resolve_base(base: str, ref: str, refs: RefStore, store: DiskStore) -> str:
    if base in ("HEAD", "@"):
        oid = refs.read("HEAD")
        if oid is None:
            raise RefNotFoundError(ref, reason="no commit yet")
        return oid
    for prefix in (HEADS, TAGS, REMOTES):
        try:
            oid = refs.read(prefix + base)
        except InvalidRefNameError:
            oid = None
        if oid is not None:
            return oid
    if _HEX_RE.fullmatch(base):
        matches = commits_with_prefix(store, base)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AmbiguousRefError(ref, matches)
    raise RefNotFoundError(ref)


def commits_with_prefix(store: DiskStore, prefix: str) -> list[str]:
    """Ids of the stored commits that start with ``prefix``. Damaged objects are skipped, unless
    ``prefix`` is a whole id: then the damage is the answer (raised)."""
    if len(prefix) == 64:
        return [prefix] if prefix in store and store.kind_of(prefix) == "commit" else []
    out = []
    for oid in store.oids_with_prefix(prefix):
        try:
            if store.kind_of(oid) == "commit":
                out.append(oid)
        except (CorruptObjectError, ObjectNotFoundError):
            continue
    return out
