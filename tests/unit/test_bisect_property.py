"""Bisect against brute force on random lineage DAGs (several roots, merges, skipped
versions, cached outcomes), with a monotone predicate: a version fails iff one of its
ancestors-or-self is a culprit. Derandomized (the project's hypothesis profile)."""

from __future__ import annotations

from dataclasses import dataclass

from helpers import dag_ancestors
from hypothesis import assume, given
from hypothesis import strategies as st

from mgit.lifecycle.bisect import FAIL, PASS, SKIP, search

Dag = dict[str, list[str]]


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 40) -> Dag:
    """Nodes n00..; each is a root (a model imported alone), or has one parent (a version or
    a finetune) or 2-3 (a merge) among the earlier nodes; at least two roots."""
    n = draw(st.integers(4, max_nodes))
    dag: Dag = {"n00": [], "n01": []}
    for i in range(2, n):
        kind = draw(st.sampled_from(["root", "one", "one", "one", "one", "merge"]))
        earlier = list(dag)
        if kind == "root":
            parents: list[str] = []
        elif kind == "one":
            # mostly the previous node: long model lines, like real ones
            parents = [earlier[-1] if draw(st.booleans()) else draw(st.sampled_from(earlier))]
        else:
            k = draw(st.integers(2, min(3, len(earlier))))
            parents = draw(st.lists(st.sampled_from(earlier), min_size=k, max_size=k, unique=True))
        dag[f"n{i:02d}"] = parents
    return dag


@dataclass
class Case:
    dag: Dag
    fails: dict[str, bool]
    bad: str
    goods: list[str]
    skipped: set[str]
    cached: dict[str, str]

    @property
    def candidates(self) -> set[str]:
        return dag_ancestors(self.dag, [self.bad]) - dag_ancestors(self.dag, self.goods)

    def first_bad(self, first_parent: bool = False) -> set[str]:
        """Brute force: candidates that fail while every parent that counts passes."""
        if first_parent:
            chain = []
            c: str | None = self.bad
            below_good = dag_ancestors(self.dag, self.goods)
            while c is not None and c not in below_good:
                chain.append(c)
                c = self.dag[c][0] if self.dag[c] else None
            # along a chain fails are a suffix: the deepest failing element
            failing = [x for x in chain if self.fails[x]]
            return {failing[-1]} if failing else set()
        return {
            c for c in self.candidates
            if self.fails[c] and all(not self.fails[p] for p in self.dag[c])
        }


@st.composite
def cases(draw: st.DrawFn, *, skips: bool = False, cache: bool = False,
          single_culprit: bool = False) -> Case:
    dag = draw(dags())
    nodes = list(dag)
    if single_culprit:
        culprits = {draw(st.sampled_from(nodes))}
    else:
        culprits = set(draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=4)))
    fails = {c: bool(dag_ancestors(dag, [c]) & culprits) for c in nodes}
    failing = [c for c in nodes if fails[c]]
    assume(failing)
    bad = draw(st.sampled_from(failing))
    passing_below = sorted(c for c in dag_ancestors(dag, [bad]) if not fails[c])
    assume(passing_below)
    goods = draw(st.lists(st.sampled_from(passing_below), min_size=1, max_size=3, unique=True))
    skipped: set[str] = set()
    if skips:
        others = sorted(set(nodes) - {bad, *goods})
        if others:
            skipped = set(draw(st.lists(st.sampled_from(others), max_size=len(others) // 3)))
    cached: dict[str, str] = {}
    if cache:
        known = draw(st.lists(st.sampled_from(nodes), max_size=len(nodes) // 2, unique=True))
        cached = {c: (FAIL if fails[c] else PASS) for c in known if c not in skipped}
    return Case(dag, fails, bad, goods, skipped, cached)


class Oracle:
    def __init__(self, case: Case) -> None:
        self.case = case
        self.calls: list[str] = []

    def __call__(self, oid: str) -> str:
        self.calls.append(oid)
        if oid in self.case.skipped:
            return SKIP
        return FAIL if self.case.fails[oid] else PASS


def _common_checks(case: Case, oracle: Oracle) -> None:
    assert len(set(oracle.calls)) == len(oracle.calls), "a version evaluated twice"
    assert not set(oracle.calls) & set(case.cached), "a cached outcome evaluated again"
    # only candidates and the endpoints are ever evaluated
    assert set(oracle.calls) <= case.candidates | set(case.goods) | {case.bad}


@given(cases(single_culprit=True))
def test_unique_answer_is_found(case: Case) -> None:
    expected = case.first_bad()
    assert len(expected) == 1
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle)
    assert res.status == "found"
    assert {res.first_bad} == expected
    _common_checks(case, oracle)


@given(cases())
def test_answer_is_one_of_the_brute_force_answers(case: Case) -> None:
    expected = case.first_bad()
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle)
    assert res.status == "found"
    assert res.first_bad in expected
    if len(expected) == 1:
        assert {res.first_bad} == expected
    # the answer is justified by outcomes actually seen
    for p, via in res.parents:
        assert not case.fails[via] and p in dag_ancestors(case.dag, [via])
    _common_checks(case, oracle)


@given(cases(skips=True))
def test_skipped_versions(case: Case) -> None:
    expected = case.first_bad()
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle)
    _common_checks(case, oracle)
    if res.status == "found":
        assert res.first_bad in expected
        assert res.first_bad not in case.skipped
    else:
        assert res.status == "ambiguous"
        assert set(res.possible) <= case.candidates
        # all but one of the possible answers were skipped; a true answer is among them
        assert len(set(res.possible) - case.skipped) == 1
        assert set(res.possible) & expected


@given(cases(skips=True), st.booleans())
def test_skip_option_is_never_evaluated(case: Case, first_parent: bool) -> None:
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle, skip=sorted(case.skipped),
                 first_parent=first_parent)
    assert not set(oracle.calls) & case.skipped
    expected = case.first_bad(first_parent)
    if res.status == "found":
        assert res.first_bad in expected
    else:
        assert res.status == "ambiguous" and set(res.possible) & expected


@given(cases())
def test_first_parent(case: Case) -> None:
    expected = case.first_bad(first_parent=True)
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle, first_parent=True)
    assert res.status == "found"
    assert {res.first_bad} == expected
    # only the first-parent chain of BAD (and the GOODs) is evaluated
    chain = set()
    c: str | None = case.bad
    while c is not None:
        chain.add(c)
        c = case.dag[c][0] if case.dag[c] else None
    assert set(oracle.calls) <= chain | set(case.goods)


@given(cases(cache=True))
def test_cached_outcomes_are_used_and_never_reevaluated(case: Case) -> None:
    expected = case.first_bad()
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle, cached=case.cached.get)
    assert res.status == "found" and res.first_bad in expected
    _common_checks(case, oracle)
    assert res.evaluated == len(oracle.calls)
    # with every outcome known, nothing is evaluated
    everything = {c: (FAIL if case.fails[c] else PASS) for c in case.dag}
    oracle = Oracle(case)
    res = search(case.dag.__getitem__, case.bad, case.goods, oracle, cached=everything.get)
    assert oracle.calls == [] and res.first_bad in expected


@given(dags(), st.data())
def test_any_predicate_gives_a_true_local_answer_or_says_not_bisectable(
    dag: Dag, data: st.DataObject
) -> None:
    """Non-monotone predicates: never an answer the evaluations contradict."""
    nodes = list(dag)
    outcome = {c: data.draw(st.sampled_from([PASS, FAIL]), label=c) for c in nodes}
    bad = data.draw(st.sampled_from(nodes))
    below = sorted(dag_ancestors(dag, [bad]) - {bad})
    assume(below)
    good = data.draw(st.sampled_from(below))
    outcome[bad], outcome[good] = FAIL, PASS
    cached = {c: outcome[c] for c in data.draw(st.lists(st.sampled_from(nodes), max_size=5))}
    seen: dict[str, str] = dict(cached)

    def pred(o: str) -> str:
        seen[o] = outcome[o]
        return outcome[o]

    try:
        res = search(dag.__getitem__, bad, [good], pred, cached=cached.get)
    except Exception as exc:  # an endpoint claim the outcomes contradict is an error
        from mgit.errors import BisectError

        assert isinstance(exc, BisectError)
        return
    if res.status == "found":
        assert res.first_bad is not None and seen.get(res.first_bad, outcome[res.first_bad]) == FAIL
        assert res.first_bad in seen or res.first_bad == bad
        for p, via in res.parents:
            assert seen[via] == PASS and p in dag_ancestors(dag, [via])
    else:
        assert res.status == "not_bisectable"
        c = res.conflict
        assert c is not None
        assert seen[c.failing] == FAIL and seen[c.passing] == PASS
        assert c.failing in dag_ancestors(dag, [c.passing])
