"""Tests of the lineage views: graph_log, DOT, JSON, HTML and the layout behind it."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import shutil
import subprocess
import time

import networkx as nx
import pytest

from mgit.lineage._html_assets import CSS, JS
from mgit.lineage.html_view import embed_json
from mgit.lineage.render import (
    LogEntry,
    entries_from_graph,
    graph_log,
    to_dot,
    to_html,
    to_json,
)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def oid(c: str) -> str:
    return c * 64


def entry(
    c: str, *parents: tuple[str, str], model: str = "m", msg: str | None = None, **kw
) -> LogEntry:
    return LogEntry(
        oid(c),
        short=c * 12,
        parents=tuple((oid(p), r) for p, r in parents),
        model=model,
        message=msg if msg is not None else f"commit {c}",
        **kw,
    )


def graph_of(lines: list[str]) -> list[str]:
    """The graph part of each line (before the 12-character id)."""
    return [re.split(r"[0-9a-z]{12} ", line, maxsplit=1)[0].rstrip() for line in lines]


def add(g: nx.DiGraph, c: str, model: str, t: float, *parents: tuple[str, str], **attrs) -> str:
    g.add_node(
        oid(c),
        model=model,
        short=c * 12,
        message=attrs.pop("message", f"commit {c}"),
        author="ana",
        time=t,
        meta=attrs.pop("meta", {}),
        tags=attrs.pop("tags", []),
        heads=attrs.pop("heads", []),
        lossy=attrs.pop("lossy", False),
        logical_bytes=attrs.pop("logical_bytes", 1000),
    )
    for i, (p, rel) in enumerate(parents):
        g.add_edge(oid(p), oid(c), relation=rel, index=i)
    return oid(c)


def synthetic(n_commits: int, *, seed: int = 1, roots: int = 4) -> nx.DiGraph:
    """A random lineage DAG: several roots, version chains, derivations and merges."""
    rnd = random.Random(seed)
    g: nx.DiGraph = nx.DiGraph()
    models: dict[str, list[str]] = {}
    for k in range(n_commits):
        cid = hashlib.sha256(f"{seed}-{k}".encode()).hexdigest()
        existing = list(g.nodes)
        if k < roots or not existing:
            model, parents = f"root{k}", []
        else:
            roll = rnd.random()
            if roll < 0.35:
                model = rnd.choice(sorted(models))
                parents = [(models[model][-1], "version")]
            elif roll < 0.45 and len(models) > 2:
                model = f"merged{k}"
                picks = rnd.sample(sorted(models), rnd.choice([2, 2, 3]))
                parents = [(models[p][-1], "merge") for p in picks]
            else:
                model = f"derived{k}"
                parents = [
                    (
                        rnd.choice(existing),
                        rnd.choice(
                            ["finetune", "adapter", "distill", "prune", "quantize", "other"]
                        ),
                    )
                ]
        g.add_node(
            cid,
            model=model,
            short=cid[:12],
            message=f"commit {k}",
            author="bo",
            time=1_700_000_000 + k * 60.0,
            meta={"task": "t"},
            tags=[],
            heads=[],
            lossy=False,
            logical_bytes=10**6,
        )
        for i, (p, rel) in enumerate(parents):
            g.add_edge(p, cid, relation=rel, index=i)
        models.setdefault(model, []).append(cid)
    for model, cs in models.items():
        g.nodes[cs[-1]]["heads"] = [model]
    return g


def assert_connected_bars(lines: list[str]) -> None:
    """Every '|' touches a drawn character in the rows above and below (no dangling bars)."""
    rows = graph_of(lines)
    for r, row in enumerate(rows):
        for x, ch in enumerate(row):
            if ch != "|":
                continue
            for nb in (r - 1, r + 1):
                if 0 <= nb < len(rows):
                    near = rows[nb][max(0, x - 1) : x + 2]
                    assert near.strip(), f"dangling '|' at row {r} col {x}:\n" + "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# graph_log
# ---------------------------------------------------------------------------------------------


def test_graph_log_linear() -> None:
    lines = graph_log([entry("c", ("b", "version")), entry("b", ("a", "version")), entry("a")])
    assert lines == [
        "* cccccccccccc m commit c",
        "* bbbbbbbbbbbb m commit b",
        "* aaaaaaaaaaaa m commit a",
    ]


def test_graph_log_branch() -> None:
    lines = graph_log(
        [
            entry("d", ("b", "finetune"), model="x"),
            entry("c", ("b", "version")),
            entry("b", ("a", "version")),
            entry("a"),
        ]
    )
    assert lines == [
        "* dddddddddddd x [finetune of m@bbbbbbb] commit d",
        "| * cccccccccccc m commit c",
        "|/",
        "* bbbbbbbbbbbb m commit b",
        "* aaaaaaaaaaaa m commit a",
    ]


def test_graph_log_merge_of_two_parents() -> None:
    lines = graph_log(
        [
            entry("m", ("c", "merge"), ("d", "merge"), model="mm"),
            entry("d", ("b", "finetune"), model="x"),
            entry("c", ("b", "version")),
            entry("b", ("a", "version")),
            entry("a"),
        ]
    )
    assert lines == [
        "*   mmmmmmmmmmmm mm [merge of m@ccccccc, x@ddddddd] commit m",
        "|\\",
        "| * dddddddddddd x [finetune of m@bbbbbbb] commit d",
        "* | cccccccccccc m commit c",
        "|/",
        "* bbbbbbbbbbbb m commit b",
        "* aaaaaaaaaaaa m commit a",
    ]


def test_graph_log_several_roots() -> None:
    lines = graph_log(
        [
            entry("c", ("a", "merge"), ("b", "merge"), model="mm"),
            entry("a", model="A"),
            entry("b", model="B"),
            entry("z", model="Z", heads=("Z",), tags=("v1",)),
        ]
    )
    assert lines == [
        "*   cccccccccccc mm [merge of A@aaaaaaa, B@bbbbbbb] commit c",
        "|\\",
        "* | aaaaaaaaaaaa A commit a",
        " /",
        "* bbbbbbbbbbbb B commit b",
        "* zzzzzzzzzzzz (Z, tag: v1) Z commit z",
    ]


def test_graph_log_octopus_merge() -> None:
    lines = graph_log(
        [
            entry("m", ("a", "merge"), ("b", "merge"), ("c", "merge"), model="mm"),
            entry("a", model="A"),
            entry("b", model="B"),
            entry("c", model="C"),
        ]
    )
    assert lines[:3] == [
        "*-. mmmmmmmmmmmm mm [merge of A@aaaaaaa, B@bbbbbbb, C@ccccccc] commit m",
        "|\\ \\",
        "* | | aaaaaaaaaaaa A commit a",
    ]
    assert_connected_bars(lines)


def test_graph_log_far_join_uses_underscores() -> None:
    lines = graph_log(
        [
            entry("p", ("a", "finetune"), model="P"),
            entry("q", ("b", "finetune"), model="Q"),
            entry("r", ("c", "finetune"), model="R"),
            entry("s", ("a", "finetune"), model="S"),
            entry("a", model="A"),
            entry("b", model="B"),
            entry("c", model="C"),
        ]
    )
    assert graph_of(lines)[4] == "|_|_|/"
    assert graph_of(lines)[5] == "* | |"
    assert_connected_bars(lines)


def test_graph_log_relation_text_and_decorations() -> None:
    lines = graph_log(
        [
            entry("c", ("b", "version"), model="m", heads=("m",), tags=("best", "v2")),
            entry("b", ("a", "quantize"), model="m"),
            entry("a", model="m", msg="first line\n\nbody is not shown"),
        ]
    )
    assert lines[0] == "* cccccccccccc (m, tag: best, tag: v2) m commit c"
    assert lines[1] == "* bbbbbbbbbbbb m [quantize of m@aaaaaaa] commit b"
    assert lines[2] == "* aaaaaaaaaaaa m first line"


def test_graph_log_accepts_dicts_and_limit() -> None:
    commits = [
        {"oid": oid("c"), "parents": [(oid("b"), "version")], "model": "m", "message": "c"},
        {"oid": oid("b"), "parents": [oid("a")], "model": "m", "message": "b"},
        {"oid": oid("a"), "model": "m", "message": "a"},
    ]
    lines = graph_log(commits, limit=2)
    assert lines == ["* cccccccccccc m c", "* bbbbbbbbbbbb m b"]
    assert graph_log(commits, limit=0) == []


def test_graph_log_parent_outside_listing_gets_name_from_models() -> None:
    lines = graph_log([entry("b", ("a", "finetune"), model="x")], models={oid("a"): "base"})
    assert lines == ["* bbbbbbbbbbbb x [finetune of base@aaaaaaa] commit b"]


def test_graph_log_bad_order_does_not_leave_lines_open() -> None:
    # A parent listed before its child gets no line (it was already printed).
    lines = graph_log([entry("a"), entry("b", ("a", "version"))])
    assert lines == ["* aaaaaaaaaaaa m commit a", "* bbbbbbbbbbbb m commit b"]


def test_graph_log_verbose_shows_author_and_time() -> None:
    lines = graph_log([entry("a", author="ana", time=0.0)], verbose=True)
    assert lines == ["* aaaaaaaaaaaa m commit a <ana, 1970-01-01 00:00 UTC>"]


@pytest.mark.parametrize("order", ["topo", "date"])
@pytest.mark.parametrize("seed", range(6))
def test_entries_from_graph_is_topological(order: str, seed: int) -> None:
    g = synthetic(120, seed=seed)
    entries = entries_from_graph(g, order=order)
    pos = {e.oid: i for i, e in enumerate(entries)}
    assert len(entries) == g.number_of_nodes() == len(pos)
    for parent, child in g.edges:
        assert pos[child] < pos[parent]
    for e in entries:  # parents come in parent-index order
        indexes = [g.edges[p, e.oid]["index"] for p, _ in e.parents]
        assert indexes == sorted(indexes)
    lines = graph_log(entries)
    commit_lines = [ln for ln in lines if re.search(r"[0-9a-f]{12} ", ln)]
    assert len(commit_lines) == len(entries)
    for ln in graph_of(commit_lines):
        assert ln.count("*") == 1
    assert_connected_bars(lines)


def test_entries_from_graph_date_order_is_newest_first_for_tips() -> None:
    g = nx.DiGraph()
    add(g, "a", "m", 1)
    add(g, "b", "x", 3, ("a", "finetune"))
    add(g, "c", "y", 2, ("a", "finetune"))
    assert [e.oid for e in entries_from_graph(g, order="date")] == [oid("b"), oid("c"), oid("a")]
    with pytest.raises(ValueError):
        entries_from_graph(g, order="random")


def test_topo_order_keeps_subtrees_together() -> None:
    g = nx.DiGraph()
    add(g, "r", "root", 1)
    add(g, "a", "A", 2, ("r", "finetune"))
    add(g, "b", "B", 3, ("r", "finetune"))
    add(g, "c", "A", 4, ("a", "version"))
    add(g, "d", "B", 5, ("b", "version"))
    order = [e.oid[0] for e in entries_from_graph(g)]
    assert order == ["d", "b", "c", "a", "r"]  # B's subtree (newest) first, each contiguous


def test_graph_log_200_commits_is_fast() -> None:
    g = synthetic(200, seed=3)
    start = time.perf_counter()
    lines = graph_log(entries_from_graph(g))
    assert time.perf_counter() - start < 1.0
    assert len(lines) >= 200


# ---------------------------------------------------------------------------------------------
# DOT
# ---------------------------------------------------------------------------------------------


def tricky_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    add(
        g, "a", 'base "q" \\ x', 1, tags=["v1"], heads=['base "q" \\ x'], message='say "hi"\\\nnext'
    )
    add(
        g,
        "b",
        "ft<b>&",
        2,
        ("a", "finetune"),
        lossy=True,
        message="</script><script>alert(1)</script>",
    )
    add(g, "c", "ft<b>&", 3, ("b", "version"), meta={"desc": "<img src=x onerror=alert(2)>"})
    return g


def test_dot_escapes_and_styles() -> None:
    dot = to_dot(tricky_graph())
    assert dot.startswith('digraph "lineage" {')
    assert 'label="base \\"q\\" \\\\ x\\naaaaaaaaaaaa\\ntag: v1"' in dot
    assert 'tooltip="say \\"hi\\"\\\\"' in dot
    assert f'"{oid("a")}" -> "{oid("b")}" [label="finetune", style=solid];' in dot
    assert f'"{oid("b")}" -> "{oid("c")}" [label="version", style=dashed];' in dot
    # No raw newline or unescaped quote inside any quoted string.
    for line in dot.splitlines():
        assert len(re.findall(r'(?<!\\)"', line.replace("\\\\", ""))) % 2 == 0, line


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_dot_is_accepted_by_graphviz() -> None:
    proc = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(tricky_graph()), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "base &quot;q&quot; \\ x" in proc.stdout


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def test_json_shape_defaults_and_order() -> None:
    g = tricky_graph()
    g.add_node(oid("z"))  # no attributes at all
    g.add_edge(oid("c"), oid("z"))  # no relation, no index
    data = to_json(g)
    assert set(data) == {"nodes", "edges"}
    keys = {
        "id",
        "short",
        "model",
        "message",
        "author",
        "time",
        "meta",
        "tags",
        "heads",
        "lossy",
        "logical_bytes",
    }
    for n in data["nodes"]:
        assert set(n) == keys
    bare = next(n for n in data["nodes"] if n["id"] == oid("z"))
    assert bare == {
        "id": oid("z"),
        "short": "z" * 12,
        "model": "",
        "message": "",
        "author": "",
        "time": 0.0,
        "meta": {},
        "tags": [],
        "heads": [],
        "lossy": False,
        "logical_bytes": None,
    }
    assert [e for e in data["edges"] if e["target"] == oid("z")] == [
        {"source": oid("c"), "target": oid("z"), "relation": "other", "index": 0}
    ]
    assert json.dumps(data) == json.dumps(to_json(g.copy()))
    assert [n["time"] for n in data["nodes"]] == sorted(n["time"] for n in data["nodes"])


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


def embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="mgit-data">(.*?)</script>', page, re.DOTALL)
    assert m is not None
    return json.loads(m.group(1))


def test_html_is_self_contained() -> None:
    page = to_html(synthetic(60, seed=5))
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page, re.IGNORECASE)
    assert "<link" not in page and "@import" not in page and "url(" not in page.replace("url(#", "")
    assert page.count("<script") == 2  # the data block and the inline script
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert "default-src &#x27;none&#x27;" in csp or "default-src 'none'" in csp

    def h(s: str) -> str:
        return base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()

    assert h(JS) in csp and h(CSS) in csp
    assert f"<script>{JS}</script>" in page and f"<style>{CSS}</style>" in page


def test_html_escapes_script_injection() -> None:
    g = tricky_graph()
    page = to_html(g, title='<script>alert("t")</script>')
    assert "<script>alert" not in page
    assert "</script><script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in page
    # Exactly the two script blocks are closed: the data block cannot be broken out of.
    assert page.count("</script>") == 2
    data = embedded(page)
    messages = {n["id"]: n["message"] for n in data["nodes"]}
    assert messages[oid("b")] == "</script><script>alert(1)</script>"
    assert {n["id"]: n["meta"] for n in data["nodes"]}[oid("c")] == {
        "desc": "<img src=x onerror=alert(2)>"
    }
    assert data["title"] == '<script>alert("t")</script>'


def test_embed_json_round_trips_and_hides_markup() -> None:
    value = {"a": "</script><!-- & \u2028 >", "b": [1, 2.5, None, True]}
    text = embed_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_html_data_matches_graph() -> None:
    g = synthetic(80, seed=7)
    data = embedded(to_html(g))
    assert len(data["nodes"]) == g.number_of_nodes()
    assert len(data["edges"]) == g.number_of_edges()
    ids = [n["id"] for n in data["nodes"]]
    for e in data["edges"]:
        assert g.has_edge(ids[e["s"]], ids[e["t"]])
        assert e["relation"] == g.edges[ids[e["s"]], ids[e["t"]]]["relation"]
        assert e["index"] == g.edges[ids[e["s"]], ids[e["t"]]].get("index", 0)
    # The page lays the graph out itself: the data carries no coordinates, and fields left at
    # their defaults are omitted (the page fills them back in).
    full = {n["id"]: n for n in to_json(g)["nodes"]}
    for n in data["nodes"]:
        assert "x" not in n and "path" not in n
        assert {k: v for k, v in full[n["id"]].items() if k in n} == n
        assert all(not v or k == "short" for k, v in full[n["id"]].items() if k not in n)


def test_html_200_commits_is_fast() -> None:
    g = synthetic(200, seed=11)
    start = time.perf_counter()
    page = to_html(g)
    assert time.perf_counter() - start < 1.0
    assert len(embedded(page)["nodes"]) == 200


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------


def test_empty_and_single_node_graphs() -> None:
    g: nx.DiGraph[str] = nx.DiGraph()
    assert graph_log(entries_from_graph(g)) == []
    assert to_json(g) == {"nodes": [], "edges": []}
    assert embedded(to_html(g))["nodes"] == []
    assert to_dot(g).endswith("}\n")
    g.add_node(oid("c"), model="solo", time=5)
    assert graph_log(entries_from_graph(g)) == ["* cccccccccccc solo"]
    assert len(embedded(to_html(g))["nodes"]) == 1


def test_a_cycle_does_not_crash_the_views() -> None:
    # A lineage graph is a DAG; a broken one must still render rather than hang or raise.
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_edge(oid("a"), oid("b"), relation="finetune", index=0)
    g.add_edge(oid("b"), oid("a"), relation="version", index=0)
    for order in ("topo", "date"):
        assert len(graph_log(entries_from_graph(g, order=order))) == 2
    assert len(embedded(to_html(g))["edges"]) == 2
    assert to_dot(g).count("->") == 2
