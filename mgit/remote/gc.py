"""Remote gc and remote check: what a remote's refs reach, and deleting what nothing reaches.

Both walk the remote's refs through the transport, as a fetch would: commits (parents
first), their trees, the chunks the trees name, and the delta bases those chunks are stored
against (read from each chunk's header, a ranged read of its first bytes). Commits and trees
are decoded and checked against their ids; nothing read from a remote is trusted.

:func:`remote_gc` deletes the objects of the remote that no ref reaches and that are older
than a grace period (default an hour), by the remote's clock. It is safe against concurrent
pushes through the in-flight markers of :mod:`mgit.remote.inflight`: it writes its own marker
and then deletes nothing at all if a live push marker is there, and a push that starts while
it runs waits for it to finish before asking the remote which objects it holds. The grace
period also protects objects uploaded by pushes that write no marker (older mgit versions)
and those of an interrupted push, which a rerun would otherwise send again.

A fetch running while objects are deleted can fail (objects of a ref moved away by a forced
push meanwhile), as in git; it writes nothing for them and a rerun succeeds.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mgit import codecs
from mgit.core import RepoCore
from mgit.errors import CodecError, CorruptObjectError, ObjectNotFoundError, RemoteError
from mgit.objects.ids import Hasher
from mgit.objects.model import Commit, Tree
from mgit.objects.store import DiskStore, max_stored_size
from mgit.remote.config import open_remote, remote_timeout, resolve_remote
from mgit.remote.inflight import HEARTBEAT, MARKER_TIMEOUT, announce, live_markers
from mgit.remote.protocol import MaintainedTransport, StoredObject, Transport
from mgit.remote.results import RemoteCheckResult, RemoteGcResult

__all__ = ["DEFAULT_PRUNE_AGE", "check_remote", "remote_gc", "walk_remote"]

#: Seconds an unreachable object is kept after it was written (``--prune``).
DEFAULT_PRUNE_AGE = 3600.0
#: Parallel requests of a walk and of the deletions.
_JOBS = 8
# Bytes read of a chunk to see its header (magic, kind, meta length, meta JSON).
_HEAD_BYTES = 1024

T = TypeVar("T")
R = TypeVar("R")


def _decode_plain(oid: str, data: bytes, kind: str) -> bytes:
    """Decode a commit or tree received from a remote and check it against its id."""
    h = DiskStore.parse_header(oid, data)
    if h.kind != kind:
        raise CorruptObjectError(oid, f"expected a {kind} object, found a {h.kind}")
    try:
        payload = bytes(memoryview(data)[h.payload_offset :])
        content = codecs.decode(h.codec, payload, h.params, size=h.size)
    except CodecError as exc:
        raise CorruptObjectError(oid, str(exc)) from None
    hasher = Hasher(kind, len(content))
    hasher.update(content)
    actual = hasher.oid()
    if actual != oid:
        raise CorruptObjectError(oid, f"content hashes to {actual}", actual=actual)
    return content


class _Walk:
    """The objects a remote's refs reach, with what is missing or damaged on the way."""

    def __init__(self, transport: Transport, pool: ThreadPoolExecutor) -> None:
        self.transport = transport
        self.pool = pool
        self.commits: set[str] = set()
        self.trees: set[str] = set()
        self.chunks: set[str] = set()
        self.missing: set[str] = set()
        self.damaged: dict[str, str] = {}
        self._headers_read: set[str] = set()

    def _try(self, fn: Callable[[T], R], items: Iterable[T]) -> list[tuple[T, R | None]]:
        def one(item: T) -> R | None:
            try:
                return fn(item)
            except ObjectNotFoundError:
                self.missing.add(str(item))
            except CorruptObjectError as exc:
                self.damaged[str(item)] = exc.reason
            return None

        items = list(items)
        return list(zip(items, self.pool.map(one, items)))

    def _commit(self, oid: str) -> Commit:
        data = self.transport.get_object(oid, max_size=max_stored_size("commit"))
        return Commit.from_bytes(_decode_plain(oid, data, "commit"))

    def _tree(self, oid: str) -> Tree:
        data = self.transport.get_object(oid, max_size=max_stored_size("tree"))
        return Tree.from_bytes(_decode_plain(oid, data, "tree"))

    def walk_refs(self, tips: Iterable[str]) -> None:
        """Commits and trees behind ``tips``, and the chunks the trees name."""
        frontier = sorted(set(tips))
        trees: set[str] = set()
        while frontier:
            self.commits.update(frontier)
            nxt: set[str] = set()
            for _oid, commit in self._try(self._commit, frontier):
                if commit is None:
                    continue
                trees.add(commit.tree)
                nxt.update(p.oid for p in commit.parents)
            frontier = sorted(nxt - self.commits)
        self.trees = trees
        for _oid, tree in self._try(self._tree, sorted(trees)):
            if tree is None:
                continue
            for entry in tree.files.values():
                self.chunks |= entry.chunk_ids()

    def _base_of(self, oid: str) -> str | None:
        head = self.transport.get_object_head(oid, _HEAD_BYTES)
        if len(head) >= 9:
            (mlen,) = struct.unpack_from("<I", head, 5)
            if 9 + mlen > len(head):  # a long meta: read the whole header
                head = self.transport.get_object_head(oid, 9 + mlen)
        header = DiskStore.parse_header(oid, head)
        if header.kind != "chunk":
            raise CorruptObjectError(oid, f"expected a chunk object, found a {header.kind}")
        return header.base

    def walk_chunks(self) -> None:
        """Read the header of every chunk reached (which shows it is there) and follow delta
        bases, transitively."""
        todo = sorted(self.chunks - self._headers_read)
        while todo:
            self._headers_read.update(todo)
            bases = {b for _o, b in self._try(self._base_of, todo) if b is not None}
            new = bases - self.chunks
            self.chunks |= new
            todo = sorted(new - self._headers_read)

    @property
    def reachable(self) -> set[str]:
        return self.commits | self.trees | self.chunks


def walk_remote(
    transport: Transport, tips: Iterable[str], *, jobs: int = _JOBS
) -> tuple[set[str], set[str], dict[str, str]]:
    """Every object ``tips`` reach on a remote (delta bases included).

    Returns:
        ``(reachable, missing, damaged)``: the ids reached, those absent from the remote, and
        ``{id: reason}`` for those that cannot be read as what they must be.

    Raises:
        RemoteError: A request failed.
    """
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mgit-walk") as pool:
        walk = _Walk(transport, pool)
        walk.walk_refs(tips)
        walk.walk_chunks()
    return walk.reachable, walk.missing, walk.damaged


def _open(repo: RepoCore | None, remote: str | None, transport: Transport | None) -> Transport:
    if transport is not None:
        return transport
    if repo is None:
        raise RemoteError("no remote given")
    name, url = resolve_remote(repo, remote)
    return open_remote(url, create=False, timeout=remote_timeout(repo, name))


def check_remote(
    repo: RepoCore | None = None,
    remote: str | None = None,
    *,
    jobs: int = _JOBS,
    transport: Transport | None = None,
) -> RemoteCheckResult:
    """Check that every ref of a remote has its whole history and content there.

    Args:
        repo: The repository whose remote ``remote`` names (None with ``transport``).
        remote: A remote name or URL (default ``origin`` or the only remote).
        jobs: Parallel requests.
        transport: Check this transport instead.

    Returns:
        A :class:`RemoteCheckResult` (``ok`` False names what is missing or damaged).

    Raises:
        RemoteError: The remote cannot be reached or holds no mgit store.

    Example:
        >>> check_remote(repo, "team").ok  # doctest: +SKIP
        True
    """
    transport = _open(repo, remote, transport)
    refs = transport.list_refs()
    reachable, missing, damaged = walk_remote(transport, refs.values(), jobs=jobs)
    return RemoteCheckResult(
        transport.url, refs, len(reachable), sorted(missing), sorted(damaged.items())
    )


def remote_gc(
    repo: RepoCore | None = None,
    remote: str | None = None,
    *,
    prune_age: float = DEFAULT_PRUNE_AGE,
    dry_run: bool = False,
    jobs: int = _JOBS,
    transport: Transport | None = None,
    marker_timeout: float = MARKER_TIMEOUT,
    heartbeat: float = HEARTBEAT,
) -> RemoteGcResult:
    """Delete the objects of a remote that no ref of the remote reaches and that were
    written more than ``prune_age`` seconds ago (by the remote's clock).

    Safe against concurrent pushes (see the module docstring): when a live push marker is on
    the remote, nothing is deleted and the result's ``busy`` names it.

    Args:
        repo: The repository whose remote ``remote`` names (None with ``transport``).
        remote: A remote name or URL (default ``origin`` or the only remote).
        prune_age: The grace period in seconds (0: every unreachable object).
        dry_run: Only count what would be deleted.
        jobs: Parallel requests.
        transport: Collect this transport instead.
        marker_timeout: Seconds without a heartbeat after which a marker is dead.
        heartbeat: Seconds between two refreshes of gc's own marker.

    Returns:
        A :class:`RemoteGcResult`.

    Raises:
        RemoteError: The remote cannot be reached, holds no mgit store, or is damaged (a ref
            needs an object that is missing or unreadable: nothing is deleted then).
        ValueError: ``prune_age`` is negative.

    Example:
        >>> remote_gc(repo, "team", prune_age=0).removed  # doctest: +SKIP
        12
    """
    if prune_age < 0:
        raise ValueError("prune_age must be >= 0")
    transport = _open(repo, remote, transport)
    if not isinstance(transport, MaintainedTransport):
        raise RemoteError(f"{transport.url}: this transport does not support remote gc")
    with announce(transport, "gc", heartbeat=heartbeat) as (ann, markers):
        now = ann.now
        if now is None:  # our marker not listed: cannot tell the remote's time
            raise RemoteError(f"{transport.url}: the marker just written is not listed")
        busy = live_markers(markers, now, kind="push", timeout=marker_timeout)
        dead = [m for m in markers if m.name != ann.name and m.mtime <= now - marker_timeout]
        if not dry_run:
            for m in dead:
                transport.delete_marker(m.name)
        if busy:
            return RemoteGcResult(
                transport.url,
                0,
                0,
                0,
                0,
                0,
                len(dead),
                [m.name for m in busy],
                dry_run,
                prune_age,
            )
        # Refs after the markers: a push that finished before our marker has its refs here,
        # and one that starts now waits for our marker to go before it relies on anything.
        refs = transport.list_refs()
        threshold = now - prune_age
        stored = list(transport.iter_stored_objects())
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mgit-gc") as pool:
            walk = _Walk(transport, pool)
            walk.walk_refs(refs.values())
            old = [s for s in stored if s.oid not in walk.reachable and s.mtime < threshold]
            if old:  # only then are the delta bases needed (a header read per chunk)
                walk.walk_chunks()
            if walk.missing or walk.damaged:
                bad = min(walk.missing) if walk.missing else min(walk.damaged)
                why = "missing" if walk.missing else f"damaged: {walk.damaged[bad]}"
                raise RemoteError(
                    f"{transport.url} is damaged: object {bad} that a ref needs is {why}; "
                    "nothing was deleted",
                    hint="push the models again from a repository that has them whole",
                )
            reachable = walk.reachable
            unreachable = [s for s in stored if s.oid not in reachable]
            doomed = [s for s in unreachable if s.mtime < threshold]
            removed = freed = 0
            if dry_run:
                removed, freed = len(doomed), sum(s.size for s in doomed)
            else:

                def delete(s: StoredObject) -> int:
                    # The remote's own check too: an object rewritten since it was listed stays.
                    gone = transport.delete_object(s.oid, written_before=threshold)
                    return s.size if gone else -1

                for n in pool.map(delete, doomed):
                    if n >= 0:
                        removed += 1
                        freed += n
        return RemoteGcResult(
            transport.url,
            len(stored),
            len(reachable & {s.oid for s in stored}),
            len(unreachable) - len(doomed),
            removed,
            freed,
            len(dead),
            [],
            dry_run,
            prune_age,
        )
