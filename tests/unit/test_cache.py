"""``read_file``, ``model_config`` and the materialized-folder cache (``materialize``,
``clean_cache``): content-addressed, read-only, built once, files shared by hard links."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import tiny_bert_model

from mgit import cache
from mgit.errors import InvalidModelFileError, PathNotFoundError, UsageError
from mgit.repo import Repository

CHUNK = 65536


@pytest.fixture
def two(tmp_path: Path) -> tuple[Repository, dict[str, Path]]:
    """``bert`` (config, weights, tokenizer file, a README) and ``ft``: the same config and
    tokenizer, other weights, a ``checkpoint-2/`` folder."""
    pytest.importorskip("transformers")
    base, ft = tmp_path / "base", tmp_path / "ft"
    tiny_bert_model(0).save_pretrained(base)
    (base / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (base / "README.md").write_text("# bert\n")
    tiny_bert_model(1).save_pretrained(ft)
    (ft / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    tiny_bert_model(2).save_pretrained(ft / "checkpoint-2")
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    repo.import_folder(base, model="bert", message="base")
    repo.import_folder(ft, model="ft", parent="bert", message="ft")
    return repo, {"bert": base, "ft": ft}


def test_read_file_and_model_config(two: tuple[Repository, dict[str, Path]]) -> None:
    repo, src = two
    for rel in ("config.json", "model.safetensors", "vocab.txt", "checkpoint-2/model.safetensors"):
        assert repo.read_file("ft", rel) == (src["ft"] / rel).read_bytes()
    assert repo.read_file("ft", "./config.json") == (src["ft"] / "config.json").read_bytes()
    assert repo.model_config("ft") == json.loads((src["ft"] / "config.json").read_text())
    assert repo.model_config("ft", "checkpoint-2/config.json")["model_type"] == "bert"
    with pytest.raises(PathNotFoundError, match="no file 'tokenizer.json'") as exc:
        repo.read_file("ft", "tokenizer.json")
    assert "config.json" in exc.value.files
    with pytest.raises(InvalidModelFileError, match="not JSON"):
        repo.model_config("bert", "README.md")
    with pytest.raises(InvalidModelFileError, match="not UTF-8|not JSON"):
        repo.model_config("bert", "model.safetensors")


def test_read_file_detects_a_damaged_store(two: tuple[Repository, dict[str, Path]]) -> None:
    from mgit.errors import CorruptObjectError

    repo, _ = two
    entry = repo.commit_tree(repo.resolve("bert")).files["README.md"]
    path = repo.store.path_for(entry.chunks[0])
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError):
        repo.read_file("bert", "README.md")


def _inodes(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }  # fmt: skip


def test_materialize_loads_and_is_built_once(two: tuple[Repository, dict[str, Path]]) -> None:
    import transformers

    repo, src = two
    folder = repo.materialize("ft")
    assert folder.parent == repo.mgit_dir / "cache" / "models"
    assert sorted(_inodes(folder)) == sorted(
        ["config.json", "model.safetensors", "vocab.txt", "checkpoint-2/config.json",
         "checkpoint-2/model.safetensors"]
    )  # fmt: skip
    for rel in _inodes(folder):
        assert (folder / rel).read_bytes() == (src["ft"] / rel).read_bytes()
    model = transformers.AutoModel.from_pretrained(folder)
    want = transformers.AutoModel.from_pretrained(src["ft"])
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(), want.state_dict().values()))
    before = _inodes(folder)
    dir_mtime = folder.stat().st_mtime_ns
    again = repo.materialize(repo.resolve("ft"))  # another REF naming the same version
    assert again == folder and _inodes(again) == before and folder.stat().st_mtime_ns == dir_mtime
    # Read-only: files 0444, folders 0555.
    for p in [folder, *folder.rglob("*")]:
        assert not p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), p
    assert cache.commit_of_folder(repo, folder) == repo.resolve("ft")
    assert cache.commit_of_folder(repo, src["ft"]) is None


def test_files_shared_between_versions_are_stored_once(
    two: tuple[Repository, dict[str, Path]],
) -> None:
    repo, _ = two
    a, b = _inodes(repo.materialize("bert")), _inodes(repo.materialize("ft"))
    assert a["config.json"][0] == b["config.json"][0]  # identical config: one inode
    assert a["vocab.txt"][0] == b["vocab.txt"][0]
    assert a["model.safetensors"][0] != b["model.safetensors"][0]
    files = [p for p in (repo.mgit_dir / "cache" / "files").rglob("*") if p.is_file()]
    distinct = {v[0] for v in a.values()} | {v[0] for v in b.values()}
    assert len(files) == len(distinct)


def test_include_and_exclude(two: tuple[Repository, dict[str, Path]]) -> None:
    repo, _ = two
    top = repo.materialize("ft", exclude="checkpoint-*")
    assert sorted(_inodes(top)) == ["config.json", "model.safetensors", "vocab.txt"]
    small = repo.materialize("ft", include=["*.json", "*.txt"], exclude=["checkpoint-*"])
    assert sorted(_inodes(small)) == ["config.json", "vocab.txt"]
    assert repo.materialize("ft", include="*.json", exclude="checkpoint-2") != small
    # A bare file name matches at any depth (checkpoint-2/config.json too).
    assert "checkpoint-2/config.json" in _inodes(repo.materialize("ft", include="config.json"))
    same = repo.materialize("ft", include=["config.json", "vocab.txt"], exclude="checkpoint-2")
    assert same == small  # the same files: the same folder
    with pytest.raises(UsageError, match="no file of ft is selected"):
        repo.materialize("ft", include="*.bin")
    with pytest.raises(UsageError):
        repo.materialize("ft", include=[""])


def test_concurrent_callers_get_one_folder(two: tuple[Repository, dict[str, Path]]) -> None:
    repo, src = two
    out: list[Any] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        r = Repository.open(repo.root)
        barrier.wait()
        out.append(r.materialize("ft"))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 4 and len(set(out)) == 1
    folder = out[0]
    for rel in _inodes(folder):
        assert (folder / rel).read_bytes() == (src["ft"] / rel).read_bytes()
    models = repo.mgit_dir / "cache" / "models"
    assert sorted(p.name for p in models.iterdir()) == sorted([folder.name, folder.name + ".json"])
    parts = [p for p in (repo.mgit_dir / "cache" / "files").rglob("*") if p.name.endswith(".part")]
    assert parts == []


def test_a_damaged_cached_file_of_the_wrong_size_is_rebuilt(
    two: tuple[Repository, dict[str, Path]],
) -> None:
    repo, src = two
    folder = repo.materialize("bert", include="config.json")
    f = folder / "config.json"
    os.chmod(f, 0o644)
    with open(f, "ab") as fh:
        fh.write(b"junk")
    other = repo.materialize("ft", include="config.json")  # same file: the cache copy is checked
    assert (other / "config.json").read_bytes() == (src["ft"] / "config.json").read_bytes()


def test_clean_cache(two: tuple[Repository, dict[str, Path]]) -> None:
    repo, _ = two
    bert, ft = repo.materialize("bert"), repo.materialize("ft")
    files = repo.mgit_dir / "cache" / "files"
    count = len([p for p in files.rglob("*") if p.is_file()])
    # Young folders stay whatever keep says; reachable ones stay whatever their age.
    assert repo.clean_cache(keep=[]).folders_removed == 0
    assert repo.clean_cache(min_age=0).folders_removed == 0
    # ft is dropped from the kept set: its folder goes, and the files only it used.
    keep = {repo.read_commit(repo.resolve("bert")).tree}
    dry = repo.clean_cache(keep=keep, min_age=0, dry_run=True)
    assert dry.folders_removed == 1 and ft.exists()
    res = repo.clean_cache(keep=keep, min_age=0)
    assert res.folders_removed == 1 and res.folders_kept == 1 and not ft.exists() and bert.exists()
    left = [p for p in files.rglob("*") if p.is_file()]
    assert res.files_removed == count - len(left) and len(left) == len(_inodes(bert))
    assert res.freed_bytes > 0
    assert not (ft.parent / f"{ft.name}.json").exists()
    # Leftovers of a killed build (no such process) go too.
    dead = ft.parent / ".build-999999999.00ff"
    (dead / "sub").mkdir(parents=True)
    os.chmod(dead, 0o555)
    repo.clean_cache(min_age=0)
    assert not dead.exists()
    assert repo.materialize("ft") == ft and ft.exists()  # rebuilt on demand


def test_gc_style_keep_is_the_reachable_object_set(two: tuple[Repository, dict[str, Path]]) -> None:
    repo, _ = two
    folder = repo.materialize("ft")
    keep = repo.reachable_objects()
    assert repo.clean_cache(keep=keep, min_age=0).folders_removed == 0
    repo.delete_branch("ft")
    assert repo.clean_cache(keep=repo.reachable_objects(), min_age=0).folders_removed == 1
    assert not folder.exists()


def test_gc_drops_the_folders_of_unreachable_versions(two: tuple[Repository, dict[str, Path]]) -> None:
    """``mgit gc`` cleans the cache: the folder of a version no ref reaches goes, a reachable
    version's folder stays."""
    repo, _ = two
    kept = repo.materialize("bert")
    gone = repo.materialize("ft")
    ft = repo.resolve("ft")
    repo.refs.delete_if_equals("refs/heads/ft", ft, message="drop ft")
    res = repo.gc(prune_age=0)
    assert res.cache_folders_removed == 1 and res.cache_freed_bytes > 0
    assert kept.is_dir() and not gone.exists()
