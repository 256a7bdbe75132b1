"""``test run``: every test that applies to each of many versions, several at a time.

Recorded results are not run again (unless forced); a test with ``--max-drop`` runs on a
version after its parent version (added to the batch when its run is not recorded); finished
runs are written in batches (:data:`FLUSH_SECONDS`), each a notes commit moved by
compare-and-swap, so a killed batch loses at most the runs of its last second and never
leaves half a result.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mgit.core import RepoCore
from mgit.errors import UsageError
from mgit.lifecycle.process import execute, kill_running
from mgit.lifecycle.specs import TestResult, TestSpec, judge
from mgit.lifecycle.testing import NoSuchTestError, ScopeIndex, TestNotes, record_results

__all__ = ["FLUSH_SECONDS", "RunReport", "run_tests"]

#: A batch writes its finished runs at most this often (and at its end): each write is a new
#: notes tree, so coalescing keeps the notes history small when tests are quick.
FLUSH_SECONDS = 1.0


@dataclass
class RunReport:
    """What ``test run`` did: every result (run now or cached), in the order planned."""

    results: list[TestResult] = field(default_factory=list)
    ran: int = 0
    cached: int = 0

    @property
    def failed(self) -> list[TestResult]:
        """Results that did not pass (failures and untestable versions)."""
        return [r for r in self.results if not r.passed]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "ran": self.ran, "cached": self.cached,
            "passed": sum(r.passed for r in self.results),
            "failed": sum(r.outcome == "fail" for r in self.results),
            "errors": sum(r.outcome == "error" for r in self.results),
            "results": [r.to_json() for r in self.results],
        }


class _Recorder:
    """Collects finished runs and writes them in batches (at most every FLUSH_SECONDS)."""

    def __init__(self, core: RepoCore, force: bool) -> None:
        self.core, self.force = core, force
        self.lock = threading.Lock()
        self.pending: list[tuple[str, TestSpec, dict[str, Any]]] = []
        self.last = 0.0

    def add(self, commit: str, spec: TestSpec, rec: dict[str, Any]) -> None:
        with self.lock:
            self.pending.append((commit, spec, rec))
            if time.monotonic() - self.last >= FLUSH_SECONDS:
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        items, self.pending = self.pending, []
        if items:
            record_results(self.core, items, force=self.force)
        self.last = time.monotonic()


def run_tests(
    core: RepoCore,
    commits: Sequence[str],
    *,
    tests: Sequence[str] = (),
    force: bool = False,
    jobs: int = 1,
    cwd: str | os.PathLike[str] | None = None,
    on_start: Callable[[str, TestSpec], None] | None = None,
    on_result: Callable[[TestResult, int, int], None] | None = None,
) -> RunReport:
    """Run every test that applies to each version (``tests``: only these), ``jobs`` at a time.

    Recorded results are not run again (``force``: they are); a test with ``--max-drop``
    runs on a version after its parent version (which is added to the batch when its run is
    not recorded). ``on_start(commit, spec)`` and ``on_result(result, done, total)`` are
    called as runs start and finish (from worker threads, one at a time).

    Raises:
        NoSuchTestError: a name in ``tests`` that is no stored test.
        UsageError: no tests are stored.
    """
    tn = TestNotes(core)
    specs = tn.specs()
    if not specs:
        raise UsageError("no tests are stored", hint="add one with 'mgit test add NAME --cmd CMD'")
    for t in tests:
        if t not in specs:
            raise NoSuchTestError(t)
    chosen = [specs[t] for t in sorted(set(tests))] if tests else [specs[n] for n in sorted(specs)]
    idx = ScopeIndex(core)
    plan: list[tuple[str, TestSpec]] = []
    planned: set[tuple[str, str]] = set()
    for spec in chosen:
        for c in commits:
            if not idx.applies(spec, c):
                continue
            if spec.max_drop:
                p = idx.parent(spec, c)
                if p is not None and (p, spec.id) not in planned and tn.record(p, spec.id) is None:
                    plan.append((p, spec))
                    planned.add((p, spec.id))
            if (c, spec.id) not in planned:
                plan.append((c, spec))
                planned.add((c, spec.id))
    report = RunReport()
    recs: dict[tuple[str, str], dict[str, Any]] = {}
    todo: list[tuple[str, TestSpec]] = []
    for c, spec in plan:
        rec = None if force else tn.record(c, spec.id)
        if rec is not None and not rec.get("export_error"):
            recs[(c, spec.id)] = rec
            report.cached += 1
        else:
            todo.append((c, spec))
    total = len(plan)
    done = [0]
    out_lock = threading.Lock()
    finished: dict[tuple[str, str], TestResult] = {}

    def result_of(c: str, spec: TestSpec, cached: bool) -> TestResult:
        rec = recs[(c, spec.id)]
        parent = idx.parent(spec, c) if spec.max_drop else None
        prec = recs.get((parent, spec.id)) if parent is not None else None
        if parent is not None and prec is None:
            prec = tn.record(parent, spec.id)
        return judge(spec, c, rec, parent=parent, parent_rec=prec, cached=cached)

    def report_one(c: str, spec: TestSpec, cached: bool) -> None:
        with out_lock:
            r = result_of(c, spec, cached)
            finished[(c, spec.id)] = r
            done[0] += 1
            if on_result is not None:
                on_result(r, done[0], total)

    # Cached results first (their parents' results are known too).
    for c, spec in plan:
        if (c, spec.id) in recs:
            report_one(c, spec, True)
    recorder = _Recorder(core, force)
    waiting_on: dict[tuple[str, str], tuple[str, str]] = {}
    keys_todo = {(c, s.id) for c, s in todo}
    for c, spec in todo:
        if spec.max_drop:
            p = idx.parent(spec, c)
            if p is not None and (p, spec.id) in keys_todo:
                waiting_on[(c, spec.id)] = (p, spec.id)
    try:
        _schedule(todo, waiting_on, max(1, jobs),
                  lambda c, spec: _run_one(core, c, spec, cwd, recs, recorder, on_start, out_lock),
                  lambda c, spec: report_one(c, spec, False))
    except BaseException:
        try:
            recorder.flush()  # keep the runs that did finish (interrupted, or a worker failed)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    recorder.flush()
    report.ran = len(todo)
    report.results = [finished[(c, s.id)] for c, s in plan if (c, s.id) in finished]
    return report


def _run_one(core: RepoCore, c: str, spec: TestSpec, cwd: Any, recs: dict[tuple[str, str], dict[str, Any]],
             recorder: _Recorder, on_start: Callable[[str, TestSpec], None] | None, lock: threading.Lock) -> None:
    if on_start is not None:
        with lock:
            on_start(c, spec)
    rec = execute(core, spec.cmd, c, timeout=spec.timeout, cwd=cwd, test=spec.name)
    if rec.get("interrupted"):
        raise KeyboardInterrupt  # killed by kill_running: no result
    recs[(c, spec.id)] = rec
    recorder.add(c, spec, rec)


def _schedule(
    todo: list[tuple[str, TestSpec]],
    waiting_on: dict[tuple[str, str], tuple[str, str]],
    jobs: int,
    work: Callable[[str, TestSpec], None],
    done: Callable[[str, TestSpec], None],
) -> None:
    """Run ``work`` on every item, ``jobs`` at a time, an item after the item it waits on."""
    cond = threading.Condition()
    ready = [(c, s) for c, s in todo if (c, s.id) not in waiting_on]
    blocked: dict[tuple[str, str], list[tuple[str, TestSpec]]] = {}
    for c, s in todo:
        dep = waiting_on.get((c, s.id))
        if dep is not None:
            blocked.setdefault(dep, []).append((c, s))
    remaining = [len(todo)]
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with cond:
                while not ready and remaining[0] > 0 and not errors:
                    cond.wait()
                if errors or remaining[0] <= 0 or not ready:
                    cond.notify_all()
                    return
                c, s = ready.pop(0)
            try:
                work(c, s)
                done(c, s)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                with cond:
                    errors.append(exc)
                    cond.notify_all()
                return
            with cond:
                remaining[0] -= 1
                ready.extend(blocked.pop((c, s.id), []))
                cond.notify_all()

    threads = [threading.Thread(target=worker, name=f"mgit-test-{i}", daemon=True) for i in range(min(jobs, max(1, len(todo))))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        with cond:
            errors.append(KeyboardInterrupt())
            cond.notify_all()
        kill_running()
        raise
    if errors:
        raise errors[0]
