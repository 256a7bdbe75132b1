"""REF syntax -> commit id.

A REF is a model name (its latest version), a tag, ``remote/model``, ``HEAD`` (or ``@``), a
commit id or a unique prefix of one (at least 4 hex digits), followed by any number of ``~N``
(N-th first-parent ancestor) and ``^N`` (N-th parent).

A name wins over a commit-id prefix, as in git; when a name (``cafe``) is also the prefix of
another commit's id, resolving it issues an :class:`mgit.errors.AmbiguousRefWarning` (the CLI
prints ``mgit: warning: ...``), and so does creating a model, branch or tag so named
(:func:`warn_if_shadows`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

from mgit.errors import (
    AmbiguousRefError,
    AmbiguousRefWarning,
    CorruptObjectError,
    InvalidRefNameError,
    ObjectNotFoundError,
    RefNotFoundError,
)
from mgit.objects.store import DiskStore
from mgit.refs.store import HEADS, REMOTES, TAGS, RefStore

__all__ = ["resolve", "parse", "commits_with_prefix", "warn_if_shadows"]

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
            _warn_shadowed(base, store, oid, f"{base!r} names {(prefix + base).removeprefix('refs/')}")
            return oid
    if _HEX_RE.fullmatch(base):
        matches = commits_with_prefix(store, base)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AmbiguousRefError(ref, matches)
    raise RefNotFoundError(ref)


def _warn_shadowed(name: str, store: DiskStore, oid: str | None, what: str) -> None:
    """Warn when ``name`` looks like a commit-id prefix of a commit other than ``oid``."""
    if not _HEX_RE.fullmatch(name):
        return
    others = [c for c in commits_with_prefix(store, name) if c != oid]
    if others:
        warnings.warn(AmbiguousRefWarning(
            f"{what} and is also a prefix of commit {others[0][:12]}: the name wins; "
            f"give more digits of the id for the commit"
        ), stacklevel=3)


def warn_if_shadows(name: str, store: DiskStore, *, oid: str | None = None, what: str = "model") -> None:
    """Warn (:class:`mgit.errors.AmbiguousRefWarning`) when a model, branch or tag about to be
    created as ``name`` (pointing at ``oid``, if known) would hide a commit whose id starts
    with it. A warning, not a refusal: git allows such names too, and a later commit may come
    to match any hex-like name anyway (resolving the name then warns)."""
    _warn_shadowed(name, store, oid, f"the new {what} name {name!r} hides a commit id")


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
