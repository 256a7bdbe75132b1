"""``mgit test add/list/rm/run/results``, the marks of ``log`` and ``show``, ``find --failing``
and ``lineage --color-by``, through the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import model_tensors, run_main, write_model_folder

PY = sys.executable
# Prints the "acc" of the exported config.json as the metrics line.
CMD = (f"{PY} -c \"import json, sys; print(json.dumps({{'accuracy': "
       f"json.load(open(sys.argv[1] + '/config.json'))['acc']}}))\" {{model_dir}}")


@pytest.fixture
def root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """base (acc 0.9) -> good (finetune, 0.95) -> bad (its next version, 0.5)."""
    r = tmp_path / "repo"
    assert run_main(capsys, None, "init", str(r), "--model", "base")[0] == 0
    t = model_tensors("F32", seed=1, hidden=8, layers=1)
    for name, model, acc, extra in (
        ("base", "base", 0.9, []),
        ("good", "ft", 0.95, ["--parent", "base", "--relation", "finetune"]),
        ("bad", "ft", 0.5, []),
    ):
        write_model_folder(tmp_path / name, t, config={"acc": acc})
        code, _, err = run_main(capsys, r, "import", str(tmp_path / name), "--model", model, "-m", name, *extra)
        assert code == 0, err
    return r


def ok(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    code, out, err = run_main(capsys, root, *args)
    assert code == 0, err
    return out


def test_add_list_rm(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, root, "test", "add", "acc", "--cmd", CMD, "--pass", "accuracy>=0.8",
             "--max-drop", "accuracy=0.1", "--for", "ft", "--timeout", "30")
    assert re.match(r"test acc added \(spec [0-9a-f]{12}\): versions of ft", out)
    out = ok(capsys, root, "test", "list")
    assert "acc" in out and "versions of ft" in out and "accuracy>=0.8, max-drop accuracy=0.1" in out
    specs = json.loads(ok(capsys, root, "--json", "test", "list"))
    assert [s["name"] for s in specs] == ["acc"] and specs[0]["scope"] == {"kind": "model", "value": "ft"}
    assert specs[0]["timeout"] == 30.0 and len(specs[0]["id"]) == 64
    out = ok(capsys, root, "test", "add", "acc", "--cmd", CMD, "--pass", "accuracy>=0.9")
    assert "replaced" in out
    code, _, err = run_main(capsys, root, "test", "add", "x", "--cmd", "true", "--pass", "acc>>1")
    assert code == 2 and "bad --pass expression" in err
    code, _, err = run_main(capsys, root, "test", "add", "x", "--cmd", "true", "--for", "a", "--all")
    assert code == 2 and "at most one of" in err
    assert "removed test acc" in ok(capsys, root, "test", "rm", "acc")
    code, _, err = run_main(capsys, root, "test", "rm", "acc")
    assert code == 1 and "no such test: acc" in err and "mgit test list" in err
    assert "no tests" in ok(capsys, root, "test", "list")


def test_run_results_marks_and_find_failing(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, root, "test", "add", "acc", "--cmd", CMD, "--pass", "accuracy>=0.8", "--for", "ft")
    ok(capsys, root, "test", "add", "drop", "--cmd", CMD, "--max-drop", "accuracy=0.1")
    code, out, err = run_main(capsys, root, "test", "run", "--all", "-j", "2")
    assert code == 1 and "did not pass" in err
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(lines) == 5  # acc on good and bad; drop on base, good, bad
    assert sum("✓" in ln for ln in lines) == 3 and sum("✗" in ln for ln in lines) == 2
    assert "5 results: 3 passed, 2 failed (5 run, 0 cached)" in out
    # a second run runs nothing and still fails
    code, out, _ = run_main(capsys, root, "test", "run", "--all")
    assert code == 1 and "(0 run, 5 cached)" in out
    code, out, _ = run_main(capsys, root, "test", "run", "base")
    assert code == 0 and "1 results: 1 passed" in out
    rep = json.loads(run_main(capsys, root, "--json", "test", "run", "ft~1")[1])
    assert rep["cached"] == 2 and rep["passed"] == 2 and {r["test"] for r in rep["results"]} == {"acc", "drop"}
    # results
    out = ok(capsys, root, "test", "results", "ft")
    assert "✗ acc ft@" in out and "accuracy>=0.8 does not hold (accuracy=0.5)" in out
    assert "✗ drop ft@" in out and "fell by 0.45" in out
    res = json.loads(ok(capsys, root, "--json", "test", "results", "--all"))
    assert len(res) == 5 and {r["outcome"] for r in res} == {"pass", "fail"}
    assert all({"metrics", "duration", "host", "spec", "exit_code"} <= set(r) for r in res)
    # log and show marks
    out = ok(capsys, root, "log", "--oneline", "--all")
    marks = {ln.split()[0]: ln for ln in out.splitlines()}
    assert sum("✗acc ✗drop" in ln for ln in marks.values()) == 1
    assert sum("✓acc ✓drop" in ln for ln in marks.values()) == 1
    assert sum(ln.endswith(" base ✓drop") for ln in marks.values()) == 1
    assert "Tests: ✗acc ✗drop" in ok(capsys, root, "log", "ft")
    assert "✗acc ✗drop" in ok(capsys, root, "log", "--graph", "--all")
    log = json.loads(ok(capsys, root, "--json", "log", "--all"))
    assert [c["tests"].get("acc", {}).get("passed") for c in log] == [False, True, None]
    assert log[0]["tests"]["drop"]["failure"] == "regression"
    out = ok(capsys, root, "show", "ft")
    assert "Tests:" in out and "✗ acc ft@" in out
    assert json.loads(ok(capsys, root, "--json", "show", "ft~1"))["tests"]["acc"]["outcome"] == "pass"
    # find --failing
    found = json.loads(ok(capsys, root, "--json", "find", "--failing", "acc", "--all-versions"))
    assert [f["message"] for f in found] == ["bad"]
    assert json.loads(ok(capsys, root, "--json", "find", "--failing", "drop"))[0]["model"] == "ft"
    assert json.loads(ok(capsys, root, "--json", "find", "--failing", "drop", "--task", "x")) == []
    code, _, err = run_main(capsys, root, "find", "--failing", "nope")
    assert code == 1 and "no such test" in err
    # the notes commits are in no history view
    assert len(json.loads(ok(capsys, root, "--json", "log", "--all"))) == 3
    assert {m["name"] for m in json.loads(ok(capsys, root, "--json", "models"))} == {"base", "ft"}
    assert len(json.loads(ok(capsys, root, "--json", "lineage"))["nodes"]) == 3
    assert "mgit-tests" not in ok(capsys, root, "log", "--all", "--graph")


def test_log_and_show_without_tests_are_unchanged(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = json.loads(ok(capsys, root, "--json", "log", "--all"))
    assert all(c["tests"] == {} for c in log)
    assert "Tests" not in ok(capsys, root, "log") and "Tests" not in ok(capsys, root, "show")
    # and log does not load the test runner when there are no tests
    code = ("import sys; from mgit.cli import main; main(['-C', sys.argv[1], 'log']); "
            "print('mgit.lifecycle.testing' in sys.modules)")
    p = subprocess.run([PY, "-c", code, str(root)], capture_output=True, text=True, check=True)
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_lineage_color_by(root: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ok(capsys, root, "test", "add", "acc", "--cmd", CMD, "--pass", "accuracy>=0.8", "--for", "ft")
    run_main(capsys, root, "test", "run", "--all")
    out = ok(capsys, root, "lineage", "--color-by", "acc")
    assert re.search(r"✗ [0-9a-f]{12} .* bad", out) and re.search(r"✓ [0-9a-f]{12} .* good", out)
    assert re.search(r"- [0-9a-f]{12} .* base", out)  # no result
    out = ok(capsys, root, "lineage", "--color-by", "acc", "--html", str(tmp_path / "l.html"))
    assert out.strip() == f"wrote HTML view: {tmp_path / 'l.html'}"  # the view is in the file
    html = (tmp_path / "l.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="mgit-data">(.*?)</script>', html, re.S).group(1))
    assert data["color_by"] == "acc"
    tests = {n["message"]: n.get("test") for n in data["nodes"]}
    assert tests["base"] is None
    assert tests["good"]["outcome"] == "pass" and tests["good"]["metrics"] == {"accuracy": 0.95}
    assert tests["bad"]["outcome"] == "fail" and "does not hold" in tests["bad"]["error"]
    assert "Colour: test acc" in html
    nodes = json.loads(ok(capsys, root, "--json", "lineage", "--color-by", "acc"))["nodes"]
    assert sorted(n["test"]["outcome"] for n in nodes if "test" in n) == ["fail", "pass"]
    code, _, err = run_main(capsys, root, "lineage", "--color-by", "nope")
    assert code == 1 and "no such test" in err


def test_run_without_tests_or_head(tmp_path: Path, capsys: pytest.CaptureFixture[str], root: Path) -> None:
    code, _, err = run_main(capsys, root, "test", "run")
    assert code == 2 and "no tests are stored" in err
    ok(capsys, root, "test", "add", "t", "--cmd", "true")
    code, _, err = run_main(capsys, root, "test", "run", "--test", "nope")
    assert code == 1 and "no such test: nope" in err
    empty = tmp_path / "empty"
    run_main(capsys, None, "init", str(empty))
    code, _, err = run_main(capsys, empty, "test", "run")
    assert code == 2 and "HEAD has no commit" in err


def test_lineage_page_colours_by_a_test_in_a_browser(root: Path, capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    """The page in headless chromium: nodes filled by outcome, a click shows the metrics."""
    from tests.browser.test_lineage_html import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent")
    sync_api = pytest.importorskip("playwright.sync_api")
    ok(capsys, root, "test", "add", "acc", "--cmd", CMD, "--pass", "accuracy>=0.8", "--for", "ft")
    run_main(capsys, root, "test", "run", "--all")
    page_file = tmp_path / "l.html"
    ok(capsys, root, "lineage", "--color-by", "acc", "--html", str(page_file))
    oids = {c["message"]: c["oid"] for c in json.loads(ok(capsys, root, "--json", "log", "--all"))}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=10_000)
            fills = {m: page.locator(f'g.node[data-id="{o}"] rect.box').get_attribute("fill")
                     for m, o in oids.items()}
            assert fills == {"good": "#dcfce7", "bad": "#fee2e2", "base": "#f1f5f9"}
            assert page.locator(f'g.node[data-id="{oids["bad"]}"] text.n-model').text_content().startswith("✗")
            page.locator(f'g.node[data-id="{oids["bad"]}"]').click()
            panel = page.locator("#details").inner_text()
            assert "test acc" in panel.lower() and "result\tfailed" in panel and "accuracy" in panel and "0.5" in panel
            assert errors == []
        finally:
            browser.close()
