"""Repository API: byte-exact round trips, dedup, loading tensors, REF syntax, lineage fields,
export safety, config versioning."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from helpers import (
    ALL_DTYPES,
    HEAD_TENSORS,
    NP_DTYPES,
    finetune_head,
    list_objects,
    make_model_folder,
    make_tensor,
    model_tensors,
    same_array,
    sha256_tree,
    write_model_folder,
)

from mgit.errors import (
    AmbiguousRefError,
    CorruptObjectError,
    InvalidRefNameError,
    MgitError,
    NotARepositoryError,
    ObjectNotFoundError,
    RefNotFoundError,
    RepositoryExistsError,
    UnsafePathError,
    UnsupportedFormatError,
    UsageError,
)
from mgit.objects.ids import hash_object
from mgit.objects.model import Commit, FileEntry, ParentLink, Tree
from mgit.repo import Repository


def chunk_objects(repo: Any) -> set[str]:
    return {o for o in repo.store.iter_oids() if repo.store.kind_of(o) == "chunk"}


def tensor_chunks(repo: Any, ref: str, names: set[str] | None = None) -> set[str]:
    out: set[str] = set()
    for name, m in repo.tensors(ref).items():
        if names is None or name in names:
            out.update(m.chunks)
    return out


# -- byte-exact round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("sharded", [0, 3], ids=["single", "sharded"])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_import_export_identical(repo: Any, tmp_path: Path, dtype: str, sharded: int) -> None:
    src = tmp_path / "src"
    # the embedding spans two chunks whatever the element size
    vocab = 65536 // (16 * NP_DTYPES[dtype].itemsize) + 50
    tensors = make_model_folder(src, dtype, seed=1, sharded=sharded, vocab=vocab)
    res = repo.import_folder(src, model="m", message="import")
    assert res.files == len(sha256_tree(src))
    out = tmp_path / "out"
    exp = repo.export("m", out)
    assert sha256_tree(out) == sha256_tree(src)
    assert exp.bytes == sum(p.stat().st_size for p in src.iterdir())
    sd = repo.load_state_dict("m")
    assert set(sd) == set(tensors)
    for name, arr in tensors.items():
        assert sd[name].dtype == arr.dtype, name
        assert same_array(sd[name], arr), name


def test_multi_chunk_tensors_split_on_element_boundaries(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    # 3-byte-free dtypes only, but a size that is not a multiple of the chunk size
    tensors = make_model_folder(src, "F32", vocab=1500, hidden=24)  # 144000-byte embedding
    repo.import_folder(src, model="m", message="x")
    m = repo.tensors("m")["embeddings.word_embeddings.weight"]
    assert len(m.chunks) == 3
    lengths = [end - start for _, start, end in m.segments()]
    assert lengths == [65536, 65536, 144000 - 131072]
    assert all(n % 4 == 0 for n in lengths)
    assert same_array(
        repo.load_tensor("m", "embeddings.word_embeddings.weight"),
        tensors["embeddings.word_embeddings.weight"],
    )


def test_worktree_commit_checkout_round_trip(repo: Any, tmp_path: Path) -> None:
    make_model_folder(repo.root, "BF16", sharded=2)
    (repo.root / "sub").mkdir()
    (repo.root / "sub" / "notes.txt").write_text("hello\n")
    (repo.root / "empty.txt").write_bytes(b"")
    want = sha256_tree(repo.root)
    repo.add([repo.root])
    oid = repo.commit("base").commit.oid
    out = tmp_path / "out"
    repo.export(oid, out)
    assert sha256_tree(out) == want


# -- dedup ----------------------------------------------------------------------------------------


def test_same_folder_twice_adds_no_chunks(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_model_folder(src, "F32", vocab=600)
    first = repo.import_folder(src, model="m", message="one")
    chunks = chunk_objects(repo)
    objs = list_objects(repo.mgit_dir)
    second = repo.import_folder(src, model="m", message="two")
    assert chunk_objects(repo) == chunks
    assert second.stats.new_chunks == 0
    new = list_objects(repo.mgit_dir) - objs
    assert new == {second.commit.oid}  # the tree is the same object too
    assert second.commit.tree == first.commit.tree
    assert second.commit.parents == [(first.commit.oid, "version")]
    # the same model under another name: no new chunks either
    third = repo.import_folder(src, model="other", message="copy")
    assert third.stats.new_chunks == 0 and chunk_objects(repo) == chunks


def test_head_only_finetune_adds_only_head_chunks(repo: Any, tmp_path: Path) -> None:
    base_dir, ft_dir = tmp_path / "base", tmp_path / "ft"
    tensors = make_model_folder(base_dir, "F32", vocab=1200, hidden=32)
    repo.import_folder(base_dir, model="base", message="base")
    before = list_objects(repo.mgit_dir)
    stored_before = sum(repo.store.stored_size(o) for o in before)
    write_model_folder(ft_dir, finetune_head(tensors))
    res = repo.import_folder(ft_dir, model="ft", parent="base", relation="finetune", message="head")
    new = list_objects(repo.mgit_dir) - before
    head_chunks = tensor_chunks(repo, "ft", set(HEAD_TENSORS))
    ids = repo.tensor_ids("ft")
    # only the head's chunks (its small tensors in a pack of their own), the tree and the commit
    assert new == head_chunks | {res.commit.tree, res.commit.oid}
    # every other tensor is the very same object as the base's
    base_ids = repo.tensor_ids("base")
    assert {n for n in ids if ids[n] != base_ids[n]} == set(HEAD_TENSORS)
    new_bytes = sum(repo.store.stored_size(o) for o in new)
    assert new_bytes < 4096 < stored_before
    assert res.stats.new_chunks == len(head_chunks)


def test_same_tensor_in_two_files_stored_once(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    tensors = model_tensors("F16", vocab=700)
    write_model_folder(src, tensors, sharded=2)
    (src / "copy.safetensors").write_bytes((src / "model-00001-of-00002.safetensors").read_bytes())
    repo.import_folder(src, model="m", message="x")
    tree = repo.read_tree(repo.read_commit(repo.resolve("m")).tree)
    a, b = tree.files["model-00001-of-00002.safetensors"], tree.files["copy.safetensors"]
    assert a.tensors == b.tensors and a.header == b.header


# -- loading --------------------------------------------------------------------------------------


def test_load_state_dict_numpy_and_torch(repo: Any, tmp_path: Path) -> None:
    import torch

    src = tmp_path / "src"
    tensors = make_model_folder(src, "BF16", vocab=100)
    repo.import_folder(src, model="m", message="x")
    sd = repo.load_state_dict("m")
    assert set(sd) == set(tensors)
    w = "embeddings.word_embeddings.weight"
    assert sd[w].dtype == np.dtype(ml_dtypes.bfloat16)
    assert all(same_array(sd[k], v) for k, v in tensors.items())
    assert np.isnan(sd[w].astype(np.float32).reshape(-1)[3])  # NaN payload survives
    tsd = repo.load_state_dict("m", torch=True)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16 for v in tsd.values())
    assert all(same_array(tsd[k], v) for k, v in tensors.items())
    for name in tensors:
        assert same_array(repo.load_tensor("m", name), tensors[name])
        assert same_array(repo.load_tensor("m", name, torch=True), tensors[name])


def test_loaded_arrays_are_writable_copies(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    tensors = make_model_folder(src, "F32")
    repo.import_folder(src, model="m", message="x")
    a = repo.load_tensor("m", "pooler.weight")
    a[...] = 0
    assert same_array(repo.load_tensor("m", "pooler.weight"), tensors["pooler.weight"])


def test_load_tensor_reads_only_its_chunks(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    tensors = make_model_folder(src, "F32", vocab=1200, hidden=32)
    repo.import_folder(src, model="m", message="x")
    want = "embeddings.word_embeddings.weight"
    keep = set(repo.tensors("m")[want].chunks)
    assert len(keep) > 1
    for oid in chunk_objects(repo) - keep:  # every other tensor's data, file headers, blobs
        repo.store.path_for(oid).unlink()
    fresh = Repository.open(repo.root)
    assert same_array(fresh.load_tensor("m", want), tensors[want])
    assert same_array(fresh.load_tensor("m", want, torch=True), tensors[want])
    with pytest.raises(ObjectNotFoundError):
        fresh.load_tensor("m", "pooler.weight")
    with pytest.raises(ObjectNotFoundError):
        fresh.load_state_dict("m")


def test_load_unknown_tensor(repo: Any, tmp_path: Path) -> None:
    make_model_folder(tmp_path / "src", "F32")
    repo.import_folder(tmp_path / "src", model="m", message="x")
    with pytest.raises(RefNotFoundError):
        repo.load_tensor("m", "no.such.tensor")
    with pytest.raises(RefNotFoundError):
        repo.load_state_dict("no-such-model")


def test_corrupt_chunk_is_never_returned(repo: Any, tmp_path: Path) -> None:
    make_model_folder(tmp_path / "src", "F32")
    repo.import_folder(tmp_path / "src", model="m", message="x")
    oid = repo.tensors("m")["pooler.weight"].chunks[0]
    p = repo.store.path_for(oid)
    os.chmod(p, 0o644)
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0x10
    p.write_bytes(bytes(raw))
    fresh = Repository.open(repo.root)
    with pytest.raises(CorruptObjectError) as ei:
        fresh.load_tensor("m", "pooler.weight")
    assert ei.value.oid == oid
    out = tmp_path / "out"
    with pytest.raises(CorruptObjectError):
        fresh.export("m", out)
    assert not (out / "model.safetensors").exists()
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]


# -- REF syntax -----------------------------------------------------------------------------------


@pytest.fixture
def history(repo: Any, tmp_path: Path) -> dict[str, str]:
    """base: v1 <- v2 <- v3; ft: derived from v2 (finetune) then a version; tag 'release' on v2;
    'merged': a commit with two parents (ft tip and base v3)."""
    tensors = model_tensors("F32", vocab=32)
    out = {}
    for i in (1, 2, 3):
        tensors = dict(tensors)
        tensors["pooler.weight"] = make_tensor("F32", tensors["pooler.weight"].shape, 500 + i)
        write_model_folder(tmp_path / f"v{i}", tensors)
        out[f"v{i}"] = repo.import_folder(
            tmp_path / f"v{i}", model="base", message=f"v{i}"
        ).commit.oid
    ft = finetune_head(tensors)
    write_model_folder(tmp_path / "ft", ft)
    out["ft1"] = repo.import_folder(
        tmp_path / "ft",
        model="ft",
        parent=out["v2"],
        relation="finetune",
        message="ft",
        meta={"task": "sst2", "acc": "0.91"},
    ).commit.oid
    (tmp_path / "ft" / "config.json").write_text('{"v": 2}')
    out["ft2"] = repo.import_folder(tmp_path / "ft", model="ft", message="ft v2").commit.oid
    out["merged"] = repo.import_folder(
        tmp_path / "v1",
        model="merged",
        parent=[out["ft2"], out["v3"]],
        relation="merge",
        message="merge",
    ).commit.oid
    repo.create_tag("release", out["v2"])
    return out


def test_resolve_names_tags_ids(repo: Any, history: dict[str, str]) -> None:
    h = history
    assert repo.resolve("base") == h["v3"]
    assert repo.resolve("ft") == h["ft2"]
    assert repo.resolve("release") == h["v2"]
    assert repo.resolve(h["v1"]) == h["v1"]
    assert repo.resolve(h["v1"][:10]) == h["v1"]
    assert repo.resolve(h["ft1"][:8]) == h["ft1"]


def test_resolve_ancestry_operators(repo: Any, history: dict[str, str]) -> None:
    h = history
    assert repo.resolve("base~1") == h["v2"]
    assert repo.resolve("base~2") == h["v1"]
    assert repo.resolve("base~0") == h["v3"]
    assert repo.resolve("base^") == h["v2"]
    assert repo.resolve("base^1") == h["v2"]
    assert repo.resolve("base^^") == h["v1"]
    assert repo.resolve("base~1^") == h["v1"]
    assert repo.resolve("release~1") == h["v1"]
    assert repo.resolve("ft~1") == h["ft1"]
    assert repo.resolve("ft~2") == h["v2"]  # first parent of the derived model's root: its base
    assert repo.resolve(f"{h['ft2'][:12]}~1") == h["ft1"]
    assert repo.resolve("merged^1") == h["ft2"]
    assert repo.resolve("merged^2") == h["v3"]
    assert repo.resolve("merged^0") == h["merged"]
    assert repo.resolve("merged^2~2") == h["v1"]


def test_resolve_head(repo: Any, history: dict[str, str]) -> None:
    # HEAD is on 'base' (the repository's first model line)
    assert repo.resolve("HEAD") == history["v3"]
    assert repo.resolve("HEAD~1") == history["v2"]
    assert repo.resolve("HEAD^") == history["v2"]


UNKNOWN_REFS = [
    "nope",
    "base~3",
    "base~99",
    "base^2",
    "merged^3",
    "ft~9",
    "",
    "~1",
    "base~x",
    "a..b",
    "-x",
    "ba se",
    "00000000",
    "release^2",
    "HEAD~9",
]


def test_unknown_refs(repo: Any, history: dict[str, str]) -> None:
    for ref in UNKNOWN_REFS:
        with pytest.raises(RefNotFoundError):
            repo.resolve(ref)


def test_head_before_first_commit(repo: Any) -> None:
    with pytest.raises(RefNotFoundError):
        repo.resolve("HEAD")
    with pytest.raises(RefNotFoundError):
        repo.log()


def test_ambiguous_prefix(repo: Any) -> None:
    """Two real commit objects whose ids share their first 4 hex digits."""
    tree = repo.store.put("tree", Tree({}).to_bytes())
    seen: dict[str, bytes] = {}
    pair = None
    for i in range(200000):
        data = Commit(tree=tree, parents=(), model="x", author="a", time=i, message="m").to_bytes()
        oid = hash_object("commit", data)
        if oid[:4] in seen:
            pair = (seen[oid[:4]], data)
            break
        seen[oid[:4]] = data
    assert pair is not None
    a, b = (repo.store.put("commit", d) for d in pair)
    prefix = a[:4]
    with pytest.raises(AmbiguousRefError) as ei:
        repo.resolve(prefix)
    assert set(ei.value.candidates) == {a, b}
    with pytest.raises(AmbiguousRefError):
        repo.resolve(prefix + "~1")
    n = next(i for i in range(64) if a[i] != b[i]) + 1
    assert repo.resolve(a[: max(n, 4)]) == a
    assert repo.resolve(b[: max(n, 4)]) == b


def test_prefix_of_a_non_commit_is_not_a_ref(repo: Any, history: dict[str, str]) -> None:
    chunk = next(iter(chunk_objects(repo)))
    with pytest.raises(RefNotFoundError):
        repo.resolve(chunk[:16])
    with pytest.raises(RefNotFoundError):
        repo.resolve(chunk)


# -- lineage fields -------------------------------------------------------------------------------


def test_parent_relation_and_meta_recorded(repo: Any, history: dict[str, str]) -> None:
    h = history
    ft1 = repo.commit_info(h["ft1"])
    assert ft1.model == "ft"
    assert ft1.parents == [(h["v2"], "finetune")]
    assert ft1.meta == {"task": "sst2", "acc": "0.91"}
    assert ft1.author == "tester <t@example.com>"
    assert repo.commit_info(h["ft2"]).parents == [(h["ft1"], "version")]
    assert repo.commit_info(h["v1"]).parents == []
    assert repo.commit_info(h["merged"]).parents == [(h["ft2"], "merge"), (h["v3"], "merge")]
    models = {m.name: m for m in repo.models()}
    assert models["ft"].versions == 2 and models["ft"].relation == "finetune"
    assert models["ft"].derived_from == f"base@{h['v2'][:12]}"
    assert models["base"].versions == 3 and models["base"].derived_from is None
    log = [c.oid for c in repo.log("ft")]
    assert log == [h["ft2"], h["ft1"], h["v2"], h["v1"]]


@pytest.mark.parametrize(
    "relation", ["finetune", "adapter", "distill", "prune", "quantize", "merge", "other", "version"]
)
def test_every_relation(repo: Any, tmp_path: Path, relation: str) -> None:
    make_model_folder(tmp_path / "src", "I8")
    base = repo.import_folder(tmp_path / "src", model="a", message="a").commit.oid
    c = repo.import_folder(
        tmp_path / "src", model="b", parent="a", relation=relation, message="b"
    ).commit
    assert c.parents == [(base, relation)]


def test_bad_relation_and_bad_names(repo: Any, tmp_path: Path) -> None:
    make_model_folder(tmp_path / "src", "I8")
    repo.import_folder(tmp_path / "src", model="a", message="a")
    with pytest.raises(UsageError):
        repo.import_folder(tmp_path / "src", model="b", parent="a", relation="cousin", message="b")
    for bad in ("a..b", "-x", "x.lock", "HEAD", "a//b"):
        with pytest.raises(InvalidRefNameError):
            repo.import_folder(tmp_path / "src", model=bad, message="b")
        with pytest.raises(InvalidRefNameError):
            repo.create_tag(bad, "a")
        with pytest.raises(InvalidRefNameError):
            repo.create_branch(bad, "a")
    assert set(repo.model_heads()) == {"a"}


def test_branch_and_tag(repo: Any, history: dict[str, str]) -> None:
    assert repo.create_branch("exp", "base~1") == history["v2"]
    assert repo.model_heads()["exp"] == history["v2"]
    with pytest.raises(MgitError):
        repo.create_branch("exp", "base")
    with pytest.raises(UsageError):
        repo.create_tag("release", "base")
    repo.create_tag("release", "base", force=True)
    assert repo.tags()["release"] == history["v3"]
    repo.delete_tag("release")
    assert "release" not in repo.tags()
    repo.delete_branch("exp")
    assert "exp" not in repo.model_heads()
    with pytest.raises(UsageError):
        repo.delete_branch("base")  # checked out


# -- export safety --------------------------------------------------------------------------------


def test_export_refuses_to_overwrite(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_model_folder(src, "F16")
    repo.import_folder(src, model="m", message="x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("mine")
    with pytest.raises(UsageError):
        repo.export("m", out)
    assert (out / "config.json").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    repo.export("m", out, force=True)
    assert sha256_tree(out) == sha256_tree(src)


def test_export_to_a_file_path_refused(repo: Any, tmp_path: Path) -> None:
    make_model_folder(tmp_path / "src", "F16")
    repo.import_folder(tmp_path / "src", model="m", message="x")
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UsageError):
        repo.export("m", f)


def _commit_tree(repo: Any, files: dict[str, FileEntry], model: str = "evil") -> str:
    """Write a tree (bypassing Tree's validation) and a commit, and point a model line at it."""
    raw = json.dumps(
        {"files": {p: e.to_json() for p, e in files.items()}}, sort_keys=True, separators=(",", ":")
    )
    tree_oid = repo.store.put("tree", raw.encode())
    c = Commit(tree=tree_oid, parents=(), model=model, author="x", time=0, message="evil")
    oid = repo.store.put("commit", c.to_bytes())
    repo.refs.set_if_equals("refs/heads/" + model, None, oid, message="test")
    return oid


def _blob_entry(repo: Any, data: bytes) -> FileEntry:
    import xxhash

    return FileEntry(
        kind="blob",
        size=len(data),
        xxh=xxhash.xxh3_128(data).hexdigest(),
        chunks=(repo.store.put("chunk", data),),
    )


@pytest.mark.parametrize(
    "path", ["../escaped.txt", "a/../../escaped.txt", "/tmp/mgit-test-escaped.txt", ".mgit/config"]
)
def test_crafted_tree_with_unsafe_path_is_refused(repo: Any, tmp_path: Path, path: str) -> None:
    _commit_tree(repo, {path: _blob_entry(repo, b"pwned")})
    out = tmp_path / "out" / "inner"
    with pytest.raises(CorruptObjectError):
        repo.export("evil", out)
    with pytest.raises(CorruptObjectError):
        repo.load_state_dict("evil")
    assert not (tmp_path / "out" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/mgit-test-escaped.txt").exists()


def test_export_never_writes_through_a_symlinked_dir(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file.txt").write_text("data")
    repo.import_folder(src, model="m", message="x")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "sub")
    with pytest.raises(UnsafePathError):
        repo.export("m", out, force=True)
    assert list(outside.iterdir()) == []


def test_export_never_writes_through_a_symlinked_file(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("data")
    repo.import_folder(src, model="m", message="x")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "file.txt")
    with pytest.raises(UnsafePathError):
        repo.export("m", out, force=True)
    assert victim.read_text() == "precious"


def test_import_refuses_symlink_pointing_outside(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_model_folder(src, "F32")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, src / "leak.txt")
    with pytest.raises(UnsafePathError):
        repo.import_folder(src, model="m", message="x")
    assert repo.refs.iter_refs() == {}
    os.unlink(src / "leak.txt")
    os.symlink(tmp_path, src / "linkdir")
    with pytest.raises(UnsafePathError):
        repo.import_folder(src, model="m", message="x")
    assert repo.refs.iter_refs() == {}


def test_import_follows_symlink_inside_folder(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_model_folder(src, "F32")
    os.symlink("config.json", src / "alias.json")
    repo.import_folder(src, model="m", message="x")
    out = tmp_path / "out"
    repo.export("m", out)
    assert (out / "alias.json").read_bytes() == (src / "config.json").read_bytes()
    assert not (out / "alias.json").is_symlink()


def test_import_missing_or_empty_folder(repo: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        repo.import_folder(tmp_path / "nope", model="m", message="x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        repo.import_folder(tmp_path / "empty", model="m", message="x")


# -- repository config ----------------------------------------------------------------------------


def test_init_layout_and_reopen(repo: Any) -> None:
    cfg = json.loads((repo.mgit_dir / "config").read_text())
    assert cfg["format_version"] == 2 and cfg["chunk_size"] == 65536
    assert (repo.mgit_dir / "HEAD").read_text().strip() == "ref: refs/heads/base"
    again = Repository.open(repo.root / "deeper" / "path")  # searches upwards
    assert again.root == repo.root and again.chunk_size == 65536
    with pytest.raises(RepositoryExistsError):
        Repository.init(repo.root)


@pytest.mark.parametrize("cs", [1000, 65535, 3 * 65536, 1 << 30])
def test_bad_chunk_size(tmp_path: Path, cs: int) -> None:
    with pytest.raises(UsageError):
        Repository.init(tmp_path / "r", chunk_size=cs)


@pytest.mark.parametrize("version", [1, 3, 0, "2", None])
def test_unknown_format_version_refused(repo: Any, version: object) -> None:
    cfg = json.loads((repo.mgit_dir / "config").read_text())
    cfg["format_version"] = version
    (repo.mgit_dir / "config").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedFormatError):
        Repository.open(repo.root)


def test_unknown_hash_and_garbage_config_refused(repo: Any) -> None:
    cfg = json.loads((repo.mgit_dir / "config").read_text())
    cfg["hash"] = "sha1"
    (repo.mgit_dir / "config").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedFormatError):
        Repository.open(repo.root)
    (repo.mgit_dir / "config").write_text("{{{")
    with pytest.raises(UnsupportedFormatError):
        Repository.open(repo.root)


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(NotARepositoryError):
        Repository.open(tmp_path)


def test_stats(repo: Any, history: dict[str, str]) -> None:
    s = repo.stats()
    assert set(s.models) == {"base", "ft", "merged"}
    assert s.total["logical_bytes"] == sum(m["logical_bytes"] for m in s.models.values())
    assert 0 < s.total["stored_bytes"] < s.total["logical_bytes"]
    # the derived model is charged only for what it added
    assert s.models["ft"]["stored_bytes"] < s.models["base"]["stored_bytes"]


def test_commit_ids_do_not_depend_on_ingest_order(
    make_repo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGIT_COMMIT_TIME", "1700000000")
    src = tmp_path / "src"
    make_model_folder(src, "F16", sharded=2, vocab=900)
    monkeypatch.setenv("MGIT_THREADS", "1")
    a = make_repo("a").import_folder(src, model="m", message="x").commit.oid
    monkeypatch.setenv("MGIT_THREADS", "4")
    b = make_repo("b").import_folder(src, model="m", message="x").commit.oid
    assert a == b


def test_parent_links_survive_reopen(repo: Any, history: dict[str, str]) -> None:
    fresh = Repository.open(repo.root)
    assert fresh.read_commit(history["ft1"]).parents == (ParentLink(history["v2"], "finetune"),)


def test_an_older_format_gets_a_hint_to_migrate_a_newer_one_to_upgrade(repo: Any) -> None:
    cfg_path = repo.mgit_dir / "config"
    cfg = json.loads(cfg_path.read_text())
    for version, hint in ((1, "older mgit"), (99, "upgrade mgit")):
        cfg["format_version"] = version
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(UnsupportedFormatError, match=f"format version {version}") as ei:
            Repository.open(repo.root)
        assert hint in (ei.value.hint or "")
