"""Reachability (mgit.reach): closures of commits, and the order objects are sent in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from helpers import model_tensors, write_model_folder

from mgit import reach
from mgit.lineage import graph as dag


@np.errstate(all="ignore")  # the tensors hold NaN and inf on purpose
def _lineage(repo: Any, tmp_path: Path) -> dict[str, str]:
    """base v1 -> v2; ft (full finetune of v1, stored as deltas) -> ft v2; a merge of v2 and ft."""
    base = model_tensors("F32", seed=1, hidden=64, vocab=300)
    write_model_folder(tmp_path / "b1", base)
    out = {"b1": repo.import_folder(tmp_path / "b1", model="base", message="v1").commit.oid}
    rng = np.random.default_rng(0)
    ft = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-3).astype(np.float32)
          for k, v in base.items()}
    write_model_folder(tmp_path / "f1", ft)
    out["f1"] = repo.import_folder(tmp_path / "f1", model="ft", parent="base", message="ft").commit.oid
    ft2 = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-4).astype(np.float32)
           for k, v in ft.items()}
    write_model_folder(tmp_path / "f2", ft2)
    out["f2"] = repo.import_folder(tmp_path / "f2", model="ft", message="ft v2").commit.oid
    base2 = dict(base, **{"pooler.weight": base["pooler.weight"] * 2})
    write_model_folder(tmp_path / "b2", base2)
    out["b2"] = repo.import_folder(tmp_path / "b2", model="base", message="v2").commit.oid
    out["m"] = repo.import_folder(tmp_path / "f2", model="merged", parent=["base", "ft"],
                                  message="merge").commit.oid
    return out


def test_commit_objects_close_over_delta_chains(repo: Any, tmp_path: Path) -> None:
    c = _lineage(repo, tmp_path)
    objs = reach.commit_objects(repo, c["f2"])
    assert c["f2"] in objs and repo.read_commit(c["f2"]).tree in objs
    bases = {repo.store.header(o).base for o in objs} - {None}
    assert bases, "the finetune's v2 is stored as deltas"
    assert bases <= objs  # every delta base, all the way down the chain
    depth2 = [o for o in objs if repo.store.header(o).depth == 2]
    assert depth2 and all(repo.store.header(repo.store.header(o).base).base in objs for o in depth2)
    assert c["f1"] not in objs  # parents are not part of a commit's own objects


def test_all_commits_follow_every_ref_and_a_detached_head(repo: Any, tmp_path: Path) -> None:
    c = _lineage(repo, tmp_path)
    assert reach.all_commits(repo) == set(c.values())
    repo.refs.set_head(oid=c["b1"], message="detach")
    repo.refs.delete_if_equals("refs/heads/merged", c["m"], message="x")
    repo.refs.delete_if_equals("refs/heads/ft", c["f2"], message="x")
    repo.refs.set_if_equals("refs/remotes/origin/ft", None, c["f1"], message="x")
    assert reach.all_commits(repo) == {c["b1"], c["b2"], c["f1"]}


def test_objects_to_send_come_in_dependency_order(repo: Any, tmp_path: Path) -> None:
    c = _lineage(repo, tmp_path)
    order = reach.objects_to_send(repo, [c["m"]], [])
    assert len(order) == len(set(order))
    assert set(order) == reach.reachable_objects(repo)
    pos = {o: i for i, o in enumerate(order)}
    kinds = [repo.store.kind_of(o) for o in order]
    # chunks, then trees, then commits
    assert kinds == sorted(kinds, key=["chunk", "tree", "commit"].index)
    for o in order:
        h = repo.store.header(o)
        if h.base is not None:
            assert pos[h.base] < pos[o]  # a delta after its base
        if h.kind == "commit":
            assert all(pos[p] < pos[o] for p in repo.parents_of(o))  # parents first
            cm = repo.read_commit(o)
            assert pos[cm.tree] < pos[o]


def test_objects_to_send_leave_out_what_the_other_side_has(repo: Any, tmp_path: Path) -> None:
    c = _lineage(repo, tmp_path)
    have = reach.objects_to_send(repo, [c["f1"]], [])
    rest = reach.objects_to_send(repo, [c["m"]], [c["f1"]])
    assert not set(have) & set(rest)
    assert set(have) | set(rest) == set(reach.objects_to_send(repo, [c["m"]], []))
    assert reach.objects_to_send(repo, [c["f1"]], [c["m"]]) == []
    # an exclude the repository does not have (the remote is ahead) is ignored
    assert reach.objects_to_send(repo, [c["f1"]], ["e" * 64]) == have


def test_parents_first_is_a_reversed_topological_order(repo: Any, tmp_path: Path) -> None:
    c = _lineage(repo, tmp_path)
    order = reach.parents_first(repo, c.values())
    assert order == list(reversed(dag.topo_order(c.values(), repo.parents_of, repo.commit_time_of)))
    pos = {o: i for i, o in enumerate(order)}
    for o in order:
        assert all(pos[p] < pos[o] for p in repo.parents_of(o))
