"""The stylesheet and script inlined into the lineage HTML page (no network, no CDN).

The script reads the graph from the page's ``<script type="application/json" id="mgit-data">``
block, lays it out (one card per model line, collapsed or expanded into its versions; cards in
layers of the graph of model lines, each layer sorted by the barycentre of its parents and wrapped
into columns: O(n log n)), and draws only what is in view: SVG elements built with DOM calls
(``textContent``, ``setAttribute``, never ``innerHTML``, so no user string is ever parsed as
markup) when few enough are in view to read, else a canvas. One hit test on the layout serves
clicks and hovers in both. It provides pan and zoom (wheel, drag, buttons), expand and collapse,
a search box, a tooltip on hover, a details panel on click, and a focus on one version's
ancestors and descendants.
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
#overview { position: absolute; left: 0; top: 0; width: 100%; height: 100%; display: block;
  background: #fff; }
#graph { position: absolute; left: 0; top: 0; width: 100%; height: 100%; display: block;
  cursor: grab; user-select: none; -webkit-user-select: none; touch-action: none; }
#graph.panning { cursor: grabbing; }
#graph.over { cursor: pointer; }
button:disabled { opacity: .45; cursor: default; background: #fff; }
#focus-info { color: #1d4ed8; white-space: nowrap; }
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
.node, .line, .lane-head { cursor: pointer; }
.line rect.box { stroke-width: 1.2; }
.line rect.stack { stroke-width: 1; }
.line.head rect.box { stroke-width: 2.4; }
.line.match rect.box { stroke: #f59e0b; stroke-width: 3.5; fill: #fef3c7; }
.line.selected rect.box { stroke: #1d4ed8; stroke-width: 3.5; }
.lane-title { font-size: 11.5px; font-weight: 600; fill: #334155; }
.lane-count { font-size: 10.5px; fill: #64748b; }
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
.selecting .node:not(.lin), .selecting .line:not(.lin) { opacity: .25; }
.searching .line:not(.match) { opacity: .2; }
.searching .line.match, .searching.selecting .line.lin { opacity: 1; }
.selecting .edge:not(.lin), .selecting .e-label:not(.lin) { opacity: .1; }
.searching .node.match, .searching.selecting .node.lin { opacity: 1; }
.node.match rect.box { fill: #fef3c7; }
.far .e-label, .far .n-sub, .far .lane-count { display: none; }
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
  // ---- data -----------------------------------------------------------------------------------
  var data = JSON.parse(document.getElementById("mgit-data").textContent);
  var svg = document.getElementById("graph");
  var NS = svg.namespaceURI;
  var cv = document.getElementById("overview");
  var ctx = cv.getContext("2d");
  var viewport = document.getElementById("viewport");
  var stage = document.getElementById("stage");
  var tip = document.getElementById("tip");
  var search = document.getElementById("search");
  var countEl = document.getElementById("count");
  var details = document.getElementById("details");
  var empty = document.getElementById("panel-empty");
  var focusBtn = document.getElementById("focus");
  var unfocusBtn = document.getElementById("unfocus");
  var focusInfo = document.getElementById("focus-info");
  var gLanes = document.getElementById("lanes"), gEdges = document.getElementById("edges");
  var gLabels = document.getElementById("edge-labels"), gNodes = document.getElementById("nodes");
  var nodes = data.nodes, edges = data.edges, W = data.node_w, H = data.node_h;
  var N = nodes.length, E = edges.length;
  var RELS = Object.keys(data.colors);
  // Geometry of a card (one model line): collapsed it is one box; expanded, a title row and its
  // versions stacked below, with room on the left for the version arcs.
  var PAD = 14, CW = W + 2 * PAD, HEAD = 22, VG = 8, CARD_GAP = 16, GAP_X = 72, DX = CW + GAP_X;
  var MARGIN = 24, DOM_CAP = 900, EDGE_CAP = 2500;

  nodes.forEach(function (n) {
    n.short = n.short || n.id.slice(0, 12);
    n.author = n.author || "";
    n.tags = n.tags || [];
    n.heads = n.heads || [];
    n.lossy = !!n.lossy;
    if (n.logical_bytes === undefined) n.logical_bytes = null;
    n.meta = n.meta || {};
  });
  var inE = [], outE = [];
  for (var i0 = 0; i0 < N; i0++) { inE.push([]); outE.push([]); }
  edges.forEach(function (e, k) {
    e.relation = RELS.indexOf(e.relation) >= 0 ? e.relation : "other";
    inE[e.t].push(k); outE[e.s].push(k);
  });
  inE.forEach(function (l) {
    if (l.length > 1) l.sort(function (a, b) { return edges[a].index - edges[b].index; });
  });
  // Model lines, in order of their first version (nodes come oldest first).
  var lines = [], byModel = new Map(), lineOf = new Int32Array(N);
  nodes.forEach(function (n, i) {
    var l = byModel.get(n.model);
    if (l === undefined) {
      l = lines.length;
      byModel.set(n.model, l);
      lines.push({ model: n.model, versions: [], hue: hue(n.model) });
    }
    lines[l].versions.push(i);
    lineOf[i] = l;
  });
  var NL = lines.length;
  var expanded = new Uint8Array(NL).fill(data.collapsed ? 0 : 1);

  // ---- helpers --------------------------------------------------------------------------------
  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
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
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  // Text is measured on a detached canvas: no layout of the document is forced.
  var FONT_SANS = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif';
  var FONT_MONO = 'ui-monospace, "DejaVu Sans Mono", monospace';
  var measure = document.createElement("canvas").getContext("2d");
  function fit(s, font, max) {
    measure.font = font;
    if (measure.measureText(s).width <= max) return s;
    var lo = 0, hi = s.length;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (measure.measureText(s.slice(0, mid) + "\u2026").width <= max) lo = mid; else hi = mid - 1;
    }
    return s.slice(0, lo) + "\u2026";
  }
  var F_MODEL = "600 12px " + FONT_SANS, F_SUB = "10.5px " + FONT_MONO;
  var F_TITLE = "600 11.5px " + FONT_SANS;
  var TEST_COLORS = { pass: ["#dcfce7", "#15803d"], fail: ["#fee2e2", "#b91c1c"],
    error: ["#fef9c3", "#a16207"], none: ["#f1f5f9", "#94a3b8"] };
  var TEST_MARKS = { pass: "\u2713 ", fail: "\u2717 ", error: "? " };
  function outcome(n) { return n.test ? n.test.outcome : "none"; }
  function colours(i) {
    var n = nodes[i];
    if (data.color_by) return TEST_COLORS[outcome(n)] || TEST_COLORS.none;
    var h = lines[lineOf[i]].hue;
    return ["hsl(" + h + ",70%,94%)", "hsl(" + h + ",45%,40%)"];
  }

  // ---- state ----------------------------------------------------------------------------------
  var shown = null;        // focus: Uint8Array of the versions drawn, or null for all
  var selected = -1;       // selected version
  var linV = null, linE = null;  // the selected version's lineage (versions, edges)
  var matchV = null, matchL = null, matches = [], cursor = -1;
  var view = { x: 0, y: 0, k: 1 };
  var lay = null;          // current layout

  // ---- layout: layers of the graph of model lines, O(n log n) ----------------------------------
  function layout() {
    var vis = new Array(NL), act = [];
    for (var l = 0; l < NL; l++) {
      var vs = lines[l].versions;
      if (shown) vs = vs.filter(function (i) { return shown[i]; });
      if (vs.length) { vis[l] = vs; act.push(l); }
    }
    var lpar = new Array(NL), lkid = new Array(NL);
    act.forEach(function (l) { lpar[l] = []; lkid[l] = []; });
    for (var k = 0; k < E; k++) {
      var e = edges[k];
      if (shown && !(shown[e.s] && shown[e.t])) continue;
      var a = lineOf[e.s], b = lineOf[e.t];
      if (a !== b) { lpar[b].push(a); lkid[a].push(b); }
    }
    // Longest path from a root (Kahn); lines on a cycle (bad input) go after their placed parents.
    var layer = new Int32Array(NL).fill(-1), indeg = new Int32Array(NL), queue = [];
    act.forEach(function (l) { indeg[l] = lpar[l].length; if (!indeg[l]) queue.push(l); });
    for (var q = 0; q < queue.length; q++) {
      var m = queue[q], best = 0;
      lpar[m].forEach(function (p) { if (layer[p] >= 0 && layer[p] + 1 > best) best = layer[p] + 1; });
      layer[m] = best;
      lkid[m].forEach(function (c) { if (--indeg[c] === 0) queue.push(c); });
    }
    act.forEach(function (l) {
      if (layer[l] >= 0) return;
      var best = 0;
      lpar[l].forEach(function (p) { if (layer[p] >= 0 && layer[p] + 1 > best) best = layer[p] + 1; });
      layer[l] = best;
    });
    var h = new Float64Array(NL), cols = [], units = 0, tallest = H;
    act.forEach(function (l) {
      h[l] = expanded[l] ? HEAD + vis[l].length * (H + VG) - VG + PAD : H;
      units += h[l] + CARD_GAP;
      if (h[l] > tallest) tallest = h[l];
      (cols[layer[l]] = cols[layer[l]] || []).push(l);
    });
    // A layer taller than HMAX wraps into several columns, so the drawing stays about 16:10.
    var HMAX = Math.max(tallest, 6 * (H + CARD_GAP), Math.sqrt(units * DX / 1.6));
    var X = new Float64Array(NL), Y = new Float64Array(NL), key = new Float64Array(NL);
    var x = MARGIN, bottom = MARGIN;
    for (var c = 0; c < cols.length; c++) {
      var col = cols[c];
      if (!col) continue;
      if (c > 0) {  // barycentre of the parents already placed; none: after the others
        col.forEach(function (l) {
          var s = 0, n = 0;
          lpar[l].forEach(function (p) { if (layer[p] < c) { s += Y[p] + h[p] / 2; n++; } });
          key[l] = n ? s / n : 1e15;
        });
        col.sort(function (a, b) { return key[a] - key[b] || a - b; });
      }
      var y = MARGIN;
      col.forEach(function (l) {
        if (y > MARGIN && y + h[l] > MARGIN + HMAX) { x += DX; y = MARGIN; }
        X[l] = x; Y[l] = y;
        y += h[l] + CARD_GAP;
        if (y - CARD_GAP > bottom) bottom = y - CARD_GAP;
      });
      x += DX;
    }
    var VY = new Float64Array(N).fill(NaN);
    act.forEach(function (l) {
      if (!expanded[l]) return;
      vis[l].forEach(function (i, r) { VY[i] = Y[l] + HEAD + r * (H + VG); });
    });
    lay = { act: act, vis: vis, X: X, Y: Y, h: h, VY: VY, width: Math.max(x - GAP_X + MARGIN, 200),
      height: bottom + MARGIN };
    lay.edges = routeEdges();
    cache = new Map();
  }

  // Drawn edges: parent's right side to child's left side (a version row when its line is
  // expanded, else the card); edges inside an expanded line are arcs on its left margin.
  // Edges between two collapsed lines that would coincide are drawn once.
  function routeEdges() {
    var out = [], seen = new Set(), written = new Map();
    var stack = [-8, 9, -20, 21];
    for (var k = 0; k < E; k++) {
      var e = edges[k];
      if (shown && !(shown[e.s] && shown[e.t])) continue;
      var a = lineOf[e.s], b = lineOf[e.t], ea = expanded[a], eb = expanded[b];
      var d = { k: k, rel: e.relation, label: false, lx: 0, ly: 0 };
      if (a === b) {
        if (!ea) continue;
        d.inner = true;
        d.x1 = d.x2 = lay.X[a] + PAD;
        d.y1 = lay.VY[e.s] + H / 2; d.y2 = lay.VY[e.t] + H / 2;
        d.path = "M" + d.x1 + " " + d.y1 + "C" + (d.x1 - PAD + 2) + " " + d.y1 + " " +
          (d.x1 - PAD + 2) + " " + d.y2 + " " + d.x2 + " " + d.y2;
        d.bx0 = d.x1 - PAD; d.bx1 = d.x1;
      } else {
        var sk = ea ? "v" + e.s : "l" + a, tk = eb ? "v" + e.t : "l" + b;
        var dup = sk + ">" + tk + ":" + e.relation;
        if (seen.has(dup)) continue;
        seen.add(dup);
        d.x1 = ea ? lay.X[a] + PAD + W : lay.X[a] + CW;
        d.y1 = (ea ? lay.VY[e.s] : lay.Y[a]) + H / 2;
        d.x2 = eb ? lay.X[b] + PAD : lay.X[b];
        d.y2 = (eb ? lay.VY[e.t] : lay.Y[b]) + H / 2;
        var mx = (d.x1 + d.x2) / 2;
        d.path = "M" + d.x1 + " " + d.y1 + "C" + mx + " " + d.y1 + " " + mx + " " + d.y2 + " " +
          d.x2 + " " + d.y2;
        d.bx0 = Math.min(d.x1, d.x2); d.bx1 = Math.max(d.x1, d.x2);
        if (e.relation !== "version") {
          var seenRel = written.get(tk);
          if (!seenRel) { seenRel = []; written.set(tk, seenRel); }
          if (seenRel.indexOf(e.relation) < 0 && seenRel.length < stack.length) {
            seenRel.push(e.relation);
            d.label = true;
            d.lx = d.x2 - GAP_X / 2; d.ly = d.y2 + stack[seenRel.length - 1];
          }
        }
      }
      d.by0 = Math.min(d.y1, d.y2) - 24; d.by1 = Math.max(d.y1, d.y2) + 24;
      out.push(d);
    }
    return out;
  }

  // ---- drawing --------------------------------------------------------------------------------
  var defs = svg.querySelector("defs");
  RELS.forEach(function (r) {
    var m = el("marker", { id: "arrow-" + r, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 9, markerHeight: 9, orient: "auto", markerUnits: "userSpaceOnUse" }, defs);
    el("path", { d: "M0,1L10,5L0,9z", fill: data.colors[r] }, m);
  });
  var cache = new Map();  // SVG elements of the current layout, made when first in view
  var pending = false, drawn = false;

  function cached(key, make) {
    var e = cache.get(key);
    if (!e) { e = make(); cache.set(key, e); }
    return e;
  }
  function makeVersion(i) {
    var n = nodes[i], l = lineOf[i], col = colours(i);
    var g = el("g", { "class": "node" + (n.heads.length ? " head" : "") +
      (data.color_by ? " t-" + outcome(n) : ""),
      transform: "translate(" + (lay.X[l] + PAD) + "," + lay.VY[i] + ")", tabindex: 0,
      "data-id": n.id });
    el("rect", { "class": "box", width: W, height: H, rx: 7, fill: col[0], stroke: col[1] }, g);
    el("text", { "class": "n-model", x: 9, y: 16 }, g).textContent =
      fit((TEST_MARKS[outcome(n)] || "") + (n.model || "(no model)"), F_MODEL, W - 18);
    el("text", { "class": "n-sub", x: 9, y: 30 }, g).textContent =
      fit(short7(n) + (n.tags.length ? "  " + n.tags.join(", ") : ""), F_SUB, W - 18);
    if (n.lossy) {
      el("path", { "class": "lossy-mark",
        d: "M" + (W - 14) + " 0H" + (W - 7) + "A7 7 0 0 1 " + W + " 7V14z" }, g);
    }
    return g;
  }
  function latest(l) { var vs = lay.vis[l]; return vs[vs.length - 1]; }
  function makeLine(l) {
    var i = latest(l), n = nodes[i], col = colours(i), count = lay.vis[l].length;
    var g = el("g", { "class": "line" + (n.heads.length ? " head" : ""),
      transform: "translate(" + lay.X[l] + "," + lay.Y[l] + ")", tabindex: 0,
      "data-model": lines[l].model, "data-latest": n.id, "data-versions": count });
    if (count > 1) {
      el("rect", { "class": "stack", x: 3, y: -3, width: CW, height: H, rx: 7, fill: "#fff",
        stroke: col[1] }, g);
    }
    el("rect", { "class": "box", width: CW, height: H, rx: 7, fill: col[0], stroke: col[1] }, g);
    el("text", { "class": "n-model", x: 9, y: 16 }, g).textContent =
      fit((TEST_MARKS[outcome(n)] || "") + (n.model || "(no model)"), F_MODEL, CW - 18);
    el("text", { "class": "n-sub", x: 9, y: 30 }, g).textContent =
      fit(plural(count, "version") + " \u00b7 " + short7(n) +
        (n.tags.length ? " " + n.tags.join(", ") : ""), F_SUB, CW - 18);
    return g;
  }
  function makeLane(l) {
    var h = lines[l].hue, frag = [];
    frag.push(el("rect", { "class": "lane", x: lay.X[l], y: lay.Y[l], width: CW, height: lay.h[l],
      rx: 10, fill: "hsl(" + h + ",60%,97%)", stroke: "hsl(" + h + ",45%,80%)" }));
    var head = el("g", { "class": "lane-head", "data-model": lines[l].model,
      transform: "translate(" + lay.X[l] + "," + lay.Y[l] + ")" });
    el("rect", { "class": "hit", width: CW, height: HEAD, fill: "transparent" }, head);
    var t = el("text", { "class": "lane-title", x: 8, y: 15 }, head);
    t.textContent = fit("\u25be " + (lines[l].model || "(no model)"), F_TITLE, CW - 74);
    el("text", { "class": "lane-count", x: CW - 8, y: 15, "text-anchor": "end" }, head)
      .textContent = plural(lay.vis[l].length, "version");
    frag.push(head);
    return frag;
  }
  function makeEdge(d) {
    var p = el("path", { d: d.path, "class": "edge " + (d.rel === "version" ? "version" : "derive"),
      stroke: data.colors[d.rel], "marker-end": "url(#arrow-" + d.rel + ")",
      "data-edge": d.k });
    var t = null;
    if (d.label) {
      t = el("text", { "class": "e-label", x: d.lx, y: d.ly, fill: data.colors[d.rel] });
      t.textContent = d.rel;
    }
    return [p, t];
  }

  function worldView(margin) {
    var w = cv.clientWidth || 800, h = cv.clientHeight || 600, k = view.k;
    var mx = w * margin, my = h * margin;
    return { x0: (-view.x - mx) / k, y0: (-view.y - my) / k, x1: (w - view.x + mx) / k,
      y1: (h - view.y + my) / k };
  }
  function inView(r, x0, y0, x1, y1) { return x1 >= r.x0 && x0 <= r.x1 && y1 >= r.y0 && y0 <= r.y1; }
  function edgeLin(d) { return linE !== null && linE[d.k] === 1; }
  function lineLin(l) {
    if (!linV) return false;
    var vs = lay.vis[l];
    for (var j = 0; j < vs.length; j++) if (linV[vs[j]]) return true;
    return false;
  }

  function scheduleRender() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; render(); });
  }

  // Draw what is in view: SVG elements when there are few enough to read, else the canvas.
  function render() {
    var t0 = performance.now();
    apply();
    var all = lay.act.length <= DOM_CAP && lay.edges.length <= EDGE_CAP &&
      lay.act.reduce(function (s, l) { return s + (expanded[l] ? lay.vis[l].length : 0); }, 0) <=
      DOM_CAP;
    var r = worldView(all ? 1e9 : 0.3);
    var cards = [], items = 0;
    lay.act.forEach(function (l) {
      if (!inView(r, lay.X[l], lay.Y[l], lay.X[l] + CW, lay.Y[l] + lay.h[l])) return;
      cards.push(l);
      items += expanded[l] ? 1 + lay.vis[l].length : 1;
    });
    var es = lay.edges.filter(function (d) { return inView(r, d.bx0, d.by0, d.bx1, d.by1); });
    var mode = items <= DOM_CAP && es.length <= EDGE_CAP ? "svg" : "canvas";
    var nVersions = 0;
    if (mode === "svg") {
      clearCanvas();
      var lanes = [], nodeEls = [], edgeEls = [], labelEls = [];
      cards.forEach(function (l) {
        if (expanded[l]) {
          cached("lane" + l, function () { return makeLane(l); }).forEach(function (x) {
            lanes.push(x);
          });
          lay.vis[l].forEach(function (i) {
            if (!inView(r, lay.X[l], lay.VY[i], lay.X[l] + CW, lay.VY[i] + H)) return;
            var g = cached("v" + i, function () { return makeVersion(i); });
            g.classList.toggle("match", matchV !== null && matchV[i] === 1);
            g.classList.toggle("lin", linV !== null && linV[i] === 1);
            g.classList.toggle("selected", i === selected);
            nodeEls.push(g);
            nVersions++;
          });
        } else {
          var g = cached("l" + l, function () { return makeLine(l); });
          g.classList.toggle("match", matchL !== null && matchL[l] === 1);
          g.classList.toggle("lin", lineLin(l));
          g.classList.toggle("selected", selected >= 0 && lineOf[selected] === l);
          nodeEls.push(g);
        }
      });
      es.forEach(function (d) {
        var pair = cached("e" + d.k, function () { return makeEdge(d); });
        var lin = edgeLin(d);
        pair[0].classList.toggle("lin", lin);
        edgeEls.push(pair[0]);
        if (pair[1]) { pair[1].classList.toggle("lin", lin); labelEls.push(pair[1]); }
      });
      gLanes.replaceChildren.apply(gLanes, lanes);
      gEdges.replaceChildren.apply(gEdges, edgeEls);
      gLabels.replaceChildren.apply(gLabels, labelEls);
      gNodes.replaceChildren.apply(gNodes, nodeEls);
    } else {
      gLanes.replaceChildren(); gEdges.replaceChildren(); gLabels.replaceChildren();
      gNodes.replaceChildren();
      nVersions = drawCanvas(cards, es, r);
    }
    svg.classList.toggle("searching", matchV !== null);
    svg.classList.toggle("selecting", selected >= 0);
    window.__lastRender = { mode: mode, cards: cards.length, versions: nVersions,
      edges: es.length, ms: performance.now() - t0 };
    if (!drawn) {
      drawn = true;
      // Two frames: the first draw has been painted when the second frame starts.
      requestAnimationFrame(function () {
        requestAnimationFrame(function () {
          performance.mark("mgit-lineage-drawn");
          window.__drawn = performance.now();
          document.body.setAttribute("data-ready", "1");
        });
      });
    }
  }

  function sizeCanvas() {
    var dpr = window.devicePixelRatio || 1, w = cv.clientWidth, h = cv.clientHeight;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
    }
    return dpr;
  }
  var canvasDirty = true;
  function clearCanvas() {
    if (!canvasDirty) return;
    sizeCanvas();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cv.width, cv.height);
    canvasDirty = false;
  }
  function drawCanvas(cards, es, r) {
    var dpr = sizeCanvas(), k = view.k;
    canvasDirty = true;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cv.width, cv.height);
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * view.x, dpr * view.y);
    var dim = selected >= 0 || matchV !== null;
    var thin = es.length > 2000 ? 0.2 : 0.55;  // thousands of edges: let the boxes show through
    // From afar, straight lines: curves cost several times as much to rasterise.
    var straight = k < 0.25 && es.length > 2000;
    // From very far (boxes a few pixels tall) thousands of edges are only a grey veil, and
    // painting them is what makes the overview slow: only the selected lineage's are drawn.
    var sparse = k * H < 4 && es.length > 3000;
    cards.forEach(function (l) {
      if (!expanded[l]) return;
      ctx.fillStyle = "hsl(" + lines[l].hue + ",60%,96%)";
      ctx.fillRect(lay.X[l], lay.Y[l], CW, lay.h[l]);
    });
    // Edges, one path per relation (and lineage or not): a few strokes for thousands of edges.
    ctx.lineWidth = Math.max(1, 1.2 / k);
    [false, true].forEach(function (hot) {
      RELS.forEach(function (rel) {
        ctx.beginPath();
        var any = false;
        es.forEach(function (d) {
          if (d.rel !== rel || (edgeLin(d) !== hot) || (sparse && !hot)) return;
          ctx.moveTo(d.x1, d.y1);
          if (straight) {
            ctx.lineTo(d.x2, d.y2);
          } else {
            var mx = d.inner ? d.x1 - PAD + 2 : (d.x1 + d.x2) / 2;
            ctx.bezierCurveTo(mx, d.y1, mx, d.y2, d.x2, d.y2);
          }
          any = true;
        });
        if (!any) return;
        ctx.globalAlpha = dim && !hot ? 0.1 : hot ? 1 : thin;
        ctx.strokeStyle = data.colors[rel];
        ctx.setLineDash(rel === "version" && k >= 0.4 ? [6, 4] : []);  // tiny dashes are slow
        ctx.lineWidth = hot ? Math.max(2.4, 2 / k) : Math.max(1, 1.2 / k);
        ctx.stroke();
      });
    });
    ctx.setLineDash([]);
    var text = k * W >= 70, count = 0;
    function box(x, y, w, i, hit, lin, label, sub) {
      var col = colours(i);
      ctx.globalAlpha = dim && !hit && !lin ? 0.2 : 1;
      ctx.fillStyle = hit ? "#fef3c7" : col[0];
      ctx.fillRect(x, y, w, H);
      // Outlines only where they can be seen (and for matches and the selection): thousands of
      // sub-pixel outlines cost more than everything else together.
      if (k >= 0.25 || hit || i === selected) {
        ctx.strokeStyle = hit ? "#f59e0b" : i === selected ? "#1d4ed8" : col[1];
        ctx.lineWidth = (hit || i === selected ? 3 : 1.2) * (k < 1 ? Math.min(1 / k, 3) : 1);
        ctx.strokeRect(x, y, w, H);
      }
      if (text) {
        ctx.fillStyle = "#0f172a";
        ctx.font = F_MODEL;
        ctx.fillText(fit(label, F_MODEL, w - 18), x + 9, y + 16);
        ctx.fillStyle = "#475569";
        ctx.font = F_SUB;
        ctx.fillText(fit(sub, F_SUB, w - 18), x + 9, y + 30);
      }
    }
    cards.forEach(function (l) {
      if (expanded[l]) {
        if (text) {
          ctx.globalAlpha = 1;
          ctx.fillStyle = "#334155";
          ctx.font = F_TITLE;
          ctx.fillText(fit("\u25be " + lines[l].model, F_TITLE, CW - 16), lay.X[l] + 8, lay.Y[l] + 15);
        }
        lay.vis[l].forEach(function (i) {
          if (!inView(r, lay.X[l], lay.VY[i], lay.X[l] + CW, lay.VY[i] + H)) return;
          var n = nodes[i];
          box(lay.X[l] + PAD, lay.VY[i], W, i, matchV !== null && matchV[i] === 1,
            linV !== null && linV[i] === 1, (TEST_MARKS[outcome(n)] || "") + n.model,
            short7(n) + (n.tags.length ? "  " + n.tags.join(", ") : ""));
          count++;
        });
      } else {
        var i = latest(l), n = nodes[i];
        box(lay.X[l], lay.Y[l], CW, i, matchL !== null && matchL[l] === 1, lineLin(l),
          (TEST_MARKS[outcome(n)] || "") + n.model,
          plural(lay.vis[l].length, "version") + " \u00b7 " + short7(n));
      }
    });
    ctx.globalAlpha = 1;
    return count;
  }

  // ---- hit testing (one handler for both SVG and canvas) -------------------------------------
  function hit(px, py) {
    var wx = (px - view.x) / view.k, wy = (py - view.y) / view.k, act = lay.act;
    for (var j = 0; j < act.length; j++) {
      var l = act[j], x = lay.X[l], y = lay.Y[l];
      if (wx < x || wx > x + CW || wy < y || wy > y + lay.h[l]) continue;
      if (!expanded[l]) return { line: l };
      if (wy < y + HEAD) return { head: l };
      var r = Math.floor((wy - y - HEAD) / (H + VG));
      var vs = lay.vis[l];
      if (r >= 0 && r < vs.length && wy - lay.VY[vs[r]] <= H && wx >= x + PAD &&
        wx <= x + PAD + W) return { v: vs[r] };
      return { card: l };
    }
    return null;
  }

  // ---- tooltip --------------------------------------------------------------------------------
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
  var tipFor = null;
  function showTip(h, ev) {
    var id = h ? (h.v !== undefined ? "v" + h.v : h.line !== undefined ? "l" + h.line : null) : null;
    if (id === null) { tip.hidden = true; tipFor = null; svg.classList.remove("over"); return; }
    svg.classList.add("over");
    if (id !== tipFor) {
      tipFor = id;
      var lines_ = [];
      if (h.v !== undefined) {
        var n = nodes[h.v];
        lines_.push(ref(n) + (n.heads.length ? "  (head)" : ""), relationText(h.v));
        var m = firstLine(n.message);
        if (m) lines_.push(m);
        if (n.tags.length) lines_.push("tags: " + n.tags.join(", "));
        if (data.color_by) lines_.push("test " + data.color_by + ": " + testText(n));
      } else {
        var li = latest(h.line), ln = nodes[li];
        lines_.push(lines[h.line].model + "  (" + plural(lay.vis[h.line].length, "version") + ")",
          "latest: " + ref(ln) + "  " + relationText(li));
        if (data.color_by) lines_.push("test " + data.color_by + ": " + testText(ln));
        lines_.push("click to expand");
      }
      tip.textContent = lines_.join("\n");
    }
    tip.hidden = false;
    var r = stage.getBoundingClientRect();
    var x = ev.clientX - r.left + 14, y = ev.clientY - r.top + 14;
    if (x + tip.offsetWidth > r.width - 4) x = ev.clientX - r.left - tip.offsetWidth - 10;
    if (y + tip.offsetHeight > r.height - 4) y = ev.clientY - r.top - tip.offsetHeight - 10;
    tip.style.left = Math.max(2, x) + "px";
    tip.style.top = Math.max(2, y) + "px";
  }

  // ---- details panel and lineage highlight ---------------------------------------------------
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
    row(dl, "Commit", hel("code", null, n.id));
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
    var fb = hel("button", "focus-lineage", "Focus on its ancestors and descendants", details);
    fb.type = "button";
    fb.addEventListener("click", focusSelected);
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
  // Ancestors and descendants of version i: the versions and the edges between them.
  function lineage(i) {
    var seenV = new Uint8Array(N), seenE = new Uint8Array(E);
    seenV[i] = 1;
    [[inE, "s"], [outE, "t"]].forEach(function (dir) {
      var adj = dir[0], end = dir[1], stack = [i];
      while (stack.length) {
        var v = stack.pop(), ks = adj[v];
        for (var j = 0; j < ks.length; j++) {
          var k = ks[j], w = edges[k][end];
          seenE[k] = 1;
          if (!seenV[w]) { seenV[w] = 1; stack.push(w); }
        }
      }
    });
    return [seenV, seenE];
  }
  function clearSelection() {
    selected = -1; linV = null; linE = null;
    details.hidden = true; empty.hidden = false;
    focusBtn.disabled = true;
    scheduleRender();
  }
  function reveal(i) {  // make version i drawn: leave a focus that hides it, expand its line
    var again = false;
    if (shown && !shown[i]) { shown = null; again = true; showFocus(); }
    if (!expanded[lineOf[i]]) { expanded[lineOf[i]] = 1; again = true; }
    if (again) layout();
  }
  function select(i, center) {
    if (center) reveal(i);
    selected = i;
    var lin = lineage(i);
    linV = lin[0]; linE = lin[1];
    focusBtn.disabled = false;
    showDetails(i);
    if (center) centerOn(i);
    render();
  }

  // ---- focus: only the selected version's ancestors and descendants ---------------------------
  function showFocus() {
    unfocusBtn.hidden = shown === null;
    if (shown === null) { focusInfo.textContent = ""; return; }
    var nv = 0;
    for (var i = 0; i < N; i++) nv += shown[i];
    focusInfo.textContent = "focus: " + ref(nodes[selected]) + ", " + plural(nv, "version");
  }
  function focusSelected() {
    if (selected < 0) return;
    shown = linV.slice();
    var nv = 0;
    for (var i = 0; i < N; i++) nv += shown[i];
    if (nv <= 400) {  // a small lineage is shown version by version
      for (var j = 0; j < N; j++) if (shown[j]) expanded[lineOf[j]] = 1;
    }
    showFocus();
    layout();
    fitView(false);
  }
  function unfocus() {
    if (shown === null) return;
    shown = null;
    showFocus();
    layout();
    if (selected >= 0) centerOn(selected); else fitView(true);
    render();
  }
  focusBtn.addEventListener("click", focusSelected);
  unfocusBtn.addEventListener("click", unfocus);

  // ---- expand and collapse -------------------------------------------------------------------
  function toggleLine(l) {
    // Keep the card under the pointer where it is on screen.
    var sx = lay.X[l] * view.k + view.x, sy = lay.Y[l] * view.k + view.y;
    expanded[l] = expanded[l] ? 0 : 1;
    layout();
    view.x = sx - lay.X[l] * view.k; view.y = sy - lay.Y[l] * view.k;
    render();
  }
  function setAll(v) {
    expanded.fill(v);
    var anchor = selected >= 0 ? selected : -1;
    layout();
    if (anchor >= 0 && !isNaN(lay.VY[anchor])) centerOn(anchor); else fitView(true);
    render();
  }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(1); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(0); });

  // ---- pan and zoom ---------------------------------------------------------------------------
  function apply() {
    viewport.setAttribute("transform", "translate(" + view.x.toFixed(2) + "," +
      view.y.toFixed(2) + ") scale(" + view.k.toFixed(4) + ")");
    svg.classList.toggle("far", view.k < 0.45);
  }
  function moveTo() { apply(); scheduleRender(); }
  function zoomAt(px, py, f) {
    var k = Math.min(4, Math.max(0.01, view.k * f));
    f = k / view.k;
    view.x = px - (px - view.x) * f;
    view.y = py - (py - view.y) * f;
    view.k = k;
    moveTo();
  }
  function fitView(readable) {
    var w = svg.clientWidth || 800, h = svg.clientHeight || 600;
    var k = Math.min(w / lay.width, h / lay.height, 1.2);
    if (readable && k < 0.75) {
      view.k = 0.75; view.x = 0; view.y = 0;
    } else {
      view.k = k;
      view.x = (w - lay.width * k) / 2;
      view.y = (h - lay.height * k) / 2;
    }
    render();
  }
  function centerOn(i) {
    var l = lineOf[i], y = isNaN(lay.VY[i]) ? lay.Y[l] : lay.VY[i];
    if (view.k < 0.8) view.k = 0.8;
    view.x = svg.clientWidth / 2 - (lay.X[l] + CW / 2) * view.k;
    view.y = svg.clientHeight / 2 - (y + H / 2) * view.k;
    moveTo();
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
    if (!drag) {
      if (ev.target === svg || svg.contains(ev.target)) {
        var r = svg.getBoundingClientRect();
        showTip(hit(ev.clientX - r.left, ev.clientY - r.top), ev);
      } else if (!tip.hidden) { showTip(null, ev); }
      return;
    }
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    moved = true;
    tip.hidden = true;
    svg.classList.add("panning");
    view.x = drag.vx + dx; view.y = drag.vy + dy;
    moveTo();
  });
  window.addEventListener("pointerup", function () {
    drag = null;
    svg.classList.remove("panning");
  });
  function activate(h) {
    if (!h) { clearSelection(); return; }
    if (h.v !== undefined) select(h.v, false);
    else if (h.line !== undefined) toggleLine(h.line);
    else if (h.head !== undefined) toggleLine(h.head);
  }
  svg.addEventListener("click", function (ev) {
    if (moved) return;
    var r = svg.getBoundingClientRect();
    tipFor = null;
    activate(hit(ev.clientX - r.left, ev.clientY - r.top));
  });
  svg.addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter" && ev.key !== " ") return;
    var t = ev.target.closest ? ev.target.closest("[data-id],[data-model]") : null;
    if (!t) return;
    ev.preventDefault();
    if (t.hasAttribute("data-id")) {
      for (var i = 0; i < N; i++) if (nodes[i].id === t.getAttribute("data-id")) select(i, false);
    } else {
      var l = byModel.get(t.getAttribute("data-model"));
      if (l !== undefined) toggleLine(l);
    }
  });
  function zoomCenter(f) { zoomAt(svg.clientWidth / 2, svg.clientHeight / 2, f); }
  document.getElementById("zoom-in").addEventListener("click", function () { zoomCenter(1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoomCenter(0.8); });
  document.getElementById("fit").addEventListener("click", function () { fitView(false); });
  window.addEventListener("resize", function () { canvasDirty = true; moveTo(); });

  // ---- search: model name, id prefix, tag, metadata (key=value or a value) -------------------
  var hay = null;
  function haystack() {
    if (hay) return hay;
    hay = nodes.map(function (n) {
      var parts = [n.model].concat(n.tags);
      for (var k in n.meta) parts.push(k + "=" + n.meta[k]);
      return parts.join("\n").toLowerCase();
    });
    return hay;
  }
  function runSearch() {
    var q = search.value.trim().toLowerCase();
    matches = []; cursor = -1;
    if (q === "") {
      matchV = null; matchL = null;
    } else {
      var hs = haystack();
      matchV = new Uint8Array(N); matchL = new Uint8Array(NL);
      for (var i = 0; i < N; i++) {
        if (hs[i].indexOf(q) >= 0 || nodes[i].id.indexOf(q) === 0) {
          matchV[i] = 1; matchL[lineOf[i]] = 1; matches.push(i);
        }
      }
    }
    var nm = 0;
    if (matchL) for (var l = 0; l < NL; l++) nm += matchL[l];
    var nv = matches.length;
    countEl.textContent = q === "" ? "" : nv === 0 ? "no match" :
      plural(nm, "model") + ", " + plural(nv, "version");
    render();
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
    else if (ev.key === "f" && selected >= 0) focusSelected();
    else if (ev.key === "Escape") clearSelection();
  });

  window.__lineage = {  // read by tests and the benchmark
    state: function () {
      return { mode: window.__lastRender.mode, expanded: Array.prototype.reduce.call(expanded,
        function (s, v) { return s + v; }, 0), lines: NL, shownLines: lay.act.length,
        shownVersions: lay.act.reduce(function (s, l) { return s + lay.vis[l].length; }, 0),
        focused: shown !== null, selected: selected >= 0 ? nodes[selected].id : null,
        width: lay.width, height: lay.height };
    },
    screenOf: function (id) {  // where a version (or its collapsed line) is on screen
      for (var i = 0; i < N; i++) {
        if (nodes[i].id !== id) continue;
        var l = lineOf[i], y = expanded[l] ? lay.VY[i] : lay.Y[l];
        if (isNaN(y) || lay.vis[l] === undefined) return null;
        var x = lay.X[l] + (expanded[l] ? PAD + W / 2 : CW / 2);
        return [x * view.k + view.x, (y + H / 2) * view.k + view.y];
      }
      return null;
    },
    fit: function () { fitView(false); render(); },
    render: function () { render(); return window.__lastRender; },
  };

  layout();
  fitView(true);
  render();
})();
"""
