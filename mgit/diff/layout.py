"""Layered layout of a directed graph (Sugiyama style, small and dependency-free).

Cycles (a module called twice) are broken by ignoring the back edges of a depth-first search;
each node's layer is the length of the longest path reaching it; nodes within a layer are
ordered by a few sweeps of the barycenter heuristic to reduce edge crossings.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence

__all__ = ["layered_layout"]

_SWEEPS = 4


def _back_edges(nodes: Sequence[str], succ: dict[str, list[str]]) -> set[tuple[str, str]]:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    back: set[tuple[str, str]] = set()
    for root in nodes:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            children = succ.get(node, [])
            if i < len(children):
                stack[-1] = (node, i + 1)
                child = children[i]
                s = state.get(child)
                if s == 1:
                    back.add((node, child))
                elif s is None:
                    state[child] = 1
                    stack.append((child, 0))
            else:
                state[node] = 2
                stack.pop()
    return back


def layered_layout(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]]
) -> dict[str, tuple[int, int]]:
    """Assign every node a layer and a position within its layer.

    Args:
        nodes: The nodes, in a preferred order (e.g. trace order); ties keep this order.
        edges: Directed edges between nodes (edges naming unknown nodes are ignored).

    Returns:
        Node to ``(layer, position)``; an edge ``(u, v)`` that is not part of a cycle has
        ``layer(u) < layer(v)``.

    Example:
        >>> layered_layout(["a", "b", "c"], [("a", "b"), ("a", "c"), ("b", "c")])
        {'a': (0, 0), 'b': (1, 0), 'c': (2, 0)}
    """
    index = {n: i for i, n in enumerate(dict.fromkeys(nodes))}
    order = list(index)
    succ: dict[str, list[str]] = defaultdict(list)
    seen_edges: set[tuple[str, str]] = set()
    for u, v in edges:
        if u in index and v in index and u != v and (u, v) not in seen_edges:
            seen_edges.add((u, v))
            succ[u].append(v)
    back = _back_edges(order, succ)
    dag = [(u, v) for u in order for v in succ.get(u, []) if (u, v) not in back]
    indeg = dict.fromkeys(order, 0)
    dag_succ: dict[str, list[str]] = defaultdict(list)
    dag_pred: dict[str, list[str]] = defaultdict(list)
    for u, v in dag:
        dag_succ[u].append(v)
        dag_pred[v].append(u)
        indeg[v] += 1
    layer = dict.fromkeys(order, 0)
    ready = [(index[n], n) for n in order if indeg[n] == 0]
    heapq.heapify(ready)
    while ready:
        _, u = heapq.heappop(ready)
        for v in dag_succ[u]:
            layer[v] = max(layer[v], layer[u] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(ready, (index[v], v))
    rows: dict[int, list[str]] = defaultdict(list)
    for n in order:
        rows[layer[n]].append(n)
    pos = {n: float(i) for row in rows.values() for i, n in enumerate(row)}
    depth = max(rows) + 1 if rows else 0
    for sweep in range(_SWEEPS):
        down = sweep % 2 == 0
        layers = range(1, depth) if down else range(depth - 2, -1, -1)
        for li in layers:
            row = rows[li]
            neighbours = dag_pred if down else dag_succ

            def bary(n: str, nb: dict[str, list[str]] = neighbours) -> tuple[float, int]:
                ps = [pos[m] for m in nb.get(n, [])]
                return (sum(ps) / len(ps) if ps else pos[n], index[n])

            row.sort(key=bary)
            for i, n in enumerate(row):
                pos[n] = float(i)
    return {n: (layer[n], int(pos[n])) for n in order}
