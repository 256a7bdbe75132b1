"""The bisection search, pure: which version of a lineage DAG introduced a failure.

See :mod:`mgit.lifecycle.bisect` for the rules (git's candidate set over the whole lineage or
first parents, half-splitting choice, cached outcomes first, skips routed around, non-monotone
histories refused). Nothing here reads a repository: it takes a ``parents(oid)`` function and
a predicate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mgit.errors import BisectError

__all__ = [
    "PASS", "FAIL", "SKIP", "OUTCOMES", "STATE_FILE", "Bisection", "BisectResult", "Conflict",
    "Evaluation", "search",
]

PASS, FAIL, SKIP = "pass", "fail", "skip"
OUTCOMES = (PASS, FAIL, SKIP)
#: The interactive session's state, in the repository's mgit folder.
STATE_FILE = "BISECT_STATE"
_STATE_FORMAT = 1

ParentsFn = Callable[[str], list[str]]
#: A predicate answers an outcome, or (outcome, detail) where detail says why (``exit 1``).
Predicate = Callable[[str], "str | tuple[str, str | None]"]
Label = Callable[[str], str]


def label(models: dict[str, str], oid: str) -> str:
    """``<short id> (<model>)`` of a version, its model line taken from ``models``."""
    model = models.get(oid)
    return f"{oid[:12]} ({model})" if model else oid[:12]


def _short(oid: str) -> str:
    return oid[:12]


def _bits(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _parents_first(tips: Iterable[str], parents: ParentsFn) -> list[str]:
    """Every ancestor of ``tips`` (themselves included), each after all of its parents."""
    order: list[str] = []
    seen: set[str] = set()
    for tip in tips:
        if tip in seen:
            continue
        seen.add(tip)
        stack = [(tip, iter(parents(tip)))]
        while stack:
            node, it = stack[-1]
            for p in it:
                if p not in seen:
                    seen.add(p)
                    stack.append((p, iter(parents(p))))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def _outcome(value: Any) -> tuple[str, str | None]:
    """A predicate's answer as (outcome, detail)."""
    detail = None
    if isinstance(value, tuple):
        value, detail = value
    if value is True:
        value = PASS
    elif value is False:
        value = FAIL
    if value not in OUTCOMES:
        raise ValueError(f"a bisect predicate answers pass, fail or skip, not {value!r}")
    return value, detail


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """One outcome the search used: evaluated now, or known before (``cached``: cost nothing)."""

    oid: str
    outcome: str
    cached: bool = False
    #: ``"good"`` / ``"bad"`` when this checked a GOOD or BAD endpoint, ``"skip"`` for
    #: ``--skip``, else ``""``.
    role: str = ""
    detail: str | None = None
    seconds: float | None = None

    def to_json(self, models: dict[str, str] | None = None) -> dict[str, Any]:
        """JSON value."""
        return {
            "oid": self.oid, "model": (models or {}).get(self.oid), "outcome": self.outcome,
            "cached": self.cached, "role": self.role or None, "detail": self.detail,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Conflict:
    """Evidence that the history is not monotone: ``failing`` fails, yet its descendant
    ``passing`` passes."""

    failing: str
    passing: str

    def message(self, label: Label = _short) -> str:
        """The one-line explanation."""
        return (
            f"not bisectable: both outcomes seen after {label(self.failing)}: it fails, but "
            f"its descendant {label(self.passing)} passes"
        )


@dataclass(frozen=True)
class BisectResult:
    """The outcome of a bisect.

    ``status``: ``found`` (``first_bad`` introduced the failure), ``ambiguous`` (skipped
    versions hide it: it is one of ``possible``) or ``not_bisectable`` (``conflict``).
    """

    status: str
    bad: str
    goods: list[str]
    first_parent: bool
    first_bad: str | None
    possible: list[str]
    conflict: Conflict | None
    #: Why ``first_bad``'s parents count as passing: (parent, the version whose pass
    #: implies it: the parent itself when it was tested).
    parents: list[tuple[str, str]]
    evaluations: list[Evaluation]
    #: Versions searched at the start (ancestors of BAD that are not ancestors of a GOOD).
    candidates: int
    test: str | None = None
    run: str | None = None
    #: Model line of every version named in the result (filled by :func:`bisect`).
    models: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """Whether the version that introduced the failure was found."""
        return self.status == "found"

    @property
    def evaluated(self) -> int:
        """Predicate calls made (cached outcomes not counted)."""
        return sum(1 for e in self.evaluations if not e.cached and e.role != "skip")

    @property
    def cached(self) -> int:
        """Outcomes known before the search that it used."""
        return sum(1 for e in self.evaluations if e.cached)

    def label(self, oid: str) -> str:
        """``<short id> (<model>)``."""
        return label(self.models, oid)

    @property
    def message(self) -> str:
        """One line: the answer."""
        if self.status == "found":
            assert self.first_bad is not None
            return f"{self.label(self.first_bad)} is the first bad version"
        if self.status == "ambiguous":
            return (
                f"skipped versions hide the first bad version: it is one of {len(self.possible)}: "
                + ", ".join(self.label(p) for p in self.possible)
            )
        assert self.conflict is not None
        return self.conflict.message(self.label)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        def ref(oid: str | None) -> dict[str, Any] | None:
            return None if oid is None else {"oid": oid, "model": self.models.get(oid)}

        return {
            "status": self.status,
            "message": self.message,
            "first_bad": ref(self.first_bad),
            "possible": [ref(p) for p in self.possible],
            "parents": [{"oid": p, "model": self.models.get(p), "passes_because": via}
                        for p, via in self.parents],
            "conflict": None if self.conflict is None else {
                "failing": ref(self.conflict.failing), "passing": ref(self.conflict.passing),
            },
            "bad": ref(self.bad),
            "good": [ref(g) for g in self.goods],
            "first_parent": self.first_parent,
            "test": self.test,
            "run": self.run,
            "candidates": self.candidates,
            "evaluated": self.evaluated,
            "cached": self.cached,
            "evaluations": [e.to_json(self.models) for e in self.evaluations],
        }


# -- the search (pure) -----------------------------------------------------------------------


@dataclass
class _Derived:
    conflict: Conflict | None
    bad: str
    cand: int  # bitmask of the candidates (the current bad included)
    testable: int  # candidates that may be tested next
    skipped: int  # skipped candidates
    pass_cover: int  # ancestors of every version seen passing


class Bisection:
    """The state of one bisect: the DAG below BAD, the GOOD versions and every outcome
    observed. Order-independent: the state is derived from the observations each time.

    Args:
        parents: ``parents(oid) -> list[oid]`` (first parent first).
        bad: the version that fails.
        goods: versions that pass, each an ancestor of ``bad``.
        first_parent: search only along first parents.
        trusted: GOOD and BAD are observations (the interactive form: the user says so),
            not claims to check.
        extra: more versions whose outcome may be observed (the interactive form's marks):
            they join the DAG that is read.
        label: how errors name a version.

    Raises:
        BisectError: no GOOD, GOOD is BAD, or GOOD is not an ancestor of BAD.
    """

    def __init__(
        self,
        parents: ParentsFn,
        bad: str,
        goods: Sequence[str],
        *,
        first_parent: bool = False,
        trusted: bool = False,
        extra: Iterable[str] = (),
        label: Label = _short,
    ) -> None:
        goods = list(dict.fromkeys(goods))
        if not goods:
            raise BisectError("bisect needs at least one GOOD version")
        self._par: dict[str, list[str]] = {}

        def par(oid: str) -> list[str]:
            ps = self._par.get(oid)
            if ps is None:
                ps = self._par[oid] = list(parents(oid))
            return ps

        self.order = _parents_first(dict.fromkeys([bad, *goods, *extra]), par)
        self.index = {oid: i for i, oid in enumerate(self.order)}
        anc: list[int] = []
        fp: list[int] = []
        for i, oid in enumerate(self.order):
            a = f = 1 << i
            ps = self._par[oid]
            for p in ps:
                a |= anc[self.index[p]]
            if ps:
                f |= fp[self.index[ps[0]]]
            anc.append(a)
            fp.append(f)
        self._anc, self._fp = anc, fp
        self._region = fp if first_parent else anc
        self.bad = bad
        self.goods = goods
        self.first_parent = first_parent
        self.label = label
        for g in goods:
            if g == bad:
                raise BisectError(f"GOOD and BAD are the same version: {label(g)}")
            if not self.is_ancestor(g, bad):
                if self.is_ancestor(bad, g):
                    raise BisectError(
                        f"GOOD {label(g)} is not an ancestor of BAD {label(bad)}: "
                        "it derives from it",
                        hint="did you swap them? the order is: GOOD BAD (start: BAD GOOD...)",
                    )
                raise BisectError(
                    f"GOOD {label(g)} is not an ancestor of BAD {label(bad)}",
                    hint="GOOD must be in BAD's history ('mgit log --graph BAD')",
                )
        #: The endpoints as claimed: BAD fails, every GOOD passes.
        self.claims: dict[str, str] = {g: PASS for g in goods}
        self.claims[bad] = FAIL
        self.outcomes: dict[str, str] = dict(self.claims) if trusted else {}
        self._derived: _Derived | None = None

    # -- the DAG ----------------------------------------------------------------------------

    def __contains__(self, oid: object) -> bool:
        return oid in self.index

    def is_ancestor(self, a: str, b: str) -> bool:
        """``a`` is ``b`` or one of its ancestors (both in the DAG read)."""
        return bool(self._anc[self.index[b]] >> self.index[a] & 1)

    def parents(self, oid: str) -> list[str]:
        """The parents that count for the answer: all of them, or the first one."""
        ps = self._par[oid]
        return ps[:1] if self.first_parent else ps

    def in_order(self, oids: Iterable[str]) -> list[str]:
        """``oids`` parents first."""
        return sorted(oids, key=self.index.__getitem__)

    def _oids(self, mask: int) -> list[str]:
        return [self.order[i] for i in _bits(mask)]

    # -- observations -----------------------------------------------------------------------

    def observe(self, oid: str, outcome: str) -> None:
        """Record an outcome (a later one for the same version replaces it).

        Raises:
            ValueError: a version outside the DAG read, or an unknown outcome.
        """
        if oid not in self.index:
            raise ValueError(f"{oid} is not in the bisected history")
        self.outcomes[oid] = _outcome(outcome)[0]
        self._derived = None

    def _derive(self) -> _Derived:
        if self._derived is not None:
            return self._derived
        masks = {PASS: 0, FAIL: 0, SKIP: 0}
        for oid, out in self.outcomes.items():
            masks[out] |= 1 << self.index[oid]
        fail_mask = masks[FAIL]
        conflict = None
        pass_cover = 0
        for i in _bits(masks[PASS]):
            pass_cover |= self._anc[i]
            hit = self._anc[i] & fail_mask
            if hit and conflict is None:
                conflict = Conflict(self.order[next(_bits(hit))], self.order[i])
        goods_mask = pass_cover
        for g in self.goods:
            goods_mask |= self._anc[self.index[g]]
        bad = self.bad
        while True:
            ib = self.index[bad]
            cand = self._region[ib] & ~goods_mask
            fails = cand & fail_mask & ~(1 << ib)
            if not fails:
                break
            # a failing candidate becomes the new BAD: the one that leaves the fewest
            bad = self.order[min(_bits(fails), key=lambda i: (
                (self._region[i] & cand).bit_count(), self.order[i]))]
        me = 1 << self.index[bad]
        skipped = cand & masks[SKIP] & ~me
        testable = cand & ~masks[SKIP] & ~fail_mask & ~masks[PASS] & ~me
        self._derived = _Derived(conflict, bad, cand, testable, skipped, pass_cover)
        return self._derived

    # -- the state --------------------------------------------------------------------------

    @property
    def conflict(self) -> Conflict | None:
        """A failing version with a passing descendant, among the outcomes observed."""
        return self._derive().conflict

    @property
    def current_bad(self) -> str:
        """The lowest version known (or claimed) to fail."""
        return self._derive().bad

    def candidates(self) -> list[str]:
        """The versions that may have introduced the failure, parents first."""
        return self._oids(self._derive().cand)

    def untested(self) -> int:
        """How many candidates are left to test."""
        return self._derive().testable.bit_count()

    def next(self) -> str | None:
        """The version to test next, or None when there is nothing left to test (or the
        history is not monotone)."""
        d = self._derive()
        if d.conflict is not None or not d.testable:
            return None
        total = d.cand.bit_count()
        best, best_key = None, None
        for i in _bits(d.testable):
            w = (self._region[i] & d.cand).bit_count()
            key = (-min(w, total - w), self.order[i])
            if best_key is None or key < best_key:
                best, best_key = i, key
        assert best is not None
        return self.order[best]

    def possible(self) -> list[str]:
        """When nothing is left to test: the versions that may be the first bad one (the
        current BAD, and every skipped candidate), parents first."""
        d = self._derive()
        return self._oids(d.skipped | 1 << self.index[d.bad])

    def justification(self, oid: str) -> list[tuple[str, str]]:
        """For each parent that counts of a possible answer outside the candidates: the
        parent and the version whose pass implies its own (a version seen passing, else a
        GOOD)."""
        d = self._derive()
        out = []
        for p in self.parents(oid):
            ip = self.index[p]
            if d.cand >> ip & 1:
                continue
            via = None
            if d.pass_cover >> ip & 1:
                for q, o in sorted(self.outcomes.items(), key=lambda kv: self.index[kv[0]]):
                    if o == PASS and self._anc[self.index[q]] >> ip & 1:
                        via = q
                        break
            else:
                via = next((g for g in self.goods if self._anc[self.index[g]] >> ip & 1), None)
            assert via is not None, "every parent outside the candidates is below a GOOD"
            out.append((p, via))
        return out

    def needs(self) -> list[str]:
        """When nothing is left to test: the GOOD and BAD versions the answer rests on whose
        claimed outcome was not observed yet (observe them, then look again)."""
        d = self._derive()
        if d.conflict is not None or d.testable:
            return []
        need: list[str] = []
        if d.bad == self.bad and self.outcomes.get(self.bad) != FAIL:
            need.append(self.bad)
        for x in self.possible():
            for _p, via in self.justification(x):
                if self.outcomes.get(via) != PASS and via not in need:
                    need.append(via)
        return need

    def endpoint_error(self) -> BisectError | None:
        """The error for a GOOD or BAD whose observed outcome contradicts the claim."""
        for oid, claim in self.claims.items():
            seen = self.outcomes.get(oid)
            if seen is None or seen == claim:
                continue
            what = "BAD" if claim == FAIL else "GOOD"
            if seen == SKIP:
                return BisectError(
                    f"{what} {self.label(oid)} could not be tested",
                    hint="its model could not be exported or run; choose another " + what,
                )
            verb = "passes" if seen == PASS else "fails"
            return BisectError(
                f"{what} {self.label(oid)} {verb}: bisect needs a {what} that "
                + ("fails" if claim == FAIL else "passes"),
                hint="check the test, or choose other versions (GOOD must pass, BAD must fail)",
            )
        return None


def search(
    parents: ParentsFn,
    bad: str,
    goods: Sequence[str],
    predicate: Predicate,
    *,
    cached: Callable[[str], Any] | None = None,
    first_parent: bool = False,
    skip: Iterable[str] = (),
    on_eval: Callable[[Evaluation], None] | None = None,
    label: Label = _short,
) -> BisectResult:
    """Find the version between ``goods`` and ``bad`` that introduced the failure.

    Args:
        parents: ``parents(oid) -> list[oid]``.
        bad: a version that fails; ``goods``: versions that pass, ancestors of ``bad``.
        predicate: ``oid -> "pass" | "fail" | "skip"`` (or ``(outcome, detail)``); called at
            most once per version.
        cached: ``oid -> outcome | None``: outcomes known already (free); asked for the
            candidates and the endpoints before anything is evaluated.
        skip: versions never to test (``--skip``; those outside BAD's history are ignored).
        on_eval: called with each outcome as it becomes known.

    Raises:
        BisectError: bad endpoints (GOOD not an ancestor of BAD, BAD passes, GOOD fails,
            either cannot be tested, an endpoint skipped).
    """
    b = Bisection(parents, bad, goods, first_parent=first_parent, label=label)
    evaluations: list[Evaluation] = []
    initial = b.candidates()

    def record(ev: Evaluation) -> None:
        evaluations.append(ev)
        if on_eval is not None:
            on_eval(ev)

    def role(oid: str) -> str:
        return "bad" if oid == bad else "good" if oid in b.claims else ""

    for s in dict.fromkeys(skip):
        if s in b.claims:
            raise BisectError(f"--skip {label(s)}: GOOD and BAD cannot be skipped")
        if s not in b:
            continue  # not in BAD's history: nothing to skip
        b.observe(s, SKIP)
        record(Evaluation(s, SKIP, role="skip"))
    if cached is not None:
        for oid in [*initial, *b.goods]:
            if oid in b.outcomes:
                continue
            known = cached(oid)
            if known is not None:
                out, detail = _outcome(known)
                b.observe(oid, out)
                record(Evaluation(oid, out, cached=True, role=role(oid), detail=detail))

    def evaluate(oid: str) -> None:
        t0 = time.monotonic()
        out, detail = _outcome(predicate(oid))
        b.observe(oid, out)
        record(Evaluation(oid, out, role=role(oid), detail=detail,
                          seconds=round(time.monotonic() - t0, 3)))

    while b.conflict is None:
        err = b.endpoint_error()
        if err is not None:
            raise err
        nxt = b.next()
        if nxt is not None:
            evaluate(nxt)
            continue
        need = b.needs()
        if not need:
            break
        for oid in need:
            if oid not in b.outcomes:
                evaluate(oid)
    return _result(b, evaluations, len(initial))


def _result(b: Bisection, evaluations: list[Evaluation], candidates: int) -> BisectResult:
    conflict = b.conflict
    if conflict is not None:
        status, first_bad, possible, parents = "not_bisectable", None, [], []
    else:
        possible = b.possible()
        if len(possible) == 1:
            status, first_bad = "found", possible[0]
            parents = b.justification(first_bad)
        else:
            status, first_bad, parents = "ambiguous", None, []
    return BisectResult(
        status=status, bad=b.bad, goods=list(b.goods), first_parent=b.first_parent,
        first_bad=first_bad, possible=possible, conflict=conflict, parents=parents,
        evaluations=evaluations, candidates=candidates,
    )
