"""The lineage HTML page at scale: page size, ``mgit lineage --html`` time, draw time in Chromium.

For each repository given (``--repo``, e.g. the 1,000- and 10,000-model repositories that
``benchmarks/bench_lineage_scale.py --keep /tmp/lscale`` builds), and for the current code
(``new``) and optionally an older copy of the package (``old``, ``--old-src DIR``: a folder
holding an ``mgit`` package, e.g. ``git archive HEAD mgit | tar -x -C DIR`` plus the built
``mgit/*.so``), measures:

- ``mgit lineage --html FILE``: wall time of the subprocess (median of ``--repeat``), interpreter
  start-up included;
- the page's size;
- the time to the first complete draw in headless Chromium (Debian's ``/usr/bin/chromium`` driven
  by playwright, a 1400x900 viewport): ``performance.now()`` (milliseconds since navigation
  started) when the new page sets ``window.__drawn`` (after its first draw has been painted),
  or, for a page without that flag, when two animation frames have passed after it set
  ``body[data-ready]`` (its first draw painted); and the wall time from ``goto`` to that moment.

On the new page it also times, from the action to its result painted (two animation frames
later): Fit (the whole graph in view, on the canvas), Expand all, Fit again (every version in
view), Collapse all, a search (``merge-9``), Enter on its first match, Focus on that version's
lineage, and Show all.

``--max-draw-s S`` (default 2) and ``--max-page-mb M`` (default 5) make the run exit 1 when a new
page at the largest size takes longer to draw or is bigger.

Run: ``.venv/bin/python benchmarks/bench_lineage_html.py --repo /tmp/lscale/m1000/repo
--repo /tmp/lscale/m10000/repo [--old-src /tmp/mgit-old] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

__all__ = ["main"]


def write_page(repo: Path, out: Path, src: Path | None, repeat: int) -> float:
    """Run ``mgit lineage --html`` ``repeat`` times; the median wall seconds."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mgit", "-C", str(repo), "lineage", "--html", str(out)],
            check=True,
            env=env,
            cwd=tempfile.gettempdir(),
            stdout=subprocess.DEVNULL,
        )
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


_PAINTED = """() => new Promise(ok => requestAnimationFrame(() => requestAnimationFrame(
    () => ok(performance.now()))))"""


# Each action runs synchronously in the page (layout and draw included); the time is taken when
# the result has been painted (two animation frames later, so it includes up to ~2 frames).
_CLICK = """(id) => new Promise(ok => { const t = performance.now();
    document.getElementById(id).click();
    requestAnimationFrame(() => requestAnimationFrame(() => ok(performance.now() - t))); })"""
_LAST = """() => { const r = window.__lastRender;
    return { mode: r.mode, cards: r.cards, versions: r.versions, edges: r.edges, js_ms: r.ms }; }"""
_TYPE = """(q) => new Promise(ok => { const s = document.getElementById('search');
    const t = performance.now(); s.value = q; s.dispatchEvent(new Event('input'));
    requestAnimationFrame(() => requestAnimationFrame(() => ok(performance.now() - t))); })"""


def draw(browser: Any, page_file: Path, timeout_s: float) -> dict[str, Any]:
    """Open the page; when its first draw is painted, and what the new page's views cost."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        start = time.perf_counter()
        page.goto(page_file.as_uri(), wait_until="commit", timeout=timeout_s * 1000)
        page.wait_for_selector("body[data-ready='1']", timeout=timeout_s * 1000)
        drawn = page.evaluate("() => window.__drawn")
        if drawn is None:  # an older page: wait until its draw has been painted
            drawn = page.evaluate(_PAINTED)
        out: dict[str, Any] = {"draw_ms": drawn, "wall_s": time.perf_counter() - start}
        if page.evaluate("() => window.__lineage !== undefined"):
            out["first"] = page.evaluate("() => window.__lastRender")
            out["fit"] = {"ms": page.evaluate(_CLICK, "fit"), **page.evaluate(_LAST)}
            out["expand_all"] = {"ms": page.evaluate(_CLICK, "expand-all"), **page.evaluate(_LAST)}
            out["fit_expanded"] = {"ms": page.evaluate(_CLICK, "fit"), **page.evaluate(_LAST)}
            out["collapse_all"] = {"ms": page.evaluate(_CLICK, "collapse-all")}
            out["search"] = {
                "ms": page.evaluate(_TYPE, "merge-9"),
                "count": page.inner_text("#count"),
            }
            page.press("#search", "Enter")
            out["focus"] = {
                "ms": page.evaluate(_CLICK, "focus"),
                **page.evaluate("() => window.__lineage.state()"),
            }
            out["unfocus"] = {"ms": page.evaluate(_CLICK, "unfocus")}
        out["errors"] = errors
        return out
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    """Measure; print one line per (repository, variant); exit 1 when a limit is not met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, action="append", required=True)
    parser.add_argument("--old-src", type=Path, help="folder holding the old mgit package")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lineage-html")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--max-draw-s", type=float, default=2.0)
    parser.add_argument("--max-page-mb", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    variants: list[tuple[str, Path | None]] = [("new", ROOT)]
    if args.old_src is not None:
        variants.insert(0, ("old", args.old_src))
    results: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for repo in args.repo:
                for name, src in variants:
                    page_file = args.out / f"{repo.parent.name}-{name}.html"
                    seconds = write_page(repo, page_file, src, args.repeat)
                    r = {
                        "repo": str(repo),
                        "variant": name,
                        "html_s": seconds,
                        "page_mb": page_file.stat().st_size / 1e6,
                        **draw(browser, page_file, args.timeout_s),
                    }
                    results.append(r)
                    print(
                        f"{repo.parent.name:>8} {name}: lineage --html {seconds:.2f} s, "
                        f"page {r['page_mb']:.2f} MB, first draw {r['draw_ms'] / 1000:.2f} s "
                        f"(wall {r['wall_s']:.2f} s)",
                        flush=True,
                    )
                    for key in (
                        "first",
                        "fit",
                        "expand_all",
                        "fit_expanded",
                        "collapse_all",
                        "search",
                        "focus",
                        "unfocus",
                    ):
                        if key in r:
                            print(f"{'':>10}{key}: {json.dumps(r[key])}", flush=True)
        finally:
            browser.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    largest = [r for r in results if r["variant"] == "new" and r["repo"] == str(args.repo[-1])]
    failed = [
        r
        for r in largest
        if r["draw_ms"] / 1000 > args.max_draw_s or r["page_mb"] > args.max_page_mb or r["errors"]
    ]
    for r in failed:
        print(
            f"LIMIT NOT MET: {r['repo']}: {r['draw_ms'] / 1000:.2f} s, {r['page_mb']:.2f} MB, "
            f"errors {r['errors']}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
