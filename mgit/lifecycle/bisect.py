"""Bisect and blame over the lineage: which version introduced a failure.

The search (:class:`Bisection`, :func:`search`) is pure: it takes a ``parents(oid)``
function, the BAD version, the GOOD ones and a predicate answering ``pass``, ``fail`` or
``skip`` (the version could not be tested), and finds the version that introduced the
failure. The versions it searches are git's: the ancestors of BAD that are not ancestors of
any GOOD, over the whole lineage DAG (a finetune's history runs through its base model's
versions; merges have several parents), or with ``first_parent`` only along first parents.
The answer is a version C that fails while each of its parents (its first parent with
``first_parent``) passes, or is an ancestor of a version that passes: C introduced the
failure.

- Each step tests the candidate whose ancestors among the candidates are closest to half of
  them (git's choice); a pass removes its ancestors, a fail becomes the new BAD.
- Outcomes already known (cached test results) are used first and cost nothing.
- Skipped (untestable) versions are routed around; when only skipped versions are left,
  the result lists every version that could be the first bad one.
- GOOD and BAD are checked with the predicate, but only when the answer depends on them (or
  when their result is cached): the search converges onto BAD when BAD passes, and onto the
  children of GOOD when GOOD fails, so both mistakes are always caught, while a chain of 32
  versions still takes at most 6 evaluations.
- The history must be monotone: once a version fails, its descendants fail. A version that
  passes after one of its ancestors failed, among everything seen (marked, cached or
  evaluated), makes the result "not bisectable: both outcomes seen after X", never an answer.

:func:`blame` answers "is the failure inherited from upstream?": which ancestors of REF
introduced the failure REF shows, and whether REF's own model line or an upstream model did.

The repository-facing functions (:func:`bisect`, :func:`blame`, the interactive session:
:func:`plan_start`, :func:`plan_mark`, :func:`current_step`, :func:`save_session`,
:func:`end_session`) run tests through :mod:`mgit.lifecycle.testing`. They never check
anything out: the ``bisect`` command does that in a working tree (this module sits below
:mod:`mgit.worktree.ops`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mgit._fs import atomic_write
from mgit.errors import BisectError, UsageError

if TYPE_CHECKING:
    from mgit.core import RepoCore

__all__ = [
    "PASS",
    "FAIL",
    "SKIP",
    "OUTCOMES",
    "STATE_FILE",
    "Bisection",
    "BisectResult",
    "BisectSession",
    "BisectStep",
    "BlameOrigin",
    "BlameResult",
    "Conflict",
    "Evaluation",
    "bisect",
    "blame",
    "blame_walk",
    "current_step",
    "end_session",
    "load_session",
    "plan_mark",
    "plan_start",
    "predicates",
    "save_session",
    "search",
]

from mgit.lifecycle.bisect_search import (  # noqa: F401 - re-exported
    label,
    PASS,
    FAIL,
    SKIP,
    OUTCOMES,
    STATE_FILE,
    _STATE_FORMAT,
    ParentsFn,
    Predicate,
    Label,
    _short,
    _bits,
    _parents_first,
    _outcome,
    Evaluation,
    Conflict,
    BisectResult,
    Bisection,
    search,
    _result,
)


# -- blame (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlameOrigin:
    """A failing ancestor of REF whose parents all pass: it introduced the failure."""

    oid: str
    model: str
    #: On REF's own model line (else an upstream model introduced it).
    own_line: bool
    #: Parents that could not be tested (the origin may lie above them).
    untested_parents: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"oid": self.oid, "model": self.model, "own_line": self.own_line,
                "untested_parents": self.untested_parents}


@dataclass(frozen=True)
class BlameResult:
    """Which ancestors of REF introduced the failure REF shows."""

    test: str
    ref: str
    oid: str
    model: str
    #: REF's own outcome: ``fail`` (then ``origins`` says where it came from), ``pass`` or
    #: ``skip`` (untestable).
    outcome: str
    #: Earliest first (parents first along the lineage).
    origins: list[BlameOrigin]
    evaluations: list[Evaluation]
    models: dict[str, str] = field(default_factory=dict)

    @property
    def introduced_by(self) -> BlameOrigin | None:
        """The earliest origin."""
        return self.origins[0] if self.origins else None

    @property
    def inherited(self) -> bool:
        """Whether the earliest origin is on another (upstream) model line."""
        first = self.introduced_by
        return first is not None and not first.own_line

    @property
    def message(self) -> str:
        """One line: the answer."""
        me = f"{self.ref} ({self.oid[:12]})"
        if self.outcome == PASS:
            return f"{me} passes {self.test}: nothing to blame"
        if self.outcome == SKIP:
            return f"{me} could not be tested with {self.test}"
        first = self.introduced_by
        assert first is not None
        where = (f"on its own model line {first.model}" if first.own_line
                 else f"upstream, by model {first.model}: inherited")
        return f"{me} fails {self.test}: introduced by {first.oid[:12]} ({first.model}), {where}"

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        first = self.introduced_by
        return {
            "test": self.test, "ref": self.ref, "oid": self.oid, "model": self.model,
            "outcome": self.outcome, "message": self.message,
            "introduced_by": None if first is None else first.to_json(),
            "inherited": self.inherited,
            "origins": [o.to_json() for o in self.origins],
            "evaluated": sum(1 for e in self.evaluations if not e.cached),
            "cached": sum(1 for e in self.evaluations if e.cached),
            "evaluations": [e.to_json(self.models) for e in self.evaluations],
        }


def blame_walk(
    oid: str,
    parents: ParentsFn,
    outcome: Predicate,
    *,
    on_eval: Callable[[Evaluation], None] | None = None,
) -> tuple[str, list[tuple[str, list[str]]], list[Evaluation]]:
    """Walk down from ``oid`` through failing versions: (its outcome, the origins as
    ``(version, untested parents)`` parents first, every evaluation).

    An origin fails and none of its parents fails (they pass, or could not be tested). Only
    REF, the failing versions reached from it and their parents are evaluated.
    """
    evaluations: list[Evaluation] = []
    seen: dict[str, str] = {}

    def get(c: str) -> str:
        if c not in seen:
            t0 = time.monotonic()
            raw = outcome(c)
            cached = False
            if isinstance(raw, tuple) and len(raw) == 3:
                raw, cached = (raw[0], raw[1]), raw[2]
            out, detail = _outcome(raw)
            seen[c] = out
            ev = Evaluation(c, out, cached=bool(cached), detail=detail,
                            seconds=None if cached else round(time.monotonic() - t0, 3))
            evaluations.append(ev)
            if on_eval is not None:
                on_eval(ev)
        return seen[c]

    mine = get(oid)
    if mine != FAIL:
        return mine, [], evaluations
    origins: list[tuple[str, list[str]]] = []
    stack, visited = [oid], {oid}
    while stack:
        f = stack.pop()
        failing_parent = False
        untested = []
        for p in parents(f):
            o = get(p)
            if o == FAIL:
                failing_parent = True
                if p not in visited:
                    visited.add(p)
                    stack.append(p)
            elif o == SKIP:
                untested.append(p)
        if not failing_parent:
            origins.append((f, untested))
    order = {c: i for i, c in enumerate(_parents_first([oid], parents))}
    origins.sort(key=lambda o: order[o[0]])
    return mine, origins, evaluations


# -- on a repository -------------------------------------------------------------------------


def _label_fn(core: RepoCore) -> Label:
    return lambda oid: f"{oid[:12]} ({core.model_of(oid)})"


def _test_result_outcome(res: Any) -> tuple[str, str | None]:
    """A :class:`mgit.lifecycle.specs.TestResult` as (outcome, detail)."""
    if getattr(res, "skipped", False) or getattr(res, "outcome", None) == "error":
        return SKIP, getattr(res, "error", None) or "could not be tested"
    if res.passed:
        return PASS, None
    failure = getattr(res, "failure", None)
    code = getattr(res, "exit_code", None)
    detail = f"exit {code}" if failure == "exit" and code is not None else failure
    return FAIL, detail


def _spec(core: RepoCore, name: str) -> Any:
    """The stored test NAME.

    Raises:
        NoSuchTestError: no such test.
    """
    from mgit.lifecycle import testing

    specs = testing.load_specs(core)
    if name not in specs:
        raise testing.NoSuchTestError(name)
    return specs[name]


def predicates(
    core: RepoCore, test: str | None, run: str | None, timeout: float | None
) -> tuple[Callable[[str], tuple[str, str | None]], Callable[[str], Any] | None]:
    """(predicate, cached) for ``--test NAME`` or ``--run CMD``."""
    from mgit.lifecycle import testing

    if (test is None) == (run is None):
        raise UsageError("give one of --test NAME or --run CMD")
    if test is not None:
        spec = _spec(core, test)

        def predicate(oid: str) -> tuple[str, str | None]:
            return _test_result_outcome(testing.run_test(core, spec, oid))

        tested = testing.TestNotes(core).tested()  # one read of the notes for every lookup

        def cached(oid: str) -> tuple[str, str | None] | None:
            if spec.id not in tested.get(oid, ()):
                return None
            res = testing.find_result(core, oid, spec)
            if res is None or getattr(res, "skipped", False):
                return None  # an untestable version is tried again
            return _test_result_outcome(res)

        return predicate, cached
    assert run is not None
    if timeout is None:
        from mgit.lifecycle.specs import DEFAULT_TIMEOUT

        timeout = DEFAULT_TIMEOUT

    def run_predicate(oid: str) -> tuple[str, str | None]:
        return _test_result_outcome(testing.run_command(core, run, oid, timeout=timeout))

    return run_predicate, None


def bisect(
    core: RepoCore,
    goods: Sequence[str],
    bad: str,
    *,
    test: str | None = None,
    run: str | None = None,
    first_parent: bool = False,
    skip: Sequence[str] = (),
    timeout: float | None = None,
    on_eval: Callable[[Evaluation], None] | None = None,
) -> BisectResult:
    """``mgit bisect GOOD... BAD (--test NAME | --run CMD)``: the version that introduced
    the failure. A test's results are cached (used first, recorded as they are run); a
    ``--run`` command is run on an exported copy of each version it needs, recording nothing.

    Raises:
        UsageError: neither or both of ``test`` and ``run``.
        NoSuchTestError: an unknown test.
        BisectError: see :func:`search`.
        RefNotFoundError: an unknown REF.
    """
    predicate, cached = predicates(core, test, run, timeout)
    bad_oid = core.resolve(bad)
    good_oids = [core.resolve(g) for g in goods]
    skip_oids = [core.resolve(s) for s in skip]
    res = search(core.parents_of, bad_oid, good_oids, predicate, cached=cached,
                 first_parent=first_parent, skip=skip_oids, on_eval=on_eval,
                 label=_label_fn(core))
    named = {res.bad, *res.goods, *res.possible, *(e.oid for e in res.evaluations)}
    named.update(p for p, _ in res.parents)
    named.update(via for _, via in res.parents)
    if res.conflict is not None:
        named.update((res.conflict.failing, res.conflict.passing))
    return replace(res, test=test, run=run, models={o: core.model_of(o) for o in named})


def blame(
    core: RepoCore,
    spec_name: str,
    ref: str,
    *,
    on_eval: Callable[[Evaluation], None] | None = None,
) -> BlameResult:
    """``mgit test blame TEST REF``: which ancestors of REF introduced the failure of TEST
    that REF shows, and whether REF's model line or an upstream model did.

    Walks down REF's ancestry (all parents the test applies to) through failing versions,
    running TEST where it has no recorded result (and recording it); the versions that fail
    while none of their parents fails are the origins, earliest first.

    Raises:
        NoSuchTestError: an unknown test. RefNotFoundError: an unknown REF.
    """
    from mgit.lifecycle import testing

    spec = _spec(core, spec_name)
    oid = core.resolve(ref)

    def outcome(c: str) -> tuple[str, str | None, bool]:
        res = testing.run_test(core, spec, c)
        out, detail = _test_result_outcome(res)
        return out, detail, bool(getattr(res, "cached", False))

    scope = testing.ScopeIndex(core)

    def parents(c: str) -> list[str]:
        # Only versions the test applies to: a base model outside its scope (a sentence
        # encoder under a sentiment test) neither passes nor fails it, so it cannot be where
        # a failure came from; the walk stops there.
        return [p for p in core.parents_of(c) if scope.applies(spec, p)]

    mine, found, evaluations = blame_walk(oid, parents, outcome, on_eval=on_eval)
    model = core.model_of(oid)
    origins = [
        BlameOrigin(o, core.model_of(o), core.model_of(o) == model, untested)
        for o, untested in found
    ]
    models = {e.oid: core.model_of(e.oid) for e in evaluations}
    return BlameResult(spec_name, ref, oid, model, mine, origins, evaluations, models)


# -- the interactive session -----------------------------------------------------------------


@dataclass(frozen=True)
class BisectSession:
    """``.mgit/BISECT_STATE``: what ``bisect start`` was given, where HEAD was, every mark."""

    bad: str
    goods: list[str]
    first_parent: bool
    head_model: str | None
    head_oid: str | None
    #: ``{"mark": "good" | "bad" | "skip", "oid": ..., "ref": what the user typed}``, in order.
    marks: list[dict[str, Any]] = field(default_factory=list)
    started: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON value (the file's content)."""
        return {
            "format": _STATE_FORMAT, "bad": self.bad, "goods": self.goods,
            "first_parent": self.first_parent,
            "orig_head": {"model": self.head_model, "oid": self.head_oid},
            "marks": self.marks, "started": self.started,
        }

    @classmethod
    def from_json(cls, v: Any) -> BisectSession:
        """Parse the file's content.

        Raises:
            BisectError: not a bisect state this mgit writes.
        """
        try:
            if v.get("format") != _STATE_FORMAT:
                raise ValueError("format")
            head = v["orig_head"]
            marks = [dict(m) for m in v["marks"]]
            for m in marks:
                if m["mark"] not in ("good", "bad", "skip") or not isinstance(m["oid"], str):
                    raise ValueError("mark")
            return cls(
                bad=str(v["bad"]), goods=[str(g) for g in v["goods"]],
                first_parent=bool(v["first_parent"]), head_model=head.get("model"),
                head_oid=head.get("oid"), marks=marks, started=dict(v.get("started") or {}),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise BisectError(
                f"damaged bisect state: {STATE_FILE}",
                hint=f"remove .mgit/{STATE_FILE} to end the bisect (HEAD stays where it is)",
            ) from None


@dataclass(frozen=True)
class BisectStep:
    """Where an interactive bisect stands: the version to test next, or the answer."""

    status: str  # "testing", "found", "ambiguous", "not_bisectable"
    next: str | None
    #: Candidates left to test, and roughly how many steps that takes.
    left: int
    steps: int
    bad: str
    first_bad: str | None
    possible: list[str]
    conflict: Conflict | None
    mark: dict[str, Any] | None = None
    #: For ``found``: why the first bad version's parents count as passing (see
    #: :attr:`BisectResult.parents`).
    parents: list[tuple[str, str]] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)

    def label(self, oid: str) -> str:
        """``<short id> (<model>)``."""
        return label(self.models, oid)

    @property
    def message(self) -> str:
        """One line."""
        if self.status == "testing":
            assert self.next is not None
            return (f"bisecting: {self.left} version(s) left to test after this (roughly "
                    f"{self.steps} step(s)); test {self.label(self.next)}")
        if self.status == "found":
            assert self.first_bad is not None
            return f"{self.label(self.first_bad)} is the first bad version"
        if self.status == "ambiguous":
            return ("only skipped versions are left to test: the first bad version is one of "
                    + ", ".join(self.label(p) for p in self.possible))
        assert self.conflict is not None
        return self.conflict.message(self.label)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        def ref(oid: str | None) -> dict[str, Any] | None:
            return None if oid is None else {"oid": oid, "model": self.models.get(oid)}

        return {
            "status": self.status, "message": self.message, "next": ref(self.next),
            "left": self.left, "steps": self.steps, "bad": ref(self.bad),
            "first_bad": ref(self.first_bad), "possible": [ref(p) for p in self.possible],
            "conflict": None if self.conflict is None else {
                "failing": ref(self.conflict.failing), "passing": ref(self.conflict.passing)},
            "mark": self.mark,
            "parents": [{"oid": p, "model": self.models.get(p), "passes_because": via}
                        for p, via in self.parents],
        }


def _state_path(core: RepoCore) -> Any:
    return core.mgit_dir / STATE_FILE


def load_session(core: RepoCore) -> BisectSession:
    """The session in progress.

    Raises:
        BisectError: none (or a damaged state file).
    """
    try:
        data = _state_path(core).read_bytes()
    except FileNotFoundError:
        raise BisectError(
            "no bisect in progress", hint="start one with 'mgit bisect start BAD GOOD...'"
        ) from None
    try:
        v = json.loads(data)
    except ValueError:
        v = None
    return BisectSession.from_json(v)


def save_session(core: RepoCore, session: BisectSession) -> None:
    """Write the session's state (atomically)."""
    atomic_write(_state_path(core), (json.dumps(session.to_json(), indent=1) + "\n").encode())


def _session_bisection(core: RepoCore, s: BisectSession, extra: Iterable[str] = ()) -> Bisection:
    b = Bisection(core.parents_of, s.bad, s.goods, first_parent=s.first_parent, trusted=True,
                  extra=[*(m["oid"] for m in s.marks), *extra], label=_label_fn(core))
    for m in s.marks:
        b.observe(m["oid"], {"good": PASS, "bad": FAIL, "skip": SKIP}[m["mark"]])
    return b


def _step(core: RepoCore, b: Bisection, mark: dict[str, Any] | None = None) -> BisectStep:
    nxt = b.next()
    left = b.untested()
    conflict = b.conflict
    possible: list[str] = []
    first_bad = None
    if conflict is not None:
        status = "not_bisectable"
    elif nxt is not None:
        status = "testing"
    else:
        possible = b.possible()
        status = "found" if len(possible) == 1 else "ambiguous"
        first_bad = possible[0] if status == "found" else None
    parents = b.justification(first_bad) if first_bad is not None else []
    remaining = max(left - 1, 0) if nxt is not None else 0
    steps = math.ceil(math.log2(remaining + 1)) if remaining else 0
    named = {b.current_bad, *possible, *([nxt] if nxt else [])}
    named.update(o for pair in parents for o in pair)
    if conflict is not None:
        named.update((conflict.failing, conflict.passing))
    return BisectStep(
        status=status, next=nxt, left=remaining, steps=steps, bad=b.current_bad,
        first_bad=first_bad, possible=possible, conflict=conflict, mark=mark, parents=parents,
        models={o: core.model_of(o) for o in named},
    )


def plan_start(
    core: RepoCore, bad: str, goods: Sequence[str], *, first_parent: bool = False
) -> tuple[BisectSession, BisectStep]:
    """``bisect start BAD GOOD...``: the new session and its first step (not saved yet:
    the command checks the version out first, then :func:`save_session`).

    Raises:
        BisectError: a bisect in progress; GOOD not an ancestor of BAD.
    """
    if _state_path(core).exists():
        raise BisectError("a bisect is already in progress",
                          hint="'mgit bisect reset' ends it ('mgit bisect log' shows it)")
    bad_oid = core.resolve(bad)
    good_oids = list(dict.fromkeys(core.resolve(g) for g in goods))
    session = BisectSession(
        bad=bad_oid, goods=good_oids, first_parent=first_parent, head_model=core.head_model,
        head_oid=core.head(), started={"bad": bad, "goods": list(goods)},
    )
    b = _session_bisection(core, session)
    return session, _step(core, b)


def current_step(core: RepoCore, session: BisectSession | None = None) -> BisectStep:
    """Where the session in progress stands."""
    s = session if session is not None else load_session(core)
    return _step(core, _session_bisection(core, s))


def plan_mark(
    core: RepoCore, kind: str, ref: str | None = None
) -> tuple[BisectSession, BisectStep]:
    """``bisect good|bad|skip [REF]``: the session with the mark added and the next step
    (not saved yet). REF defaults to HEAD in a working tree, else to the version the
    session asked to test.

    Raises:
        BisectError: no bisect in progress; REF outside the bisected history.
    """
    if kind not in ("good", "bad", "skip"):
        raise UsageError(f"unknown mark {kind!r}")
    s = load_session(core)
    if ref is None:
        if core.bare:
            nxt = current_step(core, s).next
            if nxt is None:
                raise BisectError("nothing left to test: name the version to mark")
            oid, typed = nxt, nxt
        else:
            head = core.head()
            if head is None:
                raise BisectError("HEAD has no version: name the version to mark")
            oid, typed = head, "HEAD"
    else:
        oid, typed = core.resolve(ref), ref
    b = _session_bisection(core, s, extra=[oid])
    label = _label_fn(core)
    given = "bad" if oid == s.bad else "good" if oid in s.goods else None
    if given is not None and kind != given:
        raise BisectError(
            f"{label(oid)} was given as {given.upper()} when the bisect started",
            hint="'mgit bisect reset', then start again with other versions",
        )
    if not b.is_ancestor(oid, s.bad):
        below_bad = b.is_ancestor(s.bad, oid)
        if kind != "good" and below_bad:
            raise BisectError(
                f"{label(oid)} derives from BAD {label(s.bad)}: it is not in the bisected range",
                hint="mark versions between GOOD and BAD ('mgit bisect log' shows them)",
            )
        if not below_bad:
            raise BisectError(
                f"{label(oid)} is not an ancestor of BAD {label(s.bad)}: it is not in the "
                "bisected range",
                hint="mark versions between GOOD and BAD ('mgit bisect log' shows them)",
            )
        # ``good`` on a descendant of BAD: an observation that makes the history
        # non-monotone; recorded, and the step says so.
    mark = {"mark": kind, "oid": oid, "ref": typed}
    b.observe(oid, {"good": PASS, "bad": FAIL, "skip": SKIP}[kind])
    session = replace(s, marks=[*s.marks, mark])
    return session, _step(core, b, mark)


def end_session(core: RepoCore) -> BisectSession:
    """``bisect reset``: remove the state (the command first returns HEAD to where it was).

    Raises:
        BisectError: no bisect in progress.
    """
    s = load_session(core)
    _state_path(core).unlink(missing_ok=True)
    return s
