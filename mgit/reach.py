"""What reaches what: the commits behind refs, the objects a commit needs, what to send.

Functions here take a :class:`CommitGraph` (``mgit.core.RepoCore`` is one) and never write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from mgit.lineage import graph as dag
from mgit.objects.model import Commit, Tree
from mgit.objects.store import DiskStore

__all__ = [
    "CommitGraph",
    "all_commits",
    "commit_objects",
    "reachable_objects",
    "objects_to_send",
    "parents_first",
]


class CommitGraph(Protocol):
    """What reachability needs of a repository."""

    store: DiskStore

    def read_commit(self, oid: str) -> Commit: ...

    def read_tree(self, oid: str) -> Tree: ...

    def parents_of(self, oid: str) -> list[str]: ...

    def commit_time_of(self, oid: str) -> int: ...

    def ref_tips(self, *, history: bool = False) -> list[str]: ...


def all_commits(g: CommitGraph, *, history: bool = True) -> set[str]:
    """Every model version: the commits reachable from a model line, a tag, a remote-tracking
    ref or HEAD. With ``history`` False, also the notes commits of ``refs/tests`` (what gc
    and fsck keep and verify)."""
    return dag.ancestors(g.ref_tips(history=history), g.parents_of)


def parents_first(g: CommitGraph, commits: Iterable[str]) -> list[str]:
    """``commits`` ordered so that every parent comes before its children (oldest first)."""
    return list(reversed(dag.topo_order(commits, g.parents_of, g.commit_time_of)))


def commit_objects(g: CommitGraph, oid: str) -> set[str]:
    """Every object a commit needs besides its parents: itself, its tree, chunks, delta bases."""
    c = g.read_commit(oid)
    chunks: set[str] = set()
    for entry in g.read_tree(c.tree).files.values():
        chunks |= entry.chunk_ids()
    todo = list(chunks)
    while todo:
        base = g.store.header(todo.pop()).base
        if base is not None and base not in chunks:
            chunks.add(base)
            todo.append(base)
    return {oid, c.tree} | chunks


def reachable_objects(g: CommitGraph) -> set[str]:
    """Every object needed by a commit reachable from a ref (``refs/tests`` included) or HEAD."""
    objs: set[str] = set()
    for c in all_commits(g, history=False):
        objs |= commit_objects(g, c)
    return objs


def objects_to_send(g: CommitGraph, tips: Iterable[str], exclude: Iterable[str]) -> list[str]:
    """Objects reachable from ``tips`` and not from ``exclude``, in dependency order (delta
    bases before their deltas, chunks before trees, then commits parents first), so writing
    them in this order never leaves a dangling reference."""
    exclude = [e for e in exclude if e in g.store]
    have_commits = dag.ancestors(exclude, g.parents_of) if exclude else set()
    want = dag.ancestors(list(tips), lambda c: [p for p in g.parents_of(c) if p not in have_commits])
    want -= have_commits
    have: set[str] = set()
    for c in have_commits:
        have |= commit_objects(g, c)
    objs: set[str] = set()
    for c in want:
        objs |= commit_objects(g, c)
    objs -= have
    chunks, trees = [], []
    for o in objs:
        if o in want:
            continue
        h = g.store.header(o)
        if h.kind == "chunk":
            chunks.append((h.depth, o))
        elif h.kind == "tree":
            trees.append(o)
    return [o for _, o in sorted(chunks)] + sorted(trees) + parents_first(g, want)
