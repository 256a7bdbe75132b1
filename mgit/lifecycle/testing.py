"""Tests over the lineage: stored specs, running them on versions, cached results.

Storage (``refs/tests``, see :mod:`mgit.lifecycle.notes`): the notes tree holds

- ``specs/<name>.json``: the current spec of each test (canonical JSON, :class:`TestSpec`);
- ``specs-by-id/<spec id>.json``: every spec ever used, by id (the blob's own id);
- ``results/<commit[:2]>/<commit>/<spec id>.json``: the facts of one run of a spec on a
  version (exit code, signal, timeout, metrics, output tails, duration, host, time). Whether
  it passed is decided when read (:func:`mgit.lifecycle.specs.judge`), with the parent
  version's facts for ``--max-drop``.

A result is written only once its run is complete, and the ref moves by compare-and-swap, so
a killed ``test run`` leaves no half-written result and the next run resumes: results already
recorded are not run again (unless ``force``). An untestable version (its model could not be
exported) is recorded, but tried again by the next run.

The interface the bisect uses: :func:`load_specs`, :func:`find_result`, :func:`run_test`,
:func:`run_command`, :class:`TestResult` (``passed``, ``skipped``). Running a command is
:mod:`mgit.lifecycle.process`; a batch (``test run``) is :mod:`mgit.lifecycle.runner`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mgit.core import RepoCore
from mgit.errors import MgitError, UsageError
from mgit.lifecycle import notes
from mgit.lifecycle.process import execute
from mgit.lifecycle.specs import (
    DropRule,
    Expr,
    Scope,
    TestResult,
    TestSpec,
    check_test_name,
    judge,
)
from mgit.lineage import graph as dag
from mgit.objects.model import RELATIONS, FileEntry
from mgit.reach import all_commits

__all__ = [
    "TestResult",
    "TestSpec",
    "add_test",
    "remove_test",
    "load_specs",
    "find_result",
    "results_for",
    "run_test",
    "run_command",
    "record_results",
    "applies",
    "ScopeIndex",
    "select_commits",
    "tested_parent",
    "failing",
    "gate",
    "TestsFailedError",
    "NoSuchTestError",
]

class NoSuchTestError(MgitError):
    """A test name that is not stored."""

    __test__ = False
    hint = "see 'mgit test list'"

    def __init__(self, name: str) -> None:
        super().__init__(f"no such test: {name}")
        self.name = name


class TestsFailedError(MgitError):
    """``test run`` finished and some results did not pass (exit code 1)."""

    __test__ = False


# -- the notes ---------------------------------------------------------------------------------


def _spec_path(name: str) -> str:
    return f"specs/{name}.json"


def _spec_id_path(spec_id: str) -> str:
    return f"specs-by-id/{spec_id}.json"


def _result_path(commit: str, spec_id: str) -> str:
    return f"results/{commit[:2]}/{commit}/{spec_id}.json"


class TestNotes:
    """A snapshot of ``refs/tests``: specs and recorded results, read lazily."""

    __test__ = False

    def __init__(self, core: RepoCore, snap: notes.Notes | None = None) -> None:
        self.core = core
        self.snap = snap if snap is not None else notes.read(core)
        self._records: dict[str, dict[str, Any] | None] = {}

    def specs(self) -> dict[str, TestSpec]:
        """The current spec of every test, by name (damaged specs are left out)."""
        out: dict[str, TestSpec] = {}
        for path, entry in sorted(self.snap.files.items()):
            if path.startswith("specs/") and path.endswith(".json"):
                spec = self._spec(entry)
                if spec is not None and path == _spec_path(spec.name):
                    out[spec.name] = spec
        return out

    def spec_by_id(self, spec_id: str) -> TestSpec | None:
        """A spec ever used, by id."""
        entry = self.snap.files.get(_spec_id_path(spec_id))
        spec = self._spec(entry) if entry is not None else None
        return spec if spec is not None and spec.id == spec_id else None

    def _spec(self, entry: FileEntry) -> TestSpec | None:
        try:
            return TestSpec.from_bytes(notes.read_blob(self.core, entry))
        except ValueError:
            return None

    def record(self, commit: str, spec_id: str) -> dict[str, Any] | None:
        """The recorded facts of a run, or None."""
        path = _result_path(commit, spec_id)
        if path not in self._records:
            entry = self.snap.files.get(path)
            rec = None
            if entry is not None:
                try:
                    v = json.loads(notes.read_blob(self.core, entry))
                    rec = v if isinstance(v, dict) else None
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    rec = None
            self._records[path] = rec
        return self._records[path]

    def tested(self) -> dict[str, list[str]]:
        """Spec ids with a recorded result, by commit."""
        out: dict[str, list[str]] = {}
        for path in self.snap.files:
            parts = path.split("/")
            if len(parts) == 4 and parts[0] == "results" and parts[3].endswith(".json"):
                out.setdefault(parts[2], []).append(parts[3][:-5])
        return out


def load_specs(core: RepoCore) -> dict[str, TestSpec]:
    """The current spec of every stored test, by name."""
    return TestNotes(core).specs()


def add_test(
    core: RepoCore,
    name: str,
    cmd: str,
    *,
    passes: Sequence[str] = (),
    max_drop: Sequence[str] = (),
    lower_better: Sequence[str] = (),
    timeout: float | None = None,
    model: str | None = None,
    descendants_of: str | None = None,
    relation: str | None = None,
    task: str | None = None,
    all: bool = False,
) -> tuple[TestSpec, TestSpec | None]:
    """Store a test (replacing the spec of the same name: a new spec id; the old results stay
    under the old id). Returns ``(spec, the spec it replaced or None)``.

    Raises:
        UsageError: a bad name, expression, rule or timeout, or more than one scope.
    """
    check_test_name(name)
    if not cmd or not cmd.strip():
        raise UsageError("--cmd must not be empty")
    scopes = [(k, v) for k, v in (
        ("model", model), ("descendants", descendants_of), ("relation", relation), ("task", task),
    ) if v is not None]
    if all:
        scopes.append(("all", None))
    if len(scopes) > 1:
        raise UsageError("give at most one of --for, --descendants-of, --relation, --task, --all")
    kind, value = scopes[0] if scopes else ("all", None)
    if kind == "descendants":
        assert value is not None
        value = core.resolve(value)
    elif kind == "relation" and value not in RELATIONS:
        raise UsageError(f"unknown relation {value!r}", hint="one of: " + ", ".join(RELATIONS))
    elif kind in ("model", "task") and not value:
        raise UsageError(f"--{'for' if kind == 'model' else kind} needs a value")
    lower = set(lower_better)
    rules = tuple(DropRule.parse(r) for r in max_drop)
    unknown = lower - {r.metric for r in rules}
    if unknown:
        raise UsageError(f"--lower-better {sorted(unknown)[0]}: no --max-drop rule for that metric")
    rules = tuple(DropRule(r.metric, r.limit, r.relative, r.metric in lower) for r in rules)
    t = 3600.0 if timeout is None else float(timeout)
    if not (0 < t < 1e9) or math.isnan(t):
        raise UsageError("--timeout must be a positive number of seconds")
    spec = TestSpec(name, cmd, tuple(Expr.parse(e) for e in passes), rules, t, Scope(kind, value))
    old: list[TestSpec | None] = [None]
    data = spec.to_bytes()

    def change(files: dict[str, FileEntry]) -> bool:
        entry = notes.blob_entry(core, data)
        prev = files.get(_spec_path(name))
        old[0] = TestNotes(core, notes.Notes(None, files))._spec(prev) if prev is not None else None
        if prev == entry and files.get(_spec_id_path(spec.id)) == entry:
            return False
        files[_spec_path(name)] = entry
        files[_spec_id_path(spec.id)] = entry
        return True

    notes.update(core, change, message=f"test add {name}")
    return spec, old[0]


def remove_test(core: RepoCore, name: str) -> TestSpec:
    """Remove a test's current spec (its results stay, under its spec id).

    Raises:
        NoSuchTestError: no such test.
    """
    gone: list[TestSpec | None] = [None]

    def change(files: dict[str, FileEntry]) -> bool:
        entry = files.pop(_spec_path(name), None)
        gone[0] = TestNotes(core, notes.Notes(None, files))._spec(entry) if entry is not None else None
        return entry is not None

    notes.update(core, change, message=f"test rm {name}")
    if gone[0] is None:
        raise NoSuchTestError(name)
    return gone[0]


# -- which versions a test applies to --------------------------------------------------------


class ScopeIndex:
    """Answers "does this spec apply to this version?" for many versions (caches descendant
    sets and inherited task metadata)."""

    def __init__(self, core: RepoCore) -> None:
        self.core = core
        self._commits: set[str] | None = None
        self._desc: dict[str, set[str]] = {}
        self._task: dict[str, str | None] = {}

    def _all(self) -> set[str]:
        if self._commits is None:
            self._commits = all_commits(self.core)
        return self._commits

    def task_of(self, commit: str) -> str | None:
        """``meta["task"]`` of the version, or of the latest earlier version of its model line
        that sets it."""
        if commit not in self._task:
            c = self.core.read_commit(commit)
            if "task" in c.meta:
                self._task[commit] = c.meta["task"]
            else:
                prev = next((p.oid for p in c.parents if self.core.model_of(p.oid) == c.model), None)
                self._task[commit] = self.task_of(prev) if prev is not None else None
        return self._task[commit]

    def applies(self, spec: TestSpec, commit: str) -> bool:
        """Whether ``spec`` applies to version ``commit``."""
        kind, value = spec.scope.kind, spec.scope.value
        if kind == "all":
            return True
        if kind == "model":
            return self.core.read_commit(commit).model == value
        if kind == "relation":
            return any(p.relation == value for p in self.core.read_commit(commit).parents)
        if kind == "task":
            return self.task_of(commit) == value
        assert value is not None
        if commit == value:
            return True
        if value not in self._desc:
            self._desc[value] = dag.descendants(value, self._all() | {commit}, self.core.parents_of)
        if commit not in self._all():
            return dag.is_ancestor(value, commit, self.core.parents_of)
        return commit in self._desc[value]

    def parent(self, spec: TestSpec, commit: str) -> str | None:
        """The first parent of ``commit`` the spec applies to (its ``--max-drop`` reference)."""
        for p in self.core.read_commit(commit).parents:
            if p.oid in self.core.store and self.applies(spec, p.oid):
                return p.oid
        return None


def applies(core: RepoCore, spec: TestSpec, commit: str) -> bool:
    """Whether ``spec`` applies to version ``commit``."""
    return ScopeIndex(core).applies(spec, commit)


def tested_parent(core: RepoCore, spec: TestSpec, commit: str) -> str | None:
    """The first parent of ``commit`` that ``spec`` applies to, or None."""
    return ScopeIndex(core).parent(spec, commit)


def select_commits(
    core: RepoCore,
    refs: Sequence[str] = (),
    *,
    descendants_of: Sequence[str] = (),
    ancestors_of: Sequence[str] = (),
    all: bool = False,
) -> list[str]:
    """The versions a ``test run`` covers, parents first (default: HEAD)."""
    chosen: set[str] = set()
    everything = all_commits(core)
    if all:
        chosen |= everything
    for r in refs:
        chosen.add(core.resolve(r))
    for r in descendants_of:
        oid = core.resolve(r)
        chosen |= {oid} | dag.descendants(oid, everything, core.parents_of)
    for r in ancestors_of:
        chosen |= dag.ancestors([core.resolve(r)], core.parents_of)
    if not (refs or descendants_of or ancestors_of or all):
        head = core.head()
        if head is None:
            raise UsageError("nothing to test: HEAD has no commit", hint="name versions (REF...) or pass --all")
        chosen.add(head)
    return list(reversed(dag.topo_order(chosen, core.parents_of, core.commit_time_of)))


# -- running -------------------------------------------------------------------------------


def _record_blob(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _keep_existing(old: FileEntry | None, core: RepoCore) -> bool:
    """Whether a recorded result stays when another run of the same key arrives (without
    force): yes, unless it recorded an untestable version."""
    if old is None:
        return False
    try:
        v = json.loads(notes.read_blob(core, old))
    except (MgitError, ValueError):
        return False
    return isinstance(v, dict) and not v.get("export_error")


def record_results(
    core: RepoCore, items: Sequence[tuple[str, TestSpec, dict[str, Any]]], *, force: bool = False
) -> None:
    """Write finished runs into the notes (one notes commit, compare-and-swap)."""
    if not items:
        return
    blobs = [(c, s, notes.blob_entry(core, s.to_bytes()), notes.blob_entry(core, _record_blob(r))) for c, s, r in items]

    def change(files: dict[str, FileEntry]) -> bool:
        changed = False
        for commit, spec, spec_entry, entry in blobs:
            if files.get(_spec_id_path(spec.id)) != spec_entry:
                files[_spec_id_path(spec.id)] = spec_entry
                changed = True
            path = _result_path(commit, spec.id)
            old = files.get(path)
            if old == entry or (not force and _keep_existing(old, core)):
                continue
            files[path] = entry
            changed = True
        return changed

    n = len(items)
    notes.update(core, change, message=f"test results: {n} run{'s' if n != 1 else ''}")


def _judge(core: RepoCore, tn: TestNotes, idx: ScopeIndex, spec: TestSpec, commit: str,
           rec: dict[str, Any], cached: bool) -> TestResult:
    parent = idx.parent(spec, commit) if spec.max_drop else None
    prec = tn.record(parent, spec.id) if parent is not None else None
    return judge(spec, commit, rec, parent=parent, parent_rec=prec, cached=cached)


def find_result(core: RepoCore, commit: str, spec: TestSpec) -> TestResult | None:
    """The recorded result of ``spec`` on ``commit`` (judged against the parent's recorded
    run for ``--max-drop``), or None; runs nothing."""
    tn = TestNotes(core)
    rec = tn.record(commit, spec.id)
    if rec is None:
        return None
    return _judge(core, tn, ScopeIndex(core), spec, commit, rec, True)


def results_for(core: RepoCore, commits: Iterable[str], *, specs: dict[str, TestSpec] | None = None) -> dict[str, list[TestResult]]:
    """The recorded results of the current specs on each commit (commits without any are
    left out), by commit; each list sorted by test name."""
    tn = TestNotes(core)
    specs = tn.specs() if specs is None else specs
    idx = ScopeIndex(core)
    tested = tn.tested()
    out: dict[str, list[TestResult]] = {}
    for c in commits:
        ids = set(tested.get(c, ()))
        for name, spec in sorted(specs.items()):
            if spec.id in ids:
                rec = tn.record(c, spec.id)
                if rec is not None:
                    out.setdefault(c, []).append(_judge(core, tn, idx, spec, c, rec, True))
    return out


def failing(core: RepoCore, test: str) -> set[str]:
    """The versions whose recorded result of TEST (its current spec) is a failure.

    Raises:
        NoSuchTestError: no such test.
    """
    specs = load_specs(core)
    if test not in specs:
        raise NoSuchTestError(test)
    commits = [c for c, ids in TestNotes(core).tested().items() if specs[test].id in ids]
    res = results_for(core, commits, specs={test: specs[test]})
    return {c for c, rs in res.items() if any(r.outcome == "fail" for r in rs)}


def run_test(core: RepoCore, spec: TestSpec, commit: str, *, force: bool = False,
             cwd: str | os.PathLike[str] | None = None) -> TestResult:
    """The result of ``spec`` on ``commit``: the recorded one, or run it now and record it
    (``force``: run again and replace). For ``--max-drop`` the parent version's run is
    needed; when it is not recorded it is run (and recorded) too, without going further up
    (its own verdict needs nothing of its parent's)."""
    tn = TestNotes(core)
    rec = None if force else tn.record(commit, spec.id)
    cached = rec is not None and not rec.get("export_error")
    if not cached:
        rec = execute(core, spec.cmd, commit, timeout=spec.timeout, cwd=cwd, test=spec.name)
        record_results(core, [(commit, spec, rec)], force=force)
    assert rec is not None
    idx = ScopeIndex(core)
    parent = idx.parent(spec, commit) if spec.max_drop else None
    prec = None
    if parent is not None:
        prec = tn.record(parent, spec.id)
        if prec is None:
            prec = execute(core, spec.cmd, parent, timeout=spec.timeout, cwd=cwd, test=spec.name)
            record_results(core, [(parent, spec, prec)])
    return judge(spec, commit, rec, parent=parent, parent_rec=prec, cached=cached)


def run_command(core: RepoCore, cmd: str, commit: str, *, timeout: float = 3600.0,
                cwd: str | os.PathLike[str] | None = None) -> TestResult:
    """Run an ad-hoc command on a version (``bisect --run CMD``), recording nothing: passed
    when it exits 0; an export failure is ``skipped``."""
    spec = TestSpec("run", cmd, timeout=timeout)
    rec = execute(core, cmd, commit, timeout=timeout, cwd=cwd, test="")
    return judge(spec, commit, rec)


def gate(core: RepoCore, *, tests: Sequence[str] = (), cwd: str | os.PathLike[str] | None = None,
         on_result: Callable[[TestResult], None] | None = None) -> Callable[[str], bool]:
    """A gate for ``commit``/``import --lossy`` (:func:`mgit.commit.gated` takes it as
    ``check``): every stored test that applies to the written version (``tests``: only
    these) runs on it and must pass; an untestable version does not pass. With no test
    applying, the gate passes."""

    def check(commit: str) -> bool:
        specs = load_specs(core)
        chosen = [specs[t] if t in specs else _missing(t) for t in tests] if tests else list(specs.values())
        idx = ScopeIndex(core)
        ok = True
        for spec in chosen:
            if idx.applies(spec, commit):
                r = run_test(core, spec, commit, cwd=cwd)
                if on_result is not None:
                    on_result(r)
                ok = ok and r.passed
        return ok

    return check


def _missing(name: str) -> TestSpec:
    raise NoSuchTestError(name)
