"""mgit.lifecycle.merge: every method against a plain numpy implementation written here from the
papers' formulas, DARE's reproducibility, order/thread independence, --redo (identical, and a
tampered commit caught), refusals that write nothing, YAML recipes, and bounded memory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write_model_folder

from mgit.errors import UsageError
from mgit.lifecycle import yaml_subset
from mgit.lifecycle.merge import config_to_args, recipe_yaml

NAMES = ("emb.weight", "l0.weight", "l0.bias", "l1.weight")
SHAPES = {"emb.weight": (130, 64), "l0.weight": (16, 16), "l0.bias": (16,), "l1.weight": (12, 16)}


def tensors(
    seed: int, base: dict[str, np.ndarray] | None = None, scale: float = 0.05
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for n in NAMES:
        noise = rng.standard_normal(SHAPES[n])
        out[n] = (noise if base is None else base[n] + scale * noise).astype(np.float32)
    out["pos_ids"] = np.arange(6, dtype=np.int64)
    return out


@pytest.fixture
def lab(make_repo: Any, tmp_path: Path) -> Any:
    """base, three finetunes of it (ft1..ft3)."""
    r = make_repo("repo", model="base")
    b = tensors(0)
    data = {"base": b}
    write_model_folder(tmp_path / "base", b, config={"hidden_size": 16})
    r.import_folder(tmp_path / "base", model="base", message="base")
    for i in (1, 2, 3):
        data[f"ft{i}"] = tensors(i, b)
        write_model_folder(
            tmp_path / f"ft{i}", data[f"ft{i}"], config={"hidden_size": 16, "finetuned": i}
        )
        r.import_folder(tmp_path / f"ft{i}", model=f"ft{i}", message="ft", parent="base")
    r.data = data
    return r


# -- independent references (float64, then float32 with IEEE round-to-nearest-even) ------------


def ref_linear(xs: list[np.ndarray], w: list[float], normalize: bool) -> np.ndarray:
    acc = sum(wi * x.astype(np.float64) for wi, x in zip(w, xs))
    return acc / sum(w) if normalize else acc


def ref_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    cos = np.sum(a * b) / (np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(b * b)))
    if abs(cos) > 0.9995:
        return (1 - t) * a + t * b
    om = np.arccos(cos)
    return np.sin((1 - t) * om) / np.sin(om) * a + np.sin(t * om) / np.sin(om) * b


def ref_topk(tv: np.ndarray, density: float) -> np.ndarray:
    flat = tv.reshape(-1)
    k = int(density * flat.size)
    keep = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(tv.shape)


def ref_ties(tvs: list[np.ndarray], w: list[float]) -> np.ndarray:
    stack = np.stack([wi * tv for wi, tv in zip(w, tvs)])
    sign = np.sign(stack.sum(axis=0))
    agree = (np.sign(stack) == sign) & (sign != 0)
    num = np.where(agree, stack, 0).sum(axis=0)
    den = np.where(
        agree, np.array(w)[:, None].repeat(stack[0].size, 1).reshape(stack.shape), 0
    ).sum(axis=0)
    den[den == 0] = 1
    return num / den


def ref_mask(
    seed: int, file: str, name: str, i: int, shape: tuple[int, ...], density: float
) -> np.ndarray:
    key = int.from_bytes(
        hashlib.blake2b(f"{seed}\0{file}\0{name}\0{i}".encode(), digest_size=16).digest(), "little"
    )
    return np.random.Generator(np.random.Philox(key=key)).random(shape) < density


def reference(
    lab: Any,
    method: str,
    refs: list[str],
    name: str,
    *,
    w: list[float],
    density: float = 1.0,
    lam: float = 1.0,
    t: float = 0.5,
    seed: int = 0,
    normalize: bool = False,
) -> np.ndarray:
    xs = [lab.data[r][name].astype(np.float64) for r in refs]
    base = lab.data["base"][name].astype(np.float64)
    if method == "linear":
        return ref_linear(xs, w, normalize)
    if method == "slerp":
        return ref_slerp(xs[0], xs[1], t)
    tvs = [x - base for x in xs]
    if method == "task-arithmetic":
        return base + lam * ref_linear(tvs, w, normalize)
    if method == "ties":
        return base + lam * ref_ties([ref_topk(tv, density) for tv in tvs], w)
    dropped = [
        np.where(ref_mask(seed, "model.safetensors", name, i, tv.shape, density), tv / density, 0)
        for i, tv in enumerate(tvs)
    ]
    if method == "dare-linear":
        return base + lam * ref_linear(dropped, w, normalize)
    return base + lam * ref_ties(dropped, w)


CASES = [
    ("linear", {"weights": [0.2, 0.5, 0.3], "normalize": False}),
    ("linear", {"weights": [1.0, 3.0, 2.0], "normalize": True}),
    ("task-arithmetic", {"weights": [0.5, 1.0, 0.7], "lam": 0.8}),
    ("ties", {"weights": [1.0, 0.6, 0.9], "density": 0.4, "lam": 1.2}),
    ("dare-linear", {"weights": [0.5, 0.5, 1.0], "density": 0.3, "seed": 7}),
    ("dare-ties", {"weights": [1.0, 1.0, 0.5], "density": 0.5, "seed": 11, "lam": 0.9}),
]


@pytest.mark.parametrize("method,kw", CASES)
def test_method_matches_reference(lab: Any, method: str, kw: dict[str, Any]) -> None:
    refs = ["ft1", "ft2", "ft3"]
    base = None if method == "linear" else "base"
    res = lab.merge(refs, model="m", message="m", method=method, base=base, **kw)
    assert res.merged == len(NAMES) and res.kept == 1
    norm = kw.get("normalize", method in ("ties", "dare-ties", "linear"))
    for name in NAMES:
        want = reference(
            lab,
            method,
            refs,
            name,
            w=kw["weights"],
            density=kw.get("density", 1.0),
            lam=kw.get("lam", 1.0),
            seed=kw.get("seed", 0),
            normalize=norm,
        ).astype(np.float32)
        got = lab.load_tensor("m", name)
        assert got.dtype == np.float32 and np.array_equal(got, want), (method, name)
    assert np.array_equal(lab.load_tensor("m", "pos_ids"), np.arange(6))
    c = lab.read_commit(lab.resolve("m"))
    assert [p.oid for p in c.parents] == [lab.resolve(r) for r in refs]
    assert {p.relation for p in c.parents} == {"merge"}
    assert c.recipe["method"] == method and c.recipe["inputs"] == [lab.resolve(r) for r in refs]
    assert c.recipe["base"] == (lab.resolve("base") if base else None)
    assert c.recipe["seed"] == kw.get("seed", 0) and c.recipe["mgit_version"]
    assert lab.merge(redo="m").identical


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_slerp_matches_reference(lab: Any, t: float) -> None:
    lab.merge(["ft1", "ft2"], model="s", message="s", method="slerp", t=t)
    for name in NAMES:
        want = reference(lab, "slerp", ["ft1", "ft2"], name, w=[1, 1], t=t).astype(np.float32)
        assert np.array_equal(lab.load_tensor("s", name), want)


def test_slerp_colinear_falls_back_to_linear() -> None:
    from mgit.lifecycle.mergemath import slerp

    a = np.arange(1.0, 7.0)
    assert np.array_equal(slerp(a, 2 * a, 0.25), 0.75 * a + 0.25 * 2 * a)
    assert np.array_equal(slerp(np.zeros(3), np.ones(3), 0.5), np.full(3, 0.5))


def test_dtype_bf16_output_and_redo(lab: Any) -> None:
    from mgit.lifecycle.arith import cast_rne

    lab.merge(["ft1", "ft2"], model="h", message="h", method="linear", dtype="bfloat16")
    for name in NAMES:
        want = cast_rne(
            ref_linear([lab.data["ft1"][name], lab.data["ft2"][name]], [1, 1], True), "BF16"
        )
        got = lab.load_tensor("h", name)
        assert got.dtype == want.dtype and np.array_equal(got.view(np.uint16), want.view(np.uint16))
    assert lab.load_tensor("h", "pos_ids").dtype == np.int64
    assert lab.merge(redo="h").identical


def test_dare_reproducible_and_seed_dependent(lab: Any) -> None:
    kw = {"method": "dare-linear", "base": "base", "density": 0.5}
    a = lab.merge(["ft1", "ft2"], model="d1", message="d", seed=1, **kw).commit.tree
    b = lab.merge(["ft1", "ft2"], model="d2", message="d", seed=1, **kw).commit.tree
    c = lab.merge(["ft1", "ft2"], model="d3", message="d", seed=2, **kw).commit.tree
    assert a == b and a != c
    # statistics: about 1 - density of each task vector is dropped, the rest scaled by 1/density
    tv = lab.load_tensor("d1", "emb.weight").astype(np.float64) - lab.data["base"]["emb.weight"]
    one = (lab.data["ft1"]["emb.weight"].astype(np.float64) - lab.data["base"]["emb.weight"]) / 0.5
    two = (lab.data["ft2"]["emb.weight"].astype(np.float64) - lab.data["base"]["emb.weight"]) / 0.5
    both = np.isclose(tv, one + two, rtol=1e-5, atol=1e-6)
    none = np.abs(tv) < 1e-6
    assert 0.2 < both.mean() < 0.3 and 0.2 < none.mean() < 0.3  # 0.25 each


def test_order_and_threads_do_not_matter(lab: Any) -> None:
    from mgit.lifecycle.mergemath import rng_for

    kw = {"method": "dare-ties", "base": "base", "density": 0.6, "seed": 5}
    a = lab.merge(["ft1", "ft2"], model="o1", message="d", lookahead=0, **kw).commit.tree
    b = lab.merge(["ft1", "ft2"], model="o2", message="d", lookahead=4, **kw).commit.tree
    assert a == b
    x = rng_for(5, "f", "b", 1).random(4)
    rng_for(5, "f", "a", 0).random(100)
    assert np.array_equal(rng_for(5, "f", "b", 1).random(4), x)


def test_redo_detects_a_tampered_commit(lab: Any) -> None:
    from mgit.commit import write_commit
    from mgit.objects.model import ParentLink

    lab.merge(["ft1", "ft2"], model="m", message="m", method="ties", base="base", density=0.5)
    c = lab.read_commit(lab.resolve("m"))
    tree = lab.read_tree(lab.read_commit(lab.resolve("ft1")).tree)
    files = dict(lab.read_tree(c.tree).files)
    files["config.json"] = tree.files["config.json"]  # the base's config replaced
    _fake, _ = write_commit(
        lab,
        model="fake",
        tip=None,
        parents=list(c.parents),
        files=files,
        message="fake",
        meta={},
        eps=None,
        recipe=c.recipe,
    )
    res = lab.merge(redo="fake")
    assert not res.identical and res.differing == ["config.json"]
    files = dict(tree.files)  # ft1's tensors under the merge's recipe
    _fake2, _ = write_commit(
        lab,
        model="fake2",
        tip=None,
        parents=[ParentLink(c.parents[0].oid, "merge")],
        files=files,
        message="fake",
        meta={},
        eps=None,
        recipe=c.recipe,
    )
    res = lab.merge(redo="fake2")
    assert not res.identical
    assert {f"model.safetensors:{n}" for n in NAMES} <= set(res.differing)
    assert "model.safetensors:pos_ids" not in res.differing
    with pytest.raises(UsageError, match="no merge recipe"):
        lab.merge(redo="ft1")


def test_non_tensor_files_come_from_the_base(lab: Any, tmp_path: Path) -> None:
    lab.merge(["ft1", "ft2"], model="m", message="m", method="task-arithmetic", base="base")
    lab.export("m", tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification"],
        "hidden_size": 16,
    }
    lab.merge(["ft1", "ft2"], model="n", message="m", method="linear")
    lab.export("n", tmp_path / "out2")
    assert json.loads((tmp_path / "out2" / "config.json").read_text())["finetuned"] == 1


def _snapshot(r: Any) -> tuple[Any, ...]:
    objs = sorted(str(p) for p in (r.mgit_dir / "objects").rglob("*") if p.is_file())
    return objs, r.model_heads()


def _add(r: Any, tmp_path: Path, name: str, t: dict[str, np.ndarray], **cfg: Any) -> None:
    write_model_folder(tmp_path / name, t, config={"hidden_size": 16, **cfg})
    r.import_folder(tmp_path / name, model=name, message=name, parent="base")


@pytest.mark.parametrize(
    "case",
    [
        "one",
        "slerp3",
        "ties-nobase",
        "unknown",
        "weights",
        "config",
        "strict",
        "shape",
        "dtype",
        "density",
    ],
)
def test_refusals_write_nothing(lab: Any, tmp_path: Path, case: str) -> None:
    b = lab.data["base"]
    if case == "config":
        _add(lab, tmp_path, "wide", tensors(9, b), hidden_size=32)
    if case == "strict":
        _add(lab, tmp_path, "less", {k: v for k, v in tensors(9, b).items() if k != "l1.weight"})
    if case == "shape":
        _add(lab, tmp_path, "odd", {**tensors(9, b), "l0.bias": np.zeros(17, np.float32)})
    if case == "dtype":
        _add(lab, tmp_path, "odd", {**tensors(9, b), "l0.bias": np.zeros(16, np.float16)})
    before = _snapshot(lab)
    args: dict[str, Any] = {
        "one": {"refs": ["ft1"], "method": "linear"},
        "slerp3": {"refs": ["ft1", "ft2", "ft3"], "method": "slerp", "t": 0.5},
        "ties-nobase": {"refs": ["ft1", "ft2"], "method": "ties"},
        "unknown": {"refs": ["ft1", "ft2"], "method": "frankenmerge"},
        "weights": {"refs": ["ft1", "ft2"], "method": "linear", "weights": [1.0, 2.0, 3.0]},
        "config": {"refs": ["ft1", "wide"], "method": "linear"},
        "strict": {"refs": ["ft1", "less"], "method": "linear", "strict": True},
        "shape": {"refs": ["ft1", "odd"], "method": "linear"},
        "dtype": {"refs": ["ft1", "odd"], "method": "linear"},
        "density": {"refs": ["ft1", "ft2"], "method": "ties", "base": "base", "density": 1.5},
    }[case]
    refs = args.pop("refs")
    with pytest.raises(UsageError) as ei:
        lab.merge(refs, model="bad", message="m", **args)
    assert "\n" not in str(ei.value)
    assert _snapshot(lab) == before


def test_partial_tensors_kept_from_first_input(lab: Any, tmp_path: Path) -> None:
    b = lab.data["base"]
    _add(lab, tmp_path, "less", {k: v for k, v in tensors(9, b).items() if k != "l1.weight"})
    res = lab.merge(["ft1", "less"], model="m", message="m", method="linear")
    assert res.partial == ["model.safetensors:l1.weight"]
    assert np.array_equal(lab.load_tensor("m", "l1.weight"), lab.data["ft1"]["l1.weight"])
    res = lab.merge(["less", "ft1"], model="m2", message="m", method="linear")
    assert res.dropped == ["model.safetensors:l1.weight"]
    assert "l1.weight" not in lab.tensors("m2")


def test_task_head_finetunes_pair_with_a_base_model_base(lab: Any, tmp_path: Path) -> None:
    """Finetunes saved by a task-head class (``bert.x``, ``BertForSequenceClassification``) merged
    over their ``BertModel`` base (``x``): every base tensor pairs, as in storage and diff (on
    the real MiniLM this merged nothing and silently kept the first input)."""
    b = lab.data["base"]
    heads = {}
    for i in (7, 8):
        t = {f"bert.{k}": v for k, v in tensors(i, b).items()}
        t["classifier.weight"] = np.full((2, 4), float(i), dtype=np.float32)
        heads[i] = t
        write_model_folder(tmp_path / f"h{i}", t, config={"hidden_size": 16})
        lab.import_folder(tmp_path / f"h{i}", model=f"h{i}", message="head", parent="base")
    res = lab.merge(["h7", "h8"], model="m", message="m", method="ties", base="base", density=1.0)
    # every body tensor paired with the base by its key; only the new head is not in the base
    assert res.partial == ["model.safetensors:classifier.weight"]
    for k in NAMES:
        tv = [heads[i][f"bert.{k}"].astype(np.float64) - b[k] for i in (7, 8)]
        want = (b[k] + ref_ties(tv, [1.0, 1.0])).astype(np.float32)
        assert np.array_equal(lab.load_tensor("m", f"bert.{k}"), want), k
    assert lab.merge(redo="m").identical


def test_only_globs(lab: Any) -> None:
    lab.merge(["ft1", "ft2"], model="m", message="m", method="linear", only=["l0.*"])
    assert np.array_equal(lab.load_tensor("m", "emb.weight"), lab.data["ft1"]["emb.weight"])
    assert not np.array_equal(lab.load_tensor("m", "l0.weight"), lab.data["ft1"]["l0.weight"])
    assert lab.read_commit(lab.resolve("m")).recipe["only"] == ["l0.*"]
    assert lab.merge(redo="m").identical


def test_yaml_recipe_round_trip(lab: Any) -> None:
    lab.merge(
        ["ft1", "ft2", "ft3"],
        model="m",
        message="m",
        method="dare-ties",
        base="base",
        density=0.5,
        weights=[1.0, 0.5, 0.25],
        seed=3,
        lam=0.7,
        dtype="float16",
    )
    rec = lab.read_commit(lab.resolve("m")).recipe
    text = recipe_yaml(rec)
    res = lab.merge(model="again", message="m", config=text)
    assert res.commit.tree == lab.read_commit(lab.resolve("m")).tree
    args = config_to_args(text)
    assert args["weights"] == [1.0, 0.5, 0.25] and args["seed"] == 3 and args["dtype"] == "float16"


def test_yaml_config_mergekit_style_and_unknown_keys(lab: Any) -> None:
    cfg = textwrap.dedent("""\
        merge_method: task_arithmetic   # mergekit spelling
        base_model: base
        models:
          - model: ft1
            parameters:
              weight: 0.5
          - model: ft2
            parameters: {weight: 1.0}
        parameters:
          lambda: 0.5
        dtype: float32
        """)
    with pytest.raises(UsageError):  # flow maps are outside the subset
        config_to_args(cfg)
    cfg = cfg.replace("    parameters: {weight: 1.0}\n", "    parameters:\n      weight: 1.0\n")
    res = lab.merge(model="y", message="y", config=cfg)
    direct = lab.merge(
        ["ft1", "ft2"],
        model="z",
        message="z",
        method="task-arithmetic",
        base="base",
        weights=[0.5, 1.0],
        lam=0.5,
        dtype="float32",
    )
    assert res.commit.tree == direct.commit.tree
    with pytest.raises(UsageError, match="unsupported"):
        config_to_args(cfg + "frobnicate: 1\n")
    with pytest.raises(UsageError, match="unsupported"):
        config_to_args(cfg.replace("weight: 0.5", "wieght: 0.5"))


def test_yaml_subset_parser() -> None:
    text = "a: 1\nb:\n  - x\n  - 'y z'\nc:\n  - k: 1.5\n    l: [1, true, null]\n  - k: -2\nd: \"q#\"  # c\n"
    assert yaml_subset.load(text) == {
        "a": 1,
        "b": ["x", "y z"],
        "c": [{"k": 1.5, "l": [1, True, None]}, {"k": -2}],
        "d": "q#",
    }
    assert yaml_subset.load(yaml_subset.dump(yaml_subset.load(text))) == yaml_subset.load(text)
    for bad in ("a: &x 1\n", "a: 1\n   b: 2\n", "a: 1\na: 2\n", "- a\nb: 1\n"):
        with pytest.raises(UsageError, match="YAML line"):
            yaml_subset.load(bad)


def test_merge_holds_a_few_tensors_not_the_model(lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrumented: each merged tensor reads one tensor of each input and the base, in slices
    (see tests/unit/test_merge_stream.py for tensors larger than a slice)."""
    from mgit.lifecycle import merge as mg

    live: list[int] = []
    real = mg._pieces

    def spy(plan: Any, file: str, name: str, readers: Any, base: Any) -> Any:
        live.append(len(readers) + (base is not None))
        return real(plan, file, name, readers, base)

    monkeypatch.setattr(mg, "_pieces", spy)
    lab.merge(
        ["ft1", "ft2", "ft3"],
        model="m",
        message="m",
        method="ties",
        base="base",
        density=0.5,
        lookahead=1,
    )
    assert live == [4] * len(NAMES)  # one tensor of each input and the base, per tensor


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
@pytest.mark.parametrize("rows,count", [(1024, 16), (16384, 1)])
def test_peak_rss_of_a_three_model_merge(tmp_path: Path, rows: int, count: int) -> None:
    """Three ~64 MB fp32 models (+ base), as 16 tensors of 4 MiB or one of 64 MiB: the merge
    process's peak RSS stays well under their sum, and under one input tensor held in float64
    (128 MB for the big one): memory is bounded by slices and chunks, not by tensors.
    (VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking pytest process.)"""
    script = textwrap.dedent(f"""
        import resource, sys, time
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        import numpy as np
        from mgit.repo import Repository
        from helpers import write_model_folder
        r = Repository.init({str(tmp_path / "repo")!r}, model="base")
        rng = np.random.default_rng(0)
        names = [f"layer.{{i}}.weight" for i in range({count})]  # 64 MiB per model
        base = {{n: rng.standard_normal(({rows}, 1024), dtype=np.float32) for n in names}}
        for m in ("base", "a", "b", "c"):
            t = base if m == "base" else {{n: v + np.float32(0.01) for n, v in base.items()}}
            write_model_folder({str(tmp_path)!r} + "/" + m, t)
            r.import_folder({str(tmp_path)!r} + "/" + m, model=m, message=m, parent=None if m == "base" else "base")
        del base, t
        print("ready", flush=True)
    """)
    # a clean environment: other tests' settings (threads, allocator, native kernels) left out
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    env["PYTHONPATH"] = str(Path(__file__).parent.parent.parent)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    measure = textwrap.dedent(f"""
        import resource, time
        from mgit.repo import Repository
        r = Repository.open({str(tmp_path / "repo")!r})
        t0 = time.perf_counter()
        r.merge(["a", "b", "c"], model="m", message="m", method="ties", base="base", density=0.5)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
        print(hwm, time.perf_counter() - t0)
    """)
    # one malloc arena, as before the merge was streamed (then: 133 MB with 1 arena, 192 MB with
    # glibc's per-thread defaults, for the 16 x 4 MiB models)
    env["MALLOC_ARENA_MAX"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", measure], check=True, env=env, capture_output=True, text=True
    )
    peak_kib, secs = out.stdout.split()
    peak_mb = int(peak_kib) / 1024
    print(f"peak RSS {peak_mb:.0f} MB, {float(secs):.1f} s")
    assert peak_mb < 140, (peak_mb, sorted(os.environ))  # the inputs read: 4 x 64 MB = 256 MB
