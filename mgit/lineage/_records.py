"""Plain records of a lineage graph's commits and edges, shared by every view.

The lineage views (``graph_log``, DOT, JSON, HTML) all read the same node and edge attributes from
a ``networkx.DiGraph``; this module reads them once, fills in defaults for missing attributes, and
fixes a stable order, so that every view shows the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mgit.objects.model import RELATIONS

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "RELATIONS",
    "DERIVATIONS",
    "node_record",
    "edge_record",
    "sorted_nodes",
    "sorted_edges",
    "records_of",
    "first_line",
]

# RELATIONS (every relation a parent edge may carry, in the order the views list them) is the
# object model's list, re-exported here for the views.

#: Relations drawn as derivations (solid edges); ``version`` is drawn dashed.
DERIVATIONS: frozenset[str] = frozenset(RELATIONS) - {"version"}


def first_line(text: str) -> str:
    """Return the first non-empty line of ``text``, stripped (the summary of a message)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _as_str(value: Any, default: str = "") -> str:  # noqa: ANN401
    return default if value is None else str(value)


def _as_time(value: Any) -> float:  # noqa: ANN401
    try:
        t = float(value)
    except (TypeError, ValueError):
        return 0.0
    return t if math.isfinite(t) else 0.0


def _as_bytes(value: Any) -> int | None:  # noqa: ANN401
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_str_list(value: Any) -> list[str]:  # noqa: ANN401
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


_STR_ONLY = frozenset({str})


def _as_meta(value: Any) -> dict[str, str]:  # noqa: ANN401
    if not isinstance(value, Mapping):
        return {}
    if all(type(k) is str for k in value):  # the usual case, 3x as fast: keys sort as they are
        if set(map(type, value.values())) <= _STR_ONLY:
            return dict(sorted(value.items()))
        return {k: _as_str(v) for k, v in sorted(value.items())}
    return {str(k): _as_str(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}


def node_record(oid: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the normalised record of one commit node.

    Args:
        oid: The commit id (the node key).
        attrs: The node's attribute dict.

    Returns:
        A dict with the keys ``id``, ``short``, ``model``, ``message``, ``author``, ``time``,
        ``meta``, ``tags``, ``heads``, ``lossy`` and ``logical_bytes``; missing attributes get
        defaults (``short`` defaults to the first 12 characters of the id). A node with a
        ``test`` attribute (the view is coloured by a test) also has ``test`` (:func:`_as_test`).
    """
    oid = str(oid)
    return {
        "id": oid,
        "short": _as_str(attrs.get("short"), oid[:12]) or oid[:12],
        "model": _as_str(attrs.get("model")),
        "message": _as_str(attrs.get("message")),
        "author": _as_str(attrs.get("author")),
        "time": _as_time(attrs.get("time")),
        "meta": _as_meta(attrs.get("meta")),
        "tags": sorted(_as_str_list(attrs.get("tags"))),
        "heads": sorted(_as_str_list(attrs.get("heads"))),
        "lossy": bool(attrs.get("lossy", False)),
        "logical_bytes": _as_bytes(attrs.get("logical_bytes")),
        **({"test": _as_test(attrs["test"])} if isinstance(attrs.get("test"), Mapping) else {}),
    }


def _as_test(value: Mapping[str, Any]) -> dict[str, Any]:
    """A node's result of the test the view is coloured by: ``name``, ``outcome`` (``pass``,
    ``fail``, ``error``), ``metrics`` (name -> number or null), ``error`` (text)."""
    outcome = _as_str(value.get("outcome"))
    metrics = value.get("metrics")
    return {
        "name": _as_str(value.get("name")),
        "outcome": outcome if outcome in ("pass", "fail", "error") else "error",
        "metrics": {
            str(k): (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
                     and abs(v) != float("inf") else None)
            for k, v in sorted((metrics or {}).items())
        } if isinstance(metrics, Mapping) else {},
        "error": _as_str(value.get("error")),
    }


def edge_record(parent: str, child: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the normalised record of one parent -> child edge.

    Args:
        parent: The parent commit id.
        child: The child commit id.
        attrs: The edge's attribute dict.

    Returns:
        A dict with the keys ``source`` (parent), ``target`` (child), ``relation`` (one of
        :data:`RELATIONS`; an unknown or missing one reads as ``other``) and ``index`` (the
        parent's position in the child's parent list; 0 when missing).
    """
    relation = _as_str(attrs.get("relation"), "other")
    if relation not in RELATIONS:
        relation = "other"
    try:
        index = int(attrs.get("index", 0))
    except (TypeError, ValueError):
        index = 0
    return {"source": str(parent), "target": str(child), "relation": relation, "index": index}


def sorted_nodes(g: nx.DiGraph[str]) -> list[dict[str, Any]]:
    """Return the records of every node of ``g``, oldest first (by time, then id)."""
    records = [node_record(n, g.nodes[n]) for n in g.nodes]
    records.sort(key=lambda r: (r["time"], r["id"]))
    return records


def sorted_edges(g: nx.DiGraph[str]) -> list[dict[str, Any]]:
    """Return the records of every edge of ``g``, sorted by (child, parent index, parent)."""
    records = [edge_record(u, v, d) for u, v, d in g.edges(data=True)]
    records.sort(key=lambda r: (r["target"], r["index"], r["source"]))
    return records


def records_of(source: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # noqa: ANN401
    """The node and edge records of a lineage: of a graph (:func:`sorted_nodes`,
    :func:`sorted_edges`), or those of its data, ``{"nodes": [...], "edges": [...]}`` as
    :func:`mgit.lineage.render.to_json` and :func:`mgit.history.lineage_data` give them
    (already normalised and sorted: taken as they are, so that a view of 100,000 versions
    needs no graph)."""
    if isinstance(source, Mapping) and "nodes" in source and "edges" in source:
        return list(source["nodes"]), list(source["edges"])
    return sorted_nodes(source), sorted_edges(source)
