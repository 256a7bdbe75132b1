"""Tests over the lineage: specs, expressions, regression rules, scopes, running, caching,
bad inputs, a killed run, concurrent runs, gc/fsck, and notes commits kept out of history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mgit.errors import UsageError
from mgit.lifecycle import notes
from mgit.lifecycle import runner as R
from mgit.lifecycle import testing as T
from mgit.lifecycle.specs import DropRule, Expr, Scope, TestSpec, judge
from mgit.objects.ids import hash_object
from mgit.objects.model import FileEntry
from mgit.refs.store import TESTS
from mgit.repo import Repository
from tests.helpers import make_model_folder, model_tensors, write_model_folder

PY = sys.executable

# A test command: reads "acc" and "loss" from the exported config.json, appends
# "<test> <commit>" to COUNTER (so tests can count invocations), writes metrics to argv[2].
EVAL = textwrap.dedent(
    """
    import json, os, sys, time
    model_dir, metrics = sys.argv[1], sys.argv[2]
    with open(os.environ["COUNTER"], "a") as f:
        f.write(os.environ["MGIT_TEST"] + " " + os.environ["MGIT_COMMIT"] + "\\n")
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    t0 = time.time()
    while cfg.get("slow") and os.path.exists(os.environ["SLOW_FLAG"]) and time.time() - t0 < 60:
        time.sleep(0.05)  # "hangs" until the test removes the flag
    json.dump({"accuracy": cfg.get("acc", 0.9), "loss": cfg.get("loss", 1.0)}, open(metrics, "w"))
    """
)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A repository: base (task cls) -> base v2; ft (finetune of base, task sst2) -> ft v2;
    q (quantize of ft v2); plus the eval script and its counter."""
    script = tmp_path / "eval.py"
    script.write_text(EVAL)
    counter = tmp_path / "counter"
    counter.write_text("")
    monkeypatch.setenv("COUNTER", str(counter))
    monkeypatch.setenv("SLOW_FLAG", str(tmp_path / "slow.flag"))
    repo = Repository.init(tmp_path / "repo", model="base", chunk_size=65536)
    t = model_tensors("F32", seed=1, hidden=8, layers=1)
    oids: dict[str, str] = {}

    def version(name: str, model: str, cfg: dict[str, Any], **kw: Any) -> None:
        folder = tmp_path / "folders" / name
        write_model_folder(folder, t, config=cfg)
        oids[name] = repo.import_folder(folder, model=model, message=name, **kw).commit.oid

    version("base", "base", {"acc": 0.90}, meta={"task": "cls"})
    version("base2", "base", {"acc": 0.91})
    version("ft", "ft", {"acc": 0.95}, parent="base~1", relation="finetune", meta={"task": "sst2"})
    version("ft2", "ft", {"acc": 0.80})
    version("q", "q", {"acc": 0.79}, parent="ft", relation="quantize")
    return {"repo": repo, "oids": oids, "script": script, "counter": counter, "tmp": tmp_path}


def eval_cmd(lab: dict[str, Any]) -> str:
    return f"{PY} {lab['script']} {{model_dir}} {{metrics}}"


def count(lab: dict[str, Any]) -> int:
    return len(lab["counter"].read_text().splitlines())


# -- specs ---------------------------------------------------------------------------------


def test_spec_round_trips_and_its_id_is_the_content_id() -> None:
    s = TestSpec("acc", "python eval.py {model_dir}", (Expr.parse("accuracy>=0.97"),),
                 (DropRule.parse("loss=0.1", lower_better=True),), 60.0, Scope("model", "bert"))
    back = TestSpec.from_bytes(s.to_bytes())
    assert back == s and back.id == s.id == hash_object("chunk", s.to_bytes())
    variants = [
        TestSpec("acc2", s.cmd, s.passes, s.max_drop, s.timeout, s.scope),
        TestSpec(s.name, s.cmd + " ", s.passes, s.max_drop, s.timeout, s.scope),
        TestSpec(s.name, s.cmd, (Expr.parse("accuracy>0.97"),), s.max_drop, s.timeout, s.scope),
        TestSpec(s.name, s.cmd, s.passes, (DropRule.parse("loss=0.1"),), s.timeout, s.scope),
        TestSpec(s.name, s.cmd, s.passes, (DropRule.parse("loss=0.1%", lower_better=True),), s.timeout, s.scope),
        TestSpec(s.name, s.cmd, s.passes, s.max_drop, 61.0, s.scope),
        TestSpec(s.name, s.cmd, s.passes, s.max_drop, s.timeout, Scope("task", "bert")),
    ]
    ids = {v.id for v in variants} | {s.id}
    assert len(ids) == len(variants) + 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v.update(format=2),
        lambda v: v.update(name="../x"),
        lambda v: v.update(cmd=""),
        lambda v: v.update(timeout=0),
        lambda v: v.update(timeout=True),
        lambda v: v.update({"pass": ["accuracy >> 1"]}),
        lambda v: v.update(max_drop=[{"metric": "a", "limit": -1, "relative": False, "better": "higher"}]),
        lambda v: v.update(max_drop=[{"metric": "a", "limit": 1, "relative": False, "better": "up"}]),
        lambda v: v.update(scope={"kind": "descendants", "value": "not-an-oid"}),
        lambda v: v.update(scope={"kind": "relation", "value": "stolen"}),
        lambda v: v.update(scope={"kind": "all", "value": "x"}),
        lambda v: v.update(scope={"kind": "nope", "value": None}),
    ],
)
def test_malformed_specs_are_refused(mutate: Any) -> None:
    v = TestSpec("acc", "true").to_json()
    mutate(v)
    with pytest.raises(ValueError):
        TestSpec.from_json(v)


@pytest.mark.parametrize(
    ("text", "metric", "op", "value", "x", "holds"),
    [
        ("accuracy>=0.97", "accuracy", ">=", 0.97, 0.97, True),
        ("accuracy >= 0.97", "accuracy", ">=", 0.97, 0.96, False),
        ("loss<2.1", "loss", "<", 2.1, 2.1, False),
        ("loss<=2.1", "loss", "<=", 2.1, 2.1, True),
        ("eval.acc>.5", "eval.acc", ">", 0.5, 0.51, True),
        ("f1==1", "f1", "==", 1.0, 1.0, True),
        ("f1!=1", "f1", "!=", 1.0, 1.0, False),
        ("delta>-1e-3", "delta", ">", -0.001, 0.0, True),
        ("eval/loss-ema<=+3", "eval/loss-ema", "<=", 3.0, 3.5, False),
    ],
)
def test_pass_expressions(text: str, metric: str, op: str, value: float, x: float, holds: bool) -> None:
    e = Expr.parse(text)
    assert (e.metric, e.op, e.value) == (metric, op, value)
    assert e.holds(x) is holds
    assert Expr.parse(str(e)) == e


@pytest.mark.parametrize(
    "bad", ["accuracy", "accuracy>=", ">=0.9", "accuracy=>0.9", "acc>=0.9; import os", "__import__('os')",
            "acc>=nan", "acc>=inf", "acc >= 0.9 or 1", "1>=acc"],
)
def test_bad_pass_expressions_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        Expr.parse(bad)


@pytest.mark.parametrize(
    ("rule", "lower", "parent", "child", "status"),
    [
        ("accuracy=0.5", False, 0.97, 0.47, "ok"),      # fell by exactly 0.5
        ("accuracy=0.5", False, 0.97, 0.46, "fail"),    # fell by 0.51
        ("accuracy=0.5", False, 0.5, 0.99, "ok"),       # rose: never a drop
        ("accuracy=2%", False, 0.90, 0.882, "ok"),      # 2% of 0.90 = 0.018
        ("accuracy=2%", False, 0.90, 0.881, "fail"),
        ("loss=0.1", True, 2.0, 2.1, "ok"),             # lower is better: may rise by 0.1
        ("loss=0.1", True, 2.0, 2.2, "fail"),
        ("loss=0.1", True, 2.0, 0.5, "ok"),
        ("loss=10%", True, 2.0, 2.25, "fail"),
    ],
)
def test_max_drop_in_both_directions(rule: str, lower: bool, parent: float, child: float, status: str) -> None:
    r = DropRule.parse(rule, lower_better=lower)
    spec = TestSpec("t", "true", max_drop=(r,))
    rec = {"exit_code": 0, "metrics": {r.metric: child}}
    res = judge(spec, "c" * 64, rec, parent="p" * 64, parent_rec={"exit_code": 0, "metrics": {r.metric: parent}})
    assert res.drops[0].status == status
    assert res.passed is (status == "ok")
    assert res.failure == (None if status == "ok" else "regression")


def test_max_drop_without_a_parent_result_is_not_applicable() -> None:
    spec = TestSpec("t", "true", max_drop=(DropRule.parse("acc=0.1"),))
    ok = {"exit_code": 0, "metrics": {"acc": 0.1}}
    assert judge(spec, "c" * 64, ok).drops[0].status == "n/a"
    assert judge(spec, "c" * 64, ok, parent="p" * 64).drops[0].note == "no result for the parent"
    r = judge(spec, "c" * 64, ok, parent="p" * 64, parent_rec={"exit_code": 0, "metrics": {}})
    assert r.drops[0].status == "n/a" and r.passed
    r = judge(spec, "c" * 64, {"exit_code": 0, "metrics": {"x": 1}}, parent="p" * 64,
              parent_rec={"exit_code": 0, "metrics": {"acc": 0.5}})
    assert r.failure == "unknown-metric" and not r.passed


@pytest.mark.parametrize(
    ("facts", "outcome", "failure"),
    [
        ({"exit_code": 0, "metrics": {"acc": 0.99}}, "pass", None),
        ({"exit_code": 0, "metrics": {"acc": 0.5}}, "fail", "check"),
        ({"exit_code": 3, "metrics": {"acc": 0.99}}, "fail", "exit"),
        ({"timed_out": True, "metrics": None}, "fail", "timeout"),
        ({"signal": "SIGSEGV", "metrics": None}, "fail", "signal"),
        ({"exit_code": 0, "metrics": None, "metrics_error": "no metrics"}, "fail", "no-metrics"),
        ({"exit_code": 0, "metrics": None, "metrics_source": "file"}, "fail", "bad-metrics"),
        ({"exit_code": 0, "metrics": {"accuracy": 0.99}}, "fail", "unknown-metric"),
        ({"exit_code": 0, "metrics": {"acc": None}}, "fail", "check"),  # NaN
        ({"export_error": "CorruptObjectError: ..."}, "error", "export"),
    ],
)
def test_judging_recorded_facts(facts: dict[str, Any], outcome: str, failure: str | None) -> None:
    spec = TestSpec("t", "true", passes=(Expr.parse("acc>=0.9"),))
    r = judge(spec, "c" * 64, facts)
    assert (r.outcome, r.failure) == (outcome, failure)
    assert r.passed is (outcome == "pass")
    assert r.skipped is (outcome == "error")
    assert (r.error is None) is (outcome == "pass")


def test_merge_files_is_a_union_with_three_way_specs() -> None:
    def e(n: int) -> FileEntry:
        return FileEntry(kind="blob", size=n, xxh="0" * 32)

    base = {"specs/a.json": e(1), "specs/b.json": e(2), "specs/c.json": e(3), "results/x": e(9)}
    ours = {"specs/a.json": e(1), "specs/c.json": e(30), "specs/d.json": e(4), "results/x": e(9),
            "results/y": e(10), "results/same": e(11)}
    theirs = {"specs/a.json": e(10), "specs/b.json": e(2), "specs/c.json": e(31), "results/x": e(9),
              "results/z": e(12), "results/same": e(13)}
    got = notes.merge_files(base, ours, theirs)
    assert got == {
        "specs/a.json": e(10),  # they changed it, we did not
        "specs/c.json": e(30),  # both changed it: ours
        "specs/d.json": e(4),  # we added it
        "results/x": e(9), "results/y": e(10), "results/z": e(12),
        "results/same": e(11),  # the same key on both sides: ours
    }  # specs/b.json: we deleted it, they left it alone


# -- adding, listing, scopes ---------------------------------------------------------------


def test_add_replace_and_remove(lab: dict[str, Any]) -> None:
    repo = lab["repo"]
    s1, old = T.add_test(repo, "acc", "true", passes=["accuracy>=0.9"])
    assert old is None and T.load_specs(repo) == {"acc": s1}
    s2, old = T.add_test(repo, "acc", "true", passes=["accuracy>=0.95"])
    assert old == s1 and s2.id != s1.id and T.load_specs(repo) == {"acc": s2}
    tip = repo.refs.read(TESTS)
    T.add_test(repo, "acc", "true", passes=["accuracy>=0.95"])  # the same spec: no new notes
    assert repo.refs.read(TESTS) == tip
    files = notes.read(repo).files
    assert f"specs-by-id/{s1.id}.json" in files and f"specs-by-id/{s2.id}.json" in files
    assert T.remove_test(repo, "acc") == s2 and T.load_specs(repo) == {}
    with pytest.raises(T.NoSuchTestError):
        T.remove_test(repo, "acc")
    with pytest.raises(UsageError):
        T.add_test(repo, "x", "true", model="ft", task="sst2")
    with pytest.raises(UsageError):
        T.add_test(repo, "x", "true", max_drop=["loss=0.1"], lower_better=["acc"])
    with pytest.raises(UsageError):
        T.add_test(repo, "bad/name", "true")


def test_scopes(lab: dict[str, Any]) -> None:
    repo, o = lab["repo"], lab["oids"]
    cases = {
        "all": (dict(all=True), {"base", "base2", "ft", "ft2", "q"}),
        "model": (dict(model="ft"), {"ft", "ft2"}),
        "desc": (dict(descendants_of="ft"), {"ft", "ft2", "q"}),  # ft = the line's latest: ft2
        "desc-v1": (dict(descendants_of="ft~1"), {"ft", "ft2", "q"}),
        "relation": (dict(relation="finetune"), {"ft"}),
        "task": (dict(task="sst2"), {"ft", "ft2"}),  # ft2 inherits ft's task; q is another line
        "task-cls": (dict(task="cls"), {"base", "base2"}),
    }
    for name, (kw, want) in cases.items():
        if name == "desc":
            kw = dict(descendants_of=o["ft"])
        spec, _ = T.add_test(repo, name, "true", **kw)
        got = {k for k, c in o.items() if T.applies(repo, spec, c)}
        assert got == want, name
    spec = T.load_specs(repo)["model"]
    assert T.tested_parent(repo, spec, o["ft2"]) == o["ft"]
    assert T.tested_parent(repo, spec, o["ft"]) is None  # its parent (base) is another line


def test_select_commits(lab: dict[str, Any]) -> None:
    repo, o = lab["repo"], lab["oids"]
    assert T.select_commits(repo) == [o["base2"]]  # HEAD
    assert set(T.select_commits(repo, all=True)) == set(o.values())
    assert T.select_commits(repo, ancestors_of=["q"]) == [o["base"], o["ft"], o["ft2"], o["q"]]
    assert set(T.select_commits(repo, descendants_of=["base~1"])) == set(o.values())
    # the lines' latest; unrelated versions, whose order follows commit times (which may tie)
    assert sorted(T.select_commits(repo, ["ft", "base"])) == sorted([o["base2"], o["ft2"]])


# -- running -------------------------------------------------------------------------------


def test_run_records_and_caches_and_force_reruns(lab: dict[str, Any]) -> None:
    repo, o = lab["repo"], lab["oids"]
    spec, _ = T.add_test(repo, "acc", eval_cmd(lab), passes=["accuracy>=0.85"], model="ft")
    r = T.run_test(repo, spec, o["ft"])
    assert r.passed and not r.cached and r.metrics == {"accuracy": 0.95, "loss": 1.0}
    assert r.host and r.time > 0 and r.duration > 0 and r.spec_id == spec.id
    assert count(lab) == 1
    again = T.run_test(repo, spec, o["ft"])
    assert again.cached and again.passed and count(lab) == 1
    assert T.find_result(repo, o["ft"], spec) == again
    assert T.find_result(repo, o["ft2"], spec) is None
    forced = T.run_test(repo, spec, o["ft"], force=True)
    assert not forced.cached and count(lab) == 2
    rep = R.run_tests(repo, T.select_commits(repo, all=True))
    assert (rep.ran, rep.cached) == (1, 1) and count(lab) == 3  # only ft2 ran; the others do not apply
    assert [(r.commit, r.outcome) for r in rep.results] == [(o["ft"], "pass"), (o["ft2"], "fail")]
    assert rep.results[1].failure == "check"
    rep = R.run_tests(repo, T.select_commits(repo, all=True))
    assert (rep.ran, rep.cached) == (0, 2) and count(lab) == 3
    rep = R.run_tests(repo, T.select_commits(repo, all=True), force=True, jobs=2)
    assert (rep.ran, rep.cached) == (2, 0) and count(lab) == 5
    with pytest.raises(T.NoSuchTestError):
        R.run_tests(repo, [o["ft"]], tests=["nope"])


def test_max_drop_runs_the_parent_once_and_judges_against_it(lab: dict[str, Any]) -> None:
    repo, o = lab["repo"], lab["oids"]
    spec, _ = T.add_test(repo, "drop", eval_cmd(lab), max_drop=["accuracy=0.1"], model="ft")
    r = T.run_test(repo, spec, o["ft2"])  # ft is run too (not further up: base is not in scope)
    assert count(lab) == 2 and r.parent == o["ft"]
    assert not r.passed and r.failure == "regression" and "fell by 0.15" in (r.error or "")
    d = r.drops[0]
    assert (d.parent_value, d.value, d.status) == (0.95, 0.8, "fail")
    assert T.find_result(repo, o["ft"], spec).passed  # ft's own rule: no parent in scope
    rep = R.run_tests(repo, [o["ft"], o["ft2"]])
    assert rep.ran == 0 and [r.passed for r in rep.results] == [True, False]
    # A batch runs a missing parent first, even when only the child was asked for.
    spec2, _ = T.add_test(repo, "loss", eval_cmd(lab), max_drop=["loss=0"], lower_better=["loss"], all=True)
    rep = R.run_tests(repo, [o["ft2"]], tests=["loss"], jobs=2)
    assert [r.commit for r in rep.results] == [o["ft"], o["ft2"]] and all(r.passed for r in rep.results)


BAD = {
    "hang": (f"sh -c 'sleep 30 & echo $! > {{pidfile}}; sleep 30'", "timeout"),
    "crash": (f"{PY} -c 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)'", "signal"),
    "garbage": (f"{PY} -c 'print(\"loss: banana\")'", "no-metrics"),
    "silent": (f"{PY} -c 'pass'", "no-metrics"),
    "badfile": (f"{PY} -c 'import sys; open(sys.argv[1], \"w\").write(\"{{nope\")' {{metrics}}", "bad-metrics"),
    "unknown": (f"{PY} -c 'import json; print(json.dumps({{\"acc\": 1}}))'", "unknown-metric"),
    "exit": (f"{PY} -c 'import sys; print(\"boom\", file=sys.stderr); sys.exit(3)'", "exit"),
}


def test_bad_tests_are_recorded_failures_and_the_others_go_on(lab: dict[str, Any]) -> None:
    repo, o, tmp = lab["repo"], lab["oids"], lab["tmp"]
    pidfile = tmp / "bg.pid"
    for name, (cmd, _) in BAD.items():
        T.add_test(repo, name, cmd.replace("{pidfile}", str(pidfile)), passes=["accuracy>0"],
                   timeout=1.5 if name == "hang" else 60, model="ft")
    T.add_test(repo, "good", eval_cmd(lab), passes=["accuracy>0"], model="ft")
    t0 = time.monotonic()
    rep = R.run_tests(repo, [o["ft"], o["ft2"]], jobs=2)
    assert time.monotonic() - t0 < 30
    by = {(r.test, r.commit): r for r in rep.results}
    assert len(by) == 2 * (len(BAD) + 1)
    for name, (_, failure) in BAD.items():
        for c in (o["ft"], o["ft2"]):
            r = by[(name, c)]
            assert (r.outcome, r.failure) == ("fail", failure), (name, r.error)
            assert r.error and not r.passed and not r.skipped
    assert by[("good", o["ft"])].passed and by[("good", o["ft2"])].passed
    assert "timed out after 1.5s" in (by[("hang", o["ft"])].error or "")
    assert by[("crash", o["ft"])].signal == "SIGSEGV"
    assert by[("exit", o["ft"])].exit_code == 3 and "boom" in by[("exit", o["ft"])].stderr
    assert "banana" in (by[("garbage", o["ft"])].error or "")
    assert "unknown metric 'accuracy'" in (by[("unknown", o["ft"])].error or "")
    # the hanging command's whole process group was killed, its background child included
    assert not _alive(int(pidfile.read_text()))
    # all recorded, none rerun
    rep = R.run_tests(repo, [o["ft"], o["ft2"]])
    assert rep.ran == 0 and rep.cached == len(by)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, killed and waiting to be reaped, does not)."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.1)
    return True


def _damage_a_chunk_of(repo: Repository, commit: str) -> None:
    tree = repo.commit_tree(commit)
    oid = sorted(tree.files["model.safetensors"].chunk_ids())[0]
    path = repo.store.path_for(oid)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_model_that_cannot_be_exported_is_untestable_and_retried(lab: dict[str, Any]) -> None:
    repo, tmp = lab["repo"], lab["tmp"]
    other = model_tensors("F32", seed=7, hidden=8, layers=1)
    write_model_folder(tmp / "folders" / "broken", other)
    broken = repo.import_folder(tmp / "folders" / "broken", model="broken", message="x").commit.oid
    _damage_a_chunk_of(repo, broken)
    T.add_test(repo, "acc", eval_cmd(lab), passes=["accuracy>0"], all=True)
    rep = R.run_tests(repo, [broken, lab["oids"]["ft"]])
    r = {x.commit: x for x in rep.results}
    assert r[broken].outcome == "error" and r[broken].skipped and not r[broken].passed
    assert r[broken].failure == "export" and "cannot export" in (r[broken].error or "")
    assert r[lab["oids"]["ft"]].passed and count(lab) == 1
    assert T.find_result(repo, broken, T.load_specs(repo)["acc"]).skipped
    rep = R.run_tests(repo, [broken, lab["oids"]["ft"]])
    assert rep.ran == 1 and rep.cached == 1  # the untestable one is tried again
    rc = T.run_command(repo, "true", broken)
    assert rc.skipped and not rc.passed


def test_run_command_is_not_recorded(lab: dict[str, Any]) -> None:
    repo, o = lab["repo"], lab["oids"]
    assert T.run_command(repo, "test -f {model_dir}/config.json", o["ft"]).passed
    assert not T.run_command(repo, "exit 1", o["ft"]).passed
    r = T.run_command(repo, "sleep 10", o["ft"], timeout=0.5)
    assert r.failure == "timeout"
    assert repo.refs.read(TESTS) is None


def test_placeholders_and_environment(lab: dict[str, Any]) -> None:
    repo, o, tmp = lab["repo"], lab["oids"], lab["tmp"]
    out = tmp / "seen.json"
    script = tmp / "seen.py"
    script.write_text(
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': {{k: v for k, v in os.environ.items() if k.startswith('MGIT_')}}}}, open({str(out)!r}, 'w'))\n"
    )
    spec, _ = T.add_test(repo, "see", f"{PY} {script} {{model_dir}} {{ref}} {{commit}} {{metrics}} '{{x}}'")
    T.run_test(repo, spec, o["ft"])
    seen = json.loads(out.read_text())
    model_dir, ref, commit, metrics, literal = seen["argv"]
    assert ref == "ft~1" and commit == o["ft"] and literal == "{x}"
    assert seen["env"]["MGIT_MODEL_DIR"] == model_dir and seen["env"]["MGIT_TEST"] == "see"
    assert seen["env"]["MGIT_COMMIT"] == commit and seen["env"]["MGIT_METRICS"] == metrics
    assert not Path(model_dir).exists()  # the export is removed afterwards


# -- a killed run, concurrent runs -------------------------------------------------------------


def _mgit(repo: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "mgit", "-C", str(repo), *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)


def _check_results_complete(repo: Repository) -> set[tuple[str, str]]:
    keys = set()
    for path, entry in notes.read(repo).files.items():
        if path.startswith("results/"):
            rec = json.loads(notes.read_blob(repo, entry))
            assert rec["format"] == 1 and "exit_code" in rec and "metrics" in rec, path
            keys.add((path.split("/")[2], path.split("/")[3][:-5]))
    return keys


def test_a_killed_run_leaves_no_half_written_result_and_resumes(lab: dict[str, Any], tmp_path: Path) -> None:
    repo, o = lab["repo"], lab["oids"]
    slow_dir = tmp_path / "folders" / "slow"
    write_model_folder(slow_dir, model_tensors("F32", seed=1, hidden=8, layers=1), config={"acc": 0.9, "slow": True})
    slow = repo.import_folder(slow_dir, model="zz-slow", parent="q", relation="finetune", message="slow").commit.oid
    (tmp_path / "slow.flag").write_text("")
    T.add_test(repo, "acc", eval_cmd(lab), passes=["accuracy>0"], all=True)
    p = _mgit(repo.root, "test", "run", "--all", env=dict(os.environ))
    deadline = time.monotonic() + 60
    while slow not in lab["counter"].read_text():
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done = _check_results_complete(repo)
    assert (slow, T.load_specs(repo)["acc"].id) not in done
    assert repo.fsck().ok
    before = count(lab)
    (tmp_path / "slow.flag").unlink()
    rep = R.run_tests(repo, T.select_commits(repo, all=True))
    assert rep.ran == 6 - len(done) and rep.cached == len(done) and count(lab) == before + rep.ran
    assert len(_check_results_complete(repo)) == 6


def test_concurrent_runs_keep_both_results(lab: dict[str, Any]) -> None:
    repo = lab["repo"]
    for name in ("a", "b"):
        T.add_test(repo, name, f"{PY} -c 'print(1)'", all=True)
    procs = [_mgit(repo.root, "test", "run", "--all", "--test", n, "-j", "2", env=dict(os.environ)) for n in "ab"]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(_check_results_complete(repo)) == 2 * len(lab["oids"])
    tip = repo.refs.read(TESTS)
    assert len(repo.read_commit(tip).parents) == 1  # a line of notes commits, no lost update


# -- reachability -------------------------------------------------------------------------


def test_gc_keeps_results_fsck_verifies_them_and_history_hides_notes(lab: dict[str, Any]) -> None:
    repo, o = lab["repo"], lab["oids"]
    fsck0 = repo.fsck()
    T.add_test(repo, "acc", eval_cmd(lab), passes=["accuracy>0.85"], all=True)
    R.run_tests(repo, list(o.values()))
    fsck1 = repo.fsck()
    assert fsck1.ok and fsck1.reachable > fsck0.reachable
    g = repo.gc(prune_age=0)
    assert g.removed == 0 and g.kept >= fsck1.reachable
    res = T.results_for(repo, o.values())
    assert len(res) == 5 and res[o["ft2"]][0].failure == "check"
    # history views show model versions only
    assert {c.oid for c in repo.log(all=True)} == set(o.values())
    assert set(repo.lineage().nodes) == set(o.values())
    assert {m.name for m in repo.models()} == {"base", "ft", "q"}
    assert {c.model for c in repo.find(all_versions=True)} == {"base", "ft", "q"}
    assert repo.all_commits() == set(o.values())
    assert "mgit-tests" not in {repo.read_commit(c).model for c in repo.all_commits()}
    # a damaged result object is an fsck finding
    tip = repo.refs.read(TESTS)
    entry = next(e for p, e in repo.commit_tree(tip).files.items() if p.startswith("results/"))
    path = repo.store.path_for(entry.chunks[0])
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    bad = repo.fsck()
    assert not bad.ok and any(entry.chunks[0] in str(p) for p in bad.problems)


def test_the_lossy_gate_can_be_the_stored_tests(lab: dict[str, Any], tmp_path: Path) -> None:
    import numpy as np

    repo = lab["repo"]
    rng = np.random.default_rng(0)
    t = {"w": rng.standard_normal((160, 160)).astype("<f4")}  # big enough to be stored lossily
    write_model_folder(tmp_path / "big", t, config={"acc": 0.9})
    repo.import_folder(tmp_path / "big", model="big", message="v1")
    T.add_test(repo, "acc", eval_cmd(lab), passes=["accuracy>=0.85"], model="big")
    T.add_test(repo, "other", "false", model="base")  # applies to another line: not run
    for acc, want in ((0.9, "passed"), (0.5, "failed: stored losslessly")):
        folder = tmp_path / f"lossy{acc}"
        noisy = {"w": (t["w"] + rng.standard_normal((160, 160)).astype("<f4") * 1e-3)}
        write_model_folder(folder, noisy, config={"acc": acc})
        res = repo.import_folder(folder, model="big", message="lossy", eps=1e-3, check=T.gate(repo))
        assert res.check == want
        assert repo.resolve("big") == res.commit.oid
        assert (res.commit.lossy is not None) is (want == "passed")


def test_sigterm_stops_a_run_kills_its_commands_and_records_no_result(lab: dict[str, Any], tmp_path: Path) -> None:
    repo = lab["repo"]
    pidfile = tmp_path / "cmd.pid"
    T.add_test(repo, "quick", eval_cmd(lab), model="base")
    T.add_test(repo, "slow", f"sh -c 'echo $$ > {pidfile}; sleep 60'", model="ft")
    p = _mgit(repo.root, "test", "run", "--all", env=dict(os.environ))
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(p.pid, signal.SIGTERM)  # only mgit: it kills the command's group itself
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "interrupted" in err
    assert not _alive(int(pidfile.read_text()))
    slow = T.load_specs(repo)["slow"]
    assert all(T.find_result(repo, c, slow) is None for c in lab["oids"].values())
    quick = T.load_specs(repo)["quick"]
    assert T.find_result(repo, lab["oids"]["base"], quick).passed  # finished runs were kept
