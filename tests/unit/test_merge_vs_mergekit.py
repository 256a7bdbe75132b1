"""``mgit merge`` against mergekit, an independent implementation (LGPL-3.0, imported by this test
only, never by mgit), on tiny ``LlamaForCausalLM`` models saved by ``save_pretrained`` (random
weights; fp32 and bf16).

mergekit runs through its Python API (``merge_state_dicts``) on the very safetensors files mgit
imported, computing in float64 (``dtype=torch.float64``) and casting to the models' dtype, as
mgit does; one case runs the ``mergekit-yaml`` command line on the model folders. The parameter
correspondence (mergekit 0.1.5 -> mgit):

- ``linear``: ``weight`` per model, ``normalize`` (default true in both) -> ``--weight``,
  ``--normalize``.
- ``task_arithmetic``: ``base_model``, ``weight``, ``lambda``, ``normalize`` (default false in
  both) -> ``--base``, ``--weight``, ``--lambda``, ``--normalize``.
- ``ties``: ``density``, ``weight``, ``lambda``, ``normalize`` (default true in both) -> the same
  options. Same trimming (top ``floor(density * n)`` magnitudes of each task vector), sign
  election by the sign of the weighted sum, disjoint weighted mean. Differences, none of which
  random weights reach: mergekit keeps at least one entry (``max(1, floor(density n))``), elects
  ``+`` where the weighted sum is exactly 0 (mgit: no sign, the entry stays the base's), and
  breaks ties at the threshold in ``argsort`` order (mgit: lowest flat index first).
- ``slerp``: ``base_model: A``, ``models: [A, B]``, ``t`` -> ``mgit merge A B --t t``: both
  interpolate each whole (flattened) tensor, linearly when |cos| > 0.9995.
- ``dare_linear`` / ``dare_ties``: ``density``, ``weight``, ``lambda``; ``normalize`` must be
  given (mergekit's dare_ties default is false, mgit's true). The random masks come from
  different generators, and mergekit 0.1.5 rescales the kept entries by ``|τ|₁ / |kept τ|₁``
  (``rescale: true``, its default) where mgit (as the DARE paper) uses ``1 / density``: both are
  compared by statistics (the fraction dropped, the rescale, the elected signs).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mergekit = pytest.importorskip(
    "mergekit", reason="mergekit (LGPL-3.0, a test-only dependency) is not installed"
)
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mergekit.merge_methods import merge_state_dicts
from safetensors.torch import load_file, save_file


def _llama(seed: int) -> Any:
    cfg = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Folders base, ft1..ft3 (fp32) and base-bf16, ft1-bf16, ft2-bf16, and an mgit repository
    holding them all (the finetunes derived from their base)."""
    from mgit.repo import Repository

    root = tmp_path_factory.mktemp("mk")
    model = _llama(0)
    model.save_pretrained(root / "base")
    model.to(torch.bfloat16).save_pretrained(root / "base-bf16")
    for i in (1, 2, 3):
        ft = _llama(0)
        gen = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for p in ft.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
        ft.save_pretrained(root / f"ft{i}")
        ft.to(torch.bfloat16).save_pretrained(root / f"ft{i}-bf16")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MGIT_AUTHOR", "tester <t@example.com>")
        repo = Repository.init(root / "repo", model="base", chunk_size=65536)
        repo.import_folder(root / "base", model="base", message="base")
        repo.import_folder(
            root / "base-bf16",
            model="base-bf16",
            message="base",
            parent="base",
            relation="quantize",
        )
        for i in (1, 2, 3):
            repo.import_folder(root / f"ft{i}", model=f"ft{i}", message="ft", parent="base")
            if i < 3:
                repo.import_folder(
                    root / f"ft{i}-bf16", model=f"ft{i}-bf16", message="ft", parent="base-bf16"
                )
    repo.root_dir = root
    return repo


def _sd(lab: Any, name: str) -> dict[str, Any]:
    return load_file(str(lab.root_dir / name / "model.safetensors"))


_SEQ = itertools.count()


def _mgit(lab: Any, tmp: Path, refs: list[str], **kw: Any) -> dict[str, Any]:
    name = f"merged{next(_SEQ)}"
    lab.merge(refs, model=name, message="m", **kw)
    out = tmp / name
    lab.export(name, out)
    return load_file(str(out / "model.safetensors"))


def _mergekit(
    lab: Any, names: list[str], method: str, params: dict[str, Any], base: int | None
) -> dict[str, Any]:
    sds = [_sd(lab, n) for n in names]
    out_dtype = next(iter(sds[0].values())).dtype
    return merge_state_dicts(
        sds, method, parameters=params, base=base, dtype=torch.float64, out_dtype=out_dtype
    )


def _ulps(a: Any, b: Any) -> np.ndarray:
    """|a - b| in units in the last place of their dtype (fp32 or bf16), elementwise."""
    if a.dtype == torch.bfloat16:
        ia, ib = (
            a.view(torch.int16).numpy().astype(np.int64),
            b.view(torch.int16).numpy().astype(np.int64),
        )
    else:
        ia, ib = (
            a.view(torch.int32).numpy().astype(np.int64),
            b.view(torch.int32).numpy().astype(np.int64),
        )
    # sign-magnitude bits to a monotone integer line
    bits = 16 if a.dtype == torch.bfloat16 else 32
    top = 1 << (bits - 1)
    ia = np.where(ia < 0, -(ia + top), ia)
    ib = np.where(ib < 0, -(ib + top), ib)
    return np.abs(ia - ib)


def _assert_close(
    ours: dict[str, Any],
    theirs: dict[str, Any],
    *,
    max_ulps: int,
    exact_frac: float,
    atol: float = 1e-12,
) -> None:
    """Every element within ``max_ulps`` of the output dtype, or within ``atol`` (a result that
    cancels to about 0 in float64: mergekit's fused multiply-adds leave ~1e-19 where mgit's
    separate products give 0, far apart in ulps); at least ``exact_frac`` bit-identical."""
    assert set(ours) == set(theirs)
    total = same = 0
    for k, v in ours.items():
        w = theirs[k]
        assert v.shape == w.shape and v.dtype == w.dtype, k
        d = _ulps(v.reshape(-1), w.reshape(-1))
        near = (v.double() - w.double()).abs().reshape(-1).numpy() <= atol
        bad = (d > max_ulps) & ~near
        assert not bad.any(), (k, int(bad.sum()), int(d.max()))
        total += d.size
        same += int((d == 0).sum())
    assert same / total >= exact_frac, same / total


@pytest.mark.parametrize("suffix", ["", "-bf16"])
@pytest.mark.parametrize("case", ["linear", "linear-raw", "task_arithmetic", "ties", "ties-raw"])
def test_deterministic_methods_match_mergekit(
    lab: Any, tmp_path: Path, case: str, suffix: str
) -> None:
    fts = [f"ft1{suffix}", f"ft2{suffix}"] + (["ft3"] if not suffix else [])
    base = f"base{suffix}"
    w = [1.0, 0.6, 0.3][: len(fts)]
    ids = {i + 1: x for i, x in enumerate(w)}  # mergekit: per non-base model, by input id
    if case.startswith("linear"):
        norm = case == "linear"
        ours = _mgit(lab, tmp_path, fts, method="linear", weights=w, normalize=norm)
        theirs = _mergekit(lab, fts, "linear", {"weight": w, "normalize": norm}, None)
    elif case == "task_arithmetic":
        ours = _mgit(lab, tmp_path, fts, method="task-arithmetic", base=base, weights=w, lam=0.7)
        theirs = _mergekit(lab, [base, *fts], "task_arithmetic", {"weight": ids, "lambda": 0.7}, 0)
    else:
        norm = case == "ties"
        dens = [0.5, 0.3, 0.7][: len(fts)]
        ours = _mgit(
            lab,
            tmp_path,
            fts,
            method="ties",
            base=base,
            weights=w,
            density=dens,
            lam=0.9,
            normalize=norm,
        )
        theirs = _mergekit(
            lab,
            [base, *fts],
            "ties",
            {
                "weight": ids,
                "density": {i + 1: d for i, d in enumerate(dens)},
                "lambda": 0.9,
                "normalize": norm,
            },
            0,
        )
    if case.startswith("ties") and suffix:
        # bf16 task vectors repeat magnitudes: ties at the trimming threshold, which mergekit
        # breaks in argsort order and mgit by lowest index; and weighted sums that cancel
        # exactly (τ₁ = -0.6 τ₂), where mergekit elects + and mgit no sign. Elsewhere: the same.
        ties = _threshold_ties(lab, base, fts, dens, w)
        for k in ours:
            far = _ulps(ours[k].reshape(-1), theirs[k].reshape(-1)) > 1
            assert not (far & ~ties[k]).any(), k
            ours[k] = torch.where(
                torch.from_numpy(ties[k]).reshape(ours[k].shape), theirs[k], ours[k]
            )
    # float64 in both, then one rounding. The results lie within one ulp; where the exact value
    # is a midpoint of the output type, float64 noise (mergekit's fused multiply-adds, mgit's
    # separate products) picks the side: bf16 inputs with weights like 0.6 put many results on
    # bf16 midpoints.
    _assert_close(ours, theirs, max_ulps=1, exact_frac=0.95 if suffix else 0.995)


def _threshold_ties(
    lab: Any, base: str, fts: list[str], dens: list[float], w: list[float]
) -> dict[str, np.ndarray]:
    """Per tensor: where some task vector's magnitude equals its trimming threshold (as float32),
    or the weighted task vectors cancel (about 0 in float64)."""
    b = _sd(lab, base)
    out: dict[str, np.ndarray] = {}
    for k, v in b.items():
        hit = np.zeros(v.numel(), dtype=bool)
        total = np.zeros(v.numel())
        for f, d, wi in zip(fts, dens, w):
            tv = (_sd(lab, f)[k].double() - v.double()).reshape(-1).numpy()
            mag = np.abs(tv)
            total += wi * tv
            kk = int(d * mag.size)
            if 0 < kk < mag.size:
                thr = np.partition(mag, mag.size - kk)[mag.size - kk]
                # mergekit ranks the magnitudes as float32 (distinct float64 ones can tie there)
                hit |= mag.astype(np.float32) == np.float32(thr)
        out[k] = hit | (np.abs(total) < 1e-12)
    return out


def test_ties_trims_like_mergekit(lab: Any, tmp_path: Path) -> None:
    """One task vector, density 0.25, λ 1: the result is base + the trimmed task vector, and
    exactly the same entries are kept by both."""
    ours = _mgit(
        lab, tmp_path, ["ft1", "ft2"], method="ties", base="base", density=0.25, weights=[1.0, 0.0]
    )
    theirs = _mergekit(
        lab,
        ["base", "ft1", "ft2"],
        "ties",
        {"weight": {1: 1.0, 2: 0.0}, "density": 0.25, "normalize": True},
        0,
    )
    base = _sd(lab, "base")
    for k in ours:
        if not ours[k].is_floating_point():
            continue
        kept_ours = ours[k] != base[k]
        kept_theirs = theirs[k] != base[k]
        assert torch.equal(kept_ours, kept_theirs), k
        frac = kept_ours.double().mean().item()
        assert abs(frac - 0.25) < 0.01 or ours[k].numel() < 400, (k, frac)


@pytest.mark.parametrize("suffix", ["", "-bf16"])
@pytest.mark.parametrize("t", [0.0, 0.35, 1.0])
def test_slerp_matches_mergekit(lab: Any, tmp_path: Path, t: float, suffix: str) -> None:
    a, b = (f"ft1{suffix}", f"ft2{suffix}") if suffix else ("ft1", "ft3")
    ours = _mgit(lab, tmp_path, [a, b], method="slerp", t=t)
    theirs = _mergekit(lab, [a, b], "slerp", {"t": t}, 0)
    _assert_close(ours, theirs, max_ulps=1, exact_frac=0.999)


def _dare_stats(
    out: dict[str, Any], base: dict[str, Any], tv: dict[str, Any], d: float
) -> tuple[float, float]:
    """For a merge of one task vector: the fraction of its entries dropped, and the median of
    (result - base) / τ over the kept ones (the rescale)."""
    dropped = n = 0
    ratios = []
    for k, v in out.items():
        if not v.is_floating_point() or v.numel() < 1000:
            continue
        delta = v.double() - base[k].double()
        t = tv[k]
        nz = t != 0
        kept = (delta != 0) & nz
        dropped += int((~kept & nz).sum())
        n += int(nz.sum())
        ratios.append((delta[kept] / t[kept]).numpy())
    return dropped / n, float(np.median(np.concatenate(ratios)))


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
@pytest.mark.parametrize("density", [0.3, 0.7])
def test_dare_drop_and_rescale_statistics_match_mergekit(
    lab: Any, tmp_path: Path, method: str, density: float
) -> None:
    torch.manual_seed(1)
    base = _sd(lab, "base")
    ft = _sd(lab, "ft1")
    tv = {k: ft[k].double() - base[k].double() for k in ft}
    ours = _mgit(
        lab,
        tmp_path,
        ["ft1", "ft1"],
        method=method.replace("_", "-"),
        base="base",
        density=density,
        weights=[1.0, 0.0],
        normalize=False,
        seed=3,
    )
    theirs = _mergekit(
        lab, ["base", "ft1"], method, {"weight": 1.0, "density": density, "normalize": False}, 0
    )
    drop_o, scale_o = _dare_stats(ours, base, tv, density)
    drop_t, scale_t = _dare_stats(theirs, base, tv, density)
    assert abs(drop_o - (1 - density)) < 0.01 and abs(drop_t - (1 - density)) < 0.01, (
        drop_o,
        drop_t,
    )
    assert abs(scale_o - 1 / density) < 1e-3 * (
        1 / density
    )  # exactly 1/density, up to fp32 rounding
    assert abs(scale_t - 1 / density) < 0.05 * (
        1 / density
    )  # mergekit: |τ|₁ / |kept τ|₁, about 1/density


def test_dare_ties_sign_election_matches_mergekit(lab: Any, tmp_path: Path) -> None:
    """Two task vectors of opposite signs everywhere, the first dominant (|w₁τ₁| > |w₂τ₂|): where
    the first is kept the elected sign is its sign; where only the second is, the second's. Both
    implementations elect the same signs in the same proportions: about d and (1 - d) d."""
    d = 0.4
    base = _sd(lab, "base")
    gen = torch.Generator().manual_seed(7)
    pos, neg = {}, {}
    for k, v in base.items():
        mag = 0.01 + 0.02 * torch.rand(v.shape, generator=gen)
        sign = torch.where(torch.rand(v.shape, generator=gen) < 0.5, -1.0, 1.0)
        pos[k], neg[k] = v + 2 * mag * sign, v - mag * sign
    names = []
    for nm, sd in (("pos", pos), ("neg", neg)):
        folder = tmp_path / nm
        folder.mkdir()
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
        lab.import_folder(folder, model=f"{nm}-{tmp_path.name}", message=nm, parent="base")
        names.append(f"{nm}-{tmp_path.name}")
    ours = _mgit(
        lab, tmp_path, names, method="dare-ties", base="base", density=d, normalize=True, seed=1
    )
    torch.manual_seed(2)
    theirs = merge_state_dicts(
        [base, pos, neg],
        "dare_ties",
        parameters={"weight": 1.0, "density": d, "normalize": True},
        base=0,
        dtype=torch.float64,
        out_dtype=torch.float32,
    )
    for out in (ours, theirs):
        first = second = none = n = 0
        for k, v in out.items():
            s = torch.sign(pos[k].double() - base[k].double())
            delta = torch.sign(v.double() - base[k].double())
            first += int((delta == s).sum())
            second += int((delta == -s).sum())
            none += int((delta == 0).sum())
            n += v.numel()
        assert abs(first / n - d) < 0.01, first / n
        assert abs(second / n - (1 - d) * d) < 0.01, second / n
        assert abs(none / n - (1 - d) ** 2) < 0.01, none / n


@pytest.mark.skipif(
    shutil.which("mergekit-yaml", path=str(Path(sys.executable).parent)) is None,
    reason="the mergekit-yaml command is not installed",
)
def test_mergekit_yaml_command_line_ties(lab: Any, tmp_path: Path) -> None:
    """The whole mergekit pipeline (its command line reading the saved model folders) against
    ``mgit merge --config`` with the same YAML (mgit reads mergekit's YAML; models are refs)."""
    root = lab.root_dir
    body = (
        "merge_method: ties\nbase_model: {b}\nmodels:\n"
        "  - model: {f1}\n    parameters:\n      weight: 1.0\n      density: 0.5\n"
        "  - model: {f2}\n    parameters:\n      weight: 0.5\n      density: 0.6\n"
        "parameters:\n  normalize: true\n  lambda: 0.8\n"
    )
    cfg = tmp_path / "mk.yml"
    cfg.write_text(
        body.format(b=root / "base", f1=root / "ft1", f2=root / "ft2")
        + "dtype: float64\nout_dtype: float32\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    exe = str(Path(sys.executable).parent / "mergekit-yaml")
    subprocess.run(
        [
            exe,
            str(cfg),
            str(tmp_path / "out"),
            "--no-lazy-unpickle",
            "--no-copy-tokenizer",
            "--device",
            "cpu",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    theirs = load_file(str(tmp_path / "out" / "model.safetensors"))
    lab.merge(model="mk-yaml", message="m", config=body.format(b="base", f1="ft1", f2="ft2"))
    lab.export("mk-yaml", tmp_path / "ours")
    ours = load_file(str(tmp_path / "ours" / "model.safetensors"))
    _assert_close(ours, theirs, max_ulps=1, exact_frac=0.9999)
