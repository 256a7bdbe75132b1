r"""The lineage graph as one self-contained HTML page.

The page needs no network: its stylesheet and script are inline, and a Content-Security-Policy
(``default-src 'none'`` plus the hashes of the inline script and style) keeps it so, and stops any
script that an injected string might smuggle in from running. The graph travels as JSON in a
``<script type="application/json">`` block, with ``<``, ``>`` and ``&`` written as ``\uXXXX``
escapes so that no user string can close the block; the script builds the drawing with DOM calls
and ``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import TYPE_CHECKING

from mgit.lineage._html_assets import CSS, JS, RELATION_COLORS
from mgit.lineage._records import RELATIONS, sorted_edges, sorted_nodes
from mgit.lineage.layout import NODE_H, NODE_W, compute_layout

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["to_html", "embed_json"]

_RELATION_HELP = {
    "version": "version (same model line)",
    "finetune": "finetune",
    "adapter": "adapter",
    "distill": "distill",
    "prune": "prune",
    "quantize": "quantize",
    "merge": "merge",
    "other": "other derivation",
}


def embed_json(data: object) -> str:
    r"""Serialise ``data`` for a ``<script type="application/json">`` block.

    ``<``, ``>`` and ``&`` become ``\u003c``, ``\u003e`` and ``\u0026`` (still valid JSON), so
    that no string in the data can end the block (``</script>``) or open a comment (``<!--``).
    U+2028 and U+2029 are escaped as well.

    Args:
        data: JSON-ready data.

    Returns:
        The JSON text, safe to place between the script tags.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _test_legend(test: str) -> str:
    items = []
    for label, fill, stroke in (("passed", "#dcfce7", "#15803d"), ("failed", "#fee2e2", "#b91c1c"),
                                ("untestable", "#fef9c3", "#a16207"), ("no result", "#f1f5f9", "#94a3b8")):
        items.append(
            '<div class="row"><svg width="30" height="14" aria-hidden="true"><rect x="2" y="1" '
            f'width="26" height="12" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f"</svg><span>{label}</span></div>"
        )
    return (f"<h3>Colour: test {html.escape(test)}</h3>"
            '<div class="grid two">' + "".join(items) + "</div>")


def _legend(color_by: str | None = None) -> str:
    items = []
    for rel in RELATIONS:
        color = RELATION_COLORS[rel]
        dash = ' stroke-dasharray="6 4"' if rel == "version" else ""
        items.append(
            '<div class="row"><svg width="30" height="10" aria-hidden="true">'
            f'<line x1="1" y1="5" x2="29" y2="5" stroke="{color}" stroke-width="2"{dash}/></svg>'
            f"<span>{html.escape(rel)}</span></div>"
        )
    return (
        '<div id="legend" aria-label="legend">'
        "<h3>Edges: parent &#8594; child</h3>"
        '<div class="grid">' + "".join(items) + "</div>"
        '<p class="note">dashed: a new version of the same model line; solid: a model derived '
        "from another</p>"
        "<h3>Nodes: one per version, one row per model line</h3>"
        '<div class="grid two">'
        '<div class="row"><svg width="30" height="14" aria-hidden="true"><rect x="2" y="1" '
        'width="26" height="12" rx="3" fill="#eef2ff" stroke="#334155" stroke-width="2.6"/>'
        "</svg><span>latest (head)</span></div>"
        '<div class="row"><svg width="30" height="14" aria-hidden="true"><rect x="2" y="1" '
        'width="26" height="12" rx="3" fill="#eef2ff" stroke="#334155" stroke-width="1"/>'
        '<path d="M20 1H24A4 4 0 0 1 28 5V9z" fill="#f97316"/></svg>'
        "<span>stored lossy</span></div>"
        "</div>" + (_test_legend(color_by) if color_by else "") + "</div>"
    )


def to_html(g: nx.DiGraph[str], *, title: str = "mgit lineage", color_by: str | None = None) -> str:
    """Return the lineage graph as one self-contained, interactive HTML page.

    The page draws each commit as a node (model name, short id, tags), each model line's versions
    in its own row, derivations (finetune, adapter, distill, prune, quantize, merge, other) as
    solid coloured edges labelled with the relation and versions as dashed edges, with a legend.
    The layout comes from :func:`mgit.lineage.layout.compute_layout` (layers left to right, a lane
    per model line, no overlapping nodes). The reader can pan (drag) and zoom (wheel, buttons, Fit),
    search by model name, id prefix or tag (matches are highlighted, Enter steps through them),
    hover for a tooltip, and click a node for its details (model, id, message, author, time,
    relations, parents and children, metadata, size) while its ancestors and descendants are
    highlighted.

    Args:
        g: The lineage graph (see :mod:`mgit.lineage.render` for the attributes read).
        title: Page title, shown in the header.
        color_by: The name of a test: nodes are coloured by their result of it (node attribute
            ``test``: ``outcome`` pass / fail / error, ``metrics``, ``error``; grey without
            one), and a click shows its metrics.

    Returns:
        The HTML text. It loads nothing from the network.
    """
    nodes = sorted_nodes(g)
    edges = sorted_edges(g)
    layout = compute_layout(nodes, edges)
    index = {n["id"]: i for i, n in enumerate(nodes)}
    for n in nodes:
        box = layout.nodes[n["id"]]
        n["x"] = box.x
        n["y"] = box.y
        n["lane"] = box.lane
    routed = {(r.source, r.target): r for r in layout.edges}
    edge_data = []
    for e in edges:
        route = routed.get((e["source"], e["target"]))
        if route is None:
            continue
        edge_data.append(
            {
                "s": index[e["source"]],
                "t": index[e["target"]],
                "relation": e["relation"],
                "index": e["index"],
                "path": route.path,
                "lx": round(route.label_x, 1),
                "ly": round(route.label_y, 1),
                "label": route.label,
            }
        )
    lanes = [
        {"model": b.model, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "parent": b.parent}
        for b in layout.lanes
    ]
    data = {
        "title": title,
        "nodes": nodes,
        "edges": edge_data,
        "lanes": lanes,
        "colors": RELATION_COLORS,
        "width": layout.width,
        "height": layout.height,
        "node_w": NODE_W,
        "node_h": NODE_H,
        "color_by": color_by,
    }
    models = len({n["model"] for n in nodes})
    stats = (
        f"{len(nodes)} version{'s' if len(nodes) != 1 else ''} &#183; "
        f"{models} model{'s' if models != 1 else ''} &#183; "
        f"{len(edge_data)} edge{'s' if len(edge_data) != 1 else ''}"
    )
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(JS)}; "
        f"style-src {_csp_hash(CSS)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    t = html.escape(title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="mgit">\n'
        f"<title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        '<header id="bar">'
        f"<h1>{t}</h1>"
        '<input id="search" type="search" placeholder="Search model name, id or tag  (/)" '
        'autocomplete="off" spellcheck="false" aria-label="Search models">'
        '<span id="count" aria-live="polite"></span>'
        '<button id="zoom-in" type="button" title="Zoom in">+</button>'
        '<button id="zoom-out" type="button" title="Zoom out">&#8722;</button>'
        '<button id="fit" type="button" title="Fit the whole graph">Fit</button>'
        f'<span id="stats">{stats}</span>'
        "</header>\n<main>\n"
        '<div id="stage">'
        '<svg id="canvas" role="img" aria-label="lineage graph"><defs></defs>'
        '<g id="viewport"><g id="lanes"></g><g id="edges"></g><g id="edge-labels"></g>'
        '<g id="nodes"></g></g></svg>'
        '<div id="tip" hidden></div></div>\n'
        '<aside id="panel"><div id="panel-body"><div id="panel-empty">Click a model version to '
        "see its details. Drag to pan, scroll to zoom, press / to search.</div>"
        '<div id="details" hidden></div></div>' + _legend(color_by) + "</aside>\n"
        "</main>\n"
        "<noscript>This page needs JavaScript to draw the lineage graph.</noscript>\n"
        f'<script type="application/json" id="mgit-data">{embed_json(data)}</script>\n'
        f"<script>{JS}</script>\n"
        "</body>\n</html>\n"
    )
