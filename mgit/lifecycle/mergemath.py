"""The merge methods on one tensor: pure float64 numpy functions (formulas from the papers).

- linear: ``Σ wᵢ xᵢ`` (``/ Σ wᵢ`` when normalized).
- slerp (Shoemake 1985): spherical interpolation of the flattened tensors, linear when nearly
  colinear.
- task arithmetic (Ilharco et al. 2023): ``base + λ Σ wᵢ (xᵢ − base)``.
- TIES (Yadav et al. 2023): trim each task vector to its top ``density`` fraction by magnitude,
  elect the sign of the summed (weighted) trimmed values, average the entries that agree with it
  (disjoint mean), ``base + λ · merged``.
- DARE (Yu et al. 2024): drop each task-vector entry with probability ``1 − density`` and scale
  the kept ones by ``1 / density``; then a weighted sum (dare-linear) or TIES' election and
  disjoint merge (dare-ties).

Randomness comes from :func:`rng_for`: a Philox generator keyed by a hash of (seed, file, tensor
name, input index), so a tensor's drop mask depends on nothing else (order, threads).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "linear", "slerp", "task_arithmetic", "trim_top", "ties_merge", "dare_drop", "rng_for",
    "SLERP_COLINEAR",
]

#: |cos| above which slerp interpolates linearly (the sphere arc is numerically a line).
SLERP_COLINEAR = 0.9995


def rng_for(seed: int, file: str, name: str, index: int) -> np.random.Generator:
    """A counter-based generator for input ``index`` of tensor ``file:name`` under ``seed``."""
    import numpy as np

    h = hashlib.blake2b(f"{int(seed)}\0{file}\0{name}\0{int(index)}".encode(), digest_size=16).digest()
    return np.random.Generator(np.random.Philox(key=int.from_bytes(h, "little")))


def linear(xs: Sequence[np.ndarray], weights: Sequence[float], normalize: bool) -> np.ndarray:
    """``Σ wᵢ xᵢ``, divided by ``Σ wᵢ`` when ``normalize``."""
    out = xs[0] * float(weights[0])
    for x, w in zip(xs[1:], weights[1:]):
        out += x * float(w)
    if normalize:
        s = float(sum(float(w) for w in weights))
        if s != 0.0:
            out /= s
    return out


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1) on the flattened tensors; the
    angle from the normalized vectors, applied to the originals; linear when either is zero or
    they are nearly colinear (``|cos| > SLERP_COLINEAR``)."""
    import numpy as np

    t = float(t)
    fa, fb = a.reshape(-1), b.reshape(-1)
    na, nb = float(np.linalg.norm(fa)), float(np.linalg.norm(fb))
    lerp = (1.0 - t) * a + t * b
    if na == 0.0 or nb == 0.0 or not (np.isfinite(na) and np.isfinite(nb)):
        return lerp
    dot = float(np.dot(fa / na, fb / nb))
    if abs(dot) > SLERP_COLINEAR:
        return lerp
    theta0 = float(np.arccos(np.clip(dot, -1.0, 1.0)))
    s0 = float(np.sin(theta0 * (1.0 - t)) / np.sin(theta0))
    s1 = float(np.sin(theta0 * t) / np.sin(theta0))
    return s0 * a + s1 * b


def task_arithmetic(base: np.ndarray, xs: Sequence[np.ndarray], weights: Sequence[float], lam: float,
                    normalize: bool = False) -> np.ndarray:
    """``base + λ Σ wᵢ (xᵢ − base)`` (the sum divided by ``Σ wᵢ`` when ``normalize``)."""
    return base + float(lam) * linear([x - base for x in xs], weights, normalize)


def trim_top(tv: np.ndarray, density: float, *, inplace: bool = False) -> np.ndarray:
    """``tv`` with all but its ``k = floor(density · n)`` largest-magnitude entries zeroed; among
    equal magnitudes at the threshold, the lower flat indices are kept (deterministic)."""
    import numpy as np

    out = tv if inplace else tv.copy()
    flat = out.reshape(-1)
    n = flat.size
    k = int(float(density) * n)
    if k >= n:
        return out
    if k <= 0:
        flat[:] = 0
        return out
    mag = np.abs(flat)
    thr = np.partition(mag, n - k)[n - k]
    keep = mag > thr
    room = k - int(keep.sum())
    if room > 0:
        at = np.flatnonzero(mag == thr)[:room]
        keep[at] = True
    del mag
    flat[~keep] = 0
    return out


def ties_merge(tvs: Sequence[np.ndarray], weights: Sequence[float], normalize: bool = True) -> np.ndarray:
    """TIES' sign election and disjoint merge of (already trimmed or dropped) task vectors:
    ``γ = sign(Σ wᵢ τᵢ)``; an entry of input i agrees when ``sign(wᵢ τᵢ) = γ ≠ 0``;
    ``merged = Σ agreeing wᵢ τᵢ``, divided (``normalize``) by ``Σ agreeing wᵢ`` (the disjoint
    mean; 1 where none agrees)."""
    import numpy as np

    elected = np.zeros_like(tvs[0])
    for tv, w in zip(tvs, weights):
        elected += tv * float(w)
    np.sign(elected, out=elected)
    merged = np.zeros_like(tvs[0])
    div = np.zeros_like(tvs[0]) if normalize else None
    for tv, w in zip(tvs, weights):
        wtv = tv * float(w)
        agree = np.sign(wtv) == elected
        agree &= elected != 0
        np.add(merged, wtv, out=merged, where=agree)
        del wtv
        if div is not None:
            np.add(div, float(w), out=div, where=agree)
    if div is None:
        return merged
    div[np.abs(div) < 1e-12] = 1.0
    merged /= div
    return merged


def dare_drop(tv: np.ndarray, density: float, rng: np.random.Generator, *, inplace: bool = False) -> np.ndarray:
    """Keep each entry with probability ``density`` (``rng.random() < density``), scaled by
    ``1 / density``; zero the rest."""
    d = float(density)
    out = tv if inplace else tv.copy()
    if d >= 1.0:
        return out
    if d <= 0.0:
        out[...] = 0
        return out
    keep = rng.random(tv.shape) < d
    out /= d
    out[~keep] = 0
    return out
