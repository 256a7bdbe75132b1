"""Notes: small JSON files kept beside the model history, like git notes (``refs/tests``).

A notes ref points at a *notes commit*: an ordinary commit object (model name
``mgit-tests``, a message, parents = the previous notes commit, two of them after a merge)
whose tree holds small blob files. Objects are the store's own (a blob is one ``chunk``
object, its file entry carries the XXH3-128 of the bytes), so gc keeps them, fsck verifies
them and push, fetch and clone carry them like any commit.

Every change writes a new tree and notes commit, makes them durable, then compare-and-swaps
the ref; a writer that loses the race re-reads the ref and applies its change again
(:func:`update`), so concurrent writers never lose each other's files. Two notes commits
that both moved (two repositories, a remote) are merged by :func:`merge`: files under
``specs/`` three-way against the merge base (a deletion on one side wins over an unchanged
other side), everything else as a union; where both sides hold a path with different
content, ours is kept.

This module sits just above :mod:`mgit.core` (rank ``mgit.lifecycle.notes`` in
``tests/unit/test_import_ranks.py``) so that :mod:`mgit.remote` can carry and merge notes
without importing the test runner.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import xxhash

from mgit.core import RepoCore, author_name, commit_time
from mgit.errors import RefConflictError
from mgit.lineage import graph as dag
from mgit.objects.model import Commit, FileEntry, ParentLink, Tree
from mgit.refs.store import TESTS

__all__ = [
    "NOTES_MODEL",
    "TESTS_REF",
    "Notes",
    "blob_entry",
    "merge",
    "merge_files",
    "merge_into_ref",
    "read",
    "read_blob",
    "update",
    "write_commit",
]

TESTS_REF = TESTS
#: The model name written on notes commits (they are no model's versions).
NOTES_MODEL = "mgit-tests"
#: How many times :func:`update` re-applies a change after losing a compare-and-swap.
_RETRIES = 50


@dataclass(frozen=True)
class Notes:
    """A snapshot of a notes ref: the commit it pointed at and that commit's files."""

    tip: str | None
    files: Mapping[str, FileEntry]


def read(core: RepoCore, ref: str = TESTS_REF) -> Notes:
    """The notes a ref points at now (no files when the ref does not exist)."""
    tip = core.refs.read(ref)
    return Notes(tip, files_of(core, tip))


def files_of(core: RepoCore, tip: str | None) -> dict[str, FileEntry]:
    """The files of a notes commit (none for None)."""
    if tip is None:
        return {}
    return dict(core.commit_tree(tip).files)


def read_blob(core: RepoCore, entry: FileEntry) -> bytes:
    """The verified bytes of a notes file."""
    return b"".join(core.store.get(oid, kind="chunk") for oid in entry.chunks)


def blob_entry(core: RepoCore, data: bytes) -> FileEntry:
    """Store ``data`` as one chunk object (not yet synced) and return its file entry.

    The entry's single chunk id is ``mgit.objects.ids.hash_object("chunk", data)``: equal
    bytes, equal entry.
    """
    chunks: tuple[str, ...] = (core.store.put("chunk", data),) if data else ()
    return FileEntry(kind="blob", size=len(data), xxh=xxhash.xxh3_128(data).hexdigest(), chunks=chunks)


def write_commit(
    core: RepoCore, files: Mapping[str, FileEntry], parents: list[str], message: str
) -> str:
    """Write a notes tree and commit (durable, no ref moves) and return the commit id."""
    tree = core.store.put("tree", Tree(dict(files)).to_bytes())
    c = Commit(
        tree=tree, parents=tuple(ParentLink(p, "version") for p in parents), model=NOTES_MODEL,
        author=author_name(core.config), time=commit_time(), message=message,
    )
    oid = core.store.put("commit", c.to_bytes())
    core.store.sync()
    return oid


def update(
    core: RepoCore,
    change: Callable[[dict[str, FileEntry]], bool],
    *,
    message: str,
    ref: str = TESTS_REF,
) -> str | None:
    """Apply ``change`` to the files of the notes and move the ref to a new notes commit.

    ``change`` edits the dict in place and returns whether it changed anything; it may be
    called several times (once per lost compare-and-swap, on the files as they are then),
    so it must be idempotent and must re-decide from what it is given.

    Returns:
        The notes commit the ref points at afterwards.

    Raises:
        RefConflictError: the ref kept changing (after many tries).
    """
    for _attempt in range(_RETRIES):
        tip = core.refs.read(ref)
        files = files_of(core, tip)
        if not change(files):
            return tip
        new = write_commit(core, files, [tip] if tip else [], message)
        try:
            core.refs.update_many([(ref, tip, new)], message=f"notes: {message}")
            return new
        except RefConflictError:
            continue
    raise RefConflictError(ref, None, core.refs.read(ref))


def merge_files(
    base: Mapping[str, FileEntry], ours: Mapping[str, FileEntry], theirs: Mapping[str, FileEntry]
) -> dict[str, FileEntry]:
    """The files of a merge (pure): ``specs/`` three-way, the rest a union; ours wins a tie."""
    out = dict(ours)
    for path, e in theirs.items():
        if path in ours:
            continue
        if path.startswith("specs/") and base.get(path) == e:
            continue  # we deleted it, they left it alone
        out[path] = e
    for path, e in ours.items():
        if not path.startswith("specs/"):
            continue
        t = theirs.get(path)
        if t == e or base.get(path) != e:
            continue  # same, or we changed it: ours
        if t is None:
            del out[path]  # they deleted it, we left it alone
        else:
            out[path] = t  # they changed it, we left it alone
    return out


def merge(core: RepoCore, ours: str | None, theirs: str, *, message: str) -> tuple[str, str]:
    """Combine two notes commits (both stored). Moves no ref.

    Returns:
        ``(commit, status)``: ``up-to-date`` (the same), ``ahead`` (ours contains theirs),
        ``fast-forward`` (theirs contains ours: theirs is the result), ``merged`` (a new notes
        commit with both as parents whose files are :func:`merge_files`).
    """
    if ours is None:
        return theirs, "fast-forward"
    if ours == theirs:
        return ours, "up-to-date"
    if dag.is_ancestor(theirs, ours, core.parents_of):
        return ours, "ahead"
    if dag.is_ancestor(ours, theirs, core.parents_of):
        return theirs, "fast-forward"
    bases = dag.merge_bases(ours, theirs, core.parents_of)
    base = files_of(core, bases[0]) if bases else {}
    files = merge_files(base, files_of(core, ours), files_of(core, theirs))
    return write_commit(core, files, [ours, theirs], message), "merged"


def merge_into_ref(core: RepoCore, theirs: str, *, message: str, ref: str = TESTS_REF) -> tuple[str, str]:
    """Merge the stored notes commit ``theirs`` into the local notes ref (compare-and-swap,
    merging again when the ref moved meanwhile). Returns ``(new tip, status)``."""
    for _attempt in range(_RETRIES):
        tip = core.refs.read(ref)
        new, status = merge(core, tip, theirs, message=message)
        if new == tip:
            return new, status
        try:
            core.refs.update_many([(ref, tip, new)], message=f"notes: {message}")
            return new, status
        except RefConflictError:
            continue
    raise RefConflictError(ref, None, core.refs.read(ref))
