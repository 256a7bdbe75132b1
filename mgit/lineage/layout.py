"""Layout of a lineage graph for drawing: one row (lane) per model line, columns by layer.

The layout is computed once in Python and embedded in the HTML page, so the page needs no layout
code and the positions are deterministic and testable:

- **Columns.** A commit's layer is the length of the longest path from a root to it, so every
  edge points right and an edge between adjacent layers stays inside the gap between two columns.
- **Lanes.** Each model line gets a horizontal lane holding its versions in layer order. A lane
  whose versions fork (two versions at the same layer) gets as many sub-rows as it needs, so no two
  nodes ever share a cell. Lanes are ordered as a tree: a derived model's lane comes below the lane
  it was derived from (depth first; smaller subtrees first, so that derivation edges stay short),
  roots by first layer.
- **Edges.** An edge between adjacent layers is a straight line or an S-curve inside the gap
  between the columns. A longer edge is routed orthogonally with rounded corners: into the column
  gap after its parent, along the channel between two rows of nodes, and down (or up) the column
  gap before its child, so edges never cross a node.

All coordinates are pixels of the drawing; ``(x, y)`` of a node is its top-left corner.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NODE_W",
    "NODE_H",
    "GAP_X",
    "GAP_Y",
    "LANE_GAP",
    "MARGIN",
    "NodeBox",
    "LaneBand",
    "EdgeRoute",
    "Layout",
    "compute_layout",
]

NODE_W = 150  #: Node width.
NODE_H = 38  #: Node height.
GAP_X = 64  #: Horizontal gap between two columns (room for edge labels).
GAP_Y = 22  #: Vertical gap between two rows of nodes (the edge channel).
LANE_GAP = 8  #: Extra vertical gap between two lanes.
MARGIN = 24  #: Margin around the drawing.
_DX = NODE_W + GAP_X
_DY = NODE_H + GAP_Y
_R = 8.0  # corner radius of routed edges


@dataclass(frozen=True)
class NodeBox:
    """Where one commit is drawn.

    Attributes:
        x: Left edge.
        y: Top edge.
        layer: Column index (longest path from a root).
        row: Global row index (sub-rows of all lanes counted from the top).
        lane: Index of the node's lane in :attr:`Layout.lanes`.
    """

    x: float
    y: float
    layer: int
    row: int
    lane: int


@dataclass(frozen=True)
class LaneBand:
    """The band behind one model line's versions.

    Attributes:
        model: The model line's name.
        x: Left edge.
        y: Top edge.
        w: Width.
        h: Height.
        parent: Index of the lane this one hangs under in the lane tree, or -1 for a root lane.
    """

    model: str
    x: float
    y: float
    w: float
    h: float
    parent: int


@dataclass(frozen=True)
class EdgeRoute:
    """How one parent -> child edge is drawn.

    Attributes:
        source: Parent commit id.
        target: Child commit id.
        path: SVG path data (numbers only).
        label_x: Where the middle of the relation label goes: in the column gap just before the
            child, right above (or, for a second relation into the same child, below) the arrow.
        label_y: See ``label_x``.
        label: Whether to draw the label: ``False`` for ``version`` edges and for an edge whose
            relation is already written at the same child (the parents of a merge).
    """

    source: str
    target: str
    path: str
    label_x: float
    label_y: float
    label: bool = True


@dataclass(frozen=True)
class Layout:
    """A complete layout.

    Attributes:
        nodes: Node boxes by commit id.
        lanes: Lane bands, top to bottom.
        edges: Edge routes, in the order of the edges given.
        width: Width of the drawing.
        height: Height of the drawing.
    """

    nodes: dict[str, NodeBox]
    lanes: list[LaneBand]
    edges: list[EdgeRoute]
    width: float
    height: float
    node_w: int = field(default=NODE_W)
    node_h: int = field(default=NODE_H)


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _layers(
    ids: Sequence[str], parents: dict[str, list[str]], children: dict[str, list[str]]
) -> dict[str, int]:
    """Longest path from a root (Kahn's algorithm); nodes on a cycle (bad input) get one too."""
    indeg = {n: len(parents[n]) for n in ids}
    queue = deque(n for n in ids if indeg[n] == 0)
    layer: dict[str, int] = {}
    while queue:
        n = queue.popleft()
        layer[n] = max((layer[p] + 1 for p in parents[n] if p in layer), default=0)
        for c in children[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                queue.append(c)
    for n in ids:  # only on a cycle: place after whatever parents were placed
        if n not in layer:
            layer[n] = max((layer[p] + 1 for p in parents[n] if p in layer), default=0)
    return layer


def compute_layout(nodes: Sequence[dict[str, Any]], edges: Sequence[dict[str, Any]]) -> Layout:
    """Lay out a lineage graph given as node and edge records.

    Args:
        nodes: Node records with at least ``id``, ``model`` and ``time`` (as made by
            ``mgit.lineage._records.node_record``), oldest first.
        edges: Edge records with ``source``, ``target`` and ``index``; edges whose ends are not
            both in ``nodes`` are ignored.

    Returns:
        The layout. Node boxes never overlap: each occupies its own (row, layer) cell.
    """
    ids = [str(n["id"]) for n in nodes]
    model = {str(n["id"]): str(n["model"]) for n in nodes}
    when = {str(n["id"]): float(n["time"]) for n in nodes}
    parents: dict[str, list[str]] = {n: [] for n in ids}
    children: dict[str, list[str]] = {n: [] for n in ids}
    ordered = sorted(edges, key=lambda e: (str(e["target"]), int(e["index"]), str(e["source"])))
    kept = [
        e
        for e in ordered
        if e["source"] in model and e["target"] in model and e["source"] != e["target"]
    ]
    for e in kept:
        parents[e["target"]].append(e["source"])
        children[e["source"]].append(e["target"])
    layer = _layers(ids, parents, children)

    # Lanes: one per model line, members in layer order.
    members: dict[str, list[str]] = {}
    for n in sorted(ids, key=lambda n: (layer[n], when[n], n)):
        members.setdefault(model[n], []).append(n)
    first = {m: (layer[ns[0]], when[ns[0]], m) for m, ns in members.items()}

    # Lane tree: a lane hangs under the model of the first cross-model parent of its earliest
    # derived version, provided that lane starts strictly earlier (which keeps the tree acyclic).
    lane_parent: dict[str, str | None] = {}
    for m, ns in members.items():
        lane_parent[m] = None
        for n in ns:
            found = next(
                (model[p] for p in parents[n] if model[p] != m and first[model[p]] < first[m]),
                None,
            )
            if found is not None:
                lane_parent[m] = found
                break
    kids: dict[str, list[str]] = {m: [] for m in members}
    roots: list[str] = []
    for m in sorted(members, key=lambda m: first[m]):
        p = lane_parent[m]
        (kids[p] if p is not None else roots).append(m)
    # Smaller subtrees go nearer their parent lane, which keeps derivation edges short.
    weight = {m: len(ns) for m, ns in members.items()}
    for m in sorted(members, key=lambda m: first[m], reverse=True):  # children before parents
        weight[m] += sum(weight[k] for k in kids[m])
    for m in kids:
        kids[m].sort(key=lambda k: (weight[k], first[k]))
    order: list[str] = []
    stack = list(reversed(roots))
    while stack:  # depth-first preorder without recursion (lane trees can be deep)
        m = stack.pop()
        order.append(m)
        stack.extend(reversed(kids[m]))
    lane_index = {m: i for i, m in enumerate(order)}

    boxes: dict[str, NodeBox] = {}
    lanes: list[LaneBand] = []
    occupied: set[tuple[int, int]] = set()
    row_top: list[float] = []
    y = float(MARGIN)
    row = 0
    for li, m in enumerate(order):
        # Sub-rows: a version goes to the sub-row of its first same-model parent when that cell is
        # free (keeps chains straight), else to the first sub-row free at its layer.
        last: list[int] = []
        sub_of: dict[str, int] = {}
        for n in members[m]:
            want = next((sub_of[p] for p in parents[n] if p in sub_of), None)
            if want is None or last[want] >= layer[n]:
                want = next((r for r, lay in enumerate(last) if lay < layer[n]), len(last))
            if want == len(last):
                last.append(-1)
            last[want] = layer[n]
            sub_of[n] = want
        top = y
        for r in range(len(last)):
            row_top.append(top + r * _DY)
        for n in members[m]:
            lay = layer[n]
            r = sub_of[n]
            boxes[n] = NodeBox(
                x=float(MARGIN + lay * _DX), y=top + r * _DY, layer=lay, row=row + r, lane=li
            )
            occupied.add((row + r, lay))
        x0 = min(boxes[n].x for n in members[m])
        x1 = max(boxes[n].x for n in members[m]) + NODE_W
        pad = GAP_Y / 2 - 2
        parent = lane_parent[m]
        lanes.append(
            LaneBand(
                model=m,
                x=x0 - pad,
                y=top - pad,
                w=x1 - x0 + 2 * pad,
                h=len(last) * _DY - GAP_Y + 2 * pad,
                parent=lane_index[parent] if parent is not None else -1,
            )
        )
        row += len(last)
        y = top + len(last) * _DY + LANE_GAP

    routes = _route_all(kept, boxes, occupied, row_top)
    width = max((b.x for b in boxes.values()), default=0.0) + NODE_W + MARGIN
    height = max((b.y for b in boxes.values()), default=0.0) + NODE_H + MARGIN
    return Layout(nodes=boxes, lanes=lanes, edges=routes, width=width, height=height)


def _spread(keys: dict[int, list[tuple[float, str]]], half: float) -> dict[tuple[int, str], float]:
    """Give each distinct key of each group its own offset in ``[-half, half]``, in sort order."""
    out: dict[tuple[int, str], float] = {}
    for group, items in keys.items():
        distinct = sorted(set(items))
        n = len(distinct)
        for k, (_, key) in enumerate(distinct):
            out[(group, key)] = 0.0 if n == 1 else -half + 2 * half * k / (n - 1)
    return out


def _route_all(
    edges: Sequence[dict[str, Any]],
    boxes: dict[str, NodeBox],
    occupied: set[tuple[int, int]],
    row_top: Sequence[float],
) -> list[EdgeRoute]:
    """Route every edge from the parent's right side to the child's left side.

    An edge between adjacent layers (or along a row with nothing in between) is drawn directly.
    A longer one runs down the column gap after its parent, along the channel between two rows
    and down the column gap before its child; runs of different parents that share a gap or a
    channel get different offsets, so that they can be told apart.
    """
    direct: set[int] = set()
    gap_runs: dict[int, list[tuple[float, str]]] = {}
    channel_runs: dict[int, list[tuple[float, str]]] = {}
    channel_of: dict[int, int] = {}
    for k, e in enumerate(edges):
        p, c = boxes[e["source"]], boxes[e["target"]]
        span = c.layer - p.layer
        clear = p.row == c.row and all(
            (p.row, lay) not in occupied for lay in range(p.layer + 1, c.layer)
        )
        if span == 1 or clear:
            direct.add(k)
            continue
        channel = p.row if c.row > p.row else p.row - 1  # channel r lies below row r
        channel_of[k] = channel
        gap_runs.setdefault(p.layer, []).append((p.y, e["source"]))
        gap_runs.setdefault(c.layer - 1, []).append((p.y, e["source"]))
        channel_runs.setdefault(channel, []).append((p.x, e["source"]))
    gap_off = _spread(gap_runs, GAP_X / 2 - 12)

    def channel_y(r: int) -> tuple[float, float]:
        """Middle and half-height of the free band below row ``r`` (``-1``: above row 0)."""
        if r < 0:
            return row_top[0] - GAP_Y / 2, GAP_Y / 2 - 4
        if r + 1 >= len(row_top):
            return row_top[r] + NODE_H + GAP_Y / 2, GAP_Y / 2 - 4
        lo, hi = row_top[r] + NODE_H, row_top[r + 1]
        return (lo + hi) / 2, (hi - lo) / 2 - 4

    chan_off: dict[tuple[int, str], float] = {}
    for r, items in channel_runs.items():
        chan_off.update(_spread({r: items}, channel_y(r)[1]))

    # Labels sit where each edge enters its child; every child has its own cell, so labels of
    # different children cannot collide. Distinct relations into one child are stacked around the
    # arrow: above, below, further above, further below.
    written: dict[str, list[str]] = {}
    stack = (-8.0, 9.0, -20.0, 21.0)

    def label_at(k: int) -> tuple[float, float, bool]:
        e = edges[k]
        c = boxes[e["target"]]
        x, y = c.x - GAP_X / 2, c.y + NODE_H / 2
        relation = str(e.get("relation", "other"))
        seen = written.setdefault(e["target"], [])
        if relation == "version" or relation in seen or len(seen) >= len(stack):
            return x, y + stack[0], False
        seen.append(relation)
        return x, y + stack[len(seen) - 1], True

    routes: list[EdgeRoute] = []
    f = _fmt
    for k, e in enumerate(edges):
        src, dst = e["source"], e["target"]
        p, c = boxes[src], boxes[dst]
        x1, y1 = p.x + NODE_W, p.y + NODE_H / 2
        x2, y2 = c.x, c.y + NODE_H / 2
        if k in direct:
            if y1 == y2:
                routes.append(EdgeRoute(src, dst, f"M{f(x1)} {f(y1)}H{f(x2)}", *label_at(k)))
            else:
                mx = (x1 + x2) / 2
                path = f"M{f(x1)} {f(y1)}C{f(mx)} {f(y1)} {f(mx)} {f(y2)} {f(x2)} {f(y2)}"
                routes.append(EdgeRoute(src, dst, path, *label_at(k)))
            continue
        r = channel_of[k]
        ch = channel_y(r)[0] + chan_off[(r, src)]
        gx1 = x1 + GAP_X / 2 + gap_off[(p.layer, src)]
        gx2 = x2 - GAP_X / 2 + gap_off[(c.layer - 1, src)]
        s1 = 1.0 if ch > y1 else -1.0  # direction of the first vertical run
        s2 = 1.0 if y2 > ch else -1.0  # direction of the second one
        q = _R
        path = (
            f"M{f(x1)} {f(y1)}H{f(gx1 - q)}Q{f(gx1)} {f(y1)} {f(gx1)} {f(y1 + s1 * q)}"
            f"V{f(ch - s1 * q)}Q{f(gx1)} {f(ch)} {f(gx1 + q)} {f(ch)}"
            f"H{f(gx2 - q)}Q{f(gx2)} {f(ch)} {f(gx2)} {f(ch + s2 * q)}"
            f"V{f(y2 - s2 * q)}Q{f(gx2)} {f(y2)} {f(gx2 + q)} {f(y2)}H{f(x2)}"
        )
        routes.append(EdgeRoute(src, dst, path, *label_at(k)))
    return routes
