"""The lineage page at 2,000 model lines in headless Chromium: collapse, expand, search, focus.

The page must stay usable at this size: it opens with every model line collapsed to one node,
draws only what is in view (SVG elements up close, a canvas for the overview), and sets
``window.__drawn`` and the performance mark ``mgit-lineage-drawn`` once its first draw is
painted. Wall-clock limits are the benchmark's (``benchmarks/bench_lineage_html.py``), not
asserted here.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from mgit.lineage.render import to_html
from tests.browser.test_lineage_html import VIEWPORT, Page, browser  # noqa: F401

pytestmark = pytest.mark.browser

T0 = 1_700_000_000.0
MODELS = 2000
NEEDLE = "model-1500"  # three versions; the first carries the metadata searched for
DOM_CAP = 900  # the most nodes the page keeps as SVG elements (the rest: canvas)


def oid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def lineage_2000() -> nx.DiGraph[str]:
    """2,000 model lines: 5 roots, derivations of recent lines, 5% merges, 1-3 versions each."""
    rnd = random.Random(3)
    g: nx.DiGraph[str] = nx.DiGraph()
    latest: list[str] = []
    clock = T0
    relations = ["finetune", "finetune", "adapter", "distill", "prune", "quantize", "other"]
    for m in range(MODELS):
        model = f"base-{m}" if m < 5 else f"model-{m:04d}"
        if m < 5:
            parents: list[tuple[str, str]] = []
        elif rnd.random() < 0.05:
            picked = rnd.sample(range(max(0, m - 200), m), 2)
            parents = [(latest[p], "merge") for p in picked]
        else:
            parents = [(latest[rnd.randrange(max(0, m - 300), m)], rnd.choice(relations))]
        versions = 3 if model == NEEDLE else rnd.choice([1, 1, 1, 2, 3])
        prev = None
        for v in range(versions):
            cid = oid(f"{model}-v{v + 1}")
            meta = {"task": rnd.choice(["sst2", "mnli", "squad"]), "dataset": f"d{m % 37}"}
            if model == NEEDLE and v == 0:
                meta["dataset"] = "needle-corpus"
            clock += 60
            g.add_node(
                cid,
                model=model,
                short=cid[:12],
                message=f"{model} v{v + 1}",
                author="ana@lab.example",
                time=clock,
                meta=meta,
                tags=[],
                heads=[],
                lossy=False,
                logical_bytes=1000,
            )
            links = parents if prev is None else [(prev, "version")]
            for index, (parent, relation) in enumerate(links):
                g.add_edge(parent, cid, relation=relation, index=index)
            prev = cid
        g.nodes[prev]["heads"] = [model]
        latest.append(prev)
    return g


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph[str]:
    return lineage_2000()


@pytest.fixture(scope="module")
def html_file(graph: nx.DiGraph[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lineage-scale") / "lineage.html"
    path.write_text(to_html(graph, title="2000 models"), encoding="utf-8")
    return path


@pytest.fixture
def big_page(browser: Any, html_file: Path) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    wrapped = Page(page)
    page.on("pageerror", lambda exc: wrapped.errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: wrapped.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.on("request", lambda req: wrapped.requests.append(req.url))
    page.goto(html_file.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    try:
        yield wrapped
    finally:
        context.close()


def state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.__lineage.state()")


def versions_of(graph: nx.DiGraph[str], model: str) -> set[str]:
    return {n for n, d in graph.nodes(data=True) if d["model"] == model}


def drawn_ids(page: Any) -> set[str]:
    return set(
        page.evaluate(
            "() => Array.from(document.querySelectorAll('g.node')).map(g => g.dataset.id)"
        )
    )


def test_opens_collapsed_and_marks_its_first_draw(
    big_page: Page, graph: nx.DiGraph[str], html_file: Path
) -> None:
    page = big_page.page
    drawn = page.evaluate("() => window.__drawn")
    assert isinstance(drawn, (int, float)) and drawn > 0
    marks = page.evaluate(
        "() => performance.getEntriesByName('mgit-lineage-drawn').map(m => m.startTime)"
    )
    assert len(marks) == 1 and marks[0] <= drawn
    s = state(page)
    assert s["lines"] == MODELS and s["expanded"] == 0 and not s["focused"]
    assert s["shownVersions"] == graph.number_of_nodes()
    # One node per model line, only those in view: no version nodes, far fewer than 2,000 lines.
    assert page.locator("g.node").count() == 0
    lines = page.locator("g.line").count()
    assert 0 < lines <= DOM_CAP and lines < MODELS
    first = page.locator("g.line").first
    model = first.get_attribute("data-model")
    assert first.get_attribute("data-versions") == str(len(versions_of(graph, model)))
    head = next(n for n in versions_of(graph, model) if graph.nodes[n]["heads"])
    assert first.get_attribute("data-latest") == head  # a collapsed line shows its latest version
    assert f"{len(versions_of(graph, model))} version" in (first.text_content() or "")
    assert "2000 models" in page.inner_text("#stats")
    # The page stays small: no coordinates or edge routes travel in it.
    assert html_file.stat().st_size < 400 * graph.number_of_nodes()
    assert big_page.errors == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in big_page.requests)


def test_click_expands_a_line_and_its_title_collapses_it(
    big_page: Page, graph: nx.DiGraph[str]
) -> None:
    page = big_page.page
    line = page.locator("g.line[data-versions='3']").first
    model = line.get_attribute("data-model")
    line.click()
    assert drawn_ids(page) >= versions_of(graph, model)
    assert page.locator(f'g.lane-head[data-model="{model}"]').count() == 1
    assert page.locator(f'g.line[data-model="{model}"]').count() == 0
    assert page.locator("rect.lane").count() == 1
    assert page.locator("path.edge.version").count() == 2  # v1 -> v2 -> v3, dashed
    assert state(page)["expanded"] == 1
    # A version of the expanded line is selected on click; its lineage is highlighted.
    v2 = oid(f"{model}-v2")
    page.locator(f'g.node[data-id="{v2}"]').click()
    assert "selected" in (page.locator(f'g.node[data-id="{v2}"]').get_attribute("class") or "")
    assert v2 in page.inner_text("#details")
    assert page.locator(f'g.node[data-id="{oid(f"{model}-v1")}"].lin').count() == 1
    page.locator(f'g.lane-head[data-model="{model}"]').click()
    assert page.locator(f'g.line[data-model="{model}"]').count() == 1
    assert page.locator("g.node").count() == 0
    assert state(page)["expanded"] == 0
    # Expand all / Collapse all.
    page.click("#expand-all")
    assert state(page)["expanded"] == MODELS
    assert 0 < page.locator("g.node").count() <= DOM_CAP
    page.click("#collapse-all")
    assert state(page)["expanded"] == 0 and page.locator("g.node").count() == 0
    assert big_page.errors == []


def test_search_by_metadata_and_name_highlights_and_focuses(
    big_page: Page, graph: nx.DiGraph[str]
) -> None:
    page = big_page.page
    page.fill("#search", "needle")
    assert page.inner_text("#count") == "1 model, 1 version"
    page.fill("#search", "dataset=needle-corpus")
    assert page.inner_text("#count") == "1 model, 1 version"
    target = oid(f"{NEEDLE}-v1")
    # Enter expands the line, selects the match and centres on it.
    page.press("#search", "Enter")
    node = page.locator(f'g.node[data-id="{target}"]')
    assert node.count() == 1
    classes = (node.get_attribute("class") or "").split()
    assert "match" in classes and "selected" in classes
    assert page.inner_text("#details h2") == NEEDLE
    assert "needle-corpus" in page.inner_text("#details")
    x, y = page.evaluate("(id) => window.__lineage.screenOf(id)", target)
    box = page.locator("#graph").bounding_box()
    assert abs(x - box["width"] / 2) < 5 and abs(y - box["height"] / 2) < 5
    opacity = float(
        page.evaluate(
            "() => getComputedStyle(document.querySelector('g.line:not(.match)')).opacity"
        )
    )
    assert opacity < 0.5  # the rest is dimmed

    # By model name: every version of the matching lines counts, and matching lines are marked.
    page.fill("#search", "model-19")
    expected = {n for n, d in graph.nodes(data=True) if "model-19" in d["model"]}
    models = {graph.nodes[n]["model"] for n in expected}
    assert page.inner_text("#count") == f"{len(models)} models, {len(expected)} versions"
    for m in page.evaluate(
        "() => Array.from(document.querySelectorAll('g.line.match')).map(g => g.dataset.model)"
    ):
        assert m in models
    page.press("#search", "Escape")
    assert page.inner_text("#count") == "" and page.locator(".match").count() == 0
    page.fill("#search", "no-such-model")
    assert page.inner_text("#count") == "no match"
    assert big_page.errors == []


def test_focus_draws_only_the_lineage(big_page: Page, graph: nx.DiGraph[str]) -> None:
    page = big_page.page
    assert page.locator("#focus").is_disabled()
    page.fill("#search", "dataset=needle-corpus")
    page.press("#search", "Enter")
    target = oid(f"{NEEDLE}-v1")
    lineage = nx.ancestors(graph, target) | nx.descendants(graph, target) | {target}
    page.click("#focus")
    s = state(page)
    assert s["focused"] and s["shownVersions"] == len(lineage)
    assert s["shownLines"] == len({graph.nodes[n]["model"] for n in lineage})
    assert page.locator("#unfocus").is_visible()
    assert f"{len(lineage)} versions" in page.inner_text("#focus-info")
    # A small lineage is drawn version by version, and nothing else is.
    assert drawn_ids(page) == lineage
    assert page.locator("g.line").count() == 0
    edges = page.evaluate(
        "() => Array.from(document.querySelectorAll('path.edge')).map(p => +p.dataset.edge)"
    )
    assert len(edges) == graph.subgraph(lineage).number_of_edges()
    page.click("#unfocus")
    s = state(page)
    assert not s["focused"] and s["shownVersions"] == graph.number_of_nodes()
    assert page.locator("#unfocus").is_hidden()
    assert big_page.errors == []


def test_overview_is_drawn_on_a_canvas_and_clicks_hit_it(
    big_page: Page, graph: nx.DiGraph[str]
) -> None:
    page = big_page.page
    page.click("#fit")
    last = page.evaluate("() => window.__lastRender")
    assert last["mode"] == "canvas" and last["cards"] == MODELS
    assert page.locator("g.line").count() == 0  # nothing left in the SVG
    inked = page.evaluate(
        """() => { const c = document.getElementById('overview');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert inked > 10_000
    # A click on a line in the overview expands it (hit test on the layout, not on elements).
    model = f"model-{MODELS - 1:04d}"
    head = next(n for n in versions_of(graph, model) if graph.nodes[n]["heads"])
    x, y = page.evaluate("(id) => window.__lineage.screenOf(id)", head)
    box = page.locator("#graph").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    assert state(page)["expanded"] == 1
    assert big_page.errors == []


def test_small_pages_open_expanded_and_collapse_can_be_forced(graph: nx.DiGraph[str]) -> None:
    def data(page: str) -> dict[str, Any]:
        m = re.search(
            r'<script type="application/json" id="mgit-data">(.*?)</script>', page, re.DOTALL
        )
        assert m is not None
        return json.loads(m.group(1))

    assert data(to_html(graph))["collapsed"] is True
    assert data(to_html(graph, collapse=False))["collapsed"] is False
    small = graph.subgraph(list(graph.nodes)[:100]).copy()
    assert data(to_html(small))["collapsed"] is False
    assert data(to_html(small, collapse=True))["collapsed"] is True


def test_cli_collapse_and_expand_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    browser: Any,  # noqa: F811
) -> None:
    from tests.helpers import model_tensors, run_main, write_model_folder

    root = tmp_path / "repo"
    assert run_main(capsys, None, "init", str(root), "--model", "base")[0] == 0
    t = model_tensors("F32", seed=1, hidden=8, layers=1)
    for name, model, extra in (
        ("base", "base", []),
        ("base2", "base", []),
        ("ft", "ft", ["--parent", "base", "--relation", "finetune"]),
    ):
        write_model_folder(tmp_path / name, t, config={"n": name})
        code, _, err = run_main(
            capsys, root, "import", str(tmp_path / name), "--model", model, "-m", name, *extra
        )
        assert code == 0, err

    def page_for(*opts: str) -> Path:
        out = tmp_path / f"l{'-'.join(opts)}.html"
        code, _, err = run_main(capsys, root, "lineage", "--html", str(out), *opts)
        assert code == 0, err
        return out

    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        for opts, lines, versions in (((), 0, 3), (("--expand",), 0, 3), (("--collapse",), 2, 0)):
            page.goto(page_for(*opts).as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            assert page.locator("g.line").count() == lines, opts
            assert page.locator("g.node").count() == versions, opts
        page.locator('g.line[data-model="base"]').click()  # --collapse: a click expands
        assert page.locator("g.node").count() == 2
    finally:
        context.close()


def test_empty_single_and_cyclic_graphs_draw_without_errors(
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    empty: nx.DiGraph[str] = nx.DiGraph()
    single: nx.DiGraph[str] = nx.DiGraph()
    single.add_node(oid("solo"), model="solo", time=T0)
    cyclic: nx.DiGraph[str] = nx.DiGraph()  # a broken lineage must still draw
    cyclic.add_node(oid("a"), model="a", time=T0)
    cyclic.add_node(oid("b"), model="b", time=T0 + 1)
    cyclic.add_edge(oid("a"), oid("b"), relation="finetune", index=0)
    cyclic.add_edge(oid("b"), oid("a"), relation="merge", index=0)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for g, versions, edges in ((empty, 0, 0), (single, 1, 0), (cyclic, 2, 2)):
            path = tmp_path / f"g{versions}.html"
            path.write_text(to_html(g), encoding="utf-8")
            page.goto(path.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            assert page.locator("g.node").count() == versions
            assert page.locator("path.edge").count() == edges
            page.click("#fit")
            page.click("#collapse-all")
            assert page.locator("g.line").count() == versions
        assert errors == []
    finally:
        context.close()
