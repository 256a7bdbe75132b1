"""The lineage graph: walks over the commit DAG, and views of it (log graph, DOT, HTML)."""

from __future__ import annotations

from mgit.lineage.graph import ancestors, descendants, is_ancestor, merge_bases, topo_order

__all__ = ["ancestors", "descendants", "is_ancestor", "merge_bases", "topo_order"]
