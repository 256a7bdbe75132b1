r"""The lineage graph as one self-contained HTML page.

The page needs no network: its stylesheet and script are inline, and a Content-Security-Policy
(``default-src 'none'`` plus the hashes of the inline script and style) keeps it so, and stops any
script that an injected string might smuggle in from running. The graph travels as JSON in a
``<script type="application/json">`` block, with ``<``, ``>`` and ``&`` written as ``\uXXXX``
escapes so that no user string can close the block; the script builds the drawing with DOM calls
and ``textContent`` only.

The page scales to tens of thousands of versions: the data is compact (fields left at their
defaults are omitted), each model line is drawn as one node until it is expanded, the layout is
computed in the page in O(n log n) (layers of the graph of model lines), and only what is in view
is drawn: as SVG elements when few enough are in view to read, else on a canvas.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mgit.lineage._html_assets import CSS, JS, RELATION_COLORS
from mgit.lineage._records import RELATIONS, records_of

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["COLLAPSE_ABOVE", "NODE_H", "NODE_W", "embed_json", "to_html"]

NODE_W = 150  #: Width of a version's box on the page.
NODE_H = 38  #: Height of a version's box (and of a collapsed model line).
#: Above this many versions the page opens with every model line collapsed to one node.
COLLAPSE_ABOVE = 300

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
    for label, fill, stroke in (
        ("passed", "#dcfce7", "#15803d"),
        ("failed", "#fee2e2", "#b91c1c"),
        ("untestable", "#fef9c3", "#a16207"),
        ("no result", "#f1f5f9", "#94a3b8"),
    ):
        items.append(
            '<div class="row"><svg width="30" height="14" aria-hidden="true"><rect x="2" y="1" '
            f'width="26" height="12" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f"</svg><span>{label}</span></div>"
        )
    return (
        f"<h3>Colour: test {html.escape(test)}</h3>"
        '<div class="grid two">' + "".join(items) + "</div>"
    )


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
        "<h3>Nodes: a model line, or one of its versions</h3>"
        '<p class="note">a collapsed model line shows its latest version and its number of '
        "versions; click it to expand it into its versions, click its title to collapse it</p>"
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


def _compact_node(n: dict[str, Any]) -> dict[str, Any]:
    """A node record without the fields left at their defaults (the page fills them back in).

    ``id``, ``model``, ``message``, ``time`` and ``meta`` are always kept.
    """
    out: dict[str, Any] = {
        "id": n["id"],
        "model": n["model"],
        "message": n["message"],
        "time": n["time"],
        "meta": n["meta"],
    }
    if n["short"] != n["id"][:12]:
        out["short"] = n["short"]
    if n["author"]:
        out["author"] = n["author"]
    for key in ("tags", "heads", "lossy"):
        if n[key]:
            out[key] = n[key]
    if n["logical_bytes"] is not None:
        out["logical_bytes"] = n["logical_bytes"]
    if "test" in n:
        out["test"] = n["test"]
    return out


def to_html(
    g: nx.DiGraph[str] | Mapping[str, Any],
    *,
    title: str = "mgit lineage",
    color_by: str | None = None,
    collapse: bool | None = None,
) -> str:
    """Return the lineage graph as one self-contained, interactive HTML page.

    Each model line is a card: collapsed, one node showing the line's latest version and its
    number of versions; expanded (a click), its versions stacked in time order, versions joined by
    dashed edges. Derivations (finetune, adapter, distill, prune, quantize, merge, other) are solid
    coloured edges labelled with the relation. Cards are laid out in layers of the graph of model
    lines (a line right of every line it derives from), computed in the page in O(n log n); only
    what is in view is drawn (SVG elements, or a canvas when too many are in view to read).

    The reader can pan (drag) and zoom (wheel, buttons, Fit), expand or collapse one line or all,
    search by model name, id prefix, tag or metadata (``key=value`` or a value; matches are
    highlighted, Enter steps through them and centres on each), hover for a tooltip, click a
    version for its details (model, id, message, author, time, relations, parents and children,
    metadata, size) while its ancestors and descendants are highlighted, and focus on that
    lineage (only the ancestors and descendants drawn) until "Show all". The page sets
    ``window.__drawn`` (milliseconds since navigation) and the performance mark
    ``mgit-lineage-drawn`` once its first complete draw has been painted.

    Args:
        g: The lineage graph (see :mod:`mgit.lineage.render` for the attributes read), or its
            data (:func:`mgit.history.lineage_data`; :func:`mgit.lineage._records.records_of`).
        title: Page title, shown in the header.
        color_by: The name of a test: nodes are coloured by their result of it (node attribute
            ``test``: ``outcome`` pass / fail / error, ``metrics``, ``error``; grey without
            one), and a click shows its metrics. A collapsed line shows its latest version's.
        collapse: Whether the page opens with the model lines collapsed; ``None`` (the default):
            only when there are more than :data:`COLLAPSE_ABOVE` versions.

    Returns:
        The HTML text. It loads nothing from the network.
    """
    nodes, edges = records_of(g)
    index = {n["id"]: i for i, n in enumerate(nodes)}
    edge_data = [
        {
            "s": index[e["source"]],
            "t": index[e["target"]],
            "relation": e["relation"],
            "index": e["index"],
        }
        for e in edges
    ]
    if collapse is None:
        collapse = len(nodes) > COLLAPSE_ABOVE
    data = {
        "title": title,
        "nodes": [_compact_node(n) for n in nodes],
        "edges": edge_data,
        "colors": RELATION_COLORS,
        "node_w": NODE_W,
        "node_h": NODE_H,
        "color_by": color_by,
        "collapsed": collapse,
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
        '<input id="search" type="search" placeholder="Search name, id, tag or key=value  (/)" '
        'autocomplete="off" spellcheck="false" aria-label="Search models">'
        '<span id="count" aria-live="polite"></span>'
        '<button id="zoom-in" type="button" title="Zoom in">+</button>'
        '<button id="zoom-out" type="button" title="Zoom out">&#8722;</button>'
        '<button id="fit" type="button" title="Fit the whole graph">Fit</button>'
        '<button id="expand-all" type="button" title="Show every version">Expand all</button>'
        '<button id="collapse-all" type="button" title="One node per model line">'
        "Collapse all</button>"
        '<button id="focus" type="button" title="Draw only the selected version\'s ancestors '
        'and descendants (f)" disabled>Focus</button>'
        '<button id="unfocus" type="button" title="Draw the whole lineage again" hidden>'
        "Show all</button>"
        '<span id="focus-info"></span>'
        f'<span id="stats">{stats}</span>'
        "</header>\n<main>\n"
        '<div id="stage"><canvas id="overview" aria-hidden="true"></canvas>'
        '<svg id="graph" role="img" aria-label="lineage graph"><defs></defs>'
        '<g id="viewport"><g id="lanes"></g><g id="edges"></g><g id="edge-labels"></g>'
        '<g id="nodes"></g></g></svg>'
        '<div id="tip" hidden></div></div>\n'
        '<aside id="panel"><div id="panel-body"><div id="panel-empty">Click a model line to '
        "expand it, a version to see its details. Drag to pan, scroll to zoom, press / to "
        "search.</div>"
        '<div id="details" hidden></div></div>' + _legend(color_by) + "</aside>\n"
        "</main>\n"
        "<noscript>This page needs JavaScript to draw the lineage graph.</noscript>\n"
        f'<script type="application/json" id="mgit-data">{embed_json(data)}</script>\n'
        f"<script>{JS}</script>\n"
        "</body>\n</html>\n"
    )
