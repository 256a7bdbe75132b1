"""The stylesheet and script inlined into the lineage HTML page (no network, no CDN).

The script reads the graph and its precomputed layout from the page's
``<script type="application/json" id="mgit-data">`` block and builds the SVG with DOM calls
(``textContent``, ``setAttribute``), never with ``innerHTML``, so no user string is ever parsed as
markup. It provides pan and zoom (wheel, drag, buttons), a search box, a tooltip on hover and a
details panel on click.
"""

from __future__ import annotations

__all__ = ["CSS", "JS", "RELATION_COLORS"]

#: Stroke colour of each relation's edges (also used by the legend).
RELATION_COLORS: dict[str, str] = {
    "version": "#64748b",
    "finetune": "#2563eb",
    "adapter": "#7c3aed",
    "distill": "#16a34a",
    "prune": "#ea580c",
    "quantize": "#db2777",
    "merge": "#dc2626",
    "other": "#0891b2",
}

CSS = """
:root { --bg: #f8fafc; --fg: #0f172a; --muted: #64748b; --line: #e2e8f0; --accent: #2563eb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { margin: 0; height: 100%; }
body { display: flex; flex-direction: column; color: var(--fg); background: var(--bg);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
#bar { display: flex; align-items: center; gap: 8px; padding: 8px 12px; background: #fff;
  border-bottom: 1px solid var(--line); flex-wrap: wrap; }
#bar h1 { font-size: 15px; margin: 0 10px 0 0; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; max-width: 32vw; }
#search { width: 280px; padding: 5px 9px; border: 1px solid #cbd5e1; border-radius: 6px;
  font: inherit; }
#search:focus { outline: 2px solid #93c5fd; border-color: var(--accent); }
#count { color: var(--muted); min-width: 92px; }
button { font: inherit; padding: 4px 10px; border: 1px solid #cbd5e1; background: #fff;
  border-radius: 6px; cursor: pointer; color: var(--fg); }
button:hover { background: #f1f5f9; }
#stats { margin-left: auto; color: var(--muted); white-space: nowrap; }
main { flex: 1; display: flex; min-height: 0; }
#stage { position: relative; flex: 1; overflow: hidden; min-width: 0; }
#canvas { width: 100%; height: 100%; display: block; cursor: grab; background: #fff;
  user-select: none; -webkit-user-select: none; touch-action: none; }
#canvas.panning { cursor: grabbing; }
#panel { width: 360px; flex: none; border-left: 1px solid var(--line); background: #fff;
  display: flex; flex-direction: column; min-height: 0; }
#panel-body { flex: 1; overflow: auto; padding: 14px 16px; min-height: 0; }
#panel-empty { color: var(--muted); }
#details h2 { font-size: 16px; margin: 0 0 4px; word-break: break-all; }
#details .sub { margin-bottom: 10px; }
#details dl { display: grid; grid-template-columns: 84px 1fr; gap: 5px 10px; margin: 0; }
#details dt { color: var(--muted); }
#details dd { margin: 0; word-break: break-word; }
#details code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all;
  user-select: all; }
#details .msg { white-space: pre-wrap; }
#details ul { margin: 0; padding: 0; list-style: none; }
#details li { margin: 0 0 3px; }
#details .link { border: none; background: none; padding: 0; color: var(--accent);
  text-align: left; cursor: pointer; }
#details .link:hover { text-decoration: underline; background: none; }
#details table { border-collapse: collapse; width: 100%; }
#details td { border-top: 1px solid var(--line); padding: 3px 4px; vertical-align: top;
  word-break: break-word; }
#details td:first-child { color: var(--muted); width: 40%; }
.badge { display: inline-block; padding: 0 6px; margin: 0 4px 2px 0; border-radius: 9px;
  font-size: 11px; background: #e2e8f0; }
.badge.head { background: #dbeafe; color: #1e40af; }
.badge.tag { background: #fef3c7; color: #92400e; }
.badge.lossy { background: #ffedd5; color: #9a3412; }
.node { cursor: pointer; }
.node rect.box { stroke-width: 1.2; }
.node.head rect.box { stroke-width: 2.8; }
.node text { pointer-events: none; }
.n-model { font-size: 12px; font-weight: 600; fill: #0f172a; }
.n-sub { font: 10.5px ui-monospace, "DejaVu Sans Mono", monospace; fill: #475569; }
.node:hover rect.box, .node:focus rect.box { stroke: #1d4ed8; }
.node:focus { outline: none; }
.node.match rect.box { stroke: #f59e0b; stroke-width: 3.5; }
.node.selected rect.box { stroke: #1d4ed8; stroke-width: 3.5; }
.lossy-mark { fill: #f97316; }
.edge { fill: none; stroke-width: 1.6; }
.edge.version { stroke-dasharray: 6 4; }
.edge.lin { stroke-width: 2.8; }
.e-label { font-size: 10px; text-anchor: middle; dominant-baseline: central;
  paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round;
  pointer-events: none; }
.searching .node:not(.match) { opacity: .2; }
.searching .edge, .searching .e-label { opacity: .25; }
.selecting .node:not(.lin) { opacity: .25; }
.selecting .edge:not(.lin), .selecting .e-label:not(.lin) { opacity: .1; }
.searching .node.match, .searching.selecting .node.lin { opacity: 1; }
.node.match rect.box { fill: #fef3c7; }
.far .e-label, .far .n-sub { display: none; }
#legend { flex: none; border-top: 1px solid var(--line); background: #f8fafc;
  padding: 8px 16px 10px; font-size: 12px; }
#details .meta-title { font-size: 12px; color: var(--muted); margin: 12px 0 4px;
  text-transform: uppercase; letter-spacing: .04em; }
#legend h3 { font-size: 11px; margin: 0 0 4px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
#legend .row { display: flex; align-items: center; gap: 7px; line-height: 19px; }
#legend .grid { display: grid; grid-template-columns: repeat(3, 1fr); gap: 0 8px; }
#legend .grid.two { grid-template-columns: repeat(2, 1fr); }
#legend .note { margin: 3px 0 6px; color: var(--muted); font-size: 11px; }
#legend svg { flex: none; }
#tip { position: absolute; pointer-events: none; background: #0f172a; color: #f8fafc;
  padding: 6px 9px; border-radius: 6px; font-size: 12px; max-width: 360px;
  white-space: pre-line; z-index: 10; box-shadow: 0 2px 8px rgba(0,0,0,.2); }
noscript { padding: 12px; }
"""

JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("mgit-data").textContent);
  var svg = document.getElementById("canvas");
  var NS = svg.namespaceURI;
  var viewport = document.getElementById("viewport");
  var stage = document.getElementById("stage");
  var tip = document.getElementById("tip");
  var search = document.getElementById("search");
  var countEl = document.getElementById("count");
  var details = document.getElementById("details");
  var empty = document.getElementById("panel-empty");
  var nodes = data.nodes, edges = data.edges, W = data.node_w, H = data.node_h;
  var RELS = Object.keys(data.colors);
  var nodeEls = [], edgeEls = [], labelEls = [];
  var inE = nodes.map(function () { return []; });
  var outE = nodes.map(function () { return []; });
  edges.forEach(function (e, k) { inE[e.t].push(k); outE[e.s].push(k); });
  inE.forEach(function (l) {
    l.sort(function (a, b) { return edges[a].index - edges[b].index; });
  });

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (parent) parent.appendChild(e);
    return e;
  }
  function hel(tag, cls, text, parent) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }
  function hue(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    return ((h >>> 0) % 360);
  }
  function relOf(r) { return RELS.indexOf(r) >= 0 ? r : "other"; }
  function short7(n) { return n.short.slice(0, 7); }
  function ref(n) { return (n.model || "?") + "@" + short7(n); }
  function firstLine(s) {
    var lines = String(s || "").split(/\r?\n/);
    for (var i = 0; i < lines.length; i++) { if (lines[i].trim()) return lines[i].trim(); }
    return "";
  }
  function when(t) {
    if (!t) return "unknown";
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function size(b) {
    if (b === null || b === undefined) return "unknown";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], v = b, i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    var exact = i ? " (" + b.toLocaleString("en-US") + " bytes)" : "";
    return (i ? v.toFixed(1) : String(v)) + " " + u[i] + exact;
  }
  function fitText(t, s, max) {
    t.textContent = s;
    if (t.getComputedTextLength() <= max) return;
    var lo = 1, hi = s.length;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      t.textContent = s.slice(0, mid) + "\u2026";
      if (t.getComputedTextLength() <= max) lo = mid; else hi = mid - 1;
    }
    t.textContent = s.slice(0, lo) + "\u2026";
  }

  // ---- drawing ------------------------------------------------------------------------------
  var defs = svg.querySelector("defs");
  RELS.forEach(function (r) {
    var m = el("marker", { id: "arrow-" + r, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 9, markerHeight: 9, orient: "auto", markerUnits: "userSpaceOnUse" }, defs);
    el("path", { d: "M0,1L10,5L0,9z", fill: data.colors[r] }, m);
  });
  var gLanes = document.getElementById("lanes"), gEdges = document.getElementById("edges");
  var gLabels = document.getElementById("edge-labels"), gNodes = document.getElementById("nodes");
  data.lanes.forEach(function (l) {
    var h = hue(l.model);
    el("rect", { "class": "lane", x: l.x, y: l.y, width: l.w, height: l.h, rx: 10,
      fill: "hsl(" + h + ",60%,97%)", stroke: "hsl(" + h + ",45%,86%)" }, gLanes);
  });
  edges.forEach(function (e, k) {
    var r = relOf(e.relation);
    var p = el("path", { d: e.path, "class": "edge " + (r === "version" ? "version" : "derive"),
      stroke: data.colors[r], "marker-end": "url(#arrow-" + r + ")" }, gEdges);
    edgeEls.push(p);
    var t = null;
    if (r !== "version" && e.label) {
      t = el("text", { "class": "e-label", x: e.lx, y: e.ly, fill: data.colors[r] }, gLabels);
      t.textContent = r;
    }
    labelEls.push(t);
  });
  var TEST_COLORS = { pass: ["#dcfce7", "#15803d"], fail: ["#fee2e2", "#b91c1c"],
    error: ["#fef9c3", "#a16207"], none: ["#f1f5f9", "#94a3b8"] };
  var TEST_MARKS = { pass: "\u2713 ", fail: "\u2717 ", error: "? " };
  function outcome(n) { return n.test ? n.test.outcome : "none"; }
  nodes.forEach(function (n, i) {
    var h = hue(n.model);
    var fill = "hsl(" + h + ",70%,94%)", stroke = "hsl(" + h + ",45%,40%)";
    if (data.color_by) {
      var tc = TEST_COLORS[outcome(n)] || TEST_COLORS.none;
      fill = tc[0]; stroke = tc[1];
    }
    var g = el("g", { "class": "node" + (n.heads.length ? " head" : "") +
      (data.color_by ? " t-" + outcome(n) : ""),
      transform: "translate(" + n.x + "," + n.y + ")", tabindex: 0, "data-id": n.id }, gNodes);
    el("rect", { "class": "box", width: W, height: H, rx: 7, fill: fill, stroke: stroke }, g);
    var t1 = el("text", { "class": "n-model", x: 9, y: 16 }, g);
    fitText(t1, (TEST_MARKS[outcome(n)] || "") + (n.model || "(no model)"), W - 18);
    var t2 = el("text", { "class": "n-sub", x: 9, y: 30 }, g);
    fitText(t2, short7(n) + (n.tags.length ? "  " + n.tags.join(", ") : ""), W - 18);
    if (n.lossy) {
      var corner = "M" + (W - 14) + " 0H" + (W - 7) + "A7 7 0 0 1 " + W + " 7V14z";
      el("path", { "class": "lossy-mark", d: corner }, g);
    }
    g.addEventListener("click", function (ev) {
      if (!moved) { ev.stopPropagation(); select(i, false); }
    });
    g.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(i, false); }
    });
    g.addEventListener("mouseenter", function (ev) { showTip(i, ev); });
    g.addEventListener("mousemove", function (ev) { placeTip(ev); });
    g.addEventListener("mouseleave", function () { tip.hidden = true; });
    nodeEls.push(g);
  });

  // ---- tooltip ------------------------------------------------------------------------------
  function relationText(i) {
    if (!inE[i].length) return "root (no parent)";
    var rels = inE[i].map(function (k) { return edges[k].relation; });
    var refs = inE[i].map(function (k) { return ref(nodes[edges[k].s]); });
    var same = rels.every(function (r) { return r === rels[0]; });
    if (same) return rels[0] + " of " + refs.join(", ");
    return rels.map(function (r, j) { return r + " of " + refs[j]; }).join(", ");
  }
  function testText(n) {
    if (!n.test) return "no result";
    return { pass: "passed", fail: "failed", error: "untestable" }[n.test.outcome] || n.test.outcome;
  }
  function showTip(i, ev) {
    var n = nodes[i];
    var lines = [ref(n) + (n.heads.length ? "  (head)" : ""), relationText(i)];
    var m = firstLine(n.message);
    if (m) lines.push(m);
    if (n.tags.length) lines.push("tags: " + n.tags.join(", "));
    if (data.color_by) lines.push("test " + data.color_by + ": " + testText(n));
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    placeTip(ev);
  }
  function placeTip(ev) {
    var r = stage.getBoundingClientRect();
    var x = ev.clientX - r.left + 14, y = ev.clientY - r.top + 14;
    if (x + tip.offsetWidth > r.width - 4) x = ev.clientX - r.left - tip.offsetWidth - 10;
    if (y + tip.offsetHeight > r.height - 4) y = ev.clientY - r.top - tip.offsetHeight - 10;
    tip.style.left = Math.max(2, x) + "px";
    tip.style.top = Math.max(2, y) + "px";
  }

  // ---- details panel and lineage highlight ----------------------------------------------------
  var selected = -1;
  function row(dl, label, value) {
    hel("dt", null, label, dl);
    var dd = hel("dd", null, null, dl);
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = String(value);
    return dd;
  }
  function link(i, text) {
    var b = hel("button", "link", text);
    b.type = "button";
    b.addEventListener("click", function () { select(i, true); });
    return b;
  }
  function showDetails(i) {
    var n = nodes[i];
    details.replaceChildren();
    hel("h2", null, n.model || "(no model)", details);
    var sub = hel("div", "sub", null, details);
    n.heads.forEach(function (h) { hel("span", "badge head", "head of " + h, sub); });
    n.tags.forEach(function (t) { hel("span", "badge tag", "tag: " + t, sub); });
    if (n.lossy) hel("span", "badge lossy", "lossy", sub);
    var dl = hel("dl", null, null, details);
    var code = hel("code", null, n.id);
    row(dl, "Commit", code);
    row(dl, "Short id", n.short);
    row(dl, "Message", n.message || "(none)").className = "msg";
    row(dl, "Author", n.author || "unknown");
    row(dl, "Time", when(n.time));
    row(dl, "Relation", relationText(i));
    row(dl, "Size", size(n.logical_bytes));
    row(dl, "Storage", n.lossy ? "lossy (within a recorded error bound)" : "lossless");
    var ul = hel("ul");
    inE[i].forEach(function (k) {
      var li = hel("li", null, edges[k].relation + " of ", ul);
      li.appendChild(link(edges[k].s, ref(nodes[edges[k].s])));
    });
    if (inE[i].length) row(dl, "Parents", ul);
    var uc = hel("ul");
    outE[i].forEach(function (k) {
      var li = hel("li", null, null, uc);
      li.appendChild(link(edges[k].t, ref(nodes[edges[k].t])));
      li.appendChild(document.createTextNode(" (" + edges[k].relation + ")"));
    });
    if (outE[i].length) row(dl, "Children", uc);
    var keys = Object.keys(n.meta);
    if (keys.length) {
      hel("h3", null, "Metadata", details).className = "meta-title";
      var table = hel("table", "meta", null, details);
      keys.forEach(function (k) {
        var tr = hel("tr", null, null, table);
        hel("td", null, k, tr);
        hel("td", null, n.meta[k], tr);
      });
    }
    if (data.color_by) {
      hel("h3", null, "Test " + data.color_by, details).className = "meta-title";
      var tt = hel("table", "meta test-result", null, details);
      var trow = function (k, v) {
        var tr = hel("tr", null, null, tt);
        hel("td", null, k, tr);
        hel("td", null, v, tr);
      };
      trow("result", testText(n));
      if (n.test) {
        if (n.test.error) trow("why", n.test.error);
        Object.keys(n.test.metrics).forEach(function (k) {
          var v = n.test.metrics[k];
          trow(k, v === null ? "NaN" : String(v));
        });
      }
    }
    empty.hidden = true;
    details.hidden = false;
  }
  function walk(start, adj, end, seen) {
    var stack = [start];
    while (stack.length) {
      var i = stack.pop();
      adj[i].forEach(function (k) {
        var j = edges[k][end];
        edgeEls[k].classList.add("lin");
        if (labelEls[k]) labelEls[k].classList.add("lin");
        if (!seen[j]) { seen[j] = true; stack.push(j); }
      });
    }
  }
  function clearSelection() {
    if (selected >= 0) nodeEls[selected].classList.remove("selected");
    selected = -1;
    svg.classList.remove("selecting");
    document.querySelectorAll(".lin").forEach(function (e) { e.classList.remove("lin"); });
    details.hidden = true;
    empty.hidden = false;
  }
  function select(i, center) {
    clearSelection();
    selected = i;
    var seen = {}; seen[i] = true;
    walk(i, inE, "s", seen);
    walk(i, outE, "t", seen);
    Object.keys(seen).forEach(function (j) { nodeEls[j].classList.add("lin"); });
    nodeEls[i].classList.add("selected");
    svg.classList.add("selecting");
    showDetails(i);
    if (center) centerOn(i);
  }

  // ---- pan and zoom -------------------------------------------------------------------------
  var view = { x: 0, y: 0, k: 1 };
  function apply() {
    viewport.setAttribute("transform", "translate(" + view.x.toFixed(2) + "," +
      view.y.toFixed(2) + ") scale(" + view.k.toFixed(4) + ")");
    svg.classList.toggle("far", view.k < 0.45);
  }
  function zoomAt(px, py, f) {
    var k = Math.min(4, Math.max(0.03, view.k * f));
    f = k / view.k;
    view.x = px - (px - view.x) * f;
    view.y = py - (py - view.y) * f;
    view.k = k;
    apply();
  }
  function fit(readable) {
    var w = svg.clientWidth || 800, h = svg.clientHeight || 600;
    var k = Math.min(w / data.width, h / data.height, 1.2);
    if (readable && k < 0.75) {
      view.k = 0.75; view.x = 0; view.y = 0;
    } else {
      view.k = k;
      view.x = (w - data.width * k) / 2;
      view.y = (h - data.height * k) / 2;
    }
    apply();
  }
  function centerOn(i) {
    var n = nodes[i];
    if (view.k < 0.8) view.k = 0.8;
    view.x = svg.clientWidth / 2 - (n.x + W / 2) * view.k;
    view.y = svg.clientHeight / 2 - (n.y + H / 2) * view.k;
    apply();
  }
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = svg.getBoundingClientRect();
    var d = ev.deltaMode === 1 ? ev.deltaY * 30 : ev.deltaY;
    zoomAt(ev.clientX - r.left, ev.clientY - r.top, Math.exp(-d * 0.0015));
  }, { passive: false });
  var drag = null, moved = false;
  svg.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y };
    moved = false;
  });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    moved = true;
    tip.hidden = true;
    svg.classList.add("panning");
    view.x = drag.vx + dx; view.y = drag.vy + dy;
    apply();
  });
  window.addEventListener("pointerup", function () {
    drag = null;
    svg.classList.remove("panning");
  });
  svg.addEventListener("click", function () { if (!moved) clearSelection(); });
  function zoomCenter(f) { zoomAt(svg.clientWidth / 2, svg.clientHeight / 2, f); }
  document.getElementById("zoom-in").addEventListener("click", function () { zoomCenter(1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoomCenter(0.8); });
  document.getElementById("fit").addEventListener("click", function () { fit(false); });
  window.addEventListener("resize", function () { apply(); });

  // ---- search -------------------------------------------------------------------------------
  var matches = [], cursor = -1;
  function runSearch() {
    var q = search.value.trim().toLowerCase();
    matches = []; cursor = -1;
    nodes.forEach(function (n, i) {
      var hit = q !== "" && (n.model.toLowerCase().indexOf(q) >= 0 || n.id.indexOf(q) === 0 ||
        n.tags.some(function (t) { return t.toLowerCase().indexOf(q) >= 0; }));
      nodeEls[i].classList.toggle("match", hit);
      if (hit) matches.push(i);
    });
    svg.classList.toggle("searching", q !== "");
    var models = {};
    matches.forEach(function (i) { models[nodes[i].model] = true; });
    var nm = Object.keys(models).length, nv = matches.length;
    countEl.textContent = q === "" ? "" : nv === 0 ? "no match" :
      nm + " model" + (nm === 1 ? "" : "s") + ", " + nv + " version" + (nv === 1 ? "" : "s");
  }
  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && matches.length) {
      cursor = (cursor + 1) % matches.length;
      select(matches[cursor], true);
    } else if (ev.key === "Escape") {
      search.value = ""; runSearch(); search.blur();
    }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.target === search) return;
    if (ev.key === "/") { ev.preventDefault(); search.focus(); }
    else if (ev.key === "Escape") clearSelection();
  });

  fit(true);
  document.body.setAttribute("data-ready", "1");
})();
"""
