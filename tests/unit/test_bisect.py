"""The bisect search (pure, on dict DAGs) and blame's walk: chains, the lineage DAG, merges,
first parents, skipped versions, cached outcomes, non-monotone histories, bad endpoints."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable

import pytest
from helpers import dag_ancestors

from mgit.errors import BisectError
from mgit.lifecycle.bisect import (
    FAIL,
    PASS,
    SKIP,
    Bisection,
    BisectSession,
    blame_walk,
    search,
)

Dag = dict[str, list[str]]


def chain(n: int, prefix: str = "v") -> Dag:
    ids = [f"{prefix}{i:02d}" for i in range(n)]
    return {ids[i]: [ids[i - 1]] if i else [] for i in range(n)}


class Counting:
    """A monotone predicate (fails iff a culprit is an ancestor-or-self) that counts calls."""

    def __init__(self, dag: Dag, culprits: Iterable[str], skip: Iterable[str] = ()) -> None:
        self.dag = dag
        self.culprits = set(culprits)
        self.skip = set(skip)
        self.calls: list[str] = []

    def fails(self, oid: str) -> bool:
        return bool(dag_ancestors(self.dag, [oid]) & self.culprits)

    def __call__(self, oid: str) -> str:
        self.calls.append(oid)
        if oid in self.skip:
            return SKIP
        return FAIL if self.fails(oid) else PASS


# -- a chain of 32 ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_chain_of_32_is_bisected_to_k_in_at_most_6_evaluations(seed: int) -> None:
    dag = chain(32)
    k = random.Random(seed).randrange(1, 32)
    pred = Counting(dag, [f"v{k:02d}"])
    res = search(dag.__getitem__, "v31", ["v00"], pred)
    assert res.status == "found"
    assert res.first_bad == f"v{k:02d}"
    assert len(pred.calls) <= 6, pred.calls
    assert len(set(pred.calls)) == len(pred.calls)  # never the same version twice
    assert res.evaluated == len(pred.calls)


@pytest.mark.parametrize("k", [1, 2, 15, 16, 30, 31])
def test_chain_of_32_every_edge_case_in_at_most_6(k: int) -> None:
    """k = 1 needs GOOD checked, k = 31 needs BAD checked: still 6 at most."""
    dag = chain(32)
    pred = Counting(dag, [f"v{k:02d}"])
    res = search(dag.__getitem__, "v31", ["v00"], pred)
    assert res.first_bad == f"v{k:02d}" and len(pred.calls) <= 6, pred.calls
    if k == 1:
        assert "v00" in pred.calls  # the answer rests on GOOD passing: it was checked
        assert res.parents == [("v00", "v00")]
    if k == 31:
        assert "v31" in pred.calls  # the answer is BAD itself: it was checked


def test_every_k_of_the_chain() -> None:
    dag = chain(32)
    worst = 0
    for k in range(1, 32):
        pred = Counting(dag, [f"v{k:02d}"])
        assert search(dag.__getitem__, "v31", ["v00"], pred).first_bad == f"v{k:02d}"
        worst = max(worst, len(pred.calls))
    assert worst <= 6


def test_first_parent_on_a_chain_is_the_same() -> None:
    dag = chain(32)
    pred = Counting(dag, ["v20"])
    res = search(dag.__getitem__, "v31", ["v00"], pred, first_parent=True)
    assert res.first_bad == "v20" and len(pred.calls) <= 6


# -- the lineage DAG -------------------------------------------------------------------------


def lineage() -> Dag:
    """base b0..b5; finetune f0..f3 derived from b3 (f0's parent is b3); a distilled model
    d0..d1 from b1; a merge m0 of f3 (first parent) and d1; m1 after it."""
    dag: Dag = {}
    dag.update(chain(6, "b"))
    dag.update({"f00": ["b03"], "f01": ["f00"], "f02": ["f01"], "f03": ["f02"]})
    dag.update({"d00": ["b01"], "d01": ["d00"]})
    dag.update({"m00": ["f03", "d01"], "m01": ["m00"]})
    return dag


def test_a_finetune_history_runs_through_its_base_versions() -> None:
    dag = lineage()
    pred = Counting(dag, ["b02"])
    res = search(dag.__getitem__, "f03", ["b00"], pred)
    assert res.first_bad == "b02"
    assert res.parents == [("b01", "b01")] or res.parents[0][0] == "b01"


def test_a_failure_brought_in_by_a_merge_second_parent() -> None:
    dag = lineage()
    pred = Counting(dag, ["d01"])
    res = search(dag.__getitem__, "m01", ["b00"], pred)
    assert res.first_bad == "d01"
    # along first parents only, the merge is where the failure came in
    pred = Counting(dag, ["d01"])
    fp = search(dag.__getitem__, "m01", ["b00"], pred, first_parent=True)
    assert fp.first_bad == "m00"
    assert not {"d00", "d01"} & set(pred.calls)  # never left the first-parent chain


def test_a_merge_that_introduces_the_failure() -> None:
    dag = lineage()
    pred = Counting(dag, ["m00"])
    res = search(dag.__getitem__, "m01", ["b00"], pred)
    assert res.first_bad == "m00"
    assert {p for p, _ in res.parents} == {"f03", "d01"}


def test_several_goods_narrow_the_search() -> None:
    dag = lineage()
    pred = Counting(dag, ["f02"])
    res = search(dag.__getitem__, "m01", ["b03", "d01", "f01"], pred)
    assert res.first_bad == "f02"
    # candidates: f02, f03, m00, m01 (all else is below a GOOD)
    assert res.candidates == 4
    assert set(pred.calls) <= {"f02", "f03", "m00", "m01", "b03", "d01", "f01"}


def test_a_failing_root_of_another_lineage() -> None:
    """Candidates may include a root (a model imported without a parent, merged in): a root
    that fails introduced the failure and has no parent to blame."""
    dag = lineage()
    dag["r00"] = []
    dag["m00"] = ["f03", "r00"]
    pred = Counting(dag, ["r00"])
    res = search(dag.__getitem__, "m01", ["f03"], pred)
    assert res.first_bad == "r00" and res.parents == []


# -- skipped versions ------------------------------------------------------------------------


def test_skipped_versions_are_routed_around() -> None:
    dag = chain(32)
    pred = Counting(dag, ["v20"], skip=["v16", "v15", "v17"])
    res = search(dag.__getitem__, "v31", ["v00"], pred)
    assert res.first_bad == "v20"
    assert sum(1 for e in res.evaluations if e.outcome == SKIP) >= 1


def test_skip_option_versions_are_never_tested() -> None:
    dag = chain(16)
    pred = Counting(dag, ["v09"])
    res = search(dag.__getitem__, "v15", ["v00"], pred, skip=["v12", "v05"])
    assert res.first_bad == "v09"
    assert not {"v05", "v12"} & set(pred.calls)
    assert [e.oid for e in res.evaluations if e.role == "skip"] == ["v12", "v05"]
    # the parent of the answer skipped: then it cannot be told apart
    pred = Counting(dag, ["v09"])
    res = search(dag.__getitem__, "v15", ["v00"], pred, skip=["v08"])
    assert res.status == "ambiguous" and res.possible == ["v08", "v09"]


def test_skipped_neighbours_make_the_answer_ambiguous() -> None:
    dag = chain(16)
    pred = Counting(dag, ["v09"], skip=["v08", "v09"])
    res = search(dag.__getitem__, "v15", ["v00"], pred)
    assert res.status == "ambiguous"
    assert res.possible == ["v08", "v09", "v10"]
    assert res.first_bad is None
    assert res.message.endswith("it is one of 3: v08, v09, v10")


def test_endpoints_cannot_be_skipped() -> None:
    dag = chain(8)
    with pytest.raises(BisectError, match="cannot be skipped"):
        search(dag.__getitem__, "v07", ["v00"], Counting(dag, ["v03"]), skip=["v07"])


# -- cached outcomes -------------------------------------------------------------------------


def test_everything_known_costs_nothing() -> None:
    dag = chain(32)
    truth = Counting(dag, ["v13"])
    known = {o: (FAIL if truth.fails(o) else PASS) for o in dag}
    pred = Counting(dag, ["v13"])
    res = search(dag.__getitem__, "v31", ["v00"], pred, cached=known.get)
    assert res.first_bad == "v13"
    assert pred.calls == []
    assert res.evaluated == 0 and res.cached > 0


def test_cached_outcomes_are_used_before_any_evaluation() -> None:
    dag = chain(32)
    truth = Counting(dag, ["v13"])
    known = {"v12": PASS, "v14": FAIL}
    pred = Counting(dag, ["v13"])
    res = search(dag.__getitem__, "v31", ["v00"], pred, cached=known.get)
    assert res.first_bad == "v13"
    assert pred.calls == ["v13"]  # v12 passes and v14 fails: only v13 is left
    assert truth.fails("v13")


def test_cached_endpoints_count_as_checked() -> None:
    dag = chain(32)
    pred = Counting(dag, ["v01"])
    res = search(dag.__getitem__, "v31", ["v00"], pred, cached={"v00": PASS}.get)
    assert res.first_bad == "v01" and "v00" not in pred.calls


def test_results_are_reported_in_order_with_cached_flags() -> None:
    dag = chain(8)
    seen = []
    res = search(dag.__getitem__, "v07", ["v00"], Counting(dag, ["v05"]),
                 cached={"v03": PASS}.get, on_eval=seen.append)
    assert seen == res.evaluations
    assert seen[0].oid == "v03" and seen[0].cached
    assert all(not e.cached for e in seen[1:])
    doc = json.loads(json.dumps(res.to_json()))
    assert doc["status"] == "found" and doc["first_bad"]["oid"] == "v05"
    assert doc["cached"] == 1 and doc["evaluated"] == len(seen) - 1


# -- non-monotone histories ------------------------------------------------------------------


def test_a_cached_pass_after_a_fail_is_not_bisectable() -> None:
    dag = chain(32)
    known = {"v10": FAIL, "v20": PASS}
    pred = Counting(dag, ["v25"])
    res = search(dag.__getitem__, "v31", ["v00"], pred, cached=known.get)
    assert res.status == "not_bisectable"
    assert res.first_bad is None
    assert res.conflict is not None
    assert (res.conflict.failing, res.conflict.passing) == ("v10", "v20")
    assert res.message == (
        "not bisectable: both outcomes seen after v10: it fails, but its descendant v20 passes"
    )
    assert pred.calls == []


def test_a_pass_seen_below_the_answer_stands_for_good() -> None:
    """GOOD -> a (passes), GOOD -> b (fails) -> merge (BAD): b's parent GOOD counts as
    passing because its descendant a was seen passing; GOOD is not run again."""
    dag: Dag = {"g": [], "a": ["g"], "b": ["g"], "m": ["a", "b"]}
    outcome = {"g": PASS, "a": PASS, "b": FAIL, "m": FAIL}
    calls: list[str] = []

    def pred(o: str) -> str:
        calls.append(o)
        return outcome[o]

    res = search(dag.__getitem__, "m", ["g"], pred)
    assert res.first_bad == "b" and res.parents == [("g", "a")]
    assert sorted(calls) == ["a", "b"]


def test_non_monotone_answers_are_still_locally_true() -> None:
    """Whatever the history, a found version fails and its parents pass (as evaluated)."""
    for seed in range(60):
        rng = random.Random(seed)
        dag = chain(20)
        outcome = {o: rng.choice([PASS, FAIL]) for o in dag}
        outcome["v00"], outcome["v19"] = PASS, FAIL
        seen: dict[str, str] = {}

        def pred(o: str) -> str:
            seen[o] = outcome[o]
            return outcome[o]

        res = search(dag.__getitem__, "v19", ["v00"], pred)
        if res.status == "found":
            assert res.first_bad is not None
            assert outcome[res.first_bad] == FAIL
            for p, via in res.parents:
                assert seen[via] == PASS and (via == p or p in dag_ancestors(dag, [via]))
        else:
            assert res.status == "not_bisectable"
            c = res.conflict
            assert c is not None
            assert seen[c.failing] == FAIL and seen[c.passing] == PASS
            assert c.failing in dag_ancestors(dag, [c.passing])


# -- bad endpoints ---------------------------------------------------------------------------


def test_good_must_be_an_ancestor_of_bad() -> None:
    dag = lineage()
    with pytest.raises(BisectError, match="is not an ancestor of BAD"):
        search(dag.__getitem__, "f03", ["d01"], Counting(dag, []))
    with pytest.raises(BisectError, match="derives from it") as exc:
        search(dag.__getitem__, "b01", ["b04"], Counting(dag, []))
    assert "swap" in (exc.value.hint or "")
    with pytest.raises(BisectError, match="same version"):
        search(dag.__getitem__, "b01", ["b01"], Counting(dag, []))
    with pytest.raises(BisectError, match="at least one GOOD"):
        search(dag.__getitem__, "b01", [], Counting(dag, []))


def test_bad_that_passes_is_an_error() -> None:
    dag = chain(32)
    pred = Counting(dag, [])
    with pytest.raises(BisectError, match="BAD v31 passes"):
        search(dag.__getitem__, "v31", ["v00"], pred)
    assert len(pred.calls) <= 6
    with pytest.raises(BisectError, match="BAD v31 passes"):
        search(dag.__getitem__, "v31", ["v00"], Counting(dag, []), cached={"v31": PASS}.get)


def test_good_that_fails_is_an_error() -> None:
    dag = chain(32)
    pred = Counting(dag, ["v00"])
    with pytest.raises(BisectError, match="GOOD v00 fails"):
        search(dag.__getitem__, "v31", ["v00"], pred)
    assert len(pred.calls) <= 6
    with pytest.raises(BisectError, match="GOOD v00 fails"):
        search(dag.__getitem__, "v31", ["v00"], Counting(dag, []), cached={"v00": FAIL}.get)


def test_untestable_endpoints_are_errors() -> None:
    dag = chain(8)
    with pytest.raises(BisectError, match="BAD v07 could not be tested"):
        search(dag.__getitem__, "v07", ["v00"], Counting(dag, [], skip=["v07"]))
    with pytest.raises(BisectError, match="GOOD v00 could not be tested"):
        search(dag.__getitem__, "v07", ["v00"], Counting(dag, ["v01"], skip=["v00"]))


# -- the state, step by step -----------------------------------------------------------------


def test_marks_in_any_order_give_the_same_state() -> None:
    dag = lineage()
    marks = [("f01", PASS), ("m00", FAIL), ("f03", FAIL), ("d00", SKIP)]
    states = set()
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]):
        b = Bisection(dag.__getitem__, "m01", ["b00"], trusted=True)
        for i in perm:
            b.observe(*marks[i])
        states.add((b.current_bad, tuple(b.candidates()), b.next()))
    assert len(states) == 1
    bad, cands, _ = states.pop()
    assert bad == "f03" and "f01" not in cands and "m00" not in cands


def test_trusted_marks_that_contradict_are_a_conflict() -> None:
    dag = chain(10)
    b = Bisection(dag.__getitem__, "v09", ["v00"], trusted=True)
    b.observe("v05", FAIL)
    assert b.conflict is None
    b.observe("v07", PASS)
    assert b.conflict is not None and (b.conflict.failing, b.conflict.passing) == ("v05", "v07")
    assert b.next() is None


def test_the_next_version_halves_the_candidates() -> None:
    dag = chain(33)  # v01..v32: 32 candidates
    b = Bisection(dag.__getitem__, "v32", ["v00"])
    assert b.next() in ("v16", "v17")
    b.observe("v16", PASS)
    assert b.next() in ("v24", "v25")


def test_session_state_round_trips_and_refuses_garbage() -> None:
    s = BisectSession(bad="b" * 64, goods=["a" * 64], first_parent=True, head_model="m",
                      head_oid="c" * 64, marks=[{"mark": "good", "oid": "d" * 64, "ref": "x"}])
    assert BisectSession.from_json(json.loads(json.dumps(s.to_json()))) == s
    for bad in (None, [], {"format": 1}, {**s.to_json(), "format": 9},
                {**s.to_json(), "marks": [{"mark": "maybe", "oid": "x"}]}):
        with pytest.raises(BisectError, match="damaged bisect state"):
            BisectSession.from_json(bad)


# -- blame's walk ----------------------------------------------------------------------------


def walk(
    dag: Dag, outcome: Callable[[str], str], ref: str
) -> tuple[str, list[tuple[str, list[str]]], list[str]]:
    calls: list[str] = []

    def pred(o: str) -> str:
        calls.append(o)
        return outcome(o)

    mine, origins, evs = blame_walk(ref, dag.__getitem__, pred)
    assert [e.oid for e in evs] == calls
    return mine, origins, calls


def test_blame_finds_the_upstream_origin() -> None:
    dag = lineage()
    truth = Counting(dag, ["b02"])
    mine, origins, calls = walk(dag, lambda o: FAIL if truth.fails(o) else PASS, "f03")
    assert mine == FAIL
    assert origins == [("b02", [])]
    assert "b04" not in calls and "b05" not in calls  # not in f03's history


def test_blame_on_a_passing_version_tests_only_it() -> None:
    dag = lineage()
    mine, origins, calls = walk(dag, lambda o: PASS, "m01")
    assert (mine, origins, calls) == (PASS, [], ["m01"])


def test_blame_lists_every_origin_earliest_first() -> None:
    dag = lineage()
    truth = Counting(dag, ["d00", "f01"])
    _, origins, _ = walk(dag, lambda o: FAIL if truth.fails(o) else PASS, "m01")
    assert [o for o, _ in origins] == ["d00", "f01"] or [o for o, _ in origins] == ["f01", "d00"]
    # parents first: neither is an ancestor of the other, both listed
    assert {o for o, _ in origins} == {"d00", "f01"}


def test_blame_stops_at_untestable_parents() -> None:
    dag = chain(6)
    outcome = {"v00": PASS, "v01": PASS, "v02": SKIP, "v03": FAIL, "v04": FAIL, "v05": FAIL}
    _, origins, calls = walk(dag, outcome.__getitem__, "v05")
    assert origins == [("v03", ["v02"])]
    assert "v01" not in calls
