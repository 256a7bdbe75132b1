"""``mgit merge`` and ``mgit show --recipe`` end to end on tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import model_tensors, run_main, write_model_folder


@pytest.fixture
def lab(make_repo: Any, tmp_path: Path) -> Path:
    r = make_repo("repo", model="base")
    base = model_tensors(seed=0)
    write_model_folder(tmp_path / "b", base)
    r.import_folder(tmp_path / "b", model="base", message="base")
    for i in (1, 2, 3):
        rng = np.random.default_rng(i)
        t = {k: (v + (0.01 * rng.standard_normal(v.shape)).astype(v.dtype)) if v.dtype.kind == "f" else v
             for k, v in base.items()}
        write_model_folder(tmp_path / f"f{i}", t)
        r.import_folder(tmp_path / f"f{i}", model=f"ft{i}", message="ft", parent="base")
    return tmp_path / "repo"


def _objects(root: Path) -> set[str]:
    return {str(p) for p in (root / ".mgit" / "objects").rglob("*") if p.is_file()}


def test_merge_show_recipe_redo_config(lab: Path, capsys: Any, tmp_path: Path) -> None:
    code, out, err = run_main(capsys, lab, "merge", "ft1", "ft2", "ft3", "--model", "soup", "-m", "soup",
                              "--method", "dare-ties", "--base", "base", "--density", "0.5", "--seed", "4",
                              "--weight", "1", "--weight", "0.5", "--weight", "0.5")
    assert code == 0, err
    assert "merged" in out
    code, out, err = run_main(capsys, lab, "--json", "show", "soup")
    shown = json.loads(out)
    assert [p["relation"] for p in shown["commit"]["parents"]] == ["merge"] * 3 if "commit" in shown else True
    code, yml, err = run_main(capsys, lab, "show", "--recipe", "soup")
    assert code == 0 and "merge_method: dare-ties" in yml and "seed: 4" in yml
    code, out, err = run_main(capsys, lab, "merge", "--redo", "soup")
    assert code == 0 and "identical" in out
    (tmp_path / "r.yml").write_text(yml)
    code, out, err = run_main(capsys, lab, "--json", "merge", "--config", str(tmp_path / "r.yml"),
                              "--model", "soup2", "-m", "again")
    assert code == 0, err
    from mgit.repo import Repository

    r = Repository.open(lab)
    assert json.loads(out)["commit"]["tree"] == r.read_commit(r.resolve("soup")).tree
    code, out, err = run_main(capsys, lab, "show", "--recipe", "ft1")
    assert code != 0 and "no merge recipe" in err


@pytest.mark.parametrize("args,msg", [
    (["ft1", "--method", "linear"], "at least two"),
    (["ft1", "ft2", "ft3", "--method", "slerp", "--t", "0.5"], "exactly two"),
    (["ft1", "ft2", "--method", "ties"], "needs --base"),
    (["ft1", "ft2", "--method", "soup"], "unknown merge method"),
    (["ft1", "ft2", "--method", "linear", "--weight", "1"], "weights for 2 inputs"),
    (["ft1", "ft2", "--method", "linear", "--dtype", "int8"], "unknown --dtype"),
])
def test_bad_inputs_one_line_nothing_written(lab: Path, capsys: Any, args: list[str], msg: str) -> None:
    before = _objects(lab)
    code, out, err = run_main(capsys, lab, "merge", *args, "--model", "bad", "-m", "x")
    assert code != 0
    first = [ln for ln in err.splitlines() if ln.startswith("mgit: error:")]
    assert len(first) == 1 and msg in first[0]
    assert _objects(lab) == before
    assert not (lab / ".mgit" / "refs" / "heads" / "bad").exists()


def test_redo_of_a_tampered_merge_exits_nonzero(lab: Path, capsys: Any) -> None:
    from mgit.commit import write_commit
    from mgit.repo import Repository

    assert run_main(capsys, lab, "merge", "ft1", "ft2", "--model", "m", "-m", "m", "--method", "linear")[0] == 0
    r = Repository.open(lab)
    c = r.read_commit(r.resolve("m"))
    other = r.read_tree(r.read_commit(r.resolve("ft3")).tree)
    write_commit(r, model="fake", tip=None, parents=list(c.parents), files=dict(other.files), message="f",
                 meta={}, eps=None, recipe=c.recipe)
    code, out, err = run_main(capsys, lab, "merge", "--redo", "fake")
    assert code == 1 and "DIFFERS" in out and "model.safetensors:" in out
