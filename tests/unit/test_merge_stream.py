"""The streamed merge: slice by slice, bit-identical to the whole-tensor functions of
mgit.lifecycle.mergemath (TIES' exact streaming threshold select incl. ties at the threshold,
DARE masks cut from the whole-tensor mask, slerp's block sums), and independent of the slice
size; reads bounded by slices; the slice reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write_model_folder

from mgit.lifecycle import merge as mg
from mgit.lifecycle import mergemath as mm

# -- the pure pieces ------------------------------------------------------------------------------


def _scan_of(tvs: list[np.ndarray], step: int) -> Any:
    def scan() -> Any:
        for a in range(0, tvs[0].size, step):
            yield [mm.magnitude_keys(tv.reshape(-1)[a : a + step].copy()) for tv in tvs]

    return scan


def _trim_streamed(tv: np.ndarray, density: float, step: int, limit: int) -> np.ndarray:
    n = tv.size
    (thr,) = mm.top_thresholds(_scan_of([tv], step), n, [int(density * n)], limit)
    out = tv.reshape(-1).copy()
    seen = 0
    for a in range(0, n, step):
        part = out[a : a + step]
        seen = mm.trim_slice(part, thr, seen)
    return out.reshape(tv.shape)


@pytest.mark.parametrize("kind", ["normal", "ties", "few-values", "zeros", "signed-zero"])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.3, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("step,limit", [(7, 5), (100, 50), (1000, 10**6), (333, 1)])
def test_streamed_trim_equals_trim_top(kind: str, density: float, step: int, limit: int) -> None:
    """Every slicing and candidate limit (limit 1 forces all four 16-bit radix passes) gives
    trim_top's result bit for bit, ties at the threshold (lowest flat indices kept) included."""
    rng = np.random.default_rng(hash((kind, density, step)) % 2**32)
    n = 2503
    if kind == "normal":
        tv = rng.standard_normal(n)
    elif kind == "ties":
        tv = rng.integers(-4, 5, n).astype(np.float64) * 0.125  # many equal magnitudes
    elif kind == "few-values":
        tv = np.where(rng.random(n) < 0.5, -1.0, 1.0) * rng.choice([1e-30, 2.5, 1e30], n)
    elif kind == "zeros":
        tv = np.zeros(n)
    else:
        tv = np.where(rng.random(n) < 0.5, -0.0, 0.0)
        tv[::17] = rng.standard_normal(tv[::17].size)
    want = mm.trim_top(tv, density)
    got = _trim_streamed(tv, density, step, limit)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
    assert np.count_nonzero(got) <= int(density * n)


def test_top_thresholds_several_vectors_share_the_passes() -> None:
    rng = np.random.default_rng(5)
    tvs = [rng.standard_normal(5000), rng.integers(-3, 4, 5000) * 1.0, np.zeros(5000)]
    ks = [2500, 1234, 10]
    calls = []

    def scan() -> Any:
        calls.append(1)
        yield from _scan_of(tvs, 999)()

    got = mm.top_thresholds(scan, 5000, ks, 100)
    for tv, k, thr in zip(tvs, ks, got):
        flat = tv.copy()
        mm.trim_slice(flat, thr, 0)
        assert np.array_equal(flat, mm.trim_top(tv, k / 5000 + 1e-12))
    assert len(calls) <= 5  # at most four histogram passes and one collecting pass


@pytest.mark.parametrize("start,count", [(0, 10), (1, 7), (3, 100), (4, 4), (1001, 999), (5, 0)])
def test_dare_mask_is_the_whole_masks_slice(start: int, count: int) -> None:
    whole = mm.rng_for(9, "f.safetensors", "w", 2).random(3000) < 0.4
    got = mm.dare_mask(9, "f.safetensors", "w", 2, start, count, 0.4)
    assert np.array_equal(got, whole[start : start + count])


def test_slerp_sums_do_not_depend_on_slicing() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(5 * mm.SUM_BLOCK + 77), rng.standard_normal(5 * mm.SUM_BLOCK + 77)
    whole = mm.slerp_sums([(a, b)])
    for step in (mm.SUM_BLOCK, 2 * mm.SUM_BLOCK, 3 * mm.SUM_BLOCK):
        parts = [(a[i : i + step], b[i : i + step]) for i in range(0, a.size, step)]
        assert mm.slerp_sums(parts) == whole
    ab, aa, bb = whole
    assert np.isclose(ab, a @ b, rtol=1e-12) and np.isclose(aa, a @ a) and np.isclose(bb, b @ b)
    s0, s1 = mm.slerp_coefs(whole, 0.3)
    theta = np.arccos(ab / np.sqrt(aa * bb))
    assert np.isclose(s0, np.sin(0.7 * theta) / np.sin(theta)) and np.isclose(
        s1, np.sin(0.3 * theta) / np.sin(theta)
    )
    assert mm.slerp_coefs((0.0, 0.0, 4.0), 0.3) == (0.7, 0.3)  # a zero vector: linear


# -- the streamed merge, end to end --------------------------------------------------------------

SHAPES = {"emb.weight": (301, 67), "l0.weight": (40, 33), "l0.bias": (40,), "big": (3, 9000)}


@pytest.fixture
def lab(make_repo: Any, tmp_path: Path) -> Any:
    """base and three finetunes whose task vectors take few values (many ties at the TIES
    threshold) over tensors of several slices and several 64 KiB chunks."""
    r = make_repo("repo", model="base")
    rng = np.random.default_rng(0)
    base = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    base["ids"] = np.arange(5, dtype=np.int64)
    r.data = {"base": base}
    write_model_folder(tmp_path / "base", base, config={"hidden_size": 4})
    r.import_folder(tmp_path / "base", model="base", message="base")
    for i in (1, 2, 3):
        ft = {
            n: (v + rng.integers(-3, 4, v.shape).astype(np.float32) * np.float32(0.125))
            if v.dtype.kind == "f"
            else v
            for n, v in base.items()
        }
        r.data[f"ft{i}"] = ft
        write_model_folder(tmp_path / f"ft{i}", ft, config={"hidden_size": 4})
        r.import_folder(tmp_path / f"ft{i}", model=f"ft{i}", message="ft", parent="base")
    return r


CASES = [
    ("linear", {"weights": [0.2, 0.5, 0.3]}),
    ("task-arithmetic", {"weights": [0.5, 1.0, 0.7], "lam": 0.8}),
    ("ties", {"weights": [1.0, 0.6, 0.9], "density": [0.4, 0.2, 0.7], "lam": 1.2}),
    ("ties", {"density": 0.5, "normalize": False}),
    ("dare-linear", {"weights": [0.5, 0.5, 1.0], "density": 0.3, "seed": 7}),
    ("dare-ties", {"density": 0.5, "seed": 11, "lam": 0.9}),
    ("slerp", {"t": 0.3}),
]


def _whole(lab: Any, method: str, refs: list[str], name: str, kw: dict[str, Any]) -> np.ndarray:
    """The merged tensor by the whole-tensor functions (the implementation before streaming)."""
    xs = [lab.data[r][name].astype(np.float64) for r in refs]
    b = lab.data["base"][name].astype(np.float64)
    w = kw.get("weights", [1.0] * len(refs))
    norm = kw.get("normalize", method in ("linear", "ties", "dare-ties"))
    if method == "linear":
        return mm.linear(xs, w, norm)
    if method == "slerp":
        return mm.slerp(xs[0], xs[1], kw["t"])
    tvs = [x - b for x in xs]
    d = kw.get("density", 1.0)
    dens = d if isinstance(d, list) else [d] * len(refs)
    if method == "task-arithmetic":
        merged = mm.linear(tvs, w, norm)
    elif method == "ties":
        merged = mm.ties_merge([mm.trim_top(tv, di) for tv, di in zip(tvs, dens)], w, norm)
    else:
        dropped = [
            mm.dare_drop(tv, di, mm.rng_for(kw.get("seed", 0), "model.safetensors", name, i))
            for i, (tv, di) in enumerate(zip(tvs, dens))
        ]
        merged = (
            mm.linear(dropped, w, norm)
            if method == "dare-linear"
            else mm.ties_merge(dropped, w, norm)
        )
    return b + kw.get("lam", 1.0) * merged


@pytest.mark.parametrize("method,kw", CASES)
def test_slice_size_does_not_change_the_merge(
    lab: Any, monkeypatch: pytest.MonkeyPatch, method: str, kw: dict[str, Any]
) -> None:
    """The same tree with one slice per tensor and with slices of 4096 and 8192 elements (the
    select limited to 100 keys: several radix passes); every tensor equals the whole-tensor
    functions' result rounded to fp32; --redo (sliced) confirms it."""
    refs = ["ft1", "ft2"] if method == "slerp" else ["ft1", "ft2", "ft3"]
    base = None if method in ("linear", "slerp") else "base"
    trees = []
    for i, (step, limit) in enumerate([(10**7, 10**7), (4096, 100), (8192, 10**6)]):
        monkeypatch.setattr(mg, "SLICE_ELEMENTS", step)
        monkeypatch.setattr(mg, "SELECT_LIMIT", limit)
        trees.append(
            lab.merge(refs, model=f"m{i}", message="m", method=method, base=base, **kw).commit.tree
        )
        assert lab.merge(redo=f"m{i}").identical
    assert trees[0] == trees[1] == trees[2]
    for name in SHAPES:
        want = _whole(lab, method, refs, name, kw).astype(np.float32)
        assert np.array_equal(lab.load_tensor("m1", name).view(np.uint32), want.view(np.uint32)), (
            name
        )
    assert np.array_equal(lab.load_tensor("m1", "ids"), np.arange(5))


def test_reads_are_bounded_by_slices(lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 4096-element slices no input tensor is read whole: every read of the merge is one
    slice, and nothing loads a whole tensor through materialize."""
    from mgit import materialize
    from mgit.lifecycle import slices

    sizes: list[int] = []
    real = slices.TensorReader.read

    def spy(self: Any, start: int, stop: int) -> Any:
        sizes.append(stop - start)
        return real(self, start, stop)

    def whole(*a: Any, **k: Any) -> Any:
        raise AssertionError("a whole tensor was loaded")

    monkeypatch.setattr(slices.TensorReader, "read", spy)
    monkeypatch.setattr(materialize, "tensor_array", whole)
    monkeypatch.setattr(mg, "SLICE_ELEMENTS", 4096)
    lab.merge(
        ["ft1", "ft2", "ft3"], model="m", message="m", method="ties", base="base", density=0.5
    )
    assert sizes and max(sizes) == 4096
    assert sum(sizes) >= 2 * 4 * 301 * 67  # the thresholds' pass and the merge's, 4 inputs


def test_reader_reads_ranges_across_chunks(lab: Any) -> None:
    from mgit.lifecycle.slices import TensorReader
    from mgit.tensors import tensor_manifests

    m = tensor_manifests(lab, "ft1")["big"]
    assert len(m.chunks) == 2 and not m.packed  # 108,000 bytes over 64 KiB chunks
    r = TensorReader(lab.store, m)
    flat = lab.data["ft1"]["big"].reshape(-1)
    for a, b in [(0, 1), (16383, 16385), (0, 27000), (26999, 27000), (5, 5), (100, 20000)]:
        assert np.array_equal(r.read(a, b), flat[a:b])
    with pytest.raises(ValueError):
        r.read(0, 27001)
    small = tensor_manifests(lab, "ft1")["l0.bias"]
    assert small.packed
    assert np.array_equal(
        TensorReader(lab.store, small).read(3, 9), lab.data["ft1"]["l0.bias"][3:9]
    )


def test_mgit_never_imports_mergekit() -> None:
    """mergekit (LGPL-3.0) is a test-only reference: no module of the package imports it."""
    import ast

    root = Path(__file__).resolve().parents[2] / "mgit"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n.split(".")[0] == "mergekit" for n in names), path
