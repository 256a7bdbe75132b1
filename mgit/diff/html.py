"""Self-contained HTML page of a structural diff.

The page needs no network: CSS and a little JavaScript are inline and the dataflow graph is
an inline SVG laid out in layers (:mod:`mgit.diff.layout`). Colours as in the text report:
red for what is only in the first model, green for what is only in the second, grey for what
both have. Every string from the models is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from mgit.diff.dataflow import INPUT_PREFIX, OUTPUT_NODE, DataflowDiff
from mgit.diff.layout import layered_layout
from mgit.diff.names import strip_head_prefix
from mgit.diff.structural import StructuralDiff

__all__ = ["structural_html", "dataflow_svg", "COLORS"]

#: Fill and stroke colours per status.
COLORS: dict[str, tuple[str, str]] = {
    "removed": ("#fde2e1", "#d1242f"),
    "added": ("#dafbe1", "#1a7f37"),
    "common": ("#f0f0f0", "#8c959f"),
}

_ROW_H = 64
_NODE_H = 34
_GAP_X = 16
_MARGIN = 24
_CHAR_W = 6.6
_MAX_LABEL = 36


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _label(name: str) -> str:
    """Short node label: from the component before the last number on, head prefix dropped."""
    if name.startswith(INPUT_PREFIX) or name == OUTPUT_NODE:
        return name
    parts = strip_head_prefix(name).split(".")
    numeric = [i for i, p in enumerate(parts) if p.isdigit()]
    if numeric:
        parts = parts[max(0, numeric[-1] - 1) :]
    short = ".".join(parts)
    return short if len(short) <= _MAX_LABEL else "\u2026" + short[-(_MAX_LABEL - 1) :]


def dataflow_svg(fd: DataflowDiff) -> str:
    """Draw a dataflow diff as an SVG element, laid out in layers.

    Args:
        fd: The dataflow diff.

    Returns:
        An ``<svg>`` element (a string), every label escaped.
    """
    names = list(fd.nodes)
    edges = list(fd.edges)
    place = layered_layout(names, edges)
    rows: dict[int, list[str]] = {}
    for n in names:
        rows.setdefault(place[n][0], []).append(n)
    for row in rows.values():
        row.sort(key=lambda n: place[n][1])
    width_of = {n: max(len(_label(n)), len(fd.kinds.get(n, ""))) * _CHAR_W + 16 for n in names}
    row_w = {
        li: sum(width_of[n] for n in row) + _GAP_X * (len(row) - 1) for li, row in rows.items()
    }
    total_w = max(row_w.values(), default=200) + 2 * _MARGIN + 140
    total_h = (max(rows, default=0) + 1) * _ROW_H + 2 * _MARGIN
    xy: dict[str, tuple[float, float]] = {}
    for li, row in rows.items():
        x = _MARGIN + (total_w - 2 * _MARGIN - row_w[li]) / 2
        for n in row:
            xy[n] = (x, _MARGIN + li * _ROW_H)
            x += width_of[n] + _GAP_X
    out: list[str] = [
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" '
        f'height="{total_h:.0f}" viewBox="0 0 {total_w:.0f} {total_h:.0f}">',
        "<defs>",
    ]
    for status, (_, stroke) in COLORS.items():
        out.append(
            f'<marker id="arrow-{status}" viewBox="0 0 10 10" refX="10" refY="5" '
            f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{stroke}"/></marker>'
        )
    out.append("</defs>")
    # Common edges first so that changes are drawn on top.
    order = sorted(edges, key=lambda e: fd.edges[e] != "common")
    out.append('<g class="edges">')
    for s, t in order:
        status = fd.edges[(s, t)]
        stroke = COLORS[status][1]
        x1 = xy[s][0] + width_of[s] / 2
        y1 = xy[s][1] + _NODE_H
        x2 = xy[t][0] + width_of[t] / 2
        y2 = xy[t][1]
        if y2 <= y1:  # back edge of a cycle: loop around
            y2 = xy[t][1] + _NODE_H
            mid = max(y1, y2) + _ROW_H / 2
            d = f"M {x1:.1f} {y1:.1f} C {x1:.1f} {mid:.1f}, {x2:.1f} {mid:.1f}, {x2:.1f} {y2:.1f}"
        else:
            dy = (y2 - y1) / 2
            span = round((y2 - y1 + _NODE_H) / _ROW_H)
            # Edges that skip layers (residual connections) bow sideways so that they do not
            # hide behind the nodes they pass.
            bow = 0.0 if span <= 1 else 40.0 + 12.0 * min(span, 8)
            d = (
                f"M {x1:.1f} {y1:.1f} C {x1 + bow:.1f} {y1 + dy:.1f}, "
                f"{x2 + bow:.1f} {y2 - dy:.1f}, {x2:.1f} {y2:.1f}"
            )
        width = "1.2" if status == "common" else "2"
        out.append(
            f'<path class="edge {status}" data-source="{_e(s)}" data-target="{_e(t)}" d="{d}" '
            f'fill="none" stroke="{stroke}" stroke-width="{width}" '
            f'marker-end="url(#arrow-{status})"><title>{_e(s)} \u2192 {_e(t)} ({status})'
            f"</title></path>"
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for n in names:
        status = fd.nodes[n]
        fill, stroke = COLORS[status]
        x, y = xy[n]
        w = width_of[n]
        kind = fd.kinds.get(n, "")
        kind_change = fd.kind_changes.get(n)
        kind_text = f"{kind_change[0]} \u2192 {kind_change[1]}" if kind_change else kind
        out.append(
            f'<g class="node {status}" data-name="{_e(n)}" transform="translate({x:.1f},{y:.1f})">'
            f"<title>{_e(n)} ({_e(kind_text)}, {status})</title>"
            f'<rect width="{w:.1f}" height="{_NODE_H}" rx="5" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{"2.5" if kind_change else "1.5"}"/>'
            f'<text x="{w / 2:.1f}" y="14" text-anchor="middle" class="label">{_e(_label(n))}'
            f"</text>"
            f'<text x="{w / 2:.1f}" y="27" text-anchor="middle" class="kind">{_e(kind_text)}'
            f"</text></g>"
        )
    out.append("</g></svg>")
    return "\n".join(out)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #1f2328; }
header { padding: 12px 20px; border-bottom: 1px solid #d0d7de; background: #f6f8fa; }
h1 { font-size: 18px; margin: 0 0 4px 0; } h2 { font-size: 15px; margin: 18px 0 6px 0; }
main { padding: 0 20px 20px 20px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #d0d7de; padding: 2px 8px; text-align: left;
         font-family: ui-monospace, Menlo, Consolas, monospace; }
th { background: #f6f8fa; font-family: inherit; }
tr.removed td { background: #fde2e1; } tr.added td { background: #dafbe1; }
tr.changed td, tr.shape_changed td, tr.dtype_changed td { background: #fff8c5; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border-radius: 4px;
               font-size: 12px; }
.lg-removed { background: #fde2e1; border: 1px solid #d1242f; }
.lg-added { background: #dafbe1; border: 1px solid #1a7f37; }
.lg-common { background: #f0f0f0; border: 1px solid #8c959f; }
#graph-box { overflow: auto; border: 1px solid #d0d7de; max-height: 80vh; background: #fff; }
#graph text { font-family: ui-monospace, Menlo, Consolas, monospace; pointer-events: none; }
#graph text.label { font-size: 11px; } #graph text.kind { font-size: 9px; fill: #57606a; }
#graph .node { cursor: pointer; }
#graph.focus .node, #graph.focus .edge { opacity: 0.15; }
#graph.focus .node.hl, #graph.focus .edge.hl { opacity: 1; }
body.changes-only #graph .node.common { opacity: 0.2; }
body.changes-only #graph .edge.common { opacity: 0.1; }
.controls { margin: 6px 0; font-size: 13px; }
.note { color: #57606a; font-size: 13px; }
"""

_JS = """
(function () {
  var svg = document.getElementById('graph');
  if (!svg) { return; }
  var scale = 1, w0 = svg.width.baseVal.value, h0 = svg.height.baseVal.value;
  function zoom(f) {
    scale = Math.max(0.1, Math.min(4, scale * f));
    svg.setAttribute('width', w0 * scale); svg.setAttribute('height', h0 * scale);
  }
  document.getElementById('zoom-in').onclick = function () { zoom(1.25); };
  document.getElementById('zoom-out').onclick = function () { zoom(0.8); };
  document.getElementById('zoom-reset').onclick = function () { zoom(1 / scale); };
  document.getElementById('changes-only').onchange = function (ev) {
    document.body.classList.toggle('changes-only', ev.target.checked);
  };
  var selected = null;
  function clear() {
    svg.classList.remove('focus'); selected = null;
    svg.querySelectorAll('.hl').forEach(function (el) { el.classList.remove('hl'); });
  }
  svg.querySelectorAll('.node').forEach(function (node) {
    node.addEventListener('click', function (ev) {
      ev.stopPropagation();
      var name = node.getAttribute('data-name');
      if (selected === name) { clear(); return; }
      clear(); selected = name; svg.classList.add('focus'); node.classList.add('hl');
      svg.querySelectorAll('.edge').forEach(function (edge) {
        var s = edge.getAttribute('data-source'), t = edge.getAttribute('data-target');
        if (s === name || t === name) {
          edge.classList.add('hl');
          svg.querySelectorAll('.node').forEach(function (other) {
            var o = other.getAttribute('data-name');
            if (o === s || o === t) { other.classList.add('hl'); }
          });
        }
      });
    });
  });
  svg.addEventListener('click', clear);
})();
"""


def _table(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{_e(cls)}">' + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"
        for cls, cells in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _shape(s: Sequence[int] | None) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]" if s is not None else ""


def structural_html(sd: StructuralDiff, *, title: str | None = None) -> str:
    """Render a structural diff as a self-contained HTML page.

    Args:
        sd: The diff.
        title: Page title (default ``"mgit structural diff A -> B"``).

    Returns:
        The HTML document.
    """
    page_title = title or f"mgit structural diff {sd.a} \u2192 {sd.b}"
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(page_title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(page_title)}</h1>",
        '<div class="legend"><span class="lg-removed">only in '
        f"{_e(sd.a)} (removed)</span>"
        f'<span class="lg-added">only in {_e(sd.b)} (added)</span>'
        '<span class="lg-common">in both</span></div></header><main>',
    ]
    parts.append("<h2>Modules</h2>")
    parts.append(
        f'<p class="note">{sd.modules_a} modules in {_e(sd.a)}, {sd.modules_b} in {_e(sd.b)}; '
        f"{len(sd.modules_removed)} removed, {len(sd.modules_added)} added (top-most paths)"
        + (f"; {len(sd.renamed)} tensors paired across a head prefix" if sd.renamed else "")
        + "</p>"
    )
    if sd.modules:
        parts.append(
            _table(
                ["status", "module", "tensors", "elements"],
                [(m.status, (m.status, m.path, m.tensors, m.numel)) for m in sd.modules],
            )
        )
    if sd.params:
        parts.append("<h2>Tensors</h2>")
        parts.append(
            _table(
                ["status", "tensor", "dtype a", "dtype b", "shape a", "shape b"],
                [
                    (
                        p.status,
                        (
                            p.status,
                            p.name,
                            p.dtype_a or "",
                            p.dtype_b or "",
                            _shape(p.shape_a),
                            _shape(p.shape_b),
                        ),
                    )
                    for p in sd.params
                ],
            )
        )
    parts.append("<h2>config.json</h2>")
    if not sd.config_a and not sd.config_b:
        parts.append('<p class="note">Neither side has a config.json.</p>')
    elif not sd.config:
        parts.append('<p class="note">No changes.</p>')
    else:
        parts.append(
            _table(
                ["status", "key", sd.a, sd.b],
                [
                    (
                        c.status,
                        (
                            c.status,
                            c.path,
                            "" if c.status == "added" else repr(c.a),
                            "" if c.status == "removed" else repr(c.b),
                        ),
                    )
                    for c in sd.config
                ],
            )
        )
    parts.append("<h2>Dataflow</h2>")
    fd = sd.dataflow
    if fd is None:
        parts.append(f'<p class="note">Dataflow graph unavailable: {_e(sd.dataflow_error)}</p>')
    else:
        parts.append(
            f'<p class="note">{_e(fd.graph_a.model_class)} \u2192 {_e(fd.graph_b.model_class)} '
            f"({_e(fd.graph_a.method)}): {len(fd.graph_a.nodes)} nodes in a, "
            f"{len(fd.graph_b.nodes)} in b; {len(fd.nodes_removed)} removed, "
            f"{len(fd.nodes_added)} added; edges {len(fd.edges_removed)} removed, "
            f"{len(fd.edges_added)} added. Click a node to highlight its connections.</p>"
        )
        parts.append(
            '<div class="controls"><button id="zoom-in">+</button> '
            '<button id="zoom-out">\u2212</button> <button id="zoom-reset">1:1</button> '
            '<label><input type="checkbox" id="changes-only"> fade what is common</label></div>'
        )
        parts.append(f'<div id="graph-box">{dataflow_svg(fd)}</div>')
        parts.append(f"<script>{_JS}</script>")
    parts.append("</main></body></html>")
    return "\n".join(parts)
