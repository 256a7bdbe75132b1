"""The working tree: add, status, commit, checkout, and what they refuse to do."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import finetune_head, make_model_folder, model_tensors, sha256_tree, write_model_folder

from mgit.errors import (
    DirtyWorkingTreeError,
    LockHeldError,
    NothingToCommitError,
    RefNotFoundError,
    UnsafePathError,
    UsageError,
)
from mgit.repo import Repository


def rewrite(path: Path, text: str) -> None:
    """Change a file's content *and size*, so the change is seen whatever the mtime granularity."""
    old = path.read_bytes() if path.exists() else b""
    data = text.encode()
    if len(data) == len(old):
        data += b" "
    path.write_bytes(data)


@pytest.fixture
def wt(repo: Any) -> Any:
    """A repository whose working tree holds a small model, committed as 'base' v1."""
    make_model_folder(repo.root, "F32")
    (repo.root / "README.md").write_text("# model\n")
    repo.add([repo.root])
    repo.v1 = repo.commit("v1").commit.oid
    return repo


def st(repo: Any) -> dict[str, list[str]]:
    s = repo.status()
    return {
        k: v
        for k, v in {
            "staged_new": s.staged_new,
            "staged_modified": s.staged_modified,
            "staged_deleted": s.staged_deleted,
            "modified": s.modified,
            "deleted": s.deleted,
            "untracked": s.untracked,
        }.items()
        if v
    }


# -- add / status ---------------------------------------------------------------------------------


def test_fresh_repo_status(repo: Any) -> None:
    (repo.root / "a.txt").write_text("a")
    s = repo.status()
    assert s.model == "base" and s.head is None and not s.detached
    assert st(repo) == {"untracked": ["a.txt"]}
    assert s.clean


def test_status_after_commit_is_clean(wt: Any) -> None:
    assert st(wt) == {}
    s = wt.status()
    assert s.clean and s.head == wt.v1


def test_status_reports_every_kind_of_change(wt: Any) -> None:
    root = wt.root
    rewrite(root / "README.md", "# changed\n")
    (root / "tokenizer.json").unlink()
    (root / "new.txt").write_text("new")
    (root / "staged.txt").write_text("staged")
    rewrite(root / "config.json", '{"changed": true}')
    wt.add([root / "staged.txt", root / "config.json"])
    assert st(wt) == {
        "staged_new": ["staged.txt"],
        "staged_modified": ["config.json"],
        "modified": ["README.md"],
        "deleted": ["tokenizer.json"],
        "untracked": ["new.txt"],
    }
    wt.add([root / "tokenizer.json"])
    assert st(wt)["staged_deleted"] == ["tokenizer.json"]
    assert "deleted" not in st(wt)
    # a staged file changed again after add shows as modified too
    rewrite(root / "staged.txt", "staged, then changed")
    assert st(wt)["modified"] == ["README.md", "staged.txt"]


def test_status_sees_a_same_size_rewrite_in_the_same_clock_tick(wt: Any) -> None:
    # "Racy clean": a file rewritten with the same size within the file system's timestamp
    # granularity keeps its mtime. Simulated by restoring the mtime; the stat cache must not
    # hide the change (git also compares ctime/inode and re-hashes racily clean entries).
    p = wt.root / "README.md"
    st0 = p.stat()
    p.write_text("# MODEL\n")  # same length as "# model\n"
    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    assert st(wt) == {"modified": ["README.md"]}


def test_status_json_shape(wt: Any) -> None:
    (wt.root / "x.txt").write_text("x")
    j = wt.status().to_json()
    assert j["untracked"] == ["x.txt"] and j["clean"] is True and j["model"] == "base"
    assert set(j["staged"]) == {"new", "modified", "deleted"}


def test_add_unchanged_file_stages_nothing(wt: Any) -> None:
    res = wt.add([wt.root / "config.json"])
    assert res.staged == [] and res.removed == [] and res.unchanged == 1
    res = wt.add([wt.root])
    assert res.staged == [] and res.removed == []
    with pytest.raises(NothingToCommitError):
        wt.commit("nothing")
    assert wt.head() == wt.v1


def test_add_then_revert_unstages(wt: Any) -> None:
    original = (wt.root / "config.json").read_bytes()
    rewrite(wt.root / "config.json", "{}")
    wt.add([wt.root / "config.json"])
    (wt.root / "config.json").write_bytes(original)
    wt.add([wt.root / "config.json"])
    assert st(wt) == {}


def test_add_missing_path(wt: Any) -> None:
    with pytest.raises(UsageError):
        wt.add([wt.root / "nope.txt"])


def test_add_outside_the_folder(wt: Any, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.txt").write_text("x")
    with pytest.raises(UnsafePathError):
        wt.add([tmp_path / "elsewhere.txt"])
    with pytest.raises(UnsafePathError):
        wt.add([wt.root / ".mgit" / "config"])
    with pytest.raises(UnsafePathError):
        wt.add([wt.root / ".." / "elsewhere.txt"])


def test_add_symlink_pointing_outside(wt: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, wt.root / "leak.txt")
    with pytest.raises(UnsafePathError):
        wt.add([wt.root / "leak.txt"])
    with pytest.raises(UnsafePathError):
        wt.add([wt.root])
    os.unlink(wt.root / "leak.txt")
    os.symlink(tmp_path, wt.root / "linkdir")
    with pytest.raises(UnsafePathError):
        wt.add([wt.root])
    assert "staged_new" not in st(wt)


def test_ignore_file(wt: Any) -> None:
    (wt.root / ".mgitignore").write_text("*.log\ncheckpoints/\n")
    (wt.root / "train.log").write_text("x")
    (wt.root / "checkpoints").mkdir()
    (wt.root / "checkpoints" / "step1.bin").write_text("x")
    assert st(wt) == {"untracked": [".mgitignore"]}


# -- commit ---------------------------------------------------------------------------------------


def test_commit_with_nothing_staged(wt: Any) -> None:
    with pytest.raises(NothingToCommitError):
        wt.commit("empty")
    rewrite(wt.root / "README.md", "unstaged change")
    with pytest.raises(NothingToCommitError):
        wt.commit("still nothing staged")


def test_commit_allow_empty(wt: Any) -> None:
    c = wt.commit("empty", allow_empty=True).commit
    assert c.parents == [(wt.v1, "version")]
    assert c.tree == wt.read_commit(wt.v1).tree


def test_staged_file_modified_after_add(wt: Any) -> None:
    rewrite(wt.root / "config.json", '{"a": 1}')
    wt.add([wt.root / "config.json"])
    rewrite(wt.root / "config.json", '{"a": 22}')
    with pytest.raises(UsageError) as ei:
        wt.commit("changed after add")
    assert "config.json" in str(ei.value)
    assert wt.head() == wt.v1
    wt.add([wt.root / "config.json"])
    wt.commit("ok")
    assert wt.head() != wt.v1


def test_staged_file_deleted_after_add(wt: Any) -> None:
    (wt.root / "extra.txt").write_text("x")
    wt.add([wt.root / "extra.txt"])
    (wt.root / "extra.txt").unlink()
    with pytest.raises(UsageError):
        wt.commit("gone")
    assert wt.head() == wt.v1


def test_commit_records_only_staged_changes(wt: Any, tmp_path: Path) -> None:
    rewrite(wt.root / "README.md", "# staged\n")
    rewrite(wt.root / "config.json", '{"unstaged": 1}')
    wt.add([wt.root / "README.md"])
    v2 = wt.commit("v2").commit
    assert v2.parents == [(wt.v1, "version")] and v2.model == "base"
    out = tmp_path / "out"
    wt.export(v2.oid, out)
    assert (out / "README.md").read_text() == "# staged\n"
    assert (out / "config.json").read_bytes() != (wt.root / "config.json").read_bytes()
    assert st(wt) == {"modified": ["config.json"]}


def test_commit_deletion(wt: Any) -> None:
    (wt.root / "README.md").unlink()
    wt.add([wt.root / "README.md"])
    c = wt.commit("rm")
    assert "README.md" not in wt.read_tree(c.commit.tree).files
    assert st(wt) == {}


def test_new_model_line_via_commit_model(wt: Any) -> None:
    tensors = model_tensors("F32")
    write_model_folder(wt.root, finetune_head(tensors))
    wt.add([wt.root])
    res = wt.commit("ft", model="ft", meta={"task": "sst2"})
    c = res.commit
    assert c.model == "ft" and c.parents == [(wt.v1, "finetune")] and c.meta == {"task": "sst2"}
    assert wt.head_model == "ft" and wt.head() == c.oid
    assert wt.model_heads() == {"base": wt.v1, "ft": c.oid}
    # the next plain commit is a version of 'ft'
    rewrite(wt.root / "README.md", "ft v2")
    wt.add([wt.root / "README.md"])
    c2 = wt.commit("ft v2").commit
    assert c2.model == "ft" and c2.parents == [(c.oid, "version")]
    assert wt.resolve("base") == wt.v1


def test_commit_with_explicit_parent_and_relation(wt: Any, tmp_path: Path) -> None:
    other = wt.import_folder(wt.root, model="teacher", message="teacher").commit.oid
    rewrite(wt.root / "README.md", "student")
    wt.add([wt.root / "README.md"])
    c = wt.commit("student", model="student", parent="teacher", relation="distill").commit
    assert c.parents == [(other, "distill")]


# -- checkout -------------------------------------------------------------------------------------


@pytest.fixture
def two(wt: Any) -> Any:
    """v1 plus v2 (README changed, tokenizer removed, sub/new.txt added) on 'base'."""
    root = wt.root
    wt.files_v1 = sha256_tree(root)
    rewrite(root / "README.md", "# v2\n")
    (root / "tokenizer.json").unlink()
    (root / "sub").mkdir()
    (root / "sub" / "new.txt").write_text("new in v2")
    wt.add([root])
    wt.v2 = wt.commit("v2").commit.oid
    wt.files_v2 = sha256_tree(root)
    return wt


def test_checkout_switches_files_and_head(two: Any) -> None:
    res = two.checkout(two.v1)
    assert sha256_tree(two.root) == two.files_v1
    assert res.detached and two.head() == two.v1 and two.head_model is None
    assert not (two.root / "sub").exists()  # emptied folders go away
    assert st(two) == {}
    res = two.checkout("base")
    assert sha256_tree(two.root) == two.files_v2
    assert not res.detached and two.head_model == "base" and two.head() == two.v2
    assert st(two) == {}


def test_checkout_tag(two: Any) -> None:
    two.create_tag("first", two.v1)
    two.checkout("first")
    assert sha256_tree(two.root) == two.files_v1 and two.head() == two.v1


@pytest.mark.parametrize("ref", ["HEAD~1", "base~1", "base^", "HEAD^1"])
def test_checkout_ancestry_refs(two: Any, ref: str) -> None:
    res = two.checkout(ref)
    assert res.commit == two.v1 and res.detached
    assert sha256_tree(two.root) == two.files_v1


def test_checkout_head_is_a_no_op(two: Any) -> None:
    res = two.checkout("HEAD")
    assert res.commit == two.v2 and res.written == []
    assert sha256_tree(two.root) == two.files_v2


def test_checkout_model_line_switch(two: Any) -> None:
    tensors = model_tensors("F32")
    write_model_folder(two.root, finetune_head(tensors))
    two.add([two.root])
    ft = two.commit("ft", model="ft").commit.oid
    files_ft = sha256_tree(two.root)
    two.checkout("base")
    assert two.head_model == "base" and sha256_tree(two.root) == two.files_v2
    two.checkout("ft")
    assert two.head_model == "ft" and two.head() == ft and sha256_tree(two.root) == files_ft


def test_checkout_keeps_untracked_files(two: Any) -> None:
    (two.root / "notes.txt").write_text("mine")
    (two.root / "sub" / "untracked.txt").write_text("mine too")
    two.checkout(two.v1)
    assert (two.root / "notes.txt").read_text() == "mine"
    assert (two.root / "sub" / "untracked.txt").read_text() == "mine too"
    assert st(two) == {"untracked": ["notes.txt", "sub/untracked.txt"]}


def test_checkout_refuses_modified_tracked_file(two: Any) -> None:
    rewrite(two.root / "config.json", '{"local": "edit"}')
    with pytest.raises(DirtyWorkingTreeError) as ei:
        two.checkout(two.v1)
    assert ei.value.paths == ["config.json"]
    assert (two.root / "config.json").read_text().startswith('{"local"')
    assert two.head() == two.v2 and two.head_model == "base"


def test_checkout_refuses_deleted_tracked_file(two: Any) -> None:
    (two.root / "README.md").unlink()
    with pytest.raises(DirtyWorkingTreeError):
        two.checkout(two.v1)
    assert two.head() == two.v2


def test_checkout_refuses_staged_file(two: Any) -> None:
    (two.root / "staged.txt").write_text("staged")
    two.add([two.root / "staged.txt"])
    with pytest.raises(DirtyWorkingTreeError) as ei:
        two.checkout(two.v1)
    assert "staged.txt" in ei.value.paths
    assert st(two) == {"staged_new": ["staged.txt"]}


def test_checkout_refuses_untracked_file_in_the_way(two: Any) -> None:
    two.checkout(two.v1)
    (two.root / "sub").mkdir()
    (two.root / "sub" / "new.txt").write_text("my own file")
    with pytest.raises(DirtyWorkingTreeError) as ei:
        two.checkout("base")
    assert ei.value.paths == ["sub/new.txt"]
    assert (two.root / "sub" / "new.txt").read_text() == "my own file"
    assert two.head() == two.v1


def test_checkout_force(two: Any) -> None:
    rewrite(two.root / "config.json", '{"local": "edit"}')
    (two.root / "staged.txt").write_text("staged")
    two.add([two.root / "staged.txt"])
    two.checkout(two.v1, force=True)
    assert {k: v for k, v in sha256_tree(two.root).items() if k != "staged.txt"} == two.files_v1
    assert two.head() == two.v1
    assert st(two) == {"untracked": ["staged.txt"]}


def test_checkout_restores_a_corrupted_working_file_only_with_force(two: Any) -> None:
    p = two.root / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10_000_000))
    with pytest.raises(DirtyWorkingTreeError):
        two.checkout("base")
    two.checkout("base", force=True)
    assert sha256_tree(two.root) == two.files_v2


def test_checkout_unknown_ref(two: Any) -> None:
    with pytest.raises(RefNotFoundError):
        two.checkout("nope")
    assert sha256_tree(two.root) == two.files_v2


def test_checkout_refuses_symlinked_parent(two: Any, tmp_path: Path) -> None:
    two.checkout(two.v1)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, two.root / "sub")
    with pytest.raises((UnsafePathError, DirtyWorkingTreeError)):
        two.checkout("base", force=True)
    assert list(outside.iterdir()) == []


def test_checkout_force_never_deletes_through_a_symlinked_parent(two: Any, tmp_path: Path) -> None:
    # v2 tracks sub/new.txt; 'sub' is replaced by a link to a folder outside holding a file
    # of the same name. Moving to v1 (which has no sub/new.txt) must not delete that file.
    import shutil

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "new.txt").write_text("not mgit's to delete")
    shutil.rmtree(two.root / "sub")
    os.symlink(outside, two.root / "sub")
    try:
        two.checkout(two.v1, force=True)
    except UnsafePathError:
        pass
    assert (outside / "new.txt").read_text() == "not mgit's to delete"


def test_index_lock_held(two: Any) -> None:
    (two.mgit_dir / "index.lock").write_text("")
    (two.root / "x.txt").write_text("x")
    with pytest.raises(LockHeldError):
        two.add([two.root / "x.txt"])
    with pytest.raises(LockHeldError):
        two.checkout(two.v1)
    (two.mgit_dir / "index.lock").unlink()
    two.add([two.root / "x.txt"])


def test_corrupt_index_is_rebuilt(two: Any) -> None:
    (two.mgit_dir / "index").write_text("{not json")
    assert st(two) == {}


def test_bare_repository_has_no_worktree(make_repo: Any) -> None:
    bare = make_repo("bare.mgit", bare=True)
    assert bare.bare
    for call in (
        lambda: bare.status(),
        lambda: bare.add(["x"]),
        lambda: bare.commit("m"),
        lambda: bare.checkout("x"),
    ):
        with pytest.raises(UsageError):
            call()
    again = Repository.open(bare.root)
    assert again.bare


def test_index_survives_reopen(wt: Any) -> None:
    (wt.root / "new.txt").write_text("n")
    wt.add([wt.root / "new.txt"])
    fresh = Repository.open(wt.root)
    assert fresh.status().staged_new == ["new.txt"]
    idx = json.loads((wt.mgit_dir / "index").read_text())
    assert "new.txt" in idx["staged"]


def test_checkout_takes_the_index_lock_once_and_keeps_what_it_learnt(
    two: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """checkout holds index.lock while it checks the tree and writes: it must not try to take
    it again for its own status check (which failed and was swallowed), and the checksums the
    check computed land in the stat cache."""
    from contextlib import contextmanager

    from mgit.worktree import ops
    from mgit.worktree.index import Index

    held: list[int] = []
    real = ops.index_lock

    @contextmanager
    def counting(mgit_dir: Path) -> Any:
        assert not held, "index.lock taken twice by one operation"
        held.append(1)
        try:
            with real(mgit_dir):
                yield
        finally:
            held.pop()

    monkeypatch.setattr(ops, "index_lock", counting)
    # make every cached checksum stale, so the check re-reads (and learns) each tracked file
    index = Index.load(two.mgit_dir)
    index.cache = {}
    index.save(two.mgit_dir)
    two.checkout(two.v1)
    cache = Index.load(two.mgit_dir).cache
    assert set(two.read_tree(two.read_commit(two.v1).tree).files) <= set(cache)
    assert st(two) == {}
