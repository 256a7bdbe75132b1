"""A merge's recipe travels with it: push a repository holding merges to a path remote, clone it
(whole, and only the merge's closure), and ``mgit merge --redo`` in the clone recomputes every
tensor bit for bit; the recipe and the tree are the same on both sides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mgit.repo import Repository
from tests.helpers import run_main, sha256_tree, write_model_folder
from tests.remote.conftest import Source, perturbed


@pytest.fixture
def merged(source: Source, tmp_path: Path) -> Source:
    """The source plus a second finetune and two merges of the finetunes over the base."""
    source.repo.import_folder(
        write_model_folder(tmp_path / "ft2", perturbed(source.base_tensors, 3)),
        model="bert-ft2",
        parent="bert",
        message="ft2",
    )
    source.repo.merge(
        ["bert-ft", "bert-ft2"],
        model="soup",
        message="soup",
        method="ties",
        base="bert",
        density=0.5,
        weights=[1.0, 0.7],
    )
    source.repo.merge(
        ["bert-ft2", "bert-ft"],
        model="dare",
        message="dare",
        method="dare-ties",
        base="bert",
        density=0.4,
        seed=9,
        dtype="bfloat16",
    )
    return source


@pytest.mark.parametrize("only", [None, "soup"])
def test_clone_carries_the_recipe_and_redo_reproduces(
    merged: Source, tmp_path: Path, capsys: Any, only: str | None
) -> None:
    url = str(tmp_path / "shared")
    code, _, err = run_main(
        capsys, merged.path, "push", url, "bert", "bert-ft", "bert-ft2", "soup", "dare"
    )
    assert code == 0, err
    args = ["clone", url, "copy"] + (["--model", only] if only else [])
    code, _, err = run_main(capsys, tmp_path, *args)
    assert code == 0, err
    copy = Repository.open(tmp_path / "copy")
    for name in ["soup"] if only else ["soup", "dare"]:
        src_commit = merged.repo.read_commit(merged.repo.resolve(name))
        got = copy.read_commit(copy.resolve(name))
        assert got.recipe == src_commit.recipe and got.tree == src_commit.tree
        assert got.recipe["base"] == merged.repo.resolve("bert")
        code, out, err = run_main(capsys, tmp_path / "copy", "merge", "--redo", name)
        assert code == 0 and "identical" in out, (out, err)
        code, yml_copy, _ = run_main(capsys, tmp_path / "copy", "show", "--recipe", name)
        code2, yml_src, _ = run_main(capsys, merged.path, "show", "--recipe", name)
        assert code == code2 == 0 and yml_copy == yml_src
    # the recipe redone as a new merge in the clone gives the very same files (not the same
    # tree id: a clone cuts new tensors at its own chunk size, the default, not the source's)
    (tmp_path / "r.yml").write_text(yml_copy)
    code, out, err = run_main(
        capsys,
        tmp_path / "copy",
        "--json",
        "merge",
        "--config",
        str(tmp_path / "r.yml"),
        "--model",
        "again",
        "-m",
        "again",
    )
    assert code == 0, err
    assert json.loads(out)["recipe"]["inputs"] == got.recipe["inputs"]
    copy.export("again", tmp_path / "again")
    merged.repo.export(name, tmp_path / "orig")
    assert sha256_tree(tmp_path / "again") == sha256_tree(tmp_path / "orig")
