"""``mgit rebase``: replay exactness against a numpy reference, the tensor and file rules,
refusals that leave the repository untouched, the test gate, the cascade and the recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import NP_DTYPES, list_objects, write_model_folder

from mgit.lifecycle import rebase as rb
from mgit.lifecycle.rebase import RebaseError
from mgit.tensors import tensor_manifests

HIDDEN = 16


def _rand(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32).astype(NP_DTYPES[dtype])


def _base(dtype: str, seed: int = 1) -> dict[str, np.ndarray]:
    out = {}
    for i, (name, shape) in enumerate([
        ("embeddings.weight", (64, HIDDEN)), ("layer.0.weight", (HIDDEN, HIDDEN)), ("layer.0.bias", (HIDDEN,)),
        ("layer.1.weight", (HIDDEN, HIDDEN)), ("layer.1.bias", (HIDDEN,)), ("pooler.weight", (HIDDEN, HIDDEN)),
    ]):
        out[name] = _rand(dtype, shape, seed * 100 + i)
    return out


def _shift(a: np.ndarray, seed: int, scale: float = 0.1) -> np.ndarray:
    """``a`` plus noise (computed in float32, rounded to a's dtype); differs almost everywhere."""
    noise = np.random.default_rng(seed).standard_normal(a.shape).astype(np.float32) * np.float32(scale)
    return (a.astype(np.float32) + noise + np.float32(scale)).astype(a.dtype)


def _rne_ref(x: np.ndarray, dtype: str) -> np.ndarray:
    """Independent reference rounding: keep the dtype's significant bits with frexp and
    numpy's round-half-to-even (normal values only), then convert exactly."""
    bits = {"F32": 24, "F16": 11, "BF16": 8}[dtype]
    m, e = np.frexp(x)
    r = np.ldexp(np.round(np.ldexp(m, bits)), e - bits)
    return r.astype(NP_DTYPES[dtype])


def _u(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.dtype(f"u{a.dtype.itemsize}"))


def _lineage(tmp_path: Path, make_repo: Any, dtype: str = "F32") -> tuple[Any, dict[str, Any]]:
    """base v1; ft (layer.0 and layer.1.bias changed, a head added); base v2 (every layer changed)."""
    repo = make_repo("repo", model="base")
    v1 = _base(dtype)
    write_model_folder(tmp_path / "v1", v1)
    repo.import_folder(tmp_path / "v1", model="base", message="v1")
    ft = dict(v1)
    ft["layer.0.weight"] = _shift(v1["layer.0.weight"], 11)
    ft["layer.0.bias"] = _shift(v1["layer.0.bias"], 12)
    ft["layer.1.bias"] = _shift(v1["layer.1.bias"], 13)
    ft["classifier.weight"] = _rand(dtype, (3, HIDDEN), 77)
    write_model_folder(tmp_path / "ft", ft)
    repo.import_folder(tmp_path / "ft", model="ft", message="ft", parent="base")
    v2 = dict(v1)
    for k in ("layer.0.weight", "layer.0.bias", "layer.1.weight", "embeddings.weight"):
        v2[k] = _shift(v1[k], 21 + len(k))
    write_model_folder(tmp_path / "v2", v2)
    repo.import_folder(tmp_path / "v2", model="base", message="v2")
    return repo, {"v1": v1, "ft": ft, "v2": v2}


def _state(repo: Any, ref: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in repo.load_state_dict(ref).items()}


def _snapshot(repo: Any) -> tuple[dict[str, str], set[str]]:
    return dict(repo.refs.iter_refs("refs/")), list_objects(repo.mgit_dir)


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_replay_bit_exact_against_reference(tmp_path: Path, make_repo: Any, dtype: str) -> None:
    repo, t = _lineage(tmp_path, make_repo, dtype)
    old_tip = repo.resolve("ft")
    res = repo.rebase("ft", onto="base")
    assert res.status == "rebased"
    out = _state(repo, "ft")
    v1, ft, v2 = t["v1"], t["ft"], t["v2"]
    for name in ("layer.0.weight", "layer.0.bias"):  # changed by both sides: replayed
        x = v2[name].astype(np.float64) + (ft[name].astype(np.float64) - v1[name].astype(np.float64))
        ref = _rne_ref(x, dtype)
        assert np.array_equal(_u(out[name]), _u(ref)), name
        assert out[name].dtype == NP_DTYPES[dtype]
    # changed only by MODEL (NEWBASE kept it): MODEL's bits
    assert np.array_equal(_u(out["layer.1.bias"]), _u(ft["layer.1.bias"]))
    # changed only by NEWBASE: NEWBASE's bits
    for name in ("layer.1.weight", "embeddings.weight", "pooler.weight"):
        assert np.array_equal(_u(out[name]), _u(v2[name])), name
    assert np.array_equal(_u(out["classifier.weight"]), _u(ft["classifier.weight"]))  # head kept
    info = res.commit
    assert info.parents == [(old_tip, "version"), (repo.resolve("base"), "finetune")]
    assert info.meta["rebased_from"] == old_tip
    assert info.meta["rebased_onto"] == repo.resolve("base")
    assert info.recipe["rebase"] == {"strategy": "replay", "model": old_tip, "from": repo.resolve("base~1"),
                                     "onto": repo.resolve("base")}
    assert repo.resolve("ft") == info.oid


def test_replay_elementwise_rule_keeps_untouched_specials() -> None:
    o = np.array([np.inf, -0.0, 1.0, np.nan, 2.0], dtype=np.float32)
    m = np.array([np.inf, -0.0, 1.5, np.nan, 2.0], dtype=np.float32)  # only element 2 changed
    n = np.array([np.inf, -0.0, 1.25, 7.0, -0.0], dtype=np.float32)
    out = rb.replay_values(n, o, m, "F32")
    assert out[0] == np.inf and np.signbit(out[1]) and out[2] == np.float32(1.75)
    assert out[3] == 7.0 and np.signbit(out[4])  # unchanged by MODEL: NEWBASE's bits


def test_unchanged_tensors_take_newbase_bits_without_reading(tmp_path: Path, make_repo: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    repo, t = _lineage(tmp_path, make_repo)
    read: list[str] = []
    real = rb._reader
    monkeypatch.setattr(rb, "_reader", lambda core, m: (read.append(m.content_id), real(core, m))[1])
    res = repo.rebase("ft", onto="base")
    plan = res.plan
    unchanged = {s.name for s in plan.tensors if s.action == "newbase"}
    assert unchanged == {"layer.1.weight", "embeddings.weight", "pooler.weight"}
    ids = {}
    for ref in ("base~1", "base", res.plan.model_commit):
        for name, m in tensor_manifests(repo, ref).items():
            ids.setdefault(name, set()).add(m.content_id)
    for name in unchanged:
        assert not (ids[name] & set(read)), f"{name} was read"
    assert read  # the replayed tensors were
    out = _state(repo, "ft")
    for name in unchanged:
        assert out[name].tobytes() == t["v2"][name].tobytes()


def test_newbase_added_and_removed_tensors(tmp_path: Path, make_repo: Any) -> None:
    repo, t = _lineage(tmp_path, make_repo)
    v3 = dict(t["v2"])
    del v3["pooler.weight"]
    v3["extra.weight"] = _rand("F32", (4, 4), 5)
    write_model_folder(tmp_path / "v3", v3)
    repo.import_folder(tmp_path / "v3", model="base", message="v3")
    res = repo.rebase("ft", onto="base", from_="base~2")
    out = _state(repo, "ft")
    assert "pooler.weight" not in out
    assert out["extra.weight"].tobytes() == v3["extra.weight"].tobytes()
    assert out["classifier.weight"].tobytes() == t["ft"]["classifier.weight"].tobytes()
    assert {s.action for s in res.plan.tensors} >= {"added", "removed", "kept", "replay"}


def test_a_task_head_finetune_keeps_its_own_tensor_names(tmp_path: Path, make_repo: Any) -> None:
    """A BertForSequenceClassification finetune (``bert.x``) of a BertModel base (``x``): the
    rebased version keeps MODEL's names (it used to come out with the base's), with the
    replayed values."""
    repo = make_repo("repo", model="base")
    v1 = _base("F32")
    write_model_folder(tmp_path / "v1", v1)
    repo.import_folder(tmp_path / "v1", model="base", message="v1")
    ft = {f"bert.{k}": (_shift(v, 30 + i) if k.startswith("layer.0") else v) for i, (k, v) in enumerate(v1.items())}
    ft["classifier.weight"] = _rand("F32", (3, HIDDEN), 77)
    write_model_folder(tmp_path / "ft", ft)
    repo.import_folder(tmp_path / "ft", model="ft", message="ft", parent="base")
    v2 = {k: _shift(v, 50 + i) for i, (k, v) in enumerate(v1.items())}
    write_model_folder(tmp_path / "v2", v2)
    repo.import_folder(tmp_path / "v2", model="base", message="v2")
    rb.rebase(repo, "ft", onto="base")
    got = _state(repo, "ft")
    assert set(got) == set(ft)
    for k, v in v1.items():
        want = v2[k] if ft[f"bert.{k}"] is v else _rne_ref(
            v2[k].astype(np.float64) + (ft[f"bert.{k}"].astype(np.float64) - v.astype(np.float64)), "F32")
        assert np.array_equal(_u(got[f"bert.{k}"]), _u(want)), k
    assert np.array_equal(got["classifier.weight"], ft["classifier.weight"])


def _set_config(folder: Path, **kv: Any) -> None:
    p = folder / "config.json"
    cfg = json.loads(p.read_text())
    cfg.update(kv)
    p.write_text(json.dumps(cfg, indent=2) + "\n")


def _lineage_files(tmp_path: Path, make_repo: Any, ft_cfg: dict[str, Any], v2_cfg: dict[str, Any]) -> Any:
    repo = make_repo("repo", model="base")
    v1 = _base("F32")
    write_model_folder(tmp_path / "v1", v1)
    repo.import_folder(tmp_path / "v1", model="base", message="v1")
    ft = dict(v1, **{"layer.0.bias": _shift(v1["layer.0.bias"], 3)})
    write_model_folder(tmp_path / "ft", ft)
    _set_config(tmp_path / "ft", **ft_cfg)
    (tmp_path / "ft" / "training_args.json").write_text("{}\n")
    repo.import_folder(tmp_path / "ft", model="ft", message="ft", parent="base")
    v2 = dict(v1, **{"layer.0.weight": _shift(v1["layer.0.weight"], 4)})
    write_model_folder(tmp_path / "v2", v2)
    _set_config(tmp_path / "v2", **v2_cfg)
    repo.import_folder(tmp_path / "v2", model="base", message="v2")
    return repo


def _config(repo: Any, ref: str, tmp_path: Path) -> dict[str, Any]:
    d = tmp_path / f"exp-{ref.replace('~', '_')}-{len(list(tmp_path.iterdir()))}"
    repo.export(ref, d)
    return json.loads((d / "config.json").read_text())


def test_file_three_way_merge(tmp_path: Path, make_repo: Any) -> None:
    repo = _lineage_files(tmp_path, make_repo, {"num_labels": 3}, {"hidden_act": "gelu"})
    # ft changed config.json, v2 changed it too, differently: a conflict
    snap = _snapshot(repo)
    with pytest.raises(RebaseError, match="conflict: config.json"):
        repo.rebase("ft", onto="base")
    assert _snapshot(repo) == snap
    r = repo.rebase("ft", onto="base", ours=True)
    assert _config(repo, "ft", tmp_path)["num_labels"] == 3
    assert "hidden_act" not in _config(repo, "ft", tmp_path)
    files = {f.path: f for f in r.plan.files}
    assert files["config.json"].take == "conflict" and files["config.json"].result == "ours"
    assert files["training_args.json"].take == "model"


def test_file_theirs_and_newbase_only_change(tmp_path: Path, make_repo: Any) -> None:
    repo = _lineage_files(tmp_path, make_repo, {"num_labels": 3}, {"hidden_act": "gelu"})
    repo.rebase("ft", onto="base", theirs=True)
    cfg = _config(repo, "ft", tmp_path)
    assert cfg["hidden_act"] == "gelu" and "num_labels" not in cfg


def test_file_changed_only_by_newbase_or_model(tmp_path: Path, make_repo: Any) -> None:
    repo = _lineage_files(tmp_path, make_repo, {}, {"hidden_act": "gelu"})
    r = repo.rebase("ft", onto="base")
    assert _config(repo, "ft", tmp_path)["hidden_act"] == "gelu"
    assert {f.path: f.take for f in r.plan.files}["config.json"] == "newbase"
    d = tmp_path / "out"
    repo.export("ft", d)
    assert (d / "training_args.json").read_text() == "{}\n"  # added by MODEL: kept


@pytest.mark.parametrize("change", ["shape", "dtype", "tokenizer"])
def test_refusals_leave_the_repository_unchanged(tmp_path: Path, make_repo: Any, change: str) -> None:
    repo, t = _lineage(tmp_path, make_repo)
    v3 = dict(t["v2"])
    if change == "shape":
        v3["embeddings.weight"] = _rand("F32", (65, HIDDEN), 9)
    elif change == "dtype":
        v3["layer.0.weight"] = v3["layer.0.weight"].astype(np.float16)
    write_model_folder(tmp_path / "v3", v3)
    if change == "tokenizer":
        (tmp_path / "v3" / "tokenizer.json").write_text('{"version": "2.0"}\n')
    repo.import_folder(tmp_path / "v3", model="base", message="v3")
    snap = _snapshot(repo)
    with pytest.raises(RebaseError, match="refused") as exc:
        repo.rebase("ft", onto="base", from_="base~2")
    assert {"shape": "shape", "dtype": "dtype", "tokenizer": "tokenizer"}[change] in str(exc.value)
    assert _snapshot(repo) == snap
    if change == "tokenizer":
        assert repo.rebase("ft", onto="base", from_="base~2", force=True).status == "rebased"


def test_dry_run_writes_nothing(tmp_path: Path, make_repo: Any) -> None:
    repo, _ = _lineage(tmp_path, make_repo)
    snap = _snapshot(repo)
    r = repo.rebase("ft", onto="base", dry_run=True)
    assert r.status == "dry-run" and r.commit is None
    assert r.plan.counts() == {"replay": 2, "model": 1, "newbase": 3, "kept": 1}
    assert _snapshot(repo) == snap


def test_oldbase_errors_and_same_base(tmp_path: Path, make_repo: Any) -> None:
    repo, _ = _lineage(tmp_path, make_repo)
    with pytest.raises(RebaseError, match="on NEWBASE's model line"):
        repo.rebase("base", onto="base~1")
    assert repo.rebase("ft", onto="base~1").status == "up-to-date"
    repo.import_folder(tmp_path / "v1", model="other", message="root")
    with pytest.raises(RebaseError, match="derives from no version"):
        repo.rebase("ft", onto="other")


def _fail_test(repo: Any, name: str = "never", model: str = "ft") -> None:
    from mgit.lifecycle.testing import add_test

    add_test(repo, name, f"{sys.executable} -c 'import sys; sys.exit(3)'", model=model)


def test_gate_blocks_a_bad_rebase(tmp_path: Path, make_repo: Any) -> None:
    repo, _ = _lineage(tmp_path, make_repo)
    tip = repo.resolve("ft")
    _fail_test(repo)
    r = repo.rebase("ft", onto="base")
    assert r.status == "gate-failed" and r.failed_tests == ["never"]
    assert repo.resolve("ft") == tip  # the line did not move
    assert r.commit is not None and r.commit.oid in list_objects(repo.mgit_dir)
    assert repo.rebase("ft", onto="base", tests=False).status == "rebased"


def _cascade_lineage(tmp_path: Path, make_repo: Any) -> Any:
    """base v1 -> ft -> ft2 (a finetune of ft), base v1 -> head, base v2."""
    repo, t = _lineage(tmp_path, make_repo)
    ft2 = dict(t["ft"], **{"pooler.weight": _shift(t["ft"]["pooler.weight"], 31)})
    write_model_folder(tmp_path / "ft2", ft2)
    repo.import_folder(tmp_path / "ft2", model="ft2", message="ft2", parent="ft")
    head = dict(t["v1"], **{"classifier.weight": _rand("F32", (2, HIDDEN), 41)})
    write_model_folder(tmp_path / "head", head)
    repo.import_folder(tmp_path / "head", model="head", message="head", parent="base~1")
    return repo


def test_cascade_with_failure_and_resume(tmp_path: Path, make_repo: Any) -> None:
    from mgit.lifecycle.rebase_cascade import cascade

    repo = _cascade_lineage(tmp_path, make_repo)
    tips = {m: repo.resolve(m) for m in ("ft", "ft2", "head")}
    plan = cascade(repo, "base~1", onto="base", dry_run=True)
    assert [s.model for s in plan.steps] == ["ft", "head", "ft2"]
    assert {m: repo.resolve(m) for m in tips} == tips
    _fail_test(repo, "ft-gate", model="ft")
    res = cascade(repo, "base~1", onto="base")
    by = {s.model: s for s in res.steps}
    assert by["ft"].status == "failed" and "ft-gate" in (by["ft"].error or "")
    assert by["ft2"].status == "skipped"
    assert by["head"].status == "rebased"
    assert repo.resolve("ft") == tips["ft"] and repo.resolve("ft2") == tips["ft2"]
    assert repo.read_commit(repo.resolve("head")).meta["rebased_onto"] == repo.resolve("base")
    head_after = repo.resolve("head")
    from mgit.lifecycle.testing import remove_test

    remove_test(repo, "ft-gate")
    res2 = cascade(repo, "base~1", onto="base")  # resume: head is skipped, ft and ft2 move
    by2 = {s.model: s for s in res2.steps}
    assert by2["head"].status == "up-to-date" and repo.resolve("head") == head_after
    assert by2["ft"].status == "rebased" and by2["ft2"].status == "rebased"
    ft_new = repo.resolve("ft")
    c2 = repo.read_commit(repo.resolve("ft2"))
    assert c2.meta["rebased_onto"] == ft_new  # a child goes onto its rebased parent
    assert [p.oid for p in c2.parents] == [tips["ft2"], ft_new]
    # ft2 changed only the pooler; ft's rebased pooler is v2's (== v1's): ft2's pooler survives
    out = _state(repo, "ft2")
    assert out["layer.1.weight"].tobytes() == _state(repo, "base")["layer.1.weight"].tobytes()
    res3 = cascade(repo, "base~1", onto="base")
    assert all(s.status == "up-to-date" for s in res3.steps) and res3.ok


RECIPE = (
    "import sys, shutil, json, pathlib\n"
    "src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
    "for p in src.iterdir(): shutil.copy(p, out / p.name)\n"
    "c = json.loads((out / 'config.json').read_text()); c['trained'] = int(sys.argv[3]) + 1\n"
    "(out / 'config.json').write_text(json.dumps(c))\n"
)


def test_recipe_strategy(tmp_path: Path, make_repo: Any) -> None:
    repo, t = _lineage(tmp_path, make_repo)
    script = tmp_path / "train.py"
    script.write_text(RECIPE)
    cmd = f"{sys.executable} {script} {{parent_dir}} {{out_dir}} {{seed}}"
    with pytest.raises(RebaseError, match="no recipe"):
        repo.rebase("ft", onto="base", strategy="recipe")
    repo.import_folder(tmp_path / "ft", model="ft", message="ft again", recipe=cmd)
    assert repo.read_commit(repo.resolve("ft")).recipe == {"cmd": cmd, "seed": 0}
    r = repo.rebase("ft", onto="base", strategy="recipe")
    assert r.status == "rebased"
    d = tmp_path / "out"
    repo.export("ft", d)
    assert json.loads((d / "config.json").read_text())["trained"] == 1
    out = _state(repo, "ft")
    assert out["layer.0.weight"].tobytes() == t["v2"]["layer.0.weight"].tobytes()  # NEWBASE, "retrained"
    c = repo.read_commit(repo.resolve("ft"))
    assert c.recipe["cmd"] == cmd and c.recipe["rebase"]["strategy"] == "recipe"
    # a failing recipe: nothing moves
    repo.import_folder(tmp_path / "ft", model="ft", message="bad", recipe=f"{sys.executable} -c 'raise SystemExit(4)'")
    tip = repo.resolve("ft")
    with pytest.raises(RebaseError, match="failed .exit 4."):
        repo.rebase("ft", onto="base", from_="base~1", strategy="recipe")
    assert repo.resolve("ft") == tip
