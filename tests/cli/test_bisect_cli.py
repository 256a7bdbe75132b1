"""``mgit bisect`` end to end: the one shot with ``--run`` and ``--test`` (cached results
reused), the interactive form in a working tree (checkouts, log, reset) and in a bare
repository, across a finetune's lineage and a merge, ``mgit test blame``, and every bad
input as one error line with an exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_main, write_model_folder

from mgit.repo import Repository

#: Exits 1 when the model's tensor ``w`` is above 0.5 (the "failure"), else 0.
CHECK = (
    f"{sys.executable} -c \"import sys; from safetensors.numpy import load_file; "
    "sys.exit(1 if load_file(sys.argv[1] + '/model.safetensors')['w'].max() > 0.5 else 0)\""
)
RUN = CHECK + " {model_dir}"


def tensors(i: int, bad: bool) -> dict[str, np.ndarray]:
    return {
        "w": np.full((4, 4), 1.0 if bad else 0.0, dtype=np.float32),
        "b": np.arange(8, dtype=np.float32) + i,
    }


def fails_here(root: Path) -> bool:
    """The checker, run on the working tree (what a user does after each checkout)."""
    from safetensors.numpy import load_file

    return bool(load_file(str(root / "model.safetensors"))["w"].max() > 0.5)


@pytest.fixture
def chain_repo(make_repo: Callable[..., Any]) -> tuple[Any, list[str], int]:
    """A working-tree repository: model line ``base``, 12 versions v0..v11; v7 introduces the
    failure."""
    repo = make_repo("repo", model="base")
    k = 7
    oids = []
    for i in range(12):
        write_model_folder(repo.root, tensors(i, i >= k))
        repo.add([repo.root])
        oids.append(repo.commit(f"v{i}").commit.oid)
    return repo, oids, k


def mgit(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    return run_main(capsys, root, *args)


def one_error(code: int, err: str, says: str, exit_code: int = 1) -> None:
    assert code == exit_code, err
    lines = err.rstrip("\n").splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("mgit: error: "), err
    assert len(lines) == 1 or lines[1].startswith("hint: "), err
    assert "Traceback" not in err
    assert says in lines[0], err


# -- the one shot ----------------------------------------------------------------------------


def test_one_shot_with_run_finds_the_version(
    chain_repo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, oids, k = chain_repo
    code, out, err = mgit(capsys, repo.root, "bisect", "base~11", "base", "--run", RUN)
    assert code == 0, err
    assert f"{oids[k][:12]} (base) is the first bad version" in out
    assert f"its parent {oids[k - 1][:12]} (base) passes" in out
    evals = [line for line in out.splitlines() if line.startswith(("  pass", "  fail"))]
    assert 1 <= len(evals) <= 5  # 11 candidates
    # options first, and --json
    code, out, err = mgit(capsys, repo.root, "bisect", "--run", RUN, "--json", oids[0], oids[-1])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "found" and doc["first_bad"] == {"oid": oids[k], "model": "base"}
    assert doc["evaluated"] == len(doc["evaluations"]) <= 5 and doc["cached"] == 0
    # nothing was checked out, no state left
    assert repo.head_model == "base" and not (repo.mgit_dir / "BISECT_STATE").exists()


def test_one_shot_with_a_stored_test_reuses_its_results(
    chain_repo: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo, oids, k = chain_repo
    counter = tmp_path / "runs.txt"
    cmd = f"echo x >> {counter}; {CHECK} {{model_dir}}"
    code, _, err = mgit(capsys, repo.root, "test", "add", "sane", "--cmd", cmd)
    assert code == 0, err
    args = ("--json", "bisect", "base~11", "base", "--test", "sane")
    code, out, err = mgit(capsys, repo.root, *args)
    assert code == 0, err
    first = json.loads(out)
    assert first["first_bad"]["oid"] == oids[k]
    runs = len(counter.read_text().splitlines())
    assert runs == first["evaluated"] > 0
    # again: every result it needs is recorded, nothing runs
    code, out, err = mgit(capsys, repo.root, *args)
    assert code == 0, err
    again = json.loads(out)
    assert again["first_bad"]["oid"] == oids[k]
    assert again["evaluated"] == 0 and again["cached"] >= 2
    assert len(counter.read_text().splitlines()) == runs
    # the text form marks cached outcomes
    code, out, _ = mgit(capsys, repo.root, "bisect", "base~11", "base", "--test", "sane")
    assert code == 0 and "cached" in out and "0 evaluated" in out


def test_skip_routes_around_and_can_leave_it_ambiguous(
    chain_repo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, oids, k = chain_repo
    code, out, err = mgit(capsys, repo.root, "bisect", oids[0], oids[-1], "--run", RUN,
                          "--skip", oids[4], "--skip", oids[9])
    assert code == 0, err
    assert f"{oids[k][:12]} (base) is the first bad version" in out
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", oids[0], oids[-1], "--run", RUN,
                          "--skip", oids[k - 1])
    doc = json.loads(out)
    assert doc["status"] == "ambiguous"
    assert [p["oid"] for p in doc["possible"]] == [oids[k - 1], oids[k]]
    one_error(code, err, "skipped versions hide the first bad version")


# -- across the lineage ----------------------------------------------------------------------


@pytest.fixture
def lineage_repo(make_repo: Callable[..., Any], tmp_path: Path) -> dict[str, Any]:
    """base v0..v5 (v2 fails: inherited by everything after), ft v0..v2 finetuned from base
    v3, side s0 from base v0 (fails from s0), merge m0 of ft (first parent) and s0."""
    repo = make_repo("lin", model="base")
    src = tmp_path / "src"

    def imp(model: str, i: int, bad: bool, parent: Any = None, **kw: Any) -> str:
        folder = src / f"{model}{i}"
        write_model_folder(folder, tensors(i + 100 * len(model), bad))
        res = repo.import_folder(folder, model=model, message=f"{model} {i}", parent=parent, **kw)
        return res.commit.oid

    ids: dict[str, Any] = {"repo": repo}
    ids["base"] = [imp("base", i, i >= 2) for i in range(6)]
    ids["ft"] = [imp("ft", 0, True, parent=ids["base"][3], relation="finetune")]
    ids["ft"] += [imp("ft", i, True) for i in (1, 2)]
    ids["s"] = [imp("side", 0, True, parent=ids["base"][0], relation="finetune")]
    ids["m"] = imp("merged", 0, True, parent=[ids["ft"][2], ids["s"][0]], relation="merge")
    return ids


def test_bisect_runs_through_the_base_model_versions(
    lineage_repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = lineage_repo["repo"]
    base = lineage_repo["base"]
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", "base~5", "ft", "--run", RUN)
    assert code == 0, err
    assert json.loads(out)["first_bad"] == {"oid": base[2], "model": "base"}


def test_merge_with_and_without_first_parent(
    lineage_repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """GOOD base v1: across the whole DAG the side model's s0 also introduced the failure
    (its parent base v0 passes); along first parents it is base v2."""
    repo, base, s0 = lineage_repo["repo"], lineage_repo["base"], lineage_repo["s"][0]
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", base[1], "merged", "--run", RUN,
                          "--first-parent")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["first_bad"]["oid"] == base[2] and doc["first_parent"] is True
    assert s0 not in [e["oid"] for e in doc["evaluations"]]
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", base[1], "merged", "--run", RUN)
    assert code == 0, err
    assert json.loads(out)["first_bad"]["oid"] in (base[2], s0)  # two culprits: either
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", base[1], s0, "--run", RUN)
    assert code == 1 and "not an ancestor" in json.loads(out)["error"]["message"]  # base v1 is not in s0's history
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", base[0], s0, "--run", RUN)
    assert code == 0 and json.loads(out)["first_bad"]["oid"] == s0


# -- mgit test blame -------------------------------------------------------------------------


def test_blame_finds_the_upstream_model(
    lineage_repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, base, ft = lineage_repo["repo"], lineage_repo["base"], lineage_repo["ft"]
    assert mgit(capsys, repo.root, "test", "add", "sane", "--cmd", RUN)[0] == 0
    code, out, err = mgit(capsys, repo.root, "--json", "test", "blame", "sane", "ft")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["outcome"] == "fail" and doc["inherited"] is True
    assert doc["introduced_by"]["oid"] == base[2] and doc["introduced_by"]["model"] == "base"
    assert doc["introduced_by"]["own_line"] is False
    code, out, _ = mgit(capsys, repo.root, "test", "blame", "sane", "ft")
    assert code == 0
    assert f"introduced by {base[2][:12]} (base), upstream, by model base: inherited" in out
    assert "[cached]" in out  # the second time every result is recorded
    # a passing version: nothing to blame
    code, out, _ = mgit(capsys, repo.root, "test", "blame", "sane", "base~4")
    assert code == 0 and "passes sane: nothing to blame" in out
    assert doc["origins"][0]["oid"] == base[2] and ft[0] not in [o["oid"] for o in doc["origins"]]


def test_blame_on_its_own_model_line(make_repo: Callable[..., Any], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("own", model="base")
    ids = []
    for i, (model, bad) in enumerate([("base", False), ("base", False), ("ft", False), ("ft", True),
                                      ("ft", True)]):
        folder = tmp_path / f"f{i}"
        write_model_folder(folder, tensors(i, bad))
        parent = ids[1] if i == 2 else None
        res = repo.import_folder(folder, model=model, message=f"{i}", parent=parent)
        ids.append(res.commit.oid)
    assert mgit(capsys, repo.root, "test", "add", "sane", "--cmd", RUN)[0] == 0
    code, out, err = mgit(capsys, repo.root, "--json", "test", "blame", "sane", "ft")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["introduced_by"]["oid"] == ids[3] and doc["introduced_by"]["own_line"] is True
    assert doc["inherited"] is False


def test_blame_never_blames_a_version_the_test_does_not_apply_to(
    make_repo: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sentiment test scoped to the finetunes: the base encoder would fail it (it is not a
    sentiment model), but it is out of the test's scope, so a failing head-only finetune is
    its own origin, not 'inherited from upstream'."""
    repo = make_repo("scoped", model="base")
    write_model_folder(tmp_path / "base", tensors(0, True))  # "fails" the check, out of scope
    repo.import_folder(tmp_path / "base", model="base", message="encoder")
    write_model_folder(tmp_path / "ft", tensors(1, True))
    ft = repo.import_folder(tmp_path / "ft", model="ft", parent="base", message="head only",
                            meta={"task": "sentiment"}).commit.oid
    assert mgit(capsys, repo.root, "test", "add", "sane", "--cmd", RUN, "--task", "sentiment")[0] == 0
    code, out, err = mgit(capsys, repo.root, "--json", "test", "blame", "sane", "ft")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["introduced_by"]["oid"] == ft and doc["inherited"] is False
    assert [e["oid"] for e in doc["evaluations"]] == [ft]  # the base is never run


# -- step by step ----------------------------------------------------------------------------


def test_interactive_in_a_working_tree(chain_repo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo, oids, k = chain_repo
    root = repo.root
    code, out, err = mgit(capsys, root, "bisect", "start", "base", "base~11")
    assert code == 0, err
    assert "Bisecting:" in out and "HEAD is now at" in out
    assert json.loads((repo.mgit_dir / "BISECT_STATE").read_text())["orig_head"]["model"] == "base"
    steps = 0
    while "is the first bad version" not in out:
        r = Repository.open(root)
        assert r.head_model is None  # detached at the version to test
        verdict = "bad" if fails_here(root) else "good"
        code, out, err = mgit(capsys, root, "bisect", verdict)
        assert code == 0, err
        steps += 1
        assert steps <= 5
    assert f"{oids[k][:12]} (base) is the first bad version" in out
    code, out, _ = mgit(capsys, root, "bisect", "log")
    assert code == 0
    assert out.count("mgit bisect good") + out.count("mgit bisect bad") == steps
    assert "is the first bad version" in out
    code, out, _ = mgit(capsys, root, "--json", "bisect", "log")
    assert json.loads(out)["step"]["first_bad"]["oid"] == oids[k]
    code, out, err = mgit(capsys, root, "bisect", "reset")
    assert code == 0, err
    r = Repository.open(root)
    assert r.head_model == "base" and r.head() == oids[-1]
    assert fails_here(root)  # the tip (it fails) is back in the working tree
    assert r.status().clean
    assert not (repo.mgit_dir / "BISECT_STATE").exists()


def test_interactive_run_and_skip(chain_repo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    repo, oids, k = chain_repo
    root = repo.root
    code, out, err = mgit(capsys, root, "--json", "bisect", "start", oids[-1], oids[0])
    assert code == 0, err
    first = json.loads(out)["next"]["oid"]
    code, out, err = mgit(capsys, root, "bisect", "skip")  # HEAD: the version to test
    assert code == 0, err
    code, out, err = mgit(capsys, root, "bisect", "run", "--run", RUN)
    if first in (oids[k - 1], oids[k]):  # the skipped one hides the answer
        one_error(code, err, "only skipped versions are left to test")
        assert oids[k][:12] in err and first[:12] in err
    else:
        assert code == 0, err
        assert f"{oids[k][:12]} (base) is the first bad version" in out
    state = json.loads((repo.mgit_dir / "BISECT_STATE").read_text())
    assert state["marks"][0] == {"mark": "skip", "oid": first, "ref": "HEAD"}
    assert mgit(capsys, root, "bisect", "reset")[0] == 0
    assert Repository.open(root).head_model == "base"


def test_interactive_in_a_bare_repository(make_repo: Callable[..., Any], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo("bare", model="base", bare=True)
    oids = []
    for i in range(8):
        folder = tmp_path / f"v{i}"
        write_model_folder(folder, tensors(i, i >= 3))
        oids.append(repo.import_folder(folder, model="base", message=f"v{i}").commit.oid)
    code, out, err = mgit(capsys, repo.root, "--json", "bisect", "start", "base", oids[0])
    assert code == 0, err
    step = json.loads(out)
    for _ in range(5):
        if step["status"] != "testing":
            break
        nxt = step["next"]["oid"]
        verdict = "bad" if oids.index(nxt) >= 3 else "good"
        code, out, err = mgit(capsys, repo.root, "--json", "bisect", verdict)  # the version asked
        assert code == 0, err
        step = json.loads(out)
    assert step["status"] == "found" and step["first_bad"]["oid"] == oids[3]
    code, out, err = mgit(capsys, repo.root, "bisect", "reset")
    assert code == 0 and "HEAD is back" not in out


def test_contradicting_marks_are_not_bisectable(
    chain_repo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, oids, _ = chain_repo
    root = repo.root
    assert mgit(capsys, root, "bisect", "start", oids[-1], oids[0])[0] == 0
    assert mgit(capsys, root, "bisect", "bad", oids[4])[0] == 0
    code, _, err = mgit(capsys, root, "bisect", "good", oids[6])
    one_error(code, err, f"not bisectable: both outcomes seen after {oids[4][:12]} (base): it "
              f"fails, but its descendant {oids[6][:12]} (base) passes")
    # recorded: the session stays not bisectable until reset
    code, out, err = mgit(capsys, root, "bisect", "log")
    assert code == 0 and "not bisectable" in out
    code, _, err = mgit(capsys, root, "bisect", "skip", oids[2])
    one_error(code, err, "not bisectable")
    assert mgit(capsys, root, "bisect", "reset")[0] == 0


# -- bad inputs ------------------------------------------------------------------------------


def test_bad_inputs(chain_repo: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    repo, oids, k = chain_repo
    root = repo.root
    other = tmp_path / "other"
    write_model_folder(other, tensors(99, False))
    unrelated = repo.import_folder(other, model="other", message="unrelated").commit.oid

    code, _, err = mgit(capsys, root, "bisect", unrelated, "base", "--run", RUN)
    one_error(code, err, f"GOOD {unrelated[:12]} (other) is not an ancestor of BAD")
    code, _, err = mgit(capsys, root, "bisect", "base", "base~3", "--run", RUN)
    one_error(code, err, "is not an ancestor of BAD")
    assert "swap" in err
    code, _, err = mgit(capsys, root, "bisect", oids[k + 1], oids[-1], "--run", RUN)
    one_error(code, err, f"GOOD {oids[k + 1][:12]} (base) fails")
    code, _, err = mgit(capsys, root, "bisect", oids[0], oids[k - 1], "--run", RUN)
    one_error(code, err, f"BAD {oids[k - 1][:12]} (base) passes")
    code, _, err = mgit(capsys, root, "bisect", oids[0], oids[-1], "--test", "nope")
    one_error(code, err, "no such test: nope")
    code, _, err = mgit(capsys, root, "bisect", oids[0], oids[-1], "--test", "x", "--run", RUN)
    one_error(code, err, "give one of --test NAME or --run CMD", exit_code=2)
    code, _, err = mgit(capsys, root, "bisect", oids[0], oids[-1])
    one_error(code, err, "give one of --test NAME or --run CMD", exit_code=2)
    code, _, err = mgit(capsys, root, "bisect", oids[-1], "--run", RUN)
    one_error(code, err, "bisect needs GOOD and BAD", exit_code=2)
    code, _, err = mgit(capsys, root, "bisect", "nosuchref", "base", "--run", RUN)
    one_error(code, err, "unknown ref: nosuchref")
    for sub in (("good",), ("bad",), ("skip",), ("log",), ("reset",), ("run", "--run", RUN)):
        code, _, err = mgit(capsys, root, "bisect", *sub)
        one_error(code, err, "no bisect in progress")
    code, _, err = mgit(capsys, root, "bisect", "start", oids[0], oids[-1])
    one_error(code, err, "is not an ancestor of BAD")
    assert not (repo.mgit_dir / "BISECT_STATE").exists()
    assert mgit(capsys, root, "bisect", "start", oids[-1], oids[0])[0] == 0
    code, _, err = mgit(capsys, root, "bisect", "start", oids[-1], oids[0])
    one_error(code, err, "a bisect is already in progress")
    code, _, err = mgit(capsys, root, "bisect", "good", unrelated)
    one_error(code, err, "is not an ancestor of BAD")
    code, _, err = mgit(capsys, root, "bisect", "good", oids[-1])
    one_error(code, err, "was given as BAD when the bisect started")
    code, _, err = mgit(capsys, root, "test", "blame", "nope", "base")
    one_error(code, err, "no such test: nope")
    assert mgit(capsys, root, "bisect", "reset")[0] == 0


def test_a_dirty_working_tree_is_not_overwritten(
    chain_repo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, oids, _ = chain_repo
    (repo.root / "config.json").write_text("{}\n")
    code, _, err = mgit(capsys, repo.root, "bisect", "start", oids[-1], oids[0])
    one_error(code, err, "would overwrite uncommitted changes")
    assert not (repo.mgit_dir / "BISECT_STATE").exists()
