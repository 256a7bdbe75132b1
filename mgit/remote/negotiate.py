"""Negotiation: the decisions of push, fetch and pull, as pure functions.

Nothing here reads or writes a file or talks to a remote. What a decision needs of a
repository comes in as values (dicts of refs, headers, received commits) or as small
callables (``parents(oid)``, ``read(ref)``), so every rule can be tested on plain dicts:

- which local refs a push sends (:func:`select_push_refs`);
- which remote refs it creates, fast-forwards or forces, and which it must refuse
  (:func:`plan_updates`), and what to do when a compare-and-swap loses a race
  (:func:`after_conflict`, :func:`rollback_plan`);
- in what order objects go up (:func:`upload_levels`: delta bases before their deltas, chunks
  before trees before commits, parents first) and come down (:func:`received_parents_first`,
  :func:`chunk_order`);
- how a remote-tracking ref moves (:func:`move_status`) and what a pull does
  (:func:`pull_action`).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Literal, Protocol

from mgit.errors import RefNotFoundError, UsageError
from mgit.lineage import graph as dag
from mgit.objects.model import Commit, Tree
from mgit.refs.store import HEADS, TAGS
from mgit.remote.results import RefUpdate

__all__ = [
    "HeaderLike",
    "after_conflict",
    "chunk_order",
    "is_fast_forward",
    "move_status",
    "plan_updates",
    "pull_action",
    "received_parents_first",
    "referenced_chunks",
    "rollback_plan",
    "select_push_refs",
    "short_ref",
    "split_remote_refs",
    "upload_levels",
]

ParentsFn = Callable[[str], list[str]]


class HeaderLike(Protocol):
    """What ordering needs of a stored object's header."""

    @property
    def kind(self) -> str: ...

    @property
    def depth(self) -> int: ...


def short_ref(ref: str) -> str:
    """The ref without its ``refs/heads/``, ``refs/tags/`` or ``refs/remotes/`` prefix."""
    return RefUpdate(ref, None, None, "").name


def is_fast_forward(old: str, new: str, *, known: Container[str], parents: ParentsFn) -> bool:
    """True when moving a ref from ``old`` to ``new`` loses nothing: ``old`` is a commit we
    know (``known``) and an ancestor of ``new`` (or ``new`` itself)."""
    return old in known and dag.is_ancestor(old, new, parents)


# -- push -------------------------------------------------------------------------------------


def select_push_refs(
    refs: Sequence[str],
    *,
    all_models: bool,
    tags: bool,
    head_model: str | None,
    read: Callable[[str], str | None],
    iter_refs: Callable[[str], Mapping[str, str]],
) -> dict[str, str]:
    """Map each REF given (model or tag name) to its full ref and local commit id.

    Args:
        refs: Model or tag names, or full ``refs/heads/...``/``refs/tags/...`` names.
        all_models: Every model line too.
        tags: Every tag too.
        head_model: The checked-out model (pushed when nothing else is named).
        read: The local value of a full ref, or None.
        iter_refs: The local refs under a prefix, ``{full ref: oid}``.

    Raises:
        RefNotFoundError: A REF that is neither a local model nor a tag.
        UsageError: Nothing named and HEAD detached, or its model has no commit.
    """
    out: dict[str, str] = {}
    if all_models:
        out.update(iter_refs(HEADS))
    if tags:
        out.update(iter_refs(TAGS))
    for ref in refs:
        for full in (ref,) if ref.startswith((HEADS, TAGS)) else (HEADS + ref, TAGS + ref):
            oid = read(full)
            if oid is not None:
                out[full] = oid
                break
        else:
            raise RefNotFoundError(ref, reason="not a local model or tag")
    if not refs and not all_models and not tags:
        if head_model is None:
            raise UsageError("HEAD is detached: name the model(s) to push")
        oid = read(HEADS + head_model)
        if oid is None:
            raise UsageError(f"model {head_model} has no commits yet")
        out[HEADS + head_model] = oid
    return out


def plan_updates(
    local: Mapping[str, str],
    remote_refs: Mapping[str, str],
    *,
    force: bool,
    known: Container[str],
    parents: ParentsFn,
) -> tuple[list[RefUpdate], list[tuple[str, str]]]:
    """What a push does to each remote ref, by ref name; and the refs it must refuse.

    A model line may only fast-forward (its remote commit known locally and an ancestor of
    ours); a tag may only be created. ``force`` turns every refusal into ``forced``.

    Returns:
        ``(updates, rejected)``: a :class:`RefUpdate` per ref that may move (status
        ``up-to-date``, ``created``, ``fast-forward`` or ``forced``), and ``(ref, why)`` per
        refused ref.
    """
    updates: list[RefUpdate] = []
    rejected: list[tuple[str, str]] = []
    for ref, new in sorted(local.items()):
        old = remote_refs.get(ref)
        if old == new:
            updates.append(RefUpdate(ref, old, new, "up-to-date"))
        elif old is None:
            updates.append(RefUpdate(ref, old, new, "created"))
        elif ref.startswith(HEADS) and is_fast_forward(old, new, known=known, parents=parents):
            updates.append(RefUpdate(ref, old, new, "fast-forward"))
        elif force:
            updates.append(RefUpdate(ref, old, new, "forced"))
        else:
            why = "tag exists on the remote" if ref.startswith(TAGS) else "non-fast-forward"
            rejected.append((ref, why))
    return updates, rejected


def after_conflict(
    update: RefUpdate, actual: str | None, *, known: Container[str], parents: ParentsFn
) -> Literal["done", "retry", "reject"]:
    """What a push does when the CAS of ``update`` finds the remote ref at ``actual``.

    ``done``: someone pushed the very same commit. ``retry`` (against ``actual``): the push is
    forced, or the remote moved to a commit ours already contains (still a fast-forward).
    ``reject``: the remote moved elsewhere; the push must undo its ref moves and fail.
    """
    if actual == update.new:
        return "done"
    if update.status == "forced" or (
        update.ref.startswith(HEADS)
        and actual is not None
        and update.new is not None
        and is_fast_forward(actual, update.new, known=known, parents=parents)
    ):
        return "retry"
    return "reject"


def rollback_plan(done: Sequence[RefUpdate]) -> list[tuple[str, str | None, str | None]]:
    """The compare-and-swaps that undo ref moves already made, newest first:
    ``(ref, value it must hold now, value to restore)``."""
    return [(u.ref, u.new, u.old) for u in reversed(done)]


def upload_levels(
    oids: Sequence[str],
    headers: Mapping[str, HeaderLike],
    *,
    parents: ParentsFn | None = None,
) -> list[list[str]]:
    """Split objects (in :func:`mgit.reach.objects_to_send` order) into levels whose objects
    may go up in parallel, each level after the previous one has arrived.

    Chunks of one delta depth form a level (a delta's base is one depth lower, so it is on the
    remote first), then all trees; then the commits. Without ``parents`` each commit is its own
    level (the order given is parents first); with it, commits are grouped by generation: a
    commit goes one level after the latest of its parents that is sent too (1,000 new model
    lines are one level, not 1,000). So the remote never holds an object whose references are
    missing.
    """
    levels: list[list[str]] = []
    key_prev: tuple[object, ...] | None = None
    commits: list[str] = []
    for oid in oids:
        header = headers[oid]
        key: tuple[object, ...]
        if header.kind == "chunk":
            key = ("chunk", header.depth)
        elif header.kind == "tree":
            key = (header.kind,)
        elif parents is not None:
            commits.append(oid)
            continue
        else:
            key = ("commit", oid)
        if key != key_prev:
            levels.append([])
            key_prev = key
        levels[-1].append(oid)
    if commits:
        assert parents is not None
        generation: dict[str, int] = {}
        by_gen: dict[int, list[str]] = {}
        for oid in commits:  # parents first, so a sent parent's generation is known
            gen = 1 + max((generation[p] for p in parents(oid) if p in generation), default=-1)
            generation[oid] = gen
            by_gen.setdefault(gen, []).append(oid)
        levels.extend(by_gen[g] for g in sorted(by_gen))
    return levels


# -- fetch ------------------------------------------------------------------------------------


def split_remote_refs(
    remote_refs: Mapping[str, str], models: Sequence[str] | None, *, where: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The remote's ``(heads, tags)`` by short name; only ``models`` when given.

    Raises:
        RefNotFoundError: A model in ``models`` that the remote does not have.
    """
    heads = {r[len(HEADS) :]: o for r, o in remote_refs.items() if r.startswith(HEADS)}
    remote_tags = {r[len(TAGS) :]: o for r, o in remote_refs.items() if r.startswith(TAGS)}
    if models:
        missing = [m for m in models if m not in heads]
        if missing:
            raise RefNotFoundError(missing[0], reason=f"no such model on {where}")
        heads = {m: heads[m] for m in models}
    return heads, remote_tags


def received_parents_first(commits: Mapping[str, Commit]) -> list[str]:
    """Commits received but not yet stored, every parent before its children (older first).

    Parents outside ``commits`` (already stored locally) are ignored.
    """
    return list(
        reversed(
            dag.topo_order(
                commits,
                lambda c: [p.oid for p in commits[c].parents],
                lambda c: commits[c].time,
            )
        )
    )


def referenced_chunks(tree: Tree) -> set[str]:
    """Every chunk a tree names directly (not the delta bases those chunks need)."""
    out: set[str] = set()
    for entry in tree.files.values():
        out |= entry.chunk_ids()
    return out


def chunk_order(
    commits: Mapping[str, Commit], trees: Mapping[str, Tree], wanted: Iterable[str]
) -> list[str]:
    """The chunks to download, older commits' first: a delta's base (a chunk of the parent
    model) then usually arrives before the delta, so few deltas wait in memory for it.

    Args:
        commits: The received commits.
        trees: The received trees, by id.
        wanted: The chunks to download (those not stored locally); any not named by a tree
            of ``trees`` come last, by id.
    """
    wanted = set(wanted)
    order: list[str] = []
    seen: set[str] = set()

    def add(oid: str) -> None:
        if oid in wanted and oid not in seen:
            seen.add(oid)
            order.append(oid)

    for commit_oid in received_parents_first(commits):
        tree = trees.get(commits[commit_oid].tree)
        if tree is None:
            continue
        for _path, entry in sorted(tree.files.items()):
            for oid in entry.chunks:
                add(oid)
            if entry.header is not None:
                add(entry.header)
            for _name, manifest in entry.tensors:
                for oid in manifest.chunks:
                    add(oid)
    order.extend(sorted(wanted - seen))
    return order


def move_status(
    old: str | None, new: str | None, *, known: Container[str], parents: ParentsFn
) -> str:
    """How a local ref moves: ``created``, ``deleted``, ``fast-forward`` or ``forced``."""
    if new is None:
        return "deleted"
    if old is None:
        return "created"
    return "fast-forward" if is_fast_forward(old, new, known=known, parents=parents) else "forced"


# -- pull -------------------------------------------------------------------------------------


def pull_action(
    old: str | None, new: str, *, parents: ParentsFn
) -> Literal["up-to-date", "ahead", "diverged", "created", "fast-forward"]:
    """What pulling ``new`` into a model line at ``old`` does (both commits are stored).

    ``up-to-date``: the same commit. ``ahead``: the local line already contains the remote's.
    ``diverged``: neither contains the other (a pull refuses). Otherwise the line is
    ``created`` or fast-forwarded.
    """
    if old == new:
        return "up-to-date"
    if old is not None and dag.is_ancestor(new, old, parents):
        return "ahead"
    if old is not None and not dag.is_ancestor(old, new, parents):
        return "diverged"
    return "created" if old is None else "fast-forward"
