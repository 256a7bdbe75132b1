"""fetch: download what a repository lacks of a remote's models; move ``refs/remotes/``.

fetch walks the remote's commits and trees that the repository lacks (each decoded and
verified against its id as it arrives), downloads the chunks they need, and writes everything
with :meth:`DiskStore.write_raw` (which decodes and verifies again) in dependency order; only
after the store is synced does it move ``refs/remotes/<remote>/*``. A damaged or substituted
object on the remote raises :class:`~mgit.errors.CorruptObjectError` and is never written.

Memory. Nothing received is trusted to be small: an object larger than the largest object of
its kind this format can hold (:func:`mgit.objects.store.max_stored_size`) is refused before
its bytes are read, and one whose header declares more content than its kind can have
(:data:`mgit.objects.store.MAX_CONTENT`) before anything is decompressed (a 33 KB zstd frame
can declare 1 GiB of zeros). At most ``2 * jobs`` objects are downloaded at once, and the
content they decode to is held under a byte budget of ``jobs`` times the repository's chunk
size (16 MiB by default; an object larger than the budget is decoded alone), so a fetch holds
about ``2 * jobs`` stored objects plus ``jobs * chunk_size`` decoded bytes, whatever it is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from typing import Any

from mgit.core import RepoCore
from mgit.errors import CorruptObjectError, ObjectNotFoundError, RefConflictError
from mgit.objects.model import Commit, Tree
from mgit.objects.store import max_stored_size
from mgit.refs.store import REMOTES, TAGS, TESTS
from mgit.remote import negotiate
from mgit.remote.config import open_remote, remote_timeout, resolve_remote
from mgit.remote.protocol import Transport
from mgit.remote.results import DEFAULT_JOBS, FetchResult, RefUpdate, TransferProgress

__all__ = ["fetch", "merge_notes", "update_tracking"]

_COMMIT_BATCH = 64


def _from_remote(exc: CorruptObjectError, url: str) -> CorruptObjectError:
    err = CorruptObjectError(exc.oid, f"{exc.reason} (received from {url})", actual=exc.actual)
    err.hint = (
        "the remote's copy is damaged or was replaced; nothing was written for it. "
        "Push the object again from a repository that has it intact"
    )
    return err


class _ByteBudget:
    """A counting semaphore over bytes: :meth:`take` waits until ``n`` bytes (at most the
    whole budget: a larger request runs alone) fit under the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = max(1, budget)
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def take(self, n: int) -> int:
        n = min(max(n, 0), self.budget)
        with self._cond:
            while self.used + n > self.budget:
                self._cond.wait()
            self.used += n
            self.peak = max(self.peak, self.used)
        return n

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class _Receiver:
    """Downloads objects the repository lacks and writes them in dependency order."""

    def __init__(
        self,
        repo: RepoCore,
        transport: Transport,
        *,
        jobs: int,
        progress: TransferProgress | None,
    ) -> None:
        self.repo = repo
        self.transport = transport
        self.jobs = max(1, jobs)
        self.progress = progress
        self.objects = 0
        self.bytes = 0
        #: Decoded bytes in flight: ``jobs`` chunks' worth (see the module docstring).
        self.budget = _ByteBudget(
            self.jobs * max(int(getattr(repo, "chunk_size", 0) or 0), 1 << 20)
        )

    def _get(self, oid: str, kind: str | None = None) -> bytes:
        try:
            return self.transport.get_object(oid, max_size=max_stored_size(kind))
        except CorruptObjectError as exc:
            raise _from_remote(exc, self.transport.url) from None

    def _get_many(self, pool: ThreadPoolExecutor, oids: list[str], kind: str) -> dict[str, bytes]:
        futures = {pool.submit(self._get, oid, kind): oid for oid in oids}
        out: dict[str, bytes] = {}
        try:
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return out

    def _decode(self, oid: str, data: bytes, kind: str) -> bytes:
        try:
            return self.repo.store.decode_raw(oid, data, kind=kind)
        except CorruptObjectError as exc:
            raise _from_remote(exc, self.transport.url) from None

    def _write(self, oid: str, data: bytes) -> int:
        try:
            size = self.repo.store.parse_header(oid, data).size  # refuses oversized declarations
            held = self.budget.take(size)
            try:
                self.repo.store.write_raw(oid, data)
            finally:
                self.budget.give(held)
        except CorruptObjectError as exc:
            raise _from_remote(exc, self.transport.url) from None
        return len(data)

    def receive(self, tips: Iterable[str]) -> None:
        """Make every object reachable from ``tips`` present locally, dependency order."""
        store = self.repo.store
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mgit-fetch") as pool:
            # 1. Commits we lack, walking parents until commits we have: a commit present
            #    locally has its whole closure present (objects are written before commits).
            commits: dict[str, tuple[bytes, Commit]] = {}  # oid -> (stored bytes, commit)
            frontier = sorted({t for t in tips if t not in store})
            while frontier:
                batch, frontier = frontier[:_COMMIT_BATCH], frontier[_COMMIT_BATCH:]
                for oid, data in self._get_many(pool, batch, "commit").items():
                    commit = Commit.from_bytes(self._decode(oid, data, "commit"))
                    commits[oid] = (data, commit)
                    for p in commit.parents:
                        if p.oid not in store and p.oid not in commits and p.oid not in frontier:
                            frontier.append(p.oid)
            if not commits:
                return
            received = {o: c for o, (_, c) in commits.items()}
            # 2. Trees (small; decoded and verified in memory; they hold the tensor manifests).
            tree_ids = sorted({c.tree for _, c in commits.values() if c.tree not in store})
            trees: dict[str, tuple[bytes, Tree]] = {}
            for oid, data in self._get_many(pool, tree_ids, "tree").items():
                trees[oid] = (data, Tree.from_bytes(self._decode(oid, data, "tree")))
            chunk_ids: set[str] = set()
            for _, tree in trees.values():
                chunk_ids |= negotiate.referenced_chunks(tree)
            wanted = {o for o in chunk_ids if o not in store}
            chunks = negotiate.chunk_order(received, {o: t for o, (_, t) in trees.items()}, wanted)
            n_meta = len(commits) + len(trees)
            if self.progress is not None:
                self.progress.begin("fetching", objects=len(chunks) + n_meta, total_bytes=None)
            try:
                # 3. Chunks, each written once its delta base is present.
                self._receive_chunks(pool, chunks)
                # 4. Then trees, and commits parents first.
                futures = [pool.submit(self._write, oid, data) for oid, (data, _) in trees.items()]
                for fut in as_completed(futures):
                    self._advance(fut.result())
                for oid in negotiate.received_parents_first(received):
                    self._advance(self._write(oid, commits[oid][0]))
            finally:
                if self.progress is not None:
                    self.progress.end()
        store.sync()  # objects durable before any ref points at them

    def _advance(self, nbytes: int) -> None:
        self.objects += 1
        self.bytes += nbytes
        if self.progress is not None:
            self.progress.advance(objects=1, nbytes=nbytes)

    def _receive_chunks(self, pool: ThreadPoolExecutor, chunks: list[str]) -> None:
        store = self.repo.store
        todo = list(reversed(chunks))  # pop() from the end keeps the given order
        scheduled: set[str] = set(chunks)
        waiting: dict[str, list[tuple[str, bytes]]] = {}  # base -> deltas waiting for it
        written: set[str] = set()
        in_flight: dict[Future[Any], tuple[str, str]] = {}
        window = self.jobs * 2

        def download(oid: str) -> tuple[str | None, bytes]:
            data = self._get(oid, "chunk")
            try:
                header = store.parse_header(oid, data)
            except CorruptObjectError as exc:
                raise _from_remote(exc, self.transport.url) from None
            if header.kind != "chunk":
                raise _from_remote(
                    CorruptObjectError(oid, f"expected a chunk, found a {header.kind}"),
                    self.transport.url,
                )
            return header.base, data

        def ready(base: str | None) -> bool:
            return base is None or base in written or (base not in scheduled and base in store)

        try:
            while todo or in_flight:
                while todo and len(in_flight) < window:
                    oid = todo.pop()
                    in_flight[pool.submit(download, oid)] = ("get", oid)
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for fut in done:
                    what, oid = in_flight.pop(fut)
                    if what == "get":
                        base, data = fut.result()
                        if ready(base):
                            in_flight[pool.submit(self._write, oid, data)] = ("put", oid)
                        else:
                            assert base is not None
                            waiting.setdefault(base, []).append((oid, data))
                            if base not in scheduled:  # a base no tree names directly
                                scheduled.add(base)
                                todo.append(base)
                    else:
                        self._advance(fut.result())
                        written.add(oid)
                        for child, data in waiting.pop(oid, []):
                            in_flight[pool.submit(self._write, child, data)] = ("put", child)
        except BaseException:
            for fut in in_flight:
                fut.cancel()
            raise
        if waiting:
            missing = min(waiting)
            raise ObjectNotFoundError(
                missing, context=f"delta base missing on {self.transport.url}"
            )


def fetch(
    repo: RepoCore,
    remote: str | None = None,
    *,
    models: Sequence[str] | None = None,
    tags: bool = True,
    prune: bool = False,
    tests: bool = True,
    jobs: int = DEFAULT_JOBS,
    progress: TransferProgress | None = None,
) -> FetchResult:
    """Download what the repository lacks of a remote's models; update ``refs/remotes/``.

    Every object is verified against its id before it is written, and written in dependency
    order; remote-tracking refs move only after the objects are durable.

    Args:
        repo: The local repository.
        remote: A remote name or URL (with a URL, no remote-tracking refs are written; the
            result's ``heads`` says what was fetched).
        models: Only these models (default: every model of the remote, and its tags).
        tags: Create local tags for the remote's tags that point at fetched commits (a local
            tag with another value is kept).
        prune: Delete remote-tracking refs of models the remote no longer has.
        tests: Also receive the remote's test notes (``refs/tests``: test specs and results)
            and merge them into the local ones (a union; see :mod:`mgit.lifecycle.notes`).
        jobs: Parallel downloads.
        progress: Receives transfer progress.

    Returns:
        A :class:`FetchResult`.

    Raises:
        CorruptObjectError: An object on the remote is damaged or substituted (nothing was
            written for it, and no ref moved).
        RefNotFoundError: A model in ``models`` that the remote does not have.
        RemoteError: The remote cannot be reached or holds no mgit store.
    """
    name, url = resolve_remote(repo, remote)
    transport = open_remote(url, create=False, timeout=remote_timeout(repo, name))
    remote_refs = transport.list_refs()
    heads, remote_tags = negotiate.split_remote_refs(remote_refs, models, where=transport.url)
    tips = set(heads.values())
    if tags and not models:
        tips |= set(remote_tags.values())
    notes_tip = remote_refs.get(TESTS) if tests else None
    if notes_tip is not None:
        tips.add(notes_tip)
    receiver = _Receiver(repo, transport, jobs=jobs, progress=progress)
    receiver.receive(tips)
    updates: list[RefUpdate] = []
    if notes_tip is not None:
        updates.append(merge_notes(repo, notes_tip, message=f"fetch {name or transport.url}"))
    if name is not None:
        values: dict[str, str | None] = dict(heads)
        if prune and not models:
            for ref in repo.refs.iter_refs(f"{REMOTES}{name}/"):
                model = ref[len(f"{REMOTES}{name}/") :]
                if model not in heads:
                    values[model] = None
        updates += update_tracking(repo, name, values, message=f"fetch {name}")
    if tags:
        updates += _create_tags(repo, remote_tags, message=f"fetch {name or transport.url}")
    return FetchResult(name, transport.url, heads, updates, receiver.objects, receiver.bytes)


def merge_notes(repo: RepoCore, theirs: str, *, message: str) -> RefUpdate:
    """Merge a received notes commit into the local ``refs/tests`` (a union: results are
    cached facts, so both sides' are kept; see :func:`mgit.lifecycle.notes.merge`)."""
    from mgit.lifecycle import notes

    old = repo.refs.read(TESTS)
    new, status = notes.merge_into_ref(repo, theirs, message=message)
    if status == "fast-forward" and old is None:
        status = "created"
    return RefUpdate(TESTS, old, new, status)


def _create_tags(repo: RepoCore, remote_tags: dict[str, str], *, message: str) -> list[RefUpdate]:
    out: list[RefUpdate] = []
    batch: list[tuple[str, str | None, str | None]] = []
    for tag, oid in sorted(remote_tags.items()):
        if oid not in repo.store:
            continue  # points outside what was fetched
        ref = TAGS + tag
        local = repo.refs.read(ref)
        if local is None:
            batch.append((ref, None, oid))
            out.append(RefUpdate(ref, None, oid, "created"))
        elif local != oid:
            out.append(RefUpdate(ref, local, oid, "kept"))
    if batch:
        try:
            repo.refs.update_many(batch, message=message)
        except RefConflictError:
            return [u for u in out if u.status == "kept"]  # created concurrently: leave them
    return out


def update_tracking(
    repo: RepoCore, name: str, values: dict[str, str | None], message: str
) -> list[RefUpdate]:
    """Set ``refs/remotes/<name>/<model>`` (CAS against the values read now; retried once)."""
    out: list[RefUpdate] = []
    for _attempt in range(2):
        batch: list[tuple[str, str | None, str | None]] = []
        out = []
        for model, new in sorted(values.items()):
            ref = f"{REMOTES}{name}/{model}"
            old = repo.refs.read(ref)
            if old == new:
                continue
            batch.append((ref, old, new))
            status = negotiate.move_status(old, new, known=repo.store, parents=repo.parents_of)
            out.append(RefUpdate(ref, old, new, status))
        if not batch:
            return out
        try:
            repo.refs.update_many(batch, message=message)
            return out
        except RefConflictError:
            continue  # a concurrent fetch moved one; read again
    return out
