"""Hugging Face hub cache snapshots as model folders (``mgit.hf``, ``scan``, add/status/import).

A real hub cache layout is built in ``tmp_path`` the way ``huggingface_hub`` writes it: blobs
named by the sha256 (LFS files) or git blob sha1 (regular files) of their content,
``snapshots/<40-hex commit>/`` holding relative symlinks into ``../../blobs/`` (deeper for files
in sub-folders), and ``refs/main`` holding the commit hash. When ``huggingface_hub`` is installed,
its own offline cache readers are checked to agree with the layout and with mgit's lookup.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import list_objects, model_tensors, safetensors_bytes

from mgit import hf
from mgit.errors import UnreadableEntryError, UnsafePathError, UsageError
from mgit.repo import Repository
from mgit.worktree.scan import Skipped, scan

CHUNK = 65536

CARD = """---
license: apache-2.0
base_model: org/base   # the model it was finetuned from
datasets:
  - glue
  - "imdb"
tags: [text-classification, 'it''s', "a, b"]
pipeline_tag: text-classification
library_name: transformers
model-index:
- name: ft
  results:
  - task:
      type: text-classification
widget:
- text: "I love it"
---

# A model

Some text with --- and key: value lines that are not YAML.
"""


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_hub_cache(
    cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str | None = None, ref: str | None = "main"
) -> Path:
    """Lay ``files`` out as ``huggingface_hub`` does; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = commit or hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        lfs = rel.endswith((".safetensors", ".bin", ".onnx"))
        h = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        (repo / "blobs" / h).write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / h, link.parent))
    if ref is not None:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap


def base_files(seed: int = 0, card: str | None = None) -> dict[str, bytes]:
    files = {
        "config.json": b'{"model_type": "bert", "hidden_size": 16}\n',
        "model.safetensors": safetensors_bytes(model_tensors(seed=seed)),
        "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
    }
    if card is not None:
        files["README.md"] = card.encode()
    return files


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "hub"
    c.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    return c


# -- model-card YAML ------------------------------------------------------------------------------


def test_front_matter_subset() -> None:
    card = hf.parse_front_matter(CARD)
    assert card["license"] == "apache-2.0"
    assert card["base_model"] == "org/base"
    assert card["datasets"] == ["glue", "imdb"]
    assert card["tags"] == ["text-classification", "it's", "a, b"]
    assert card["pipeline_tag"] == "text-classification"
    assert "model-index" not in card and "widget" not in card  # lists of maps are skipped
    meta = hf.card_meta(card)
    assert meta == {
        "license": "apache-2.0", "base_model": "org/base", "datasets": "glue,imdb",
        "tags": "text-classification,it's,a, b", "pipeline_tag": "text-classification",
        "library_name": "transformers",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no header\n", {}),
        ("---\nlicense: mit\n", {}),  # never closed
        ("---\nlicense: mit\n---\n", {"license": "mit"}),
        ("\ufeff---\r\nlicense: mit\r\n---\r\n", {"license": "mit"}),
        ("---\nversion: 2.0\nflag: true\nempty:\nnull_v: ~\n---\n",
         {"version": "2.0", "flag": "true", "empty": None, "null_v": None}),
        ("---\nbase_model:\n- a/b\n- c/d  # second\n---\n", {"base_model": ["a/b", "c/d"]}),
        ("---\ntags: [a,\n  b]\n---\n", {"tags": ["a", "b"]}),
        ('---\n"quoted key": "x \\"y\\""\nurl: http://h/p#frag\n---\n',
         {"quoted key": 'x "y"', "url": "http://h/p#frag"}),
        ("---\ndesc: |\n  line one\n  line two\nnext: v\n---\n", {"desc": "line one\nline two", "next": "v"}),
        ("---\ntags:\n- 'base_model:adapter:org/x'\n- base_model:quantized:org/y\n---\n",
         {"tags": ["base_model:adapter:org/x", "base_model:quantized:org/y"]}),
        ("---\nmap:\n  a: 1\n  b: 2\nx: [1, {a: b}]\n---\n", {"x": ["1", "{a: b}"]}),
        ("---\n: bad\n[weird\n---\n", {}),
    ],
)
def test_front_matter_cases(text: str, expected: dict[str, Any]) -> None:
    assert hf.parse_front_matter(text) == expected


def test_card_relation() -> None:
    assert hf.card_relation({"base_model_relation": "quantized"}) == "quantize"
    assert hf.card_relation({"base_model_relation": "Adapter"}) == "adapter"
    assert hf.card_relation({"base_model_relation": "merge"}) == "merge"
    assert hf.card_relation({"base_model_relation": "something"}) is None
    assert hf.card_relation({}) is None
    assert hf.card_base_models({"base_model": ["a/b", "", "c"]}) == ["a/b", "c"]


# -- cache lookup ----------------------------------------------------------------------------------


def test_hub_cache_dir_env(tmp_path: Path) -> None:
    assert hf.hub_cache_dir({"HF_HUB_CACHE": "/x", "HF_HOME": "/y"}) == Path("/x")
    assert hf.hub_cache_dir({"HF_HOME": "/y"}) == Path("/y/hub")
    assert hf.hub_cache_dir({"XDG_CACHE_HOME": "/z"}) == Path("/z/huggingface/hub")
    assert hf.hub_cache_dir({}) == Path.home() / ".cache" / "huggingface" / "hub"


def test_find_snapshot(cache: Path) -> None:
    snap1 = build_hub_cache(cache, "org/base", base_files(0), commit="a" * 40)
    snap2 = build_hub_cache(cache, "org/base", base_files(1), commit="abcd" + "c" * 36, ref="pr/1")
    s = hf.find_snapshot("org/base")
    assert (s.repo_id, s.revision, s.ref, s.path) == ("org/base", "a" * 40, "main", snap1)
    assert hf.find_snapshot("org/base@main").revision == "a" * 40
    assert hf.find_snapshot("org/base@pr/1").path == snap2
    assert hf.find_snapshot("org/base@abcd").revision == "abcd" + "c" * 36
    assert hf.find_snapshot("org/base@" + "a" * 40).ref is None
    assert hf.find_snapshot("org/base", cache_dir=cache).path == snap1
    with pytest.raises(UsageError, match="revision a of org/base is not in"):
        hf.find_snapshot("org/base@a")  # too short to be a prefix
    build_hub_cache(cache, "org/base", base_files(2), commit="abcd" + "e" * 36, ref=None)
    with pytest.raises(UsageError, match="revision abcd of org/base is ambiguous"):
        hf.find_snapshot("org/base@abcd")
    assert hf.find_snapshot("org/base@abcde").revision == "abcd" + "e" * 36
    with pytest.raises(UsageError, match="revision nope of org/base is not in the Hugging Face cache"):
        hf.find_snapshot("org/base@nope")
    with pytest.raises(UsageError, match="org/missing is not in the Hugging Face cache"):
        hf.find_snapshot("org/missing")
    with pytest.raises(UsageError, match="not a Hugging Face repository id"):
        hf.find_snapshot("../etc")
    with pytest.raises(UsageError):
        hf.find_snapshot("org/base@../../x")
    # a ref whose snapshot was deleted
    (cache / "models--org--base" / "refs" / "stale").write_text("f" * 40)
    with pytest.raises(UsageError, match="ref stale of org/base points at ffffffffffff"):
        hf.find_snapshot("org/base@stale")


def test_layout_agrees_with_huggingface_hub(cache: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")
    snap = build_hub_cache(cache, "org/base", base_files(0, CARD))
    info = hub.scan_cache_dir(cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == "org/base" and repo.repo_type == "model"
    (rev,) = repo.revisions
    assert rev.commit_hash == snap.name and "main" in rev.refs
    assert {f.file_name for f in rev.files} == {"config.json", "model.safetensors", "vocab.txt", "README.md"}
    got = hub.try_to_load_from_cache("org/base", "tokenizer/vocab.txt", cache_dir=cache)
    assert Path(got) == snap / "tokenizer" / "vocab.txt"
    assert hf.find_snapshot("org/base").path == Path(got).parent.parent


def test_cache_blobs_dir(cache: Path, tmp_path: Path) -> None:
    snap = build_hub_cache(cache, "org/base", base_files(0))
    blobs = (cache / "models--org--base" / "blobs").resolve()
    assert hf.cache_blobs_dir(snap) == blobs
    assert hf.cache_blobs_dir(snap / "tokenizer") == blobs
    assert hf.cache_blobs_dir(tmp_path) is None
    (tmp_path / "x" / "snapshots" / "r").mkdir(parents=True)
    assert hf.cache_blobs_dir(tmp_path / "x" / "snapshots" / "r") is None  # no blobs/ beside it


# -- scan ------------------------------------------------------------------------------------------


def test_scan_follows_cache_links_and_reports_skips(cache: Path, tmp_path: Path) -> None:
    snap = build_hub_cache(cache, "org/base", base_files(0))
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 10)
    (snap / "extra.bin").symlink_to(outside)
    (snap / "gone.json").symlink_to("../../blobs/0000")
    os.mkfifo(snap / "fifo")
    skipped: list[Skipped] = []
    found = scan(snap, skipped=skipped)
    assert sorted(found) == ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    reasons = {s.path: s.reason for s in skipped}
    assert set(reasons) == {"extra.bin", "gone.json", "fifo"}
    assert reasons["extra.bin"].startswith("symlink points outside the model folder")
    assert reasons["gone.json"].startswith("dangling symlink")
    assert reasons["fifo"] == "not a regular file (a FIFO)"
    # -L follows the outside link; dangling and fifo stay skipped
    found = scan(snap, follow_symlinks=True)
    assert "extra.bin" in found and "gone.json" not in found
    # strict (import/add) refuses the outside link, with a hint
    with pytest.raises(UnsafePathError) as ei:
        scan(snap, strict=True)
    assert "-L" in (ei.value.hint or "")
    # a plain folder does not follow links into a cache it is not part of
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.safetensors").symlink_to(snap / "model.safetensors")
    assert scan(plain) == {}


def test_scan_unreadable_and_linked_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "m"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "secret.txt").write_text("s")
    (root / "loop").symlink_to(root)  # a linked folder inside: not followed
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "w.bin").write_bytes(b"w")
    (ext / "back").symlink_to(ext)  # a loop once followed
    (root / "extdir").symlink_to(ext)
    scan_mod = sys.modules["mgit.worktree.scan"]

    real = scan_mod._readable
    monkeypatch.setattr(scan_mod, "_readable", lambda p: p.name != "secret.txt" and real(p))
    skipped: list[Skipped] = []
    assert sorted(scan(root, skipped=skipped)) == ["sub/a.txt"]
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["secret.txt"] == "unreadable (permission denied)"
    assert reasons["loop"].startswith("symlinked folder")
    assert reasons["extdir"].startswith("symlink points outside")
    with pytest.raises(UsageError, match="cannot read .*secret.txt"):  # with the loops, all named
        scan(root, strict=True, follow_symlinks=True)
    monkeypatch.setattr(scan_mod, "_readable", real)
    skipped = []
    found = scan(root, follow_symlinks=True, skipped=skipped)
    assert sorted(found) == ["extdir/w.bin", "secret.txt", "sub/a.txt"]
    assert {s.path: s.reason for s in skipped} == {"extdir/back": "symlink loop", "loop": "symlink loop"}


# -- the working tree in a snapshot ------------------------------------------------------------------


def test_status_add_commit_in_a_snapshot(cache: Path, tmp_path: Path) -> None:
    snap = build_hub_cache(cache, "org/base", base_files(0, CARD))
    (snap / "gone.json").symlink_to("../../blobs/0000")
    repo = Repository.init(snap, model="base", chunk_size=CHUNK)
    st = repo.status()
    assert st.untracked == ["README.md", "config.json", "model.safetensors", "tokenizer/vocab.txt"]
    assert [(s.path, s.reason) for s in st.skipped] == [
        ("gone.json", "dangling symlink: ../../blobs/0000 does not exist")
    ]
    assert st.to_json()["skipped"][0]["path"] == "gone.json"
    with pytest.raises(UnreadableEntryError, match="gone.json: dangling symlink"):
        repo.add([snap])
    res = repo.add([snap], skip_unreadable=True)
    assert res.staged == ["README.md", "config.json", "model.safetensors", "tokenizer/vocab.txt"]
    assert [s.path for s in res.skipped] == ["gone.json"]
    st = repo.status()
    assert st.staged_new == res.staged and not st.untracked and not st.modified
    repo.commit("base")
    st = repo.status()
    assert st.clean and not st.untracked and not st.deleted
    assert repo.checkout("base").written == []  # the links hold the committed bytes
    with pytest.raises(UsageError, match="cannot add gone.json: dangling symlink"):
        repo.add([snap / "gone.json"])
    # export writes regular files with the blobs' bytes
    out = tmp_path / "out"
    repo.export("base", out)
    assert not any(p.is_symlink() for p in out.rglob("*"))
    for rel, data in base_files(0, CARD).items():
        assert (out / rel).read_bytes() == data


def test_add_follow_symlinks_outside(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "wt", model="m", chunk_size=CHUNK)
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "w.bin").write_bytes(b"weights")
    (ext / "sub").mkdir()
    (ext / "sub" / "c.json").write_text("{}")
    (repo.root / "w.bin").symlink_to(ext / "w.bin")
    (repo.root / "lib").symlink_to(ext / "sub")
    st = repo.status()
    assert {s.path for s in st.skipped} == {"w.bin", "lib"}
    with pytest.raises(UnsafePathError, match="outside the model folder"):
        repo.add([repo.root / "w.bin"])
    with pytest.raises(UnsafePathError, match="symlinked folder"):
        repo.add([repo.root / "lib"])
    assert repo.add([repo.root / "w.bin"], follow_symlinks=True).staged == ["w.bin"]
    assert repo.add([repo.root / "lib"], follow_symlinks=True).staged == ["lib/c.json"]
    repo.commit("linked")
    st = repo.status()  # tracked links keep being followed
    assert st.clean and not st.skipped and not st.untracked
    (ext / "w.bin").write_bytes(b"weights v2")
    assert repo.status().modified == ["w.bin"]


# -- import --hf-cache (library) --------------------------------------------------------------------


def test_import_hf_cache(cache: Path, tmp_path: Path) -> None:
    build_hub_cache(cache, "org/base", base_files(0, "---\nlicense: mit\ntags: [fill-mask]\n---\n"))
    ft_files = base_files(1, CARD)
    ft_snap = build_hub_cache(cache, "org/ft", ft_files)
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    b = repo.import_folder(hf_cache="org/base")
    assert b.commit.model == "base" and not b.commit.parents
    assert b.commit.meta == {"hf_repo": "org/base", "hf_revision": hf.find_snapshot("org/base").revision,
                             "license": "mit", "tags": "fill-mask"}
    assert b.commit.message == "org/base@" + b.commit.meta["hf_revision"][:12]
    f = repo.import_folder(hf_cache="org/ft@main", model="ft", meta={"license": "custom"})
    c = repo.read_commit(f.commit.oid)
    assert [(p.oid, p.relation) for p in c.parents] == [(b.commit.oid, "finetune")]
    assert c.message == f"org/ft@{ft_snap.name[:12]}"
    assert c.meta["license"] == "custom"  # --meta wins over the card
    assert c.meta["base_model"] == "org/base" and c.meta["datasets"] == "glue,imdb"
    assert c.meta["hf_revision"] == ft_snap.name
    # the snapshot folder given by its path: the same metadata and parent
    d = repo.import_folder(ft_snap, model="ft-dir", message="by path")
    assert d.commit.meta == {k: v for k, v in c.meta.items() if k != "license"} | {"license": "apache-2.0"}
    assert d.commit.parents == [(b.commit.oid, "finetune")]
    assert d.commit.tree == f.commit.tree
    out = tmp_path / "out"
    repo.export("ft", out)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == ft_files


@pytest.mark.parametrize(
    ("relation_line", "expected"),
    [
        ("base_model_relation: quantized\n", "quantize"),
        ("base_model_relation: adapter\n", "adapter"),
        ("", "finetune"),
    ],
)
def test_import_hf_cache_relation_and_name_match(
    cache: Path, tmp_path: Path, relation_line: str, expected: str
) -> None:
    build_hub_cache(cache, "org/q", base_files(2, f"---\nbase_model: someone/base\n{relation_line}---\n"))
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    base_dir = tmp_path / "b"
    base_dir.mkdir()
    (base_dir / "model.safetensors").write_bytes(safetensors_bytes(model_tensors(seed=0)))
    b = repo.import_folder(base_dir, model="base", message="base")  # named like the card's base_model
    r = repo.import_folder(hf_cache="org/q")
    c = repo.read_commit(r.commit.oid)
    assert [(p.oid, p.relation) for p in c.parents] == [(b.commit.oid, expected)]
    # an explicit parent and relation win over the card
    other = repo.import_folder(base_dir, model="other", message="other")
    r2 = repo.import_folder(hf_cache="org/q", model="q2", parent="other", relation="distill")
    assert [(p.oid, p.relation) for p in repo.read_commit(r2.commit.oid).parents] == [
        (other.commit.oid, "distill")
    ]


def test_import_hf_cache_base_not_in_repo_is_a_root(cache: Path, tmp_path: Path) -> None:
    build_hub_cache(cache, "org/ft", base_files(1, CARD))
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    r = repo.import_folder(hf_cache="org/ft")
    assert repo.read_commit(r.commit.oid).parents == ()


def test_import_hf_cache_bad_inputs_write_nothing(cache: Path, tmp_path: Path) -> None:
    build_hub_cache(cache, "org/base", base_files(0))
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    before = list_objects(repo.mgit_dir)
    with pytest.raises(UsageError, match="org/nope is not in the Hugging Face cache"):
        repo.import_folder(hf_cache="org/nope")
    with pytest.raises(UsageError, match="revision v9 of org/base is not in the Hugging Face cache"):
        repo.import_folder(hf_cache="org/base@v9")
    with pytest.raises(UsageError, match="not both"):
        repo.import_folder(tmp_path, hf_cache="org/base", model="x", message="x")
    with pytest.raises(UsageError, match="--model"):
        repo.import_folder(tmp_path / "repo")
    assert list_objects(repo.mgit_dir) == before
    assert repo.model_heads() == {}


def test_import_folder_outside_links(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    src = tmp_path / "src"
    src.mkdir()
    ext = tmp_path / "w.safetensors"
    ext.write_bytes(safetensors_bytes({"w": np.arange(8, dtype=np.float32)}))
    (src / "model.safetensors").symlink_to(ext)
    (src / "config.json").write_text("{}")
    (src / "dangling").symlink_to(tmp_path / "nothing")
    with pytest.raises(UnsafePathError, match="outside the model folder"):
        repo.import_folder(src, model="m", message="m")
    with pytest.raises(UnreadableEntryError, match="cannot read dangling: dangling symlink"):
        repo.import_folder(src, model="m", message="m", follow_symlinks=True)
    r = repo.import_folder(src, model="m", message="m", follow_symlinks=True, skip_unreadable=True)
    assert r.files == 2
    assert [s.path for s in r.skipped] == ["dangling"]
    assert r.to_json()["skipped"][0]["reason"].startswith("dangling symlink")
