"""push, fetch, pull and clone against a path remote and an S3 remote (moto on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mgit.errors import (
    CorruptObjectError,
    DirtyWorkingTreeError,
    NonFastForwardError,
    RefNotFoundError,
    RemoteError,
    UsageError,
)
from mgit.remote.clone import clone
from mgit.remote.config import add_remote, list_remotes, remove_remote
from mgit.remote.fetch import fetch
from mgit.remote.open import open_transport
from mgit.remote.pull import pull
from mgit.remote.push import push
from mgit.repo import Repository
from tests.helpers import sha256_tree, write_model_folder
from tests.remote.conftest import RemoteSpec, Source, perturbed


def remote_objects(remote: RemoteSpec) -> set[str]:
    return set(open_transport(remote.url).iter_objects())


def new_version(
    repo: Repository, folder: Path, tensors: dict[str, np.ndarray], model: str, msg: str
) -> str:
    write_model_folder(folder, tensors)
    return repo.import_folder(folder, model=model, message=msg).commit.oid


def test_push_then_clone_roundtrip_is_byte_identical(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    res = push(source.repo, remote.url, ["bert", "bert-ft"])
    assert [(u.name, u.status) for u in res.updates] == [
        ("bert", "created"),
        ("bert-ft", "created"),
    ]
    assert res.objects_sent == len(remote_objects(remote)) > 0
    assert open_transport(remote.url).list_refs() == {
        "refs/heads/bert": source.base,
        "refs/heads/bert-ft": source.ft,
    }

    cres = clone(remote.url, tmp_path / "clone")
    assert (cres.model, cres.models) == ("bert", ["bert", "bert-ft"])
    assert cres.fetch.objects_received == res.objects_sent
    c = Repository.open(tmp_path / "clone")
    assert c.head_model == "bert"
    assert sha256_tree(tmp_path / "clone") == sha256_tree(source.base_dir)
    c.export("bert-ft", tmp_path / "exported-ft")
    assert sha256_tree(tmp_path / "exported-ft") == sha256_tree(source.ft_dir)
    assert c.refs.iter_refs() == {
        "refs/heads/bert": source.base,
        "refs/heads/bert-ft": source.ft,
        "refs/remotes/origin/bert": source.base,
        "refs/remotes/origin/bert-ft": source.ft,
    }
    assert [ci.oid for ci in c.log("bert-ft")] == [ci.oid for ci in source.repo.log("bert-ft")]
    assert c.status().modified == [] and c.status().untracked == []
    assert c.fsck().ok


def test_second_push_sends_nothing(source: Source, remote: RemoteSpec) -> None:
    push(source.repo, remote.url, ["bert", "bert-ft"])
    again = push(source.repo, remote.url, ["bert", "bert-ft"])
    assert (again.objects_sent, again.bytes_sent) == (0, 0)
    assert {u.status for u in again.updates} == {"up-to-date"}


def test_finetune_push_sends_about_its_stored_delta(source: Source, remote: RemoteSpec) -> None:
    first = push(source.repo, remote.url, ["bert"])
    second = push(source.repo, remote.url, ["bert-ft"])
    per_commit = {c["oid"]: c["stored_bytes"] for c in source.repo.stats().commits}
    ft_stored = per_commit[source.ft]
    assert first.bytes_sent == per_commit[source.base]
    assert second.bytes_sent == ft_stored  # exactly the finetune's new objects, nothing else
    assert second.bytes_sent < 0.75 * first.bytes_sent  # a delta, not a second full model


def test_push_creates_the_store_and_tracking_refs(source: Source, remote: RemoteSpec) -> None:
    add_remote(source.repo, "origin", remote.url)
    assert [r.name for r in list_remotes(source.repo)] == ["origin"]
    res = push(source.repo)  # default remote, default ref: the checked-out model
    assert res.remote == "origin" and [u.name for u in res.updates] == ["bert"]
    assert open_transport(remote.url).read_config() == {
        "format_version": 2,
        "hash": "blake3",
        "bare": True,
    }
    assert source.repo.refs.read("refs/remotes/origin/bert") == source.base
    remove_remote(source.repo, "origin")
    assert list_remotes(source.repo) == []
    assert source.repo.refs.iter_refs("refs/remotes/") == {}


def test_non_fast_forward_push_is_refused_unless_forced(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    push(source.repo, remote.url, ["bert", "bert-ft"])
    clone(remote.url, tmp_path / "other")
    other = Repository.open(tmp_path / "other")
    theirs = new_version(
        other, tmp_path / "v2a", perturbed(source.base_tensors, 10), "bert", "theirs"
    )
    push(other, "origin", ["bert"])
    ours = new_version(
        source.repo, tmp_path / "v2b", perturbed(source.base_tensors, 11), "bert", "ours"
    )
    before = remote_objects(remote)

    # Several refs: all-or-nothing. bert-ft would be fine but bert is rejected: nothing moves.
    source.repo.create_tag("v1", "bert-ft")
    with pytest.raises(NonFastForwardError) as info:
        push(source.repo, remote.url, ["bert", "v1"])
    assert info.value.ref == "refs/heads/bert"
    assert "pull" in (info.value.hint or "")
    assert remote_objects(remote) == before
    assert open_transport(remote.url).read_ref("refs/heads/bert") == theirs
    assert open_transport(remote.url).read_ref("refs/tags/v1") is None

    forced = push(source.repo, remote.url, ["bert"], force=True)
    assert [(u.status, u.old, u.new) for u in forced.updates] == [("forced", theirs, ours)]
    assert open_transport(remote.url).read_ref("refs/heads/bert") == ours


def test_fetch_brings_new_versions_and_tags(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    push(source.repo, remote.url, ["bert"])
    clone(remote.url, tmp_path / "c")
    c = Repository.open(tmp_path / "c")
    v2 = new_version(source.repo, tmp_path / "v2", perturbed(source.base_tensors, 3), "bert", "v2")
    source.repo.create_tag("release", "bert")
    push(source.repo, remote.url, ["bert", "bert-ft", "release"])

    res = fetch(c)
    assert sorted(res.heads) == ["bert", "bert-ft"]
    got = {u.ref: u.status for u in res.updates}
    assert got == {
        "refs/remotes/origin/bert": "fast-forward",
        "refs/remotes/origin/bert-ft": "created",
        "refs/tags/release": "created",
    }
    assert c.refs.read("refs/heads/bert") == source.base  # fetch never moves local models
    assert c.resolve("origin/bert") == v2
    assert fetch(c).objects_received == 0  # nothing new the second time


def test_pull_fast_forwards_the_checked_out_model_and_its_files(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    push(source.repo, remote.url, ["bert", "bert-ft"])
    clone(remote.url, tmp_path / "c")
    c = Repository.open(tmp_path / "c")
    v2_tensors = perturbed(source.base_tensors, 4)
    write_model_folder(source.path, v2_tensors)
    source.repo.add([str(source.path)])
    v2 = source.repo.commit("v2").commit.oid
    push(source.repo, remote.url, ["bert"])

    res = pull(c)
    assert (res.model, res.old, res.new, res.status) == ("bert", source.base, v2, "fast-forward")
    assert res.worktree_updated and "model.safetensors" in res.written
    assert sha256_tree(tmp_path / "c") == sha256_tree(source.path)
    assert c.head_model == "bert" and c.head() == v2
    st = c.status()
    assert st.modified == [] and st.staged_modified == []
    assert pull(c).status == "up-to-date"


def test_pull_of_another_model_moves_only_its_ref(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    push(source.repo, remote.url, ["bert", "bert-ft"])
    clone(remote.url, tmp_path / "c")
    c = Repository.open(tmp_path / "c")
    files_before = sha256_tree(tmp_path / "c")
    ft2 = new_version(
        source.repo, tmp_path / "ft2", perturbed(source.ft_tensors, 5), "bert-ft", "ft2"
    )
    push(source.repo, remote.url, ["bert-ft"])
    res = pull(c, model="bert-ft")
    assert (res.status, res.worktree_updated) == ("fast-forward", False)
    assert c.refs.read("refs/heads/bert-ft") == ft2
    assert sha256_tree(tmp_path / "c") == files_before


def test_pull_refuses_to_overwrite_uncommitted_changes(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    push(source.repo, remote.url, ["bert"])
    clone(remote.url, tmp_path / "c")
    c = Repository.open(tmp_path / "c")
    new_version(source.repo, tmp_path / "v2", perturbed(source.base_tensors, 6), "bert", "v2")
    push(source.repo, remote.url, ["bert"])
    (tmp_path / "c" / "config.json").write_text('{"edited": true}\n')
    with pytest.raises(DirtyWorkingTreeError):
        pull(c)
    assert c.refs.read("refs/heads/bert") == source.base
    assert c.head_model == "bert"
    assert (tmp_path / "c" / "config.json").read_text() == '{"edited": true}\n'


def test_pull_diverged_and_ahead(source: Source, remote: RemoteSpec, tmp_path: Path) -> None:
    push(source.repo, remote.url, ["bert"])
    clone(remote.url, tmp_path / "c")
    c = Repository.open(tmp_path / "c")
    mine = new_version(c, tmp_path / "mine", perturbed(source.base_tensors, 7), "bert", "mine")
    assert pull(c).status == "ahead"
    new_version(
        source.repo, tmp_path / "theirs", perturbed(source.base_tensors, 8), "bert", "theirs"
    )
    push(source.repo, remote.url, ["bert"])
    with pytest.raises(NonFastForwardError, match="diverged"):
        pull(c)
    assert c.refs.read("refs/heads/bert") == mine


def test_clone_of_one_model_fetches_only_its_closure(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    other = new_version(
        source.repo, tmp_path / "gpt", perturbed(source.base_tensors, 9, 1.0), "gpt", "unrelated"
    )
    push(source.repo, remote.url, ["bert", "bert-ft", "gpt"])
    res = clone(remote.url, tmp_path / "c", model="bert-ft")
    c = Repository.open(tmp_path / "c")
    assert res.model == "bert-ft" and res.models == ["bert-ft"]
    assert c.head_model == "bert-ft"
    assert sha256_tree(tmp_path / "c") == sha256_tree(source.ft_dir)
    assert source.base in c.store and source.ft in c.store  # the finetune's parent comes along
    assert other not in c.store
    assert set(c.refs.iter_refs("refs/heads/")) == {"refs/heads/bert-ft"}
    assert c.fsck().ok
    with pytest.raises(RefNotFoundError):
        clone(remote.url, tmp_path / "c2", model="no-such-model")
    assert not (tmp_path / "c2").exists()


@pytest.mark.parametrize("damage", ["flip-a-byte", "substitute-chunk", "substitute-commit"])
def test_damaged_remote_object_is_detected_and_not_written(
    source: Source, remote: RemoteSpec, tmp_path: Path, damage: str
) -> None:
    push(source.repo, remote.url, ["bert"])
    push(source.repo, remote.url, ["bert-ft"])
    ft_objects = source.repo.objects_to_send([source.ft], {source.base})
    chunks = [o for o in ft_objects if source.repo.store.kind_of(o) == "chunk"]
    if damage == "flip-a-byte":
        victim = chunks[0]
        data = bytearray(remote.get_raw(remote.object_key(victim)))
        data[-1] ^= 0x01
        remote.put_raw(remote.object_key(victim), bytes(data))
    elif damage == "substitute-chunk":  # a valid object, under another object's id
        victim = chunks[0]
        remote.put_raw(remote.object_key(victim), remote.get_raw(remote.object_key(chunks[1])))
    else:
        victim = source.ft
        remote.put_raw(remote.object_key(victim), remote.get_raw(remote.object_key(source.base)))

    # A clone of the intact model works; a clone of the damaged one fails and leaves nothing.
    clone(remote.url, tmp_path / "ok", model="bert")
    with pytest.raises(CorruptObjectError) as info:
        clone(remote.url, tmp_path / "bad", model="bert-ft")
    assert info.value.oid == victim
    assert remote.url in str(info.value)
    assert not (tmp_path / "bad").exists()

    c = Repository.open(tmp_path / "ok")
    with pytest.raises(CorruptObjectError):
        fetch(c)
    assert victim not in c.store
    assert c.refs.read("refs/remotes/origin/bert-ft") is None
    assert c.fsck().ok  # whatever was written before the failure is sound


def test_remote_errors(source: Source, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="no mgit store"):
        clone(str(tmp_path / "nothing-here"), tmp_path / "c")
    with pytest.raises(UsageError, match="no remote configured"):
        push(source.repo)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    push(source.repo, str(tmp_path / "r"), ["bert"])
    with pytest.raises(UsageError, match="not an empty folder"):
        clone(str(tmp_path / "r"), tmp_path / "busy")
    # A repository with a working tree can be cloned from, never pushed to.
    clone(str(source.path), tmp_path / "from-worktree", model="bert")
    with pytest.raises(RemoteError, match="working tree"):
        push(Repository.open(tmp_path / "from-worktree"), str(source.path), ["bert"])


def test_a_path_remote_is_a_bare_repository_and_the_other_way_round(
    source: Source, tmp_path: Path
) -> None:
    push(source.repo, str(tmp_path / "pushed"), ["bert", "bert-ft"])
    bare = Repository.open(tmp_path / "pushed")
    assert bare.bare and bare.model_heads() == {"bert": source.base, "bert-ft": source.ft}
    assert bare.fsck().ok
    made = Repository.init(tmp_path / "made-bare", bare=True)
    res = push(source.repo, str(made.root), ["bert-ft"])
    assert res.objects_sent > 0
    assert Repository.open(made.root).model_heads() == {"bert-ft": source.ft}


def test_clone_of_an_empty_remote(tmp_path: Path) -> None:
    from mgit.format import new_config

    open_transport(str(tmp_path / "empty")).init(new_config(bare=True))
    res = clone(str(tmp_path / "empty"), tmp_path / "c")
    assert (res.model, res.models, res.files) == (None, [], [])
    c = Repository.open(tmp_path / "c")
    assert [r.name for r in list_remotes(c)] == ["origin"]
    assert c.head() is None



def test_clone_chunks_new_versions_as_the_cloned_ones(
    source: Source, remote: RemoteSpec, tmp_path: Path
) -> None:
    """A bare store records no chunk size: the clone takes its model's (read off its tensors),
    so the versions it commits next are chunked, and stored as deltas, like their parents."""
    from tests.remote.conftest import CHUNK

    assert CHUNK != Repository.init(tmp_path / "plain", model="x").chunk_size  # a real test
    push(source.repo, remote.url, ["bert", "bert-ft"])
    clone(remote.url, tmp_path / "clone")
    c = Repository.open(tmp_path / "clone")
    assert c.chunk_size == CHUNK == c.config["chunk_size"]
    oid = new_version(c, tmp_path / "next", perturbed(c.load_state_dict("bert"), seed=5), "bert", "next")
    assert c.read_commit(oid).parents[0].oid == source.base
    multi = [m for e in c.commit_tree(oid).files.values() for _, m in e.tensors if len(m.chunks) > 1]
    assert multi and all(c.store.header(k).base is not None for m in multi for k in m.chunks)
