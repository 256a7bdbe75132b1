"""``mgit merge`` refuses bad inputs on the command line with one error line, a non-zero exit,
and nothing written: no object, no ref (every ref file and the object count unchanged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import model_tensors, run_main, write_model_folder


def _ft(base: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", over="ignore"):  # the tensors hold NaN and inf
        return {
            k: (v + (0.01 * rng.standard_normal(v.shape)).astype(v.dtype)) for k, v in base.items()
        }


@pytest.fixture
def lab(make_repo: Any, tmp_path: Path) -> Path:
    """base, ft1, ft2; odd-shape and odd-dtype (one tensor differs); bin (a torch checkpoint)."""
    torch = pytest.importorskip("torch")
    r = make_repo("repo", model="base")
    base = model_tensors(seed=0)
    write_model_folder(tmp_path / "b", base)
    r.import_folder(tmp_path / "b", model="base", message="base")
    for i in (1, 2):
        write_model_folder(tmp_path / f"f{i}", _ft(base, i))
        r.import_folder(tmp_path / f"f{i}", model=f"ft{i}", message="ft", parent="base")
    shape = _ft(base, 3)
    shape["pooler.weight"] = np.zeros((16, 17), np.float32)
    write_model_folder(tmp_path / "s", shape)
    r.import_folder(tmp_path / "s", model="odd-shape", message="ft", parent="base")
    dtype = _ft(base, 4)
    dtype["pooler.weight"] = dtype["pooler.weight"].astype(np.float16)
    write_model_folder(tmp_path / "d", dtype)
    r.import_folder(tmp_path / "d", model="odd-dtype", message="ft", parent="base")
    binf = tmp_path / "bin"
    binf.mkdir()
    (binf / "config.json").write_text(json.dumps({"model_type": "bert"}))
    torch.save(
        {k: torch.from_numpy(v.copy()) for k, v in _ft(base, 5).items()}, binf / "pytorch_model.bin"
    )
    r.import_folder(binf, model="bin", message="bin", parent="base")
    assert any(
        e.kind != "safetensors" and e.tensors
        for e in r.commit_tree(r.resolve("bin")).files.values()
    )
    return tmp_path / "repo"


def _state(root: Path) -> tuple[int, dict[str, bytes]]:
    """The object count and every ref file's content (heads, tags, HEAD, notes...)."""
    m = root / ".mgit"
    objects = sum(1 for p in (m / "objects").rglob("*") if p.is_file())
    refs = {
        str(p.relative_to(m)): p.read_bytes()
        for p in m.rglob("*")
        if p.is_file() and (p.name == "HEAD" or "refs" in p.relative_to(m).parts)
    }
    return objects, refs


YAML_OK = (
    "merge_method: ties\nbase_model: base\nmodels:\n  - model: ft1\n    parameters:\n      density: 0.5\n"
    "  - model: ft2\n    parameters:\n      density: 0.5\n"
)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["ft1", "bin", "--method", "linear"], "safetensors"),
        (["bin", "ft1", "--method", "ties", "--base", "base"], "safetensors"),
        (
            ["ft1", "ft2", "--method", "linear", "--weight", "1", "--weight", "2", "--weight", "3"],
            "3 weights for 2",
        ),
        (["ft1", "ft2", "base", "--method", "slerp", "--t", "0.5"], "exactly two"),
        (["ft1", "ft2", "--method", "frankenmerge"], "unknown merge method"),
        (["ft1", "odd-shape", "--method", "linear"], "differs across inputs"),
        (
            ["ft1", "odd-dtype", "--method", "task-arithmetic", "--base", "base"],
            "differs across inputs",
        ),
        (["ft1", "ft2", "--method", "ties", "--base", "odd-shape"], "differs across inputs"),
        (["--config", "{yaml}"], "unsupported key(s) frobnicate"),
        (["--config", "{yaml}"], "unsupported model parameters"),
        (["--config", "{yaml}"], "unsupported parameters"),
        (["--config", "{yaml}"], "unknown merge method"),
    ],
)
def test_bad_input_refused_nothing_written(
    lab: Path,
    capsys: Any,
    tmp_path: Path,
    args: list[str],
    msg: str,
    request: pytest.FixtureRequest,
) -> None:
    if "{yaml}" in args:
        case = request.node.callspec.id
        text = YAML_OK
        if "frobnicate" in msg:
            text += "frobnicate: 1\n"
        elif "model parameters" in msg:
            text = text.replace("      density: 0.5\n", "      density: 0.5\n      gamma: 0.1\n", 1)
        elif "unsupported parameters" in msg:
            text += "parameters:\n  rescale: true\n"
        else:
            text = text.replace("merge_method: ties", "merge_method: frankenmerge")
        cfg = tmp_path / f"{abs(hash(case))}.yml"
        cfg.write_text(text)
        args = [a.replace("{yaml}", str(cfg)) for a in args]
    before = _state(lab)
    code, _out, err = run_main(capsys, lab, "merge", *args, "--model", "bad", "-m", "x")
    assert code != 0
    errors = [ln for ln in err.splitlines() if ln.startswith("mgit: error:")]
    assert len(errors) == 1 and msg in errors[0], err
    assert "Traceback" not in err
    assert _state(lab) == before
    tmp = lab / ".mgit" / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


def test_the_good_yaml_works(lab: Path, capsys: Any, tmp_path: Path) -> None:
    """The refusals above are of the bad parts only: the same YAML without them merges."""
    (tmp_path / "ok.yml").write_text(YAML_OK)
    code, _out, err = run_main(
        capsys, lab, "merge", "--config", str(tmp_path / "ok.yml"), "--model", "ok", "-m", "x"
    )
    assert code == 0, err
