"""Walks over the commit DAG: ancestors, descendants, topological order, merge base.

These take a ``parents(oid) -> list[oid]`` function and never touch files, so they work on any
store (and in tests on plain dicts).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

__all__ = ["ancestors", "topo_order", "is_ancestor", "merge_bases", "descendants"]

ParentsFn = Callable[[str], list[str]]


def ancestors(starts: Iterable[str], parents: ParentsFn, *, include_self: bool = True) -> set[str]:
    """Every commit reachable from ``starts`` through parent edges."""
    seen: set[str] = set()
    stack = list(starts)
    if not include_self:
        stack = [p for s in stack for p in parents(s)]
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        stack.extend(parents(c))
    return seen


def descendants(target: str, commits: Iterable[str], parents: ParentsFn) -> set[str]:
    """Commits among ``commits`` that have ``target`` as an ancestor (excluding it)."""
    children: dict[str, list[str]] = {}
    for c in commits:
        for p in parents(c):
            children.setdefault(p, []).append(c)
    out: set[str] = set()
    stack = list(children.get(target, []))
    while stack:
        c = stack.pop()
        if c in out:
            continue
        out.add(c)
        stack.extend(children.get(c, []))
    return out


def topo_order(
    commits: Iterable[str], parents: ParentsFn, time: Callable[[str], float]
) -> list[str]:
    """Commits newest first, every child before its parents (ties broken by time, then id)."""
    nodes = set(commits)
    pending = {c: 0 for c in nodes}
    for c in nodes:
        for p in parents(c):
            if p in nodes:
                pending[p] += 1
    heap = [(-time(c), c) for c in nodes if pending[c] == 0]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, c = heapq.heappop(heap)
        out.append(c)
        for p in parents(c):
            if p in nodes:
                pending[p] -= 1
                if pending[p] == 0:
                    heapq.heappush(heap, (-time(p), p))
    return out


def is_ancestor(a: str, b: str, parents: ParentsFn) -> bool:
    """True when ``a`` is ``b`` or an ancestor of ``b``."""
    return a in ancestors([b], parents)


def merge_bases(a: str, b: str, parents: ParentsFn) -> list[str]:
    """Best common ancestors of ``a`` and ``b`` (those not ancestors of another common one)."""
    common = ancestors([a], parents) & ancestors([b], parents)
    best = set(common)
    for c in common:
        best -= ancestors([c], parents, include_self=False)
    return sorted(best)
