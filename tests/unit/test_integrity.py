"""Integrity under concurrency, damage and hostile input: gc vs a commit reusing objects,
damaged refs, push of damaged objects, symlinked folders, the lossy gate, checkout planning."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import make_model_folder, model_tensors, run_main, write_model_folder
from mgit.errors import (
    CorruptObjectError,
    CorruptRefError,
    DirtyWorkingTreeError,
    InvalidModelFileError,
    InvalidRefNameError,
    UnsafePathError,
)
from mgit.repo import Repository


def _age_all_objects(repo: Repository, seconds: float) -> None:
    old = time.time() - seconds
    for oid in repo.store.iter_oids():
        os.utime(repo.store.path_for(oid), (old, old))


def test_gc_keeps_objects_a_new_commit_reused(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=1)
    repo.import_folder(tmp_path / "m", model="old", message="old")
    repo.refs.delete_if_equals("refs/heads/old", repo.refs.read("refs/heads/old"), message="t")
    _age_all_objects(repo, 7200)  # orphans, older than gc's grace period
    # a new model reuses every chunk of the orphaned one
    res = repo.import_folder(tmp_path / "m", model="new", message="new")
    assert res.stats.new_chunks == 0
    repo.gc(prune_age=3600)
    assert repo.fsck().ok
    out = tmp_path / "out"
    repo.export("new", out)
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "m" / "model.safetensors").read_bytes()


def test_gc_removes_old_orphans_only(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=2)
    repo.import_folder(tmp_path / "m", model="gone", message="x")
    repo.refs.delete_if_equals("refs/heads/gone", repo.refs.read("refs/heads/gone"), message="t")
    assert repo.gc(prune_age=3600).removed == 0  # too young
    _age_all_objects(repo, 7200)
    res = repo.gc(prune_age=3600)
    assert res.removed > 0 and not list(repo.store.iter_oids())


def test_damaged_ref_is_an_error_not_a_missing_model(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=3)
    repo.import_folder(tmp_path / "m", model="ft", message="v1")
    ref = repo.mgit_dir / "refs" / "heads" / "ft"
    ref.write_text("4c9ce48ca438a026d54f9a7273\n")
    with pytest.raises(CorruptRefError):
        repo.resolve("ft")
    # the next commit to that line must not silently start a new history over it
    with pytest.raises(CorruptRefError):
        repo.import_folder(tmp_path / "m", model="ft", message="again")
    assert ref.read_text() == "4c9ce48ca438a026d54f9a7273\n"
    res = repo.fsck()
    assert not res.ok and any("refs/heads/ft" in p for p in res.problems)


@pytest.mark.parametrize("content", ["garbage!!\n", "", "ref: refs/heads/../../x\n"])
def test_damaged_head_is_an_error_not_a_detached_head(
    make_repo: Any, tmp_path: Path, capsys: Any, content: str
) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=3)
    repo.import_folder(tmp_path / "m", model="base", message="v1")
    (repo.mgit_dir / "HEAD").write_text(content)
    code, out, err = run_main(capsys, repo.root, "status")
    assert code != 0 and "detached" not in out
    assert err.startswith("mgit: error: ") and ("HEAD" in err or "invalid name" in err)
    res = repo.fsck()  # reported, not raised; the refs' commits are still walked
    assert not res.ok and [f.subject for f in res.findings] == ["HEAD"]
    assert res.reachable > 0
    (repo.mgit_dir / "HEAD").write_text("ref: refs/heads/base\n")  # what the hint says to do
    assert run_main(capsys, repo.root, "status")[0] == 0 and repo.fsck().ok


def test_setting_head_repairs_a_damaged_one(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=3)
    tip = repo.import_folder(tmp_path / "m", model="base", message="v1").commit.oid
    (repo.mgit_dir / "HEAD").write_text("garbage\n")
    repo.refs.set_head(ref="refs/heads/base", message="repair")
    assert repo.head() == tip


def test_ref_that_would_need_a_file_as_folder_is_refused(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=4)
    repo.import_folder(tmp_path / "m", model="a", message="x")
    with pytest.raises(InvalidRefNameError):
        repo.create_branch("a/b", "a")


def test_push_refuses_to_spread_a_damaged_object(make_repo: Any, tmp_path: Path, capsys: Any) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=5)
    repo.import_folder(tmp_path / "m", model="base", message="x")
    victim = next(o for o in repo.store.iter_oids() if repo.store.kind_of(o) == "chunk")
    path = repo.store.path_for(victim)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    remote = tmp_path / "remote"
    code, _out, err = run_main(capsys, repo.root, "push", str(remote), "base")
    assert code == 12 and err.startswith("mgit: error: corrupt object")
    # nothing that the damaged object would poison was published
    assert not (remote / "refs" / "heads" / "base").exists()
    assert not (remote / "objects" / victim[:2] / victim[2:]).exists()


def test_add_refuses_symlinked_folder_pointing_outside(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0\n")
    os.symlink(secret, repo.root / "linkdir")
    for p in (repo.root / "linkdir" / "passwd", repo.root / "linkdir"):
        with pytest.raises(UnsafePathError):
            repo.add([p])
    assert repo.status().staged_new == []


def test_lossy_gate_runs_before_the_model_ref_moves(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    base = model_tensors(seed=6, hidden=64, vocab=256)
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="base")
    rng = np.random.default_rng(0)
    with np.errstate(invalid="ignore"):  # the generated tensors hold NaN and inf on purpose
        child = {k: (v + rng.normal(0, 1e-3, v.shape).astype(v.dtype)) for k, v in base.items()}
    write_model_folder(tmp_path / "child", child)
    ref = repo.mgit_dir / "refs" / "heads" / "ft"
    # The gate fails if the model line already exists while it runs.
    res = repo.import_folder(
        tmp_path / "child", model="ft", parent="base", relation="finetune", message="lossy",
        eps=1e-3, check=f"test ! -e {ref} && test -f {{}}/model.safetensors",
    )
    assert res.check == "passed" and res.commit.lossy is not None
    assert repo.refs.read("refs/heads/ft") == res.commit.oid
    # A failing gate stores the same files losslessly, and the line points there.
    res2 = repo.import_folder(
        tmp_path / "child", model="ft2", parent="base", message="gated", eps=1e-3, check="false",
    )
    assert res2.check == "failed: stored losslessly" and res2.commit.lossy is None
    out = tmp_path / "out"
    repo.export("ft2", out)
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "child" / "model.safetensors").read_bytes()


def test_checkout_with_a_folder_in_the_way_changes_nothing(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    root = repo.root
    make_model_folder(root, seed=7)
    repo.add([root])
    repo.commit("v1")
    (root / "z.txt").write_text("z\n")
    repo.add([root / "z.txt"])
    repo.commit("v2")
    (root / "z.txt").unlink()
    repo.add([root / "z.txt"])
    make_model_folder(root, seed=8)
    repo.add([root])
    repo.commit("v3")
    (root / "z.txt").mkdir()  # untracked folder where v2 has a file
    before = (root / "model.safetensors").read_bytes()
    head = repo.head()
    with pytest.raises(DirtyWorkingTreeError):
        repo.checkout("HEAD~1")
    assert (root / "model.safetensors").read_bytes() == before and repo.head() == head


def test_deeply_nested_header_is_a_clean_error(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    folder = tmp_path / "deep"
    folder.mkdir()
    header = b"[" * 100000 + b"]" * 100000
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(InvalidModelFileError, match="not JSON"):
        repo.import_folder(folder, model="m", message="x")
    assert repo.model_heads() == {}


def test_find_task_holds_for_later_versions_of_the_line(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "a", seed=9)
    make_model_folder(tmp_path / "b", seed=10)
    repo.import_folder(tmp_path / "a", model="sst2", message="v1", meta={"task": "sst2"})
    repo.import_folder(tmp_path / "b", model="sst2", message="v2")
    assert [c.model for c in repo.find(task="sst2")] == ["sst2"]
    assert [c.message for c in repo.find(task="sst2", all_versions=True)] == ["v1"]
    assert repo.find(task="mnli") == []


def test_json_is_accepted_after_the_command(make_repo: Any, tmp_path: Path, capsys: Any) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=11)
    repo.import_folder(tmp_path / "m", model="base", message="x")
    for args in (["stats", "--json"], ["--json", "stats"], ["lineage", "--json"], ["log", "--json"]):
        code, out, err = run_main(capsys, repo.root, *args)
        assert code == 0, err
        json.loads(out)


def test_bad_counts_and_urls_are_usage_errors(make_repo: Any, tmp_path: Path, capsys: Any) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=12)
    repo.import_folder(tmp_path / "m", model="base", message="x")
    assert run_main(capsys, repo.root, "log", "-n", "-1")[0] == 2
    code, _out, err = run_main(capsys, repo.root, "remote", "add", "o", "")
    assert code == 2 and "empty" in err


def test_log_all_includes_remote_tracking_refs(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "a", seed=13)
    make_model_folder(tmp_path / "b", seed=14)
    repo.import_folder(tmp_path / "a", model="base", message="mine")
    other = repo.import_folder(tmp_path / "b", model="theirs", message="theirs").commit.oid
    repo.refs.update_many([("refs/heads/theirs", other, None),
                           ("refs/remotes/origin/theirs", None, other)], message="t")
    assert other in {c.oid for c in repo.log(all=True)}


def test_lossy_working_tree_commit_says_the_files_differ(make_repo: Any, tmp_path: Path,
                                                        capsys: Any) -> None:
    repo = make_repo(model="base")
    base = model_tensors(seed=15, hidden=64, vocab=256)
    write_model_folder(repo.root, base)
    repo.add([repo.root])
    repo.commit("base")
    rng = np.random.default_rng(1)
    with np.errstate(invalid="ignore"):  # the generated tensors hold NaN and inf on purpose
        child = {k: v + rng.normal(0, 1e-3, v.shape).astype(v.dtype) for k, v in base.items()}
    write_model_folder(repo.root, child)
    code, out, err = run_main(capsys, repo.root, "add", ".")
    assert code == 0, err
    code, out, err = run_main(capsys, repo.root, "commit", "-m", "lossy", "--lossy", "1e-3")
    assert code == 0, err
    assert "lossy: eps=0.001" in out and "working files keep their exact bytes" in out
    assert "model.safetensors" in repo.status().modified


def test_stored_object_of_damaged_kind_is_refused_on_read(make_repo: Any, tmp_path: Path) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=16)
    c = repo.import_folder(tmp_path / "m", model="base", message="x").commit
    with pytest.raises(CorruptObjectError):
        repo.store.get(c.tree, kind="commit")


_proc_fds = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names fds via /proc")


@_proc_fds
def test_every_new_object_is_fsynced_before_the_ref_moves(
    make_repo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durability covers this commit's own files (each object, its folder), never relying on
    a flush of the whole filesystem; the ref is written only after."""
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=3)
    synced: list[str] = []
    real_fsync = os.fsync
    ref_path = repo.mgit_dir / "refs" / "heads" / "synced"

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if "/objects" in path:
            assert not ref_path.exists(), "the ref moved before the objects were durable"
        synced.append(path)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    repo.import_folder(tmp_path / "m", model="synced", message="x")
    objects = {str(repo.store.path_for(oid)) for oid in repo.store.iter_oids()}
    assert objects <= set(synced)
    assert {str(p.parent) for p in map(Path, objects)} <= set(synced)


@_proc_fds
def test_a_failed_fsync_fails_the_commit_and_moves_no_ref(
    make_repo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(model="base")
    make_model_folder(tmp_path / "m", seed=4)
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if "/objects/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        repo.import_folder(tmp_path / "m", model="unsynced", message="x")
    assert repo.refs.read("refs/heads/unsynced") is None
