"""Statistics of the difference between two versions of one tensor.

Everything is computed in float64, block by block, so a tensor is never copied whole into
float64: memory stays at the two input arrays plus a block of about a million elements.

Non-finite values (NaN, +-inf) never raise: an element where either side is non-finite is
left out of the norms, the maximum and the cosine, counted in ``nonfinite_a`` /
``nonfinite_b``, and counted as changed unless both sides hold the same value (NaN on both
sides counts as equal). In the rank estimate such an element's difference is taken as 0.

Effective rank of a 2-D difference ``D = b - a`` (``m x n``, singular values
``s_1 >= s_2 >= ...``):

- ``effective``: the numerical rank, the number of singular values with
  ``s_i > rtol * s_1`` (``rtol`` = 0.01 by default). A merged LoRA of rank r gives r (as long
  as rounding noise of the stored dtype stays below 1% of ``s_1``); a full finetune gives a
  large number.
- ``energy99``: the smallest k with ``s_1^2 + ... + s_k^2 >= 0.99 * ||D||_F^2``.

The singular values are exact (eigenvalues of the Gram matrix ``D^T D`` or ``D D^T``,
accumulated in float64 over blocks) when ``m * n * min(m, n)`` is within a flop budget, and
otherwise estimated by a randomized range finder (Halko, Martinsson and Tropp 2011) with a
sketch of ``l`` columns (at most 64, fewer for huge matrices so the cost stays bounded: about
``8 * m * n * l <= 4e10`` flops) and one power iteration. The exact path is taken when
``m * n * min(m, n) <= 2e9`` (every matrix of BERT-base; a 30522 x 384 embedding goes
randomized). When every one of the ``l`` estimated values passes the threshold, the true
rank is at least the reported one and ``lower_bound`` is true.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "RankEstimate",
    "TensorStats",
    "DEFAULT_RANK_RTOL",
    "compute_stats",
    "estimate_rank",
]

#: Relative singular-value threshold of the numerical (``effective``) rank.
DEFAULT_RANK_RTOL = 0.01
#: Energy fraction of the ``energy99`` rank.
ENERGY_FRACTION = 0.99

_BLOCK_ELEMS = 1 << 20
_EXACT_FLOP_BUDGET = 2e9
_RANDOMIZED_FLOP_BUDGET = 4e10
_POWER_ITERS = 1
_MAX_SKETCH = 64
_MIN_SKETCH = 8
_TOP_SINGULAR_VALUES = 8


@dataclass(frozen=True)
class RankEstimate:
    """Effective rank of a 2-D difference (see the module docstring for the definitions).

    Attributes:
        effective: Number of singular values above ``rtol`` times the largest.
        energy99: Smallest number of singular values holding 99% of the squared norm.
        lower_bound: True if the sketch was too small to see the end of the spectrum, so
            the true values are at least the reported ones.
        method: ``"exact"`` or ``"randomized"``.
        rtol: The relative threshold used for ``effective``.
        sketch: Number of singular values computed (``min(m, n)`` when exact).
        singular_values: The largest singular values (at most 8), descending.
    """

    effective: int
    energy99: int
    lower_bound: bool
    method: str
    rtol: float
    sketch: int
    singular_values: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (see ``JSON_SCHEMA_DOC``)."""
        d = asdict(self)
        d["singular_values"] = [_json_float(x) for x in self.singular_values]
        return d


@dataclass(frozen=True)
class TensorStats:
    """How much one tensor changed between two versions.

    Attributes:
        numel: Number of elements compared.
        l2_a: L2 (Frobenius) norm of a, over finite pairs.
        l2_b: L2 norm of b, over finite pairs.
        l2_diff: L2 norm of ``b - a``.
        relative_change: ``l2_diff / l2_a``; ``None`` when ``l2_a`` is 0.
        max_abs_diff: Largest ``|b - a|``.
        mean_abs_diff: Mean of ``|b - a|`` over finite pairs.
        changed: Number of elements whose values differ.
        fraction_changed: ``changed / numel``.
        cosine_similarity: ``<a, b> / (|a| |b|)``; ``None`` when either norm is 0.
        nonfinite_a: Elements of a that are NaN or infinite.
        nonfinite_b: Elements of b that are NaN or infinite.
        overlap: True when a and b had different shapes and these statistics cover only
            their common leading region (``a[:m, :n]`` vs ``b[:m, :n]``).
        rank: Effective rank of the difference for 2-D float tensors, else ``None``.
        raw_codes_compared: True when one side's values are integer quantization codes whose
            scales were not recognised, compared with the other side's floats: the norms say
            how the stored numbers differ, not how the weights changed (``relative_change`` and
            ``cosine_similarity`` are then ``None``).
    """

    numel: int
    l2_a: float
    l2_b: float
    l2_diff: float
    relative_change: float | None
    max_abs_diff: float
    mean_abs_diff: float
    changed: int
    fraction_changed: float
    cosine_similarity: float | None
    nonfinite_a: int
    nonfinite_b: int
    overlap: bool = False
    rank: RankEstimate | None = None
    raw_codes_compared: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict: non-finite floats become ``null``."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key == "rank":
                continue
            out[key] = _json_float(value) if isinstance(value, float) else value
        out["rank"] = self.rank.to_json() if self.rank is not None else None
        return out


def _json_float(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def _flat_blocks(a: np.ndarray, b: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield matching float64 blocks of the flattened arrays."""
    fa = a.reshape(-1)
    fb = b.reshape(-1)
    for start in range(0, fa.size, _BLOCK_ELEMS):
        stop = min(start + _BLOCK_ELEMS, fa.size)
        yield (
            np.asarray(fa[start:stop], dtype=np.float64),
            np.asarray(fb[start:stop], dtype=np.float64),
        )


def compute_stats(
    a: np.ndarray,
    b: np.ndarray,
    *,
    rank: bool = True,
    rank_rtol: float = DEFAULT_RANK_RTOL,
    overlap: bool = False,
    is_float: bool = True,
) -> TensorStats:
    """Compare two arrays of the same shape.

    Args:
        a: The first version (any numeric dtype, including ``ml_dtypes`` ones).
        b: The second version, same shape as ``a`` (the dtype may differ).
        rank: Whether to estimate the effective rank of a 2-D difference.
        rank_rtol: Relative threshold of the numerical rank.
        overlap: Recorded in the result: the arrays are the common region of tensors of
            different shapes.
        is_float: Whether the tensors are floating point (the rank is only estimated for
            float tensors).

    Returns:
        The statistics.

    Raises:
        ValueError: The shapes differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    numel = int(a.size)
    ss_a = ss_b = ss_d = dot = sum_abs = 0.0
    max_abs = 0.0
    changed = nonfinite_a = nonfinite_b = finite_pairs = 0
    with np.errstate(all="ignore"):
        for xa, xb in _flat_blocks(a, b):
            fin_a = np.isfinite(xa)
            fin_b = np.isfinite(xb)
            both = fin_a & fin_b
            n_both = int(np.count_nonzero(both))
            finite_pairs += n_both
            if n_both != xa.size:
                nonfinite_a += int(xa.size - np.count_nonzero(fin_a))
                nonfinite_b += int(xb.size - np.count_nonzero(fin_b))
                same = (xa == xb) | (np.isnan(xa) & np.isnan(xb))
                changed += int(xa.size - np.count_nonzero(same))
                xa = np.where(both, xa, 0.0)
                xb = np.where(both, xb, 0.0)
                d = xb - xa
            else:
                d = xb - xa
                changed += int(np.count_nonzero(d))
            ss_a += float(np.dot(xa, xa))
            ss_b += float(np.dot(xb, xb))
            ss_d += float(np.dot(d, d))
            dot += float(np.dot(xa, xb))
            ad = np.abs(d)
            sum_abs += float(ad.sum())
            if ad.size:
                max_abs = max(max_abs, float(ad.max()))
    l2_a, l2_b, l2_d = math.sqrt(ss_a), math.sqrt(ss_b), math.sqrt(ss_d)
    rel = l2_d / l2_a if l2_a > 0 and math.isfinite(l2_a) else None
    cos = None
    if l2_a > 0 and l2_b > 0 and math.isfinite(l2_a * l2_b):
        cos = max(-1.0, min(1.0, dot / (l2_a * l2_b)))
    est = None
    if rank and is_float and a.ndim == 2 and min(a.shape) >= 2:
        est = estimate_rank(a, b, rtol=rank_rtol, fro2=ss_d)
    return TensorStats(
        numel=numel,
        l2_a=l2_a,
        l2_b=l2_b,
        l2_diff=l2_d,
        relative_change=rel,
        max_abs_diff=max_abs,
        mean_abs_diff=(sum_abs / finite_pairs) if finite_pairs else 0.0,
        changed=changed,
        fraction_changed=(changed / numel) if numel else 0.0,
        cosine_similarity=cos,
        nonfinite_a=nonfinite_a,
        nonfinite_b=nonfinite_b,
        overlap=overlap,
        rank=est,
    )


class _Delta:
    """``D = b - a`` for 2-D arrays, produced in blocks along the longer dimension."""

    def __init__(self, a: np.ndarray, b: np.ndarray, dtype: type = np.float64) -> None:
        self.a = a
        self.b = b
        self.m, self.n = (int(a.shape[0]), int(a.shape[1]))
        self.dtype = dtype

    def _block(self, sl: tuple[slice, slice]) -> np.ndarray:
        with np.errstate(all="ignore"):
            d = np.asarray(self.b[sl], dtype=np.float64) - np.asarray(self.a[sl], dtype=np.float64)
            if not np.isfinite(d).all():
                d = np.where(np.isfinite(d), d, 0.0)
        return d.astype(self.dtype, copy=False)

    def row_blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        step = max(1, _BLOCK_ELEMS // max(1, self.n))
        for r0 in range(0, self.m, step):
            r1 = min(self.m, r0 + step)
            yield r0, r1, self._block((slice(r0, r1), slice(None)))

    def col_blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        step = max(1, _BLOCK_ELEMS // max(1, self.m))
        for c0 in range(0, self.n, step):
            c1 = min(self.n, c0 + step)
            yield c0, c1, self._block((slice(None), slice(c0, c1)))

    def gram(self) -> np.ndarray:
        """``D^T D`` (n x n) when m >= n, else ``D D^T`` (m x m)."""
        if self.m >= self.n:
            g: np.ndarray = np.zeros((self.n, self.n), dtype=self.dtype)
            for _, _, d in self.row_blocks():
                g += d.T @ d
        else:
            g = np.zeros((self.m, self.m), dtype=self.dtype)
            for _, _, d in self.col_blocks():
                g += d @ d.T
        return g

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """``D @ x`` for x of shape (n, k)."""
        out: np.ndarray = np.empty((self.m, x.shape[1]), dtype=self.dtype)
        for r0, r1, d in self.row_blocks():
            out[r0:r1] = d @ x
        return out

    def rmatmul(self, y: np.ndarray) -> np.ndarray:
        """``D^T @ y`` for y of shape (m, k)."""
        out: np.ndarray = np.zeros((self.n, y.shape[1]), dtype=self.dtype)
        for r0, r1, d in self.row_blocks():
            out += d.T @ y[r0:r1]
        return out


def _singular_values_exact(delta: _Delta) -> np.ndarray:
    g = delta.gram()
    ev = np.linalg.eigvalsh(g)[::-1]
    sv: np.ndarray = np.sqrt(np.clip(ev, 0.0, None))
    return sv


def _singular_values_randomized(delta: _Delta, sketch: int, power_iters: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    omega: np.ndarray = rng.standard_normal((delta.n, sketch)).astype(delta.dtype)
    q, _ = np.linalg.qr(delta.matmul(omega))
    for _ in range(power_iters):
        z, _ = np.linalg.qr(delta.rmatmul(q))
        q, _ = np.linalg.qr(delta.matmul(z))
    bt = delta.rmatmul(q)  # (Q^T D)^T, n x sketch
    sv: np.ndarray = np.linalg.svd(bt, compute_uv=False)
    return sv


def estimate_rank(
    a: np.ndarray,
    b: np.ndarray,
    *,
    rtol: float = DEFAULT_RANK_RTOL,
    fro2: float | None = None,
    exact_flop_budget: float = _EXACT_FLOP_BUDGET,
    max_sketch: int = _MAX_SKETCH,
) -> RankEstimate:
    """Estimate the effective rank of ``b - a`` for 2-D arrays of the same shape.

    Args:
        a: The first version, 2-D.
        b: The second version, same shape.
        rtol: Relative singular-value threshold of the numerical rank.
        fro2: The squared Frobenius norm of the difference over finite elements, if already
            known (it is the total energy for ``energy99``).
        exact_flop_budget: Largest ``m * n * min(m, n)`` computed exactly; bigger matrices
            use the randomized estimate.
        max_sketch: Largest number of singular values the randomized estimate computes.

    Returns:
        The estimate. A zero difference has rank 0.

    Raises:
        ValueError: The arrays are not 2-D of the same shape.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two 2-D arrays of one shape, got {a.shape} and {b.shape}")
    m, n = int(a.shape[0]), int(a.shape[1])
    r = min(m, n)
    cost = float(m) * float(n) * float(r)
    if cost <= exact_flop_budget:
        sv = _singular_values_exact(_Delta(a, b, np.float64))
        method, lower_bound_possible = "exact", False
    else:
        power_iters = _POWER_ITERS
        per_column = float(m) * float(n) * 2.0 * (2 * power_iters + 2)
        sketch = int(min(max_sketch, r, max(_MIN_SKETCH, _RANDOMIZED_FLOP_BUDGET // per_column)))
        sv = _singular_values_randomized(_Delta(a, b, np.float32), sketch, power_iters)
        sv = np.sort(sv.astype(np.float64))[::-1]
        method, lower_bound_possible = "randomized", sketch < r
    sketch_len = int(sv.size)
    energy = float(fro2) if fro2 is not None else float(np.sum(sv**2))
    top = tuple(float(x) for x in sv[:_TOP_SINGULAR_VALUES])
    if sketch_len == 0 or sv[0] <= 0.0 or energy <= 0.0:
        return RankEstimate(0, 0, False, method, rtol, sketch_len, top)
    effective = int(np.count_nonzero(sv > rtol * sv[0]))
    cumulative = np.cumsum(sv**2)
    reached = np.nonzero(cumulative >= ENERGY_FRACTION * energy * (1 - 1e-12))[0]
    energy99 = int(reached[0]) + 1 if reached.size else sketch_len
    lower_bound = lower_bound_possible and (effective == sketch_len or reached.size == 0)
    return RankEstimate(effective, energy99, lower_bound, method, rtol, sketch_len, top)
