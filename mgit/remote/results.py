"""What push, fetch, pull and clone return, and how they report progress.

Everything in :mod:`mgit.remote` returns these dataclasses and never prints; progress goes to
an optional :class:`TransferProgress`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mgit.refs.store import HEADS, REMOTES, TAGS, TESTS

__all__ = [
    "DEFAULT_JOBS",
    "CloneResult",
    "FetchResult",
    "PullResult",
    "PushResult",
    "RefUpdate",
    "RemoteCheckResult",
    "RemoteGcResult",
    "RemoteInfo",
    "TransferProgress",
]

#: Parallel object transfers (I/O bound: uploads, downloads and verification overlap).
DEFAULT_JOBS = 4


class TransferProgress(Protocol):
    """Receives progress of a transfer (the CLI draws a bar; the library never prints)."""

    def begin(self, label: str, *, objects: int, total_bytes: int | None) -> None:
        """A phase starts: ``objects`` to move, ``total_bytes`` if known in advance."""
        ...

    def advance(self, *, objects: int = 0, nbytes: int = 0) -> None:
        """``objects`` more objects, ``nbytes`` more bytes moved."""
        ...

    def end(self) -> None:
        """The phase is over."""
        ...


@dataclass(frozen=True)
class RemoteInfo:
    """A configured remote."""

    name: str
    url: str

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"name": self.name, "url": self.url}


@dataclass(frozen=True)
class RefUpdate:
    """One ref that a push or fetch looked at.

    ``status`` is one of ``created``, ``fast-forward``, ``forced``, ``up-to-date``,
    ``deleted``, ``kept`` (a local tag differing from the remote's was left alone), and for
    ``refs/tests`` also ``merged`` (both sides had new notes: their union) and ``ahead``.
    """

    ref: str
    old: str | None
    new: str | None
    status: str

    @property
    def name(self) -> str:
        """The ref without its ``refs/heads/``, ``refs/tags/`` or ``refs/remotes/`` prefix
        (``tests`` for the test notes)."""
        if self.ref == TESTS:
            return "tests"
        for prefix in (HEADS, TAGS, REMOTES):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"ref": self.ref, "old": self.old, "new": self.new, "status": self.status}


@dataclass(frozen=True)
class PushResult:
    """What ``push`` did."""

    remote: str | None
    url: str
    updates: list[RefUpdate]
    objects_sent: int
    bytes_sent: int
    objects_already_there: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "remote": self.remote,
            "url": self.url,
            "updates": [u.to_json() for u in self.updates],
            "objects_sent": self.objects_sent,
            "bytes_sent": self.bytes_sent,
            "objects_already_there": self.objects_already_there,
        }


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch`` did. ``heads`` maps each fetched model to the remote's commit."""

    remote: str | None
    url: str
    heads: dict[str, str]
    updates: list[RefUpdate]
    objects_received: int
    bytes_received: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "remote": self.remote,
            "url": self.url,
            "heads": self.heads,
            "updates": [u.to_json() for u in self.updates],
            "objects_received": self.objects_received,
            "bytes_received": self.bytes_received,
        }


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` did. ``status``: ``up-to-date``, ``fast-forward``, ``created`` or ``ahead``
    (the local model already contains the remote's)."""

    fetch: FetchResult
    model: str
    old: str | None
    new: str
    status: str
    worktree_updated: bool
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "fetch": self.fetch.to_json(),
            "model": self.model,
            "old": self.old,
            "new": self.new,
            "status": self.status,
            "worktree_updated": self.worktree_updated,
            "written": self.written,
            "removed": self.removed,
        }


@dataclass(frozen=True)
class CloneResult:
    """What ``clone`` did. ``model`` is the checked-out model (None for an empty remote)."""

    url: str
    directory: str
    remote: str
    model: str | None
    models: list[str]
    fetch: FetchResult
    files: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "url": self.url,
            "directory": self.directory,
            "remote": self.remote,
            "model": self.model,
            "models": self.models,
            "fetch": self.fetch.to_json(),
            "files": self.files,
        }


@dataclass(frozen=True)
class RemoteCheckResult:
    """What a walk of a remote's refs found (:func:`mgit.remote.gc.check_remote`).

    Attributes:
        url: The remote.
        refs: The refs walked, ``{name: commit id}``.
        reachable: The number of objects some ref needs (present or not).
        missing: Ids some ref needs that the remote does not hold, sorted.
        damaged: ``(id, reason)`` for objects that are there but cannot be read as what
            they must be.
    """

    url: str
    refs: dict[str, str]
    reachable: int
    missing: list[str]
    damaged: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        """True when every ref has its whole history and content on the remote."""
        return not self.missing and not self.damaged

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "url": self.url,
            "ok": self.ok,
            "refs": len(self.refs),
            "reachable": self.reachable,
            "missing": self.missing,
            "damaged": [{"oid": o, "reason": r} for o, r in self.damaged],
        }


@dataclass(frozen=True)
class RemoteGcResult:
    """What ``mgit remote gc`` did.

    Attributes:
        url: The remote.
        objects: Objects the remote held when listed.
        reachable: Objects some ref of the remote needs (kept).
        young: Unreachable objects kept because they are not older than the grace period.
        removed: Unreachable objects deleted (or, with ``dry_run``, that would be).
        freed_bytes: Their stored bytes.
        dead_markers: Markers of killed pushes or gcs removed.
        busy: Live push markers seen: when not empty, nothing was deleted.
        dry_run: Nothing was deleted on purpose.
        prune_age: The grace period, seconds.
    """

    url: str
    objects: int
    reachable: int
    young: int
    removed: int
    freed_bytes: int
    dead_markers: int
    busy: list[str]
    dry_run: bool
    prune_age: float

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "url": self.url,
            "objects": self.objects,
            "reachable": self.reachable,
            "young": self.young,
            "removed": self.removed,
            "freed_bytes": self.freed_bytes,
            "dead_markers": self.dead_markers,
            "busy": self.busy,
            "dry_run": self.dry_run,
            "prune_age": self.prune_age,
        }
