"""The rebase cascade beyond one model: merged models redone on their inputs' new versions,
adapters, ``--fallback recipe``, recorded attempts (``--status``, re-gating a written
version instead of recomputing it), the Ray executor giving the same trees as the local one,
and a cascade killed with SIGKILL and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import list_objects, run_main, write_model_folder, write_safetensors
from test_rebase import (
    HIDDEN,
    RECIPE,
    _cascade_lineage,
    _fail_test,
    _lineage,
    _rand,
    _shift,
    _state,
)

from mgit.lifecycle import rebase_attempts as att
from mgit.lifecycle.rebase import RebaseError
from mgit.lifecycle.rebase_cascade import cascade

#: A stored test that passes only on a model whose config.json has the key ``trained``
#: (what the recipe RECIPE writes): replay's output fails it, the recipe's passes.
TRAINED_ONLY = (f"{sys.executable} -c \"import json, os, sys; "
                "c = json.load(open(os.path.join(os.environ['MGIT_MODEL_DIR'], 'config.json'))); "
                "sys.exit(0 if 'trained' in c else 3)\"")


def _recipe(tmp_path: Path) -> str:
    script = tmp_path / "train.py"
    script.write_text(RECIPE)
    return f"{sys.executable} {script} {{parent_dir}} {{out_dir}} {{seed}}"


def _full_lineage(tmp_path: Path, make_repo: Any) -> Any:
    """base v1 -> ft -> ft2; base v1 -> head; base v1 -> ftb; merged = ties(ft, ftb; base v1);
    base v1 -> adapter (a PEFT-style folder: adapter tensors only); base v2."""
    repo = _cascade_lineage(tmp_path, make_repo)
    v1 = _state(repo, "base~1")
    ftb = dict(v1, **{"layer.1.weight": _shift(v1["layer.1.weight"], 51)})
    write_model_folder(tmp_path / "ftb", ftb)
    repo.import_folder(tmp_path / "ftb", model="ftb", message="ftb", parent="base~1")
    repo.merge(["ft", "ftb"], model="merged", message="merge ft and ftb", method="ties", base="base~1",
               density=0.5)
    ad = tmp_path / "adapter"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    write_safetensors(ad / "adapter_model.safetensors", {
        "base_model.model.layer.0.lora_A.weight": _rand("F32", (2, HIDDEN), 61),
        "base_model.model.layer.0.lora_B.weight": _rand("F32", (HIDDEN, 2), 62)}, {"format": "pt"})
    repo.import_folder(ad, model="adapter", message="adapter", parent="base~1", relation="adapter")
    return repo


def test_three_level_cascade_with_merge_and_adapter(tmp_path: Path, make_repo: Any) -> None:
    from mgit.lifecycle.merge import redo

    repo = _full_lineage(tmp_path, make_repo)
    old = {m: repo.resolve(m) for m in ("ft", "ft2", "head", "ftb", "merged", "adapter")}
    old_recipe = repo.read_commit(old["merged"]).recipe
    dry = cascade(repo, "base~1", onto="base", dry_run=True)
    assert {s.model: s.status for s in dry.steps} == dict.fromkeys(old, "dry-run")
    assert {m: repo.resolve(m) for m in old} == old and not (repo.mgit_dir / "rebase").exists()
    res = cascade(repo, "base~1", onto="base")
    by = {s.model: s for s in res.steps}
    assert res.ok, [(s.model, s.status, s.error) for s in res.steps]
    assert by["merged"].kind == "merge" and sorted(by["merged"].upstreams) == ["ft", "ftb"]
    order = [s.model for s in res.steps]
    assert order.index("merged") > max(order.index("ft"), order.index("ftb"))
    assert all(by[m].status == "rebased" for m in old)
    new = {m: repo.resolve(m) for m in old}
    # the merge was redone on the new inputs and the new base, with its parameters
    c = repo.read_commit(new["merged"])
    assert [(p.oid, p.relation) for p in c.parents] == [
        (old["merged"], "version"), (new["ft"], "merge"), (new["ftb"], "merge")]
    assert c.recipe["inputs"] == [new["ft"], new["ftb"]] and c.recipe["base"] == repo.resolve("base")
    for k in ("method", "density", "weights", "lambda", "seed"):
        assert c.recipe[k] == old_recipe[k]
    assert c.meta["rebased_from"] == old["merged"]
    assert redo(repo, "merged").identical
    # the adapter keeps its own tensors bit for bit and now derives from base v2
    a = repo.read_commit(new["adapter"])
    assert a.parents[1].oid == repo.resolve("base") and a.parents[1].relation == "adapter"
    assert sorted(repo.commit_tree(new["adapter"]).files) == sorted(repo.commit_tree(old["adapter"]).files)
    before, after = _state(repo, old["adapter"]), _state(repo, new["adapter"])
    assert {k: v.tobytes() for k, v in before.items()} == {k: v.tobytes() for k, v in after.items()}
    # rerun: everything is up to date, nothing written
    n = len(list_objects(repo.mgit_dir))
    res2 = cascade(repo, "base~1", onto="base")
    assert all(s.status == "up-to-date" for s in res2.steps)
    assert len(list_objects(repo.mgit_dir)) == n


def test_merge_gate_failure_stops_only_the_merge(tmp_path: Path, make_repo: Any) -> None:
    repo = _full_lineage(tmp_path, make_repo)
    tip = repo.resolve("merged")
    _fail_test(repo, "merged-gate", model="merged")
    res = cascade(repo, "base~1", onto="base")
    by = {s.model: s for s in res.steps}
    assert by["merged"].status == "failed" and "merged-gate" in (by["merged"].error or "")
    assert all(by[m].status == "rebased" for m in ("ft", "ftb", "ft2", "head", "adapter"))
    assert repo.resolve("merged") == tip
    kept = repo.refs.read(att.ATTEMPT_REFS + "merged")
    assert kept is not None and repo.read_commit(kept).recipe["inputs"][0] == repo.resolve("ft")


def test_fallback_recipe_when_replay_fails_its_gate(tmp_path: Path, make_repo: Any) -> None:
    from mgit.lifecycle.testing import add_test

    repo, _ = _lineage(tmp_path, make_repo)
    repo.import_folder(tmp_path / "ft", model="ft", message="ft + recipe", recipe=_recipe(tmp_path))
    add_test(repo, "trained", TRAINED_ONLY, model="ft")
    tip = repo.resolve("ft")
    with pytest.raises(Exception, match="--fallback recipe applies to --strategy replay"):
        repo.rebase("ft", onto="base", strategy="recipe", fallback="recipe")
    assert repo.rebase("ft", onto="base").status == "gate-failed"
    assert repo.resolve("ft") == tip
    r = repo.rebase("ft", onto="base", fallback="recipe")
    assert r.status == "rebased" and r.strategy == "recipe" and "trained" in (r.fell_back or "")
    c = repo.read_commit(repo.resolve("ft"))
    assert c.recipe["rebase"]["strategy"] == "recipe"
    assert repo.refs.read(att.ATTEMPT_REFS + "ft") is None  # the failed replay's version is let go
    st = att.status(repo)
    assert [(a.model, a.status, a.strategy) for a in st.attempts][:1] == [("ft", "rebased", "recipe")]


def test_fallback_recipe_when_replay_is_refused(tmp_path: Path, make_repo: Any) -> None:
    repo, _ = _lineage(tmp_path, make_repo)
    repo.import_folder(tmp_path / "ft", model="ft", message="ft + recipe", recipe=_recipe(tmp_path))
    (tmp_path / "v2" / "tokenizer.json").write_text('{"version": "2.0"}\n')
    repo.import_folder(tmp_path / "v2", model="base", message="v3: a new tokenizer")
    with pytest.raises(RebaseError, match="tokenizer"):
        repo.rebase("ft", onto="base")
    res = cascade(repo, "base~2", onto="base", fallback="recipe")
    (s,) = res.steps
    assert s.status == "rebased" and s.strategy == "recipe" and "tokenizer" in (s.fell_back or "")
    repo.export("ft", tmp_path / "o")
    assert json.loads((tmp_path / "o" / "tokenizer.json").read_text())["version"] == "2.0"
    # the refusal was recorded (nothing written for it)
    assert {(a.strategy, a.status) for a in att.load(repo).values()} >= {("replay", "failed"), ("recipe", "rebased")}


def test_gate_failed_version_is_kept_and_only_regated(tmp_path: Path, make_repo: Any) -> None:
    from mgit.lifecycle.testing import remove_test

    repo, _ = _lineage(tmp_path, make_repo)
    _fail_test(repo, "never", model="ft")
    r = repo.rebase("ft", onto="base")
    assert r.status == "gate-failed"
    kept = repo.refs.read(att.ATTEMPT_REFS + "ft")
    assert kept == r.commit.oid
    repo.gc(prune_age=0)  # the kept version survives gc
    assert repo.read_commit(kept).model == "ft"
    assert "ft" not in [m for m in repo.model_heads() if m.startswith("rebase")]
    remove_test(repo, "never")
    n = len(list_objects(repo.mgit_dir))
    r2 = repo.rebase("ft", onto="base")
    assert r2.status == "rebased" and r2.commit.oid == kept  # re-gated, not recomputed
    assert repo.resolve("ft") == kept and repo.refs.read(att.ATTEMPT_REFS + "ft") is None
    assert len(list_objects(repo.mgit_dir)) <= n + 4  # notes (test results) only: no tensor written


def test_status_shows_the_cascade_and_pending_lines(tmp_path: Path, make_repo: Any, capsys: Any) -> None:
    repo = _cascade_lineage(tmp_path, make_repo)
    _fail_test(repo, "ft-gate", model="ft")
    cascade(repo, "base~1", onto="base")
    st = att.status(repo)
    assert st.cascade is not None and st.cascade["models"] == ["ft", "head", "ft2"]
    latest = {a.model: a.status for a in st.attempts}
    assert latest == {"ft": "gate-failed", "head": "rebased"}
    code, out, err = run_main(capsys, repo.root, "rebase", "--status")
    assert code == 0, err
    lines = out.splitlines()
    assert any(ln.split()[:2] == ["gate-failed", "ft:"] for ln in lines), out
    assert any(ln.split()[:2] == ["pending", "ft2"] for ln in lines), out
    assert any(ln.split()[:2] == ["rebased", "head"] for ln in lines), out
    code, out, _ = run_main(capsys, repo.root, "--json", "rebase", "--status")
    assert code == 0 and json.loads(out)["cascade"]["models"] == ["ft", "head", "ft2"]
    code, _, err = run_main(capsys, repo.root, "rebase", "--status", "ft")
    assert code != 0 and "--status takes no" in err
    code, _, err = run_main(capsys, repo.root, "rebase", "ft")
    assert code != 0 and "--onto" in err
    (repo.mgit_dir / "rebase" / "attempts.json").write_text("[1, 2]")
    code, _, err = run_main(capsys, repo.root, "rebase", "--status")
    assert code != 0 and "damaged" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def _trees(repo: Any) -> dict[str, str]:
    return {m: repo.read_commit(oid).tree for m, oid in sorted(repo.model_heads().items())}


@pytest.mark.slow
def test_ray_executor_gives_the_local_trees(tmp_path: Path, make_repo: Any) -> None:
    ray = pytest.importorskip("ray", reason="ray is an optional extra")
    local = _full_lineage(tmp_path / "a", lambda *a, **k: make_repo("local", **k))
    remote = _full_lineage(tmp_path / "b", lambda *a, **k: make_repo("ray", **k))
    assert _trees(local) == _trees(remote)
    res_l = cascade(local, "base~1", onto="base", jobs=2)
    try:
        res_r = cascade(remote, "base~1", onto="base", jobs=2, executor="ray")
    finally:
        ray.shutdown()
    assert res_l.ok and res_r.ok
    assert [(s.model, s.status) for s in res_l.steps] == [(s.model, s.status) for s in res_r.steps]
    assert _trees(local) == _trees(remote)


def test_ray_missing_is_a_clear_error(tmp_path: Path, make_repo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mgit.errors import UsageError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    repo = _cascade_lineage(tmp_path, make_repo)
    with pytest.raises(UsageError, match="ray"):
        cascade(repo, "base~1", onto="base", executor="ray")


SLOW_TEST = f"{sys.executable} -c \"import time; time.sleep(0.4)\""


@pytest.mark.slow
@pytest.mark.parametrize("moved", [0, 1, 3])
def test_sigkill_mid_cascade_then_rerun(tmp_path: Path, make_repo: Any, moved: int) -> None:
    """Kill the cascade once ``moved`` lines have moved (0: as soon as it started); the rerun
    completes, every line is rebased exactly once, and the repository checks clean."""
    from mgit.lifecycle.testing import add_test

    repo = _full_lineage(tmp_path, make_repo)
    add_test(repo, "slow", SLOW_TEST, all=True)
    old = {m: repo.resolve(m) for m in repo.model_heads() if m != "base"}

    def n_moved() -> int:
        return sum(repo.refs.read("refs/heads/" + m) != oid for m, oid in old.items())

    cmd = [sys.executable, "-m", "mgit", "-C", str(repo.root), "rebase", "--descendants-of", "base~1",
           "--onto", "base"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 120
    while n_moved() < moved and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before_rerun = n_moved()
    assert moved <= before_rerun < len(old), "the kill did not land mid-cascade"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for m, before in old.items():
        c = repo.read_commit(repo.resolve(m))
        assert c.parents[0].oid == before, f"{m} was not rebased exactly once"
        assert c.meta.get("rebased_from") == before
    fsck = subprocess.run([sys.executable, "-m", "mgit", "-C", str(repo.root), "fsck"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {ln.split()[0] for ln in again.stdout.splitlines()[1:]} == {"up-to-date"}, again.stdout


def test_sharded_index_is_rebuilt(tmp_path: Path, make_repo: Any) -> None:
    """MODEL adds a head to a sharded checkpoint and NEWBASE adds a tensor: both change
    ``model.safetensors.index.json``; the rebased index lists every tensor of the rebased
    shards (no conflict). When only MODEL changed it, MODEL's index is kept byte for byte."""
    repo = make_repo("repo", model="base")
    v1 = {f"layer.{i}.weight": _rand("F32", (HIDDEN, HIDDEN), i) for i in range(4)}
    write_model_folder(tmp_path / "v1", v1, sharded=2)
    repo.import_folder(tmp_path / "v1", model="base", message="v1")
    ft = dict(v1, **{"layer.0.weight": _shift(v1["layer.0.weight"], 5), "score.weight": _rand("F32", (2, HIDDEN), 9)})
    write_model_folder(tmp_path / "ft", ft, sharded=2)
    repo.import_folder(tmp_path / "ft", model="ft", message="ft", parent="base")
    v2 = dict(v1, **{"layer.0.weight": _shift(v1["layer.0.weight"], 6)})
    write_model_folder(tmp_path / "v2", v2, sharded=2)
    repo.import_folder(tmp_path / "v2", model="base", message="v2")
    r = repo.rebase("ft", onto="base")
    assert r.status == "rebased"
    repo.export("ft", tmp_path / "o1")
    assert (tmp_path / "o1" / "model.safetensors.index.json").read_bytes() == (
        tmp_path / "ft" / "model.safetensors.index.json").read_bytes()
    # NEWBASE v3 adds a tensor: both sides changed the index
    v3 = dict(v2, **{"layer.4.weight": _rand("F32", (HIDDEN, HIDDEN), 44)})
    write_model_folder(tmp_path / "v3", v3, sharded=2)
    repo.import_folder(tmp_path / "v3", model="base", message="v3")
    r = repo.rebase("ft", onto="base")
    assert r.status == "rebased" and not r.plan.conflicts
    assert [f.take for f in r.plan.files if f.path.endswith(".index.json")] == ["regenerated"]
    repo.export("ft", tmp_path / "o2")
    idx = json.loads((tmp_path / "o2" / "model.safetensors.index.json").read_text())
    from safetensors.numpy import load_file

    seen: dict[str, str] = {}
    total = 0
    for shard in sorted(set(idx["weight_map"].values())):
        for k, v in load_file(str(tmp_path / "o2" / shard)).items():
            seen[k] = shard
            total += v.nbytes
    assert idx["weight_map"] == seen and {"score.weight", "layer.4.weight"} <= set(seen)
    assert idx["metadata"]["total_size"] == total


def test_torch_bin_changed_on_both_sides_is_refused(tmp_path: Path, make_repo: Any) -> None:
    torch = pytest.importorskip("torch")
    repo = make_repo("repo", model="base")

    def folder(name: str, sd: dict[str, Any]) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text("{}")
        torch.save(sd, d / "pytorch_model.bin")
        return d

    g = torch.Generator().manual_seed(0)
    v1 = {"w": torch.randn(8, 8, generator=g)}
    repo.import_folder(folder("v1", v1), model="base", message="v1")
    repo.import_folder(folder("ft", {"w": v1["w"] + 1}), model="ft", message="ft", parent="base")
    repo.import_folder(folder("v2", {"w": v1["w"] * 2}), model="base", message="v2")
    n = len(list_objects(repo.mgit_dir))
    with pytest.raises(RebaseError, match="torch checkpoint .*--strategy recipe"):
        repo.rebase("ft", onto="base")
    assert len(list_objects(repo.mgit_dir)) == n


def test_hanging_recipe_is_killed_and_nothing_moves(tmp_path: Path, make_repo: Any, capsys: Any) -> None:
    """A recipe that hangs (and leaves a grandchild behind) is killed whole at
    ``--recipe-timeout``; the error is one line, the line does not move, nothing is kept."""
    repo, _ = _lineage(tmp_path, make_repo)
    pidfile = tmp_path / "grandchild.pid"
    hang = (f"{sys.executable} -c \"import subprocess, sys; "
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); p.wait()\" {{out_dir}}")
    repo.import_folder(tmp_path / "ft", model="ft", message="ft + hanging recipe", recipe=hang)
    tip = repo.resolve("ft")
    n = len(list_objects(repo.mgit_dir))
    t0 = time.monotonic()
    code, _, err = run_main(capsys, repo.root, "rebase", "ft", "--onto", "base", "--strategy", "recipe",
                              "--recipe-timeout", "2")
    assert code != 0 and "timed out after 2s" in err and "Traceback" not in err
    assert time.monotonic() - t0 < 60
    assert repo.resolve("ft") == tip and len(list_objects(repo.mgit_dir)) == n
    gpid = int(pidfile.read_text())
    for _ in range(100):  # the grandchild went with its process group
        try:
            os.kill(gpid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(gpid, signal.SIGKILL)
        pytest.fail("the recipe's child process outlived the timeout")
    code, _, err = run_main(capsys, repo.root, "rebase", "ft", "--onto", "base", "--recipe-timeout", "0")
    assert code != 0 and "0" in err


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM from /proc")
def test_replay_peak_rss_is_bounded_by_slices(tmp_path: Path) -> None:
    """A model of one 64 MiB fp32 tensor changed by both sides: replay's peak RSS stays far
    under the three inputs (192 MB), and under one input held in float64 (128 MB): it reads,
    computes and writes slice by slice."""
    import textwrap

    tests = Path(__file__).parent.parent
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tests)!r})
        import numpy as np
        from mgit.repo import Repository
        from helpers import write_model_folder
        r = Repository.init({str(tmp_path / "repo")!r}, model="base")
        rng = np.random.default_rng(0)
        v1 = rng.standard_normal((16384, 1024), dtype=np.float32)
        for name, parent, t in (("base", None, v1), ("ft", "base", v1 + np.float32(0.01)),
                                ("base", None, v1 * np.float32(1.5))):
            write_model_folder({str(tmp_path)!r} + "/m", {{"w": t}})
            r.import_folder({str(tmp_path)!r} + "/m", model=name, message=name, parent=parent)
    """)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    env["PYTHONPATH"] = str(tests.parent)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    measure = textwrap.dedent(f"""
        from mgit.repo import Repository
        r = Repository.open({str(tmp_path / "repo")!r})
        res = r.rebase("ft", onto="base")
        assert res.status == "rebased", res.status
        print([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1])
    """)
    env["MALLOC_ARENA_MAX"] = "1"
    out = subprocess.run([sys.executable, "-c", measure], check=True, env=env, capture_output=True, text=True)
    peak_mb = int(out.stdout.split()[-1]) / 1024
    print(f"replay peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 140, peak_mb


def test_recipe_seed_and_identifiers(tmp_path: Path, make_repo: Any, capsys: Any) -> None:
    """``--recipe-seed`` is what the recipe gets again as ``{seed}``; ``--recipe-id`` records
    the code and data it used, carried into the rebased version's recipe."""
    repo, _ = _lineage(tmp_path, make_repo)
    code, _, err = run_main(capsys, repo.root, "import", str(tmp_path / "ft"), "--model", "ft", "-m", "ft",
                            "--recipe", _recipe(tmp_path), "--recipe-seed", "41", "--recipe-id", "code=git:3f2a",
                            "--recipe-id", "data=sst2@v2")
    assert code == 0, err
    rec = repo.read_commit(repo.resolve("ft")).recipe
    assert rec == {"cmd": _recipe(tmp_path), "seed": 41, "code": "git:3f2a", "data": "sst2@v2"}
    r = repo.rebase("ft", onto="base", strategy="recipe")
    repo.export("ft", tmp_path / "o")
    assert json.loads((tmp_path / "o" / "config.json").read_text())["trained"] == 42  # RECIPE: seed + 1
    new = repo.read_commit(r.commit.oid).recipe
    assert (new["seed"], new["code"], new["data"]) == (41, "git:3f2a", "sst2@v2")
    for bad, msg in ((["--recipe-seed", "3"], "give --recipe CMD"),
                     (["--recipe", "x", "--recipe-id", "nokey"], "KEY=VALUE"),
                     (["--recipe", "x", "--recipe-seed", "-1"], "-1")):
        n = len(list_objects(repo.mgit_dir))
        code, _, err = run_main(capsys, repo.root, "import", str(tmp_path / "ft"), "--model", "ft2", "-m", "x",
                                *bad)
        assert code != 0 and msg in err, err
        assert len(list_objects(repo.mgit_dir)) == n and "ft2" not in repo.model_heads()


def test_parallel_jobs_do_not_share_temp_files(tmp_path: Path, make_repo: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``-j 2``: two lines rebased at once each write their own rebuilt file (a head MODEL
    added makes replay rewrite model.safetensors); the two writes overlap on purpose."""
    import threading

    from mgit.lifecycle import rebase_write

    real = rebase_write.write_safetensors_file
    barrier = threading.Barrier(2, timeout=10)
    paths: list[Path] = []

    def overlapping(path: Path, *a: Any, **kw: Any) -> None:
        real(path, *a, **kw)
        paths.append(path)
        barrier.wait()  # both files exist at once

    monkeypatch.setattr(rebase_write, "write_safetensors_file", overlapping)
    repo = _cascade_lineage(tmp_path, make_repo)
    res = cascade(repo, "base~1", onto="base", jobs=2, only=["ft", "head"])
    assert res.ok, [(s.model, s.status, s.error) for s in res.steps]
    assert len(paths) == 2 and paths[0] != paths[1]
    for m, want in (("ft", 3), ("head", 2)):
        assert _state(repo, m)["classifier.weight"].shape == (want, HIDDEN)
