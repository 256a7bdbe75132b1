"""push: send model lines (and tags) to a remote, then compare-and-swap its refs.

The negotiation is git's "dumb" protocol over a :class:`~mgit.remote.protocol.Transport`:
push lists the remote's refs, refuses a non-fast-forward update (unless forced), computes the
objects reachable from the pushed tips and not from what the remote has
(:func:`mgit.reach.objects_to_send`), asks the remote which of those it already holds
(:meth:`Transport.has_objects`: an interrupted push resumes where it stopped), uploads the
rest in dependency order (a delta's base before the delta, chunks before trees before
commits, parents first), and only then compare-and-swaps the remote refs. Several refs change
all-or-nothing as far as the remote allows: all are checked before any byte is sent, and if
one CAS loses a race the ones already moved are moved back.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack

from mgit.core import RepoCore
from mgit.errors import MgitError, NonFastForwardError, RefConflictError
from mgit.lineage import graph as dag
from mgit.reach import commit_objects, objects_to_send, parents_first
from mgit.refs.store import HEADS, TESTS
from mgit.remote import negotiate
from mgit.remote.config import open_remote, remote_timeout, resolve_remote
from mgit.remote.fetch import _Receiver, merge_notes, update_tracking
from mgit.remote.inflight import announce, wait_for_gc
from mgit.remote.negotiate import short_ref
from mgit.remote.protocol import MaintainedTransport, Transport
from mgit.remote.results import DEFAULT_JOBS, PushResult, RefUpdate, TransferProgress

__all__ = ["push"]

#: Ref compare-and-swaps in flight at once (at least; ``jobs`` when larger).
_REF_JOBS = 8


class _Guard:
    """The push's in-flight marker on the remote (:mod:`mgit.remote.inflight`), written on
    first need, before the remote is asked which objects it holds, and removed after the refs
    moved: a remote gc that sees it deletes nothing; one running already is waited for."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._stack = ExitStack()
        self._on = False

    def ensure(self) -> None:
        """Write the marker (once) and wait while a remote gc runs."""
        if self._on or not isinstance(self.transport, MaintainedTransport):
            return
        ann, markers = self._stack.enter_context(announce(self.transport, "push"))
        self._on = True
        wait_for_gc(self.transport, ann, markers)

    def close(self) -> None:
        """Remove the marker."""
        self._stack.close()


def _upload(
    repo: RepoCore,
    transport: Transport,
    oids: list[str],
    *,
    jobs: int,
    progress: TransferProgress | None,
) -> int:
    """Upload objects level by level (the remote never holds an object whose references are
    missing); return the bytes sent."""
    levels = negotiate.upload_levels(
        oids, {oid: repo.store.header(oid) for oid in oids}, parents=repo.parents_of
    )
    total = 0
    if progress is not None:
        size = sum(repo.store.stored_size(o) for o in oids)
        progress.begin("pushing", objects=len(oids), total_bytes=size)

    def send(oid: str) -> int:
        data = repo.store.read_raw(oid)
        # Never spread damage: the object must decode to content with its id before it goes.
        repo.store.decode_raw(oid, data)
        transport.put_object(oid, data)
        return len(data)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mgit-push") as pool:
            for level in levels:
                futures = [pool.submit(send, oid) for oid in level]
                try:
                    for fut in as_completed(futures):
                        n = fut.result()
                        total += n
                        if progress is not None:
                            progress.advance(objects=1, nbytes=n)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        if progress is not None:
            progress.end()
    return total


def _cas(repo: RepoCore, transport: Transport, u: RefUpdate) -> RefUpdate:
    """CAS one update, following the remote when it moved to a commit ours contains.

    Raises:
        NonFastForwardError: The remote's ref moved elsewhere (or keeps moving).
    """
    old = u.old
    for _attempt in range(3):
        try:
            transport.update_ref(u.ref, old, u.new)
            return RefUpdate(u.ref, old, u.new, u.status)
        except RefConflictError as exc:
            actual = exc.actual
            step = negotiate.after_conflict(u, actual, known=repo.store, parents=repo.parents_of)
            if step == "done":
                return RefUpdate(u.ref, old, u.new, u.status)
            if step == "retry":
                old = actual
                continue
            raise NonFastForwardError(
                u.ref,
                f"push of {short_ref(u.ref)} rejected: the remote's {short_ref(u.ref)} "
                f"changed while pushing (now {(actual or '(deleted)')[:12]})",
                hint="run 'mgit pull' to get the new version, then push again",
            ) from None
    raise NonFastForwardError(
        u.ref,
        f"push of {short_ref(u.ref)} rejected: the remote keeps changing",
        hint="run 'mgit pull', then push again",
    )


def _update_remote_refs(
    repo: RepoCore, transport: Transport, updates: list[RefUpdate], *, jobs: int = 1
) -> list[RefUpdate]:
    """CAS every update, ``jobs`` at a time; if one fails, move back the refs already moved
    (CAS, so never over someone else's) and raise the first failure (in ``updates`` order).

    All-or-nothing as far as the remote allows: S3 and a path have no multi-ref transaction,
    so for a moment some refs have moved and others not, as with one CAS after the other.
    """
    if jobs <= 1 or len(updates) <= 1:
        done: list[RefUpdate] = []
        for u in updates:
            try:
                done.append(_cas(repo, transport, u))
            except BaseException:
                _roll_back(transport, done)
                raise
        return done
    outcomes: list[RefUpdate | BaseException] = []

    def one(u: RefUpdate) -> RefUpdate | BaseException:
        try:
            return _cas(repo, transport, u)
        except Exception as exc:  # noqa: BLE001  (collected: all CASes end before the rollback)
            return exc

    check_names = getattr(transport, "check_new_refs", None)
    if check_names is not None:  # S3: one listing instead of one per created ref
        check_names([u.ref for u in updates if u.old is None and u.new is not None])
    with ThreadPoolExecutor(max_workers=min(jobs, len(updates)), thread_name_prefix="mgit-ref") as pool:
        outcomes = list(pool.map(one, updates))
    moved = [o for o in outcomes if isinstance(o, RefUpdate)]
    failed = [o for o in outcomes if not isinstance(o, RefUpdate)]
    if failed:
        _roll_back(transport, moved)
        raise failed[0]
    return moved


def _roll_back(transport: Transport, done: list[RefUpdate]) -> None:
    """Best effort: put back refs this push already moved (CAS, so never over someone else)."""
    for ref, now, restore in negotiate.rollback_plan(done):
        try:
            transport.update_ref(ref, now, restore)
        except MgitError:
            pass


def _notes_to_send(repo: RepoCore, tip: str, remote_tip: str | None) -> list[str]:
    """The objects of the notes commits behind ``tip`` that ``remote_tip`` lacks, in
    dependency order. Only the remote tip's own objects are subtracted (not those of its
    whole notes history, which would mean reading every old notes tree): what else the
    remote has, :meth:`Transport.has_objects` tells."""
    have = dag.ancestors([remote_tip], repo.parents_of) if remote_tip is not None else set()
    want = dag.ancestors([tip], lambda c: [p for p in repo.parents_of(c) if p not in have]) - have
    objs: set[str] = set()
    for c in want:
        objs |= commit_objects(repo, c)
    if remote_tip is not None:
        objs -= commit_objects(repo, remote_tip)
    blobs_and_trees = sorted((repo.store.header(o).kind != "chunk", o) for o in objs if o not in want)
    return [o for _, o in blobs_and_trees] + parents_first(repo, want)


def _push_notes(
    repo: RepoCore,
    transport: Transport,
    remote_tip: str | None,
    *,
    jobs: int,
    progress: TransferProgress | None,
    guard: _Guard,
) -> tuple[RefUpdate | None, int, int, int]:
    """Send the local test notes (``refs/tests``); when the remote's moved too, receive them
    and merge first (a union), so the remote ref only ever fast-forwards.

    Returns ``(update or None when there are no local notes, objects sent, bytes, already there)``.
    """
    sent = nbytes = already = 0
    status = "fast-forward"
    for _attempt in range(5):
        local = repo.refs.read(TESTS)
        if local is None:
            return None, 0, 0, 0
        if local == remote_tip:
            return RefUpdate(TESTS, remote_tip, local, "up-to-date"), sent, nbytes, already
        if remote_tip is not None and (
            remote_tip not in repo.store
            or not dag.is_ancestor(remote_tip, local, repo.parents_of)
        ):
            _Receiver(repo, transport, jobs=jobs, progress=progress).receive([remote_tip])
            merged = merge_notes(repo, remote_tip, message=f"push {transport.url}: merge")
            status = "merged" if merged.status == "merged" else status
            local = merged.new
            if local == remote_tip:
                return RefUpdate(TESTS, remote_tip, local, "up-to-date"), sent, nbytes, already
        assert local is not None
        wanted = _notes_to_send(repo, local, remote_tip)
        guard.ensure()
        present = transport.has_objects(wanted) if wanted else set()
        missing = [o for o in wanted if o not in present]
        already += len(wanted) - len(missing)
        nbytes += _upload(repo, transport, missing, jobs=jobs, progress=progress) if missing else 0
        sent += len(missing)
        try:
            transport.update_ref(TESTS, remote_tip, local)
        except RefConflictError as exc:
            remote_tip = exc.actual  # someone else pushed notes: merge theirs, try again
            continue
        if remote_tip is None:
            status = "created"
        return RefUpdate(TESTS, remote_tip, local, status), sent, nbytes, already
    raise NonFastForwardError(
        TESTS, "push of the test notes rejected: the remote's keep changing",
        hint="run 'mgit push' again",
    )


def push(
    repo: RepoCore,
    remote: str | None = None,
    refs: Sequence[str] = (),
    *,
    force: bool = False,
    all_models: bool = False,
    tags: bool = False,
    tests: bool = True,
    jobs: int = DEFAULT_JOBS,
    progress: TransferProgress | None = None,
    transport: Transport | None = None,
) -> PushResult:
    """Send model lines (and tags) to a remote: only the objects it lacks, then CAS its refs.

    Args:
        repo: The local repository.
        remote: A remote name or URL (default ``origin`` or the only remote). A missing
            remote store is created.
        refs: Model or tag names (default: the checked-out model).
        force: Allow non-fast-forward updates (and moving a tag).
        all_models: Push every model line.
        tags: Push every tag.
        tests: Push the test notes too (``refs/tests``: specs and results), after the model
            refs; when the remote's notes moved as well they are fetched and merged first.
        jobs: Parallel uploads.
        progress: Receives transfer progress.
        transport: Use this transport instead of opening the remote's URL (its store must
            exist; its format is not checked).

    Returns:
        A :class:`PushResult`.

    Raises:
        NonFastForwardError: A ref is not a fast-forward of the remote's (nothing was sent),
            or the remote's ref changed during the push (the other refs were moved back).
        RefNotFoundError: A REF that is neither a local model nor a tag.
        RemoteError: The remote cannot be reached or written, or has a working tree.
    """
    name, url = (None, transport.url) if transport is not None else resolve_remote(repo, remote)
    local = negotiate.select_push_refs(
        refs,
        all_models=all_models,
        tags=tags,
        head_model=repo.head_model,
        read=repo.refs.read,
        iter_refs=repo.refs.iter_refs,
    )
    if transport is None:
        transport = open_remote(url, create=True, timeout=remote_timeout(repo, name))
    remote_refs = transport.list_refs()
    updates, rejected = negotiate.plan_updates(
        local, remote_refs, force=force, known=repo.store, parents=repo.parents_of
    )
    if rejected:
        names = ", ".join(f"{short_ref(r)} ({why})" for r, why in rejected)
        raise NonFastForwardError(
            rejected[0][0],
            f"push rejected: {names}",
            hint="the remote has versions you do not: run 'mgit pull' to take them, or keep "
            "both lines by pushing yours under a new name ('mgit branch NEW MODEL', "
            "'mgit push REMOTE NEW'), or replace the remote's with 'mgit push --force'",
        )
    moving = [u for u in updates if u.status != "up-to-date"]
    guard = _Guard(transport)
    try:
        return _push_planned(
            repo, transport, name, remote_refs, updates, moving, guard,
            tests=tests, jobs=jobs, progress=progress,
        )
    finally:
        guard.close()  # only once the refs moved: until then a remote gc leaves all alone


def _push_planned(
    repo: RepoCore,
    transport: Transport,
    name: str | None,
    remote_refs: dict[str, str],
    updates: list[RefUpdate],
    moving: list[RefUpdate],
    guard: _Guard,
    *,
    tests: bool,
    jobs: int,
    progress: TransferProgress | None,
) -> PushResult:
    sent = nbytes = already = 0
    check_locks = getattr(transport, "check_ref_locks", None)
    if moving and check_locks is not None:
        # A ref lock held by a running push (or one that cannot be shown stale) fails the push
        # now, before anything is uploaded; one left by a killed push is broken, with a warning.
        check_locks([u.ref for u in moving])
    if moving:
        exclude = {o for r, o in remote_refs.items() if r != TESTS and o in repo.store}
        wanted = objects_to_send(repo, [u.new for u in moving if u.new is not None], exclude)
        guard.ensure()  # before the remote is asked what it holds
        present = transport.has_objects(wanted) if wanted else set()
        missing = [o for o in wanted if o not in present]
        already = len(wanted) - len(missing)
        nbytes = _upload(repo, transport, missing, jobs=jobs, progress=progress) if missing else 0
        sent = len(missing)
        moved = _update_remote_refs(repo, transport, moving, jobs=max(jobs, _REF_JOBS))
        by_ref = {u.ref: u for u in moved}
        updates = [by_ref.get(u.ref, u) for u in updates]
    if tests:
        note, n_sent, n_bytes, n_already = _push_notes(
            repo, transport, remote_refs.get(TESTS), jobs=jobs, progress=progress, guard=guard
        )
        if note is not None:
            updates.append(note)
            sent, nbytes, already = sent + n_sent, nbytes + n_bytes, already + n_already
    if name is not None:
        heads = {u.name: u.new for u in updates if u.ref.startswith(HEADS)}
        update_tracking(repo, name, heads, message=f"push {name}")
    return PushResult(name, transport.url, updates, sent, nbytes, already)
