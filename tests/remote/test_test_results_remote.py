"""Test specs and results travel with push, fetch, pull and clone (a path remote and an S3
remote on moto), are merged as a union when both sides moved, and are not rerun elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mgit.lifecycle import notes
from mgit.lifecycle import runner as R
from mgit.lifecycle import testing as T
from mgit.refs.store import TESTS
from mgit.remote.clone import clone
from mgit.remote.fetch import fetch
from mgit.remote.open import open_transport
from mgit.remote.pull import pull
from mgit.remote.push import push
from mgit.repo import Repository
from tests.remote.conftest import RemoteSpec, Source

PY = sys.executable


@pytest.fixture
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "counter"
    c.write_text("")
    monkeypatch.setenv("COUNTER", str(c))
    return c


def cmd() -> str:
    """Appends to $COUNTER and reports the size of the model's config as a metric."""
    return (f"{PY} -c \"import json, os, sys; open(os.environ['COUNTER'], 'a').write('x\\n'); "
            f"print(json.dumps({{'size': os.path.getsize(sys.argv[1] + '/config.json')}}))\" {{model_dir}}")


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines())


def result_keys(repo: Repository) -> set[str]:
    return {p for p in notes.read(repo).files if p.startswith("results/")}


def test_results_survive_push_clone_and_fetch_and_are_not_rerun(
    source: Source, remote: RemoteSpec, tmp_path: Path, counter: Path
) -> None:
    repo = source.repo
    T.add_test(repo, "size", cmd(), passes=["size>0"])
    rep = R.run_tests(repo, [source.base, source.ft], jobs=2)
    assert rep.ran == 2 and runs(counter) == 2
    res = push(repo, remote.url, ["bert", "bert-ft"])
    assert [(u.name, u.status) for u in res.updates][-1] == ("tests", "created")
    assert open_transport(remote.url).list_refs()[TESTS] == repo.refs.read(TESTS)
    again = push(repo, remote.url, ["bert"])
    assert again.objects_sent == 0 and ("tests", "up-to-date") in [(u.name, u.status) for u in again.updates]

    clone(remote.url, tmp_path / "clone")
    c = Repository.open(tmp_path / "clone")
    assert c.refs.read(TESTS) == repo.refs.read(TESTS) and c.fsck().ok
    assert set(T.load_specs(c)) == {"size"}
    rep = R.run_tests(c, T.select_commits(c, all=True))
    assert (rep.ran, rep.cached) == (0, 2) and runs(counter) == 2
    assert all(r.passed and r.metrics["size"] > 0 for r in rep.results)
    assert {x.oid for x in c.log(all=True)} == {source.base, source.ft}  # no notes commits

    # clone of one model still brings the notes; fetch into a repository that has none
    clone(remote.url, tmp_path / "one", model="bert")
    one = Repository.open(tmp_path / "one")
    assert T.find_result(one, source.base, T.load_specs(one)["size"]).passed
    other = Repository.init(tmp_path / "other", model="x")
    fr = fetch(other, remote.url)
    assert [(u.name, u.status) for u in fr.updates if u.name == "tests"] == [("tests", "created")]
    assert result_keys(other) == result_keys(repo)


def test_both_sides_moved_merge_as_a_union(
    source: Source, remote: RemoteSpec, tmp_path: Path, counter: Path
) -> None:
    a = source.repo
    T.add_test(a, "size", cmd())
    push(a, remote.url, ["bert", "bert-ft"])
    clone(remote.url, tmp_path / "b")
    b = Repository.open(tmp_path / "b")
    # each side runs the test on a different version, and adds a test of its own
    T.run_test(a, T.load_specs(a)["size"], source.base)
    T.run_test(b, T.load_specs(b)["size"], source.ft)
    T.add_test(a, "only-a", "true")
    T.add_test(b, "only-b", "true")
    ra = push(a, remote.url, ["bert"])
    assert ra.updates[-1].status == "fast-forward"
    rb = push(b, "origin", ["bert"])  # the remote moved: b merges theirs in first
    assert (rb.updates[-1].name, rb.updates[-1].status) == ("tests", "merged")
    merged = b.refs.read(TESTS)
    assert open_transport(remote.url).list_refs()[TESTS] == merged
    assert len(b.read_commit(merged).parents) == 2
    assert set(T.load_specs(b)) == {"size", "only-a", "only-b"}
    assert len(result_keys(b)) == 2
    fa = fetch(a, remote.url)
    assert fa.updates[-1].status == "fast-forward" and a.refs.read(TESTS) == merged
    rep = R.run_tests(a, [source.base, source.ft], tests=["size"])
    assert rep.ran == 0 and runs(counter) == 2
    assert a.fsck().ok and b.fsck().ok

    # a removal on one side wins over the other side's unchanged copy
    T.remove_test(a, "only-b")
    T.run_test(b, T.load_specs(b)["only-a"], source.base)
    push(a, remote.url, ["bert"])
    pr = pull(b, "origin", "bert")
    assert pr.fetch.updates[-1].status == "merged"
    assert set(T.load_specs(b)) == {"size", "only-a"}
    assert len(result_keys(b)) == 3


def test_same_result_on_both_sides_keeps_the_local_one(
    source: Source, remote: RemoteSpec, tmp_path: Path, counter: Path
) -> None:
    a = source.repo
    T.add_test(a, "size", cmd())
    push(a, remote.url, ["bert"])
    clone(remote.url, tmp_path / "b")
    b = Repository.open(tmp_path / "b")
    spec = T.load_specs(a)["size"]
    ra = T.run_test(a, spec, source.base)
    rb = T.run_test(b, spec, source.base)
    assert ra.time > 0 and rb.time > 0
    push(a, remote.url, ["bert"])
    local = notes.read(b).files
    fetch(b, "origin")
    path = next(p for p in local if p.startswith("results/"))
    assert notes.read(b).files[path] == local[path]
