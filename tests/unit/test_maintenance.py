"""fsck's typed findings and its exit status; stats per model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import make_model_folder, run_main

from mgit.errors import EXIT_CODES, FsckFailedError
from mgit.maintenance import FSCK_KINDS
from mgit.repo import Repository


def _two_models(repo: Any, tmp_path: Path) -> dict[str, str]:
    make_model_folder(tmp_path / "a", seed=1)
    make_model_folder(tmp_path / "b", seed=2)
    return {
        "a": repo.import_folder(tmp_path / "a", model="a", message="a").commit.oid,
        "b": repo.import_folder(tmp_path / "b", model="b", message="b").commit.oid,
    }


def test_fsck_reports_each_kind_of_damage_typed(repo: Any, tmp_path: Path) -> None:
    c = _two_models(repo, tmp_path)
    assert repo.fsck().findings == []
    # a damaged ref, a ref to a missing commit, a missing chunk, a flipped byte
    (repo.mgit_dir / "refs" / "heads" / "broken").write_text("not an id\n")
    repo.refs.set_if_equals("refs/tags/ghost", None, "9" * 64, message="t")
    tree = repo.read_tree(repo.read_commit(c["a"]).tree)
    chunk = sorted(tree.files["model.safetensors"].chunk_ids())[0]
    repo.store.path_for(chunk).unlink()
    victim = repo.read_commit(c["b"]).tree
    path = repo.store.path_for(victim)
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    res = Repository.open(repo.root).fsck()  # a fresh process: nothing read before is cached
    got = {(f.kind, f.subject) for f in res.findings}
    assert ("damaged_ref", "refs/heads/broken") in got
    assert ("dangling_ref", "refs/tags/ghost") in got
    assert ("missing_object", chunk) in got
    assert ("bad_object", victim) in got
    assert {f.kind for f in res.findings} <= set(FSCK_KINDS)
    assert res.problems == [str(f) for f in res.findings]  # what the CLI prints and --json lists
    assert not res.ok


def test_fsck_failure_has_its_own_error_and_exit_code(repo: Any, tmp_path: Path, capsys: Any) -> None:
    _two_models(repo, tmp_path)
    assert run_main(capsys, repo.root, "fsck")[0] == 0
    repo.refs.set_if_equals("refs/tags/ghost", None, "9" * 64, message="t")
    code, out, err = run_main(capsys, repo.root, "fsck")
    assert code == EXIT_CODES[FsckFailedError] == 12
    assert "refs/tags/ghost: points at missing commit" in out
    assert "fsck found 1 problem(s)" in err and "corrupt object" not in err
