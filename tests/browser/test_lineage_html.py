"""Open the lineage HTML page in a real headless Chromium and use it.

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` Python package (its own
browser download is not used). Outside CI the tests are skipped when either is missing; with
``CI=true`` they fail instead, because the set-up script is meant to install both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from mgit.lineage.render import to_html

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
IN_CI = os.environ.get("CI", "").strip().lower() == "true"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

EVIL_MESSAGE = '<img src=x onerror="window.__pwned=1">\n</script><script>window.__pwned=2</script>'


def require(ok: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a browser prerequisite is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{reason}; CI=true, so the test set-up must provide it")
    pytest.skip(reason)


def oid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def lineage_50() -> nx.DiGraph[str]:
    """A 50-commit lineage: 3 roots, version chains, derivations, three merges, one hostile node."""
    g: nx.DiGraph[str] = nx.DiGraph()
    clock = [T0]

    def commit(
        name: str, model: str, parents: list[tuple[str, str]], message: str, **attrs: Any
    ) -> str:
        cid = oid(name)
        g.add_node(
            cid,
            model=model,
            short=cid[:12],
            message=message,
            author=attrs.get("author", "ana@lab.example"),
            time=clock[0],
            meta=attrs.get("meta", {"task": "classification", "dataset": name}),
            tags=attrs.get("tags", []),
            heads=[],
            lossy=attrs.get("lossy", False),
            logical_bytes=attrs.get("logical_bytes", 1_288_490_189),
        )
        clock[0] += 3600
        for index, (parent, relation) in enumerate(parents):
            g.add_edge(oid(parent), cid, relation=relation, index=index)
        return cid

    def line(model: str, first: str, parents: list[tuple[str, str]], versions: int) -> str:
        commit(first, model, parents, f"create {model}")
        last = first
        for v in range(2, versions + 1):
            name = f"{model}-v{v}"
            commit(name, model, [(last, "version")], f"{model}: training round {v}")
            last = name
        return last

    bert = line("bert-base", "bert-base-v1", [], 5)
    llama = line("llama-7b", "llama-7b-v1", [], 4)
    vit = line("vit-b16", "vit-b16-v1", [], 2)
    sst2 = line("bert-sst2", "bert-sst2-v1", [("bert-base-v2", "finetune")], 3)
    mnli = line("bert-mnli", "bert-mnli-v1", [(bert, "finetune")], 3)
    line("bert-ner", "bert-ner-v1", [("bert-base-v3", "finetune")], 2)
    line("bert-tiny", "bert-tiny-v1", [(bert, "distill")], 2)
    line("bert-sst2-int8", "bert-sst2-int8-v1", [(sst2, "quantize")], 1)
    chat = line("llama-chat", "llama-chat-v1", [(llama, "finetune")], 3)
    code = line("llama-code", "llama-code-v1", [("llama-7b-v2", "finetune")], 3)
    line("llama-med", "llama-med-v1", [("llama-7b-v3", "finetune")], 2)
    line("llama-chat-lora", "llama-chat-lora-v1", [(chat, "adapter")], 3)
    line("llama-pruned", "llama-pruned-v1", [(llama, "prune")], 2)
    line("llama-merged", "llama-merged-v1", [(chat, "merge"), (code, "merge")], 2)
    line("bert-glue", "bert-glue-v1", [(sst2, "merge"), (mnli, "merge")], 1)
    line("vit-food", "vit-food-v1", [(vit, "finetune")], 2)
    line("vit-food-4bit", "vit-food-4bit-v1", [("vit-food-v2", "quantize")], 1)
    line(
        "soup",
        "soup-v1",
        [("vit-food-v2", "merge"), ("bert-glue-v1", "merge"), ("llama-merged-v2", "merge")],
        1,
    )
    line("vit-other", "vit-other-v1", [(vit, "other")], 2)
    # A hostile commit: markup in the model name, the message and the metadata.
    commit(
        "evil",
        "evil<b>model",
        [("bert-tiny-v2", "finetune")],
        EVIL_MESSAGE,
        meta={"note": "</script><script>window.__pwned=3</script>", "<k>": "<v>"},
        lossy=True,
    )
    line("bert-tiny-onnx", "bert-tiny-onnx-v1", [("bert-tiny-v2", "other")], 2)
    line("llama-chat-ja", "llama-chat-ja-v1", [(chat, "finetune")], 2)
    commit(
        "llama-chat-ja-v3",
        "llama-chat-ja",
        [("llama-chat-ja-v2", "version")],
        "japanese chat, more data",
        tags=["release-1"],
    )
    latest: dict[str, tuple[float, str]] = {}
    for n, d in g.nodes(data=True):
        latest[d["model"]] = max(latest.get(d["model"], (0.0, "")), (d["time"], n))
    for model, (_, n) in latest.items():
        g.nodes[n]["heads"] = [model]
    assert all("model" in d for _, d in g.nodes(data=True))  # every parent exists
    assert g.number_of_nodes() == 50, g.number_of_nodes()
    return g


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph[str]:
    return lineage_50()


@pytest.fixture(scope="module")
def html_file(graph: nx.DiGraph[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lineage") / "lineage.html"
    path.write_text(to_html(graph, title="test lineage"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(CHROMIUM.exists(), f"{CHROMIUM} is absent (install it with: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed (pip install playwright)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A loaded lineage page plus what it logged."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []


@pytest.fixture
def lineage_page(browser: Any, html_file: Path) -> Iterator[Page]:
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
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    try:
        yield wrapped
    finally:
        context.close()


def node(page: Any, name: str) -> Any:
    return page.locator(f'g.node[data-id="{oid(name)}"]')


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_page_draws_graph_offline_and_screenshot(
    lineage_page: Page, graph: nx.DiGraph[str], tmp_path: Path
) -> None:
    page = lineage_page.page
    assert page.locator("g.node").count() == graph.number_of_nodes()
    assert page.locator("path.edge").count() == graph.number_of_edges()
    assert page.locator("path.edge.version").count() == sum(
        1 for *_, d in graph.edges(data=True) if d["relation"] == "version"
    )
    assert page.locator("rect.lane").count() == len({d["model"] for _, d in graph.nodes(data=True)})
    legend = page.inner_text("#legend")
    for word in ("version", "finetune", "adapter", "distill", "prune", "quantize", "merge"):
        assert word in legend
    assert page.title() == "test lineage"

    # No node overlaps another (checked on the drawn boxes, in page coordinates).
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('g.node rect.box')).map(r => {
             const b = r.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; })"""
    )
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)

    shot = tmp_path / "lineage.png"
    page.screenshot(path=str(shot))
    assert png_size(shot) == (VIEWPORT["width"], VIEWPORT["height"])
    assert shot.stat().st_size > 30_000  # a drawn graph, not a blank page
    page.click("#fit")
    overview = tmp_path / "lineage-fit.png"
    page.screenshot(path=str(overview))
    assert overview.stat().st_size > 30_000

    assert page.evaluate("() => window.__pwned") is None
    assert lineage_page.errors == []
    assert all(u.startswith(("file:", "data:", "about:")) for u in lineage_page.requests), (
        lineage_page.requests
    )


def test_click_node_shows_metadata(lineage_page: Page, graph: nx.DiGraph[str]) -> None:
    page = lineage_page.page
    page.click("#fit")
    target = node(page, "bert-sst2-v1")
    target.click()
    details = page.locator("#details")
    assert details.is_visible()
    text = details.inner_text()
    cid = oid("bert-sst2-v1")
    assert "bert-sst2" in text
    assert cid in text
    assert "create bert-sst2" in text
    assert "ana@lab.example" in text
    when = T0 + 3600 * list(graph.nodes).index(cid)
    stamp = dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert stamp in text
    assert f"finetune of bert-base@{oid('bert-base-v2')[:7]}" in text
    assert "1.2 GiB" in text
    assert "classification" in text and "dataset" in text
    assert "bert-sst2@" in text  # children listed
    assert "selected" in (target.get_attribute("class") or "")
    # Its lineage is highlighted, an unrelated model is not.
    assert "lin" in (node(page, "bert-base-v1").get_attribute("class") or "").split()
    assert "lin" not in (node(page, "vit-b16-v1").get_attribute("class") or "").split()

    # A parent link in the panel moves the selection to the parent.
    page.locator("#details button.link", has_text="bert-base@").first.click()
    assert oid("bert-base-v2") in page.inner_text("#details")

    # Clicking the empty background clears the selection.
    page.mouse.click(5, VIEWPORT["height"] - 5)
    assert page.locator("#details").is_hidden()
    assert lineage_page.errors == []


def test_hostile_strings_are_shown_as_text(lineage_page: Page) -> None:
    page = lineage_page.page
    page.click("#fit")
    node(page, "evil").click()
    text = page.inner_text("#details")
    assert "evil<b>model" in text
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert "</script><script>window.__pwned=3</script>" in text
    assert page.locator("#details img, #details script, #details b").count() == 0
    assert page.locator("svg img, svg script").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert lineage_page.errors == []


def test_search_highlights_matches(lineage_page: Page, graph: nx.DiGraph[str]) -> None:
    page = lineage_page.page
    page.fill("#search", "llama-chat")
    expected = {n for n, d in graph.nodes(data=True) if "llama-chat" in d["model"]}
    matched = set(
        page.evaluate(
            "() => Array.from(document.querySelectorAll('g.node.match')).map(g => g.dataset.id)"
        )
    )
    assert matched == expected
    models = {graph.nodes[n]["model"] for n in expected}
    assert page.inner_text("#count") == f"{len(models)} models, {len(expected)} versions"
    opacity = page.evaluate(
        """(ids) => Array.from(document.querySelectorAll('g.node')).map(g =>
             [ids.includes(g.dataset.id), parseFloat(getComputedStyle(g).opacity)])""",
        sorted(expected),
    )
    assert all(o == 1.0 for hit, o in opacity if hit)
    assert all(o < 0.5 for hit, o in opacity if not hit)

    # Enter selects (and centres on) the first match.
    page.press("#search", "Enter")
    assert page.inner_text("#details h2").startswith("llama-chat")
    page.press("#search", "Escape")
    assert page.locator("g.node.match").count() == 0
    assert page.inner_text("#count") == ""
    page.fill("#search", "no-such-model")
    assert page.inner_text("#count") == "no match"
    assert lineage_page.errors == []


def test_pan_zoom_and_tooltip(lineage_page: Page) -> None:
    page = lineage_page.page

    def view() -> tuple[float, float, float]:
        t = page.get_attribute("#viewport", "transform") or ""
        x, y, k = re.findall(r"-?[0-9.]+", t)
        return float(x), float(y), float(k)

    x0, y0, k0 = view()
    page.mouse.move(500, 400)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "(k) => !document.getElementById('viewport').getAttribute('transform')"
        ".endsWith('scale(' + k + ')')",
        arg=f"{k0:.4f}",
    )
    assert view()[2] > k0
    k1 = view()[2]
    page.mouse.move(600, 500)
    page.mouse.down()
    page.mouse.move(450, 380, steps=6)
    page.mouse.up()
    x2, y2, k2 = view()
    assert k2 == k1 and (x2, y2) != (x0, y0)
    page.click("#zoom-out")
    assert view()[2] < k2

    page.click("#fit")
    target = node(page, "soup-v1")
    target.hover()
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    assert f"soup@{oid('soup-v1')[:7]}" in tip.inner_text()
    assert "merge of" in tip.inner_text()
    page.mouse.move(3, 3)
    tip.wait_for(state="hidden")
    assert lineage_page.errors == []
