"""Effective rank of a 2-D difference ``D = b - a``: exact, or by a randomized sketch whose
error is bounded and reported.

Definitions (singular values ``s_1 >= s_2 >= ...`` of ``D``, ``m x n``, ``r = min(m, n)``):

- ``effective``: the numerical rank, the number of ``s_i > rtol * s_1`` (``rtol`` = 0.01 by
  default). A merged LoRA of rank k gives k; a full finetune gives a large number.
- ``energy99``: the smallest k with ``s_1^2 + ... + s_k^2 >= 0.99 * ||D||_F^2``.

Rows of ``D`` that are all zero (the rows of an embedding that a finetune never touched) are
dropped first: they do not change the singular values. Then, with ``r`` counted on what is
left:

- **Exact** when ``r <= EXACT_MAX_DIM`` (512) or ``m * n * r <= EXACT_CHEAP_MACS`` (5e8):
  the eigenvalues of the Gram matrix ``D^T D`` (or ``D D^T``), accumulated in float64 block by
  block. Every matrix of BERT-base and MiniLM is exact, and so is an embedding of which a
  finetune changed a few hundred rows. For ``r <= 512`` this costs no more than a sketch that
  could tell ranks of a few hundred apart.
- **Randomized** above that: a randomized range finder (Halko, Martinsson and Tropp 2011,
  algorithms 4.1 and 4.4) with ``k`` Gaussian columns and ``q`` power iterations gives an
  orthonormal ``Q`` (``max(m, n) x k``) and the singular values ``t_1 >= ... >= t_k`` of
  ``B = Q^T D``. With the energy the sketch missed, ``E = ||D||_F^2 - ||B||_F^2``, Weyl's
  inequalities on ``D^T D = B^T B + R^T R`` (``R = D - Q B``) bound every true singular
  value, whatever the random draw: ``t_i <= s_i <= sqrt(t_i^2 + E)`` for ``i <= k`` and
  ``s_i <= sqrt(E)`` beyond. So the true numerical rank lies in
  ``[effective_min, effective_max]``: ``effective_min`` counts the
  ``t_i > rtol * sqrt(t_1^2 + E)``; for ``effective_max``, as ``sum_i (s_i^2 - t_i^2) <= E``
  (``t_i = 0`` past ``k``), an ``i`` with ``t_i <= rtol * t_1`` passes the threshold only by
  taking ``(rtol * t_1)^2 - t_i^2`` of ``E``: ``effective_max`` is the number of
  ``t_i > rtol * t_1`` plus as many of the others as the smallest such amounts fit in ``E``
  (each ``i`` past ``k`` needing the whole ``(rtol * t_1)^2``). Tries: ``k = 32, q = 0``, then ``q = 1`` with ``k = 32, 64, 128, 256``, until
  the interval is at most ``max(2, effective / 20)`` wide. When the next try would cost as
  much as the exact values (``4 k >= r``), or ``k`` cannot grow, the exact values are
  computed if ``m * n * r <= EXACT_FALLBACK_MACS`` (4e10); else the interval is reported as
  it is (``lower_bound`` when ``effective_max > effective``).

The interval accounts for float rounding too: the sketch's captured energy is computed in
float64 from the float32 difference, and ``E`` is widened by the measured loss of
orthogonality of ``Q`` times ``||D||_F^2``.

The difference is held as one float32 matrix per tensor (the norms and counts are computed
in float64 without it, chunk by chunk).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_RANK_RTOL",
    "ENERGY_FRACTION",
    "EXACT_MAX_DIM",
    "RankEstimate",
    "nonzero_rows",
    "rank_of_delta",
]

#: Relative singular-value threshold of the numerical (``effective``) rank.
DEFAULT_RANK_RTOL = 0.01
#: Energy fraction of the ``energy99`` rank.
ENERGY_FRACTION = 0.99
#: Matrices whose smaller dimension (after dropping zero rows) is at most this are exact.
EXACT_MAX_DIM = 512
#: A sketch that would cost as much as the exact values falls back to them when the Gram matrix
#: costs at most this many multiply-adds (about 2 s on one core).
EXACT_FALLBACK_MACS = 4e10
#: ... and so are the matrices whose exact values cost at most this many multiply-adds.
EXACT_CHEAP_MACS = 5e8
POWER_ITERS = 1
SKETCH_START = 32
MAX_SKETCH = 256
_TOP_SINGULAR_VALUES = 8
_ROW_BLOCK = 4096


def _json_float(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


@dataclass(frozen=True)
class RankEstimate:
    """Effective rank of a 2-D difference (see the module docstring for the definitions).

    Attributes:
        effective: Number of singular values above ``rtol`` times the largest (for a sketch:
            of the sketch's singular values, always within ``[effective_min, effective_max]``).
        energy99: Smallest number of singular values holding 99% of the squared norm.
        lower_bound: True if the true effective rank may be larger than ``effective`` (the
            sketch did not see the end of the spectrum: ``effective_max > effective``).
        method: ``"exact"`` or ``"randomized"``.
        rtol: The relative threshold used for ``effective``.
        sketch: Number of singular values computed (``min(m, n)`` of the nonzero rows when
            exact).
        singular_values: The largest singular values (at most 8), descending.
        effective_min: The true effective rank is at least this (``effective`` when exact).
        effective_max: The true effective rank is at most this (``effective`` when exact).
    """

    effective: int
    energy99: int
    lower_bound: bool
    method: str
    rtol: float
    sketch: int
    singular_values: tuple[float, ...]
    effective_min: int = -1
    effective_max: int = -1

    def __post_init__(self) -> None:
        """Default the interval to the point value."""
        if self.effective_min < 0:
            object.__setattr__(self, "effective_min", self.effective)
        if self.effective_max < 0:
            object.__setattr__(self, "effective_max", self.effective)

    @property
    def error(self) -> int:
        """How far ``effective`` can be from the true effective rank."""
        return max(self.effective - self.effective_min, self.effective_max - self.effective)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (see ``JSON_SCHEMA_DOC``)."""
        d = asdict(self)
        d["singular_values"] = [_json_float(x) for x in self.singular_values]
        return d


def nonzero_rows(d: np.ndarray) -> np.ndarray:
    """``d`` without its all-zero rows (``d`` itself when every row has a nonzero)."""
    keep = np.empty(d.shape[0], dtype=bool)
    for r0 in range(0, d.shape[0], _ROW_BLOCK):
        keep[r0 : r0 + _ROW_BLOCK] = d[r0 : r0 + _ROW_BLOCK].any(axis=1)
    if keep.all():
        return d
    out: np.ndarray = d[keep]
    return out


def _fro2(d: np.ndarray) -> float:
    total = 0.0
    flat = d.reshape(-1)
    step = _ROW_BLOCK * 64
    for s in range(0, flat.size, step):
        x = flat[s : s + step].astype(np.float64)
        total += float(np.dot(x, x))
    return total


def _gram64(d: np.ndarray) -> np.ndarray:
    """``D^T D`` when ``m >= n``, else ``D D^T``, in float64, block by block."""
    m, n = d.shape
    if m >= n:
        g = np.zeros((n, n), dtype=np.float64)
        step = max(1, (1 << 20) // max(1, n))
        for r0 in range(0, m, step):
            x = d[r0 : r0 + step].astype(np.float64)
            g += x.T @ x
    else:
        g = np.zeros((m, m), dtype=np.float64)
        step = max(1, (1 << 20) // max(1, m))
        for c0 in range(0, n, step):
            x = d[:, c0 : c0 + step].astype(np.float64)
            g += x @ x.T
    return g


def _exact_singular_values(d: np.ndarray) -> np.ndarray:
    ev = np.linalg.eigvalsh(_gram64(d))[::-1]
    sv: np.ndarray = np.sqrt(np.clip(ev, 0.0, None))
    return sv


def _orth(y: np.ndarray) -> tuple[np.ndarray, float]:
    """An orthonormal basis of the columns of ``y`` (float64), dropping directions below
    rounding, and how far its columns are from orthonormal (``||Q^T Q - I||_2``)."""
    q = y.astype(np.float64, copy=False)
    for _ in range(2):  # twice, as in CholeskyQR2: the second pass repairs the first's rounding
        w, v = np.linalg.eigh(q.T @ q)
        if w.size == 0 or w[-1] <= 0.0:
            return np.zeros((q.shape[0], 0)), 0.0
        keep = w > w[-1] * 1e-13
        q = q @ (v[:, keep] / np.sqrt(w[keep]))
    off = q.T @ q - np.eye(q.shape[1])
    return q, float(np.linalg.norm(off, 2)) if off.size else 0.0


def _sketch(
    d: np.ndarray, k: int, power_iters: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, float]:
    """Singular values of ``Q^T D`` (descending), its squared Frobenius norm, and the loss of
    orthogonality of ``Q``."""
    m, n = d.shape
    omega = rng.standard_normal((n, k)).astype(np.float32)
    q, _ = _orth(d @ omega)
    for _ in range(power_iters):
        z, _ = _orth(d.T @ q.astype(np.float32))
        q, _ = _orth(d @ z.astype(np.float32))
    q, ortho = _orth(q)
    # B^T = D^T Q in float64, row block by row block (D stays float32 in memory).
    bt = np.zeros((n, q.shape[1]), dtype=np.float64)
    for r0 in range(0, m, _ROW_BLOCK):
        bt += d[r0 : r0 + _ROW_BLOCK].astype(np.float64).T @ q[r0 : r0 + _ROW_BLOCK]
    h = bt.T @ bt
    ev = np.clip(np.linalg.eigvalsh(h)[::-1], 0.0, None)
    return np.sqrt(ev), float(np.trace(h)), ortho


def _interval(t: np.ndarray, miss: float, r: int, rtol: float) -> tuple[int, int, int]:
    """``(effective_min, effective_max, estimate)`` of the numerical rank of a matrix of rank
    at most ``r`` from the singular values ``t`` (descending) of its projection on a subspace
    and the squared norm ``miss`` of the rest (at least the true one).

    With ``s_i >= t_i`` and ``sum_i (s_i^2 - t_i^2) <= miss`` (``t_i = 0`` past the sketch):
    ``s_1 <= sqrt(t_1^2 + miss)``, so every ``t_i > rtol * sqrt(t_1^2 + miss)`` is above the
    threshold (the minimum). The threshold is at least ``tau = rtol * t_1``; an ``i`` with
    ``t_i <= tau`` can only pass it by taking ``tau^2 - t_i^2`` of ``miss``, so at most as many
    of them pass as the smallest such deficits fit in ``miss`` (the maximum).
    """
    if t.size == 0 or t[0] <= 0.0:
        return 0, 0, 0
    t2 = t.astype(np.float64) ** 2
    lo = int(np.count_nonzero(t2 > rtol**2 * (t2[0] + miss)))
    tau2 = rtol**2 * t2[0]
    above = int(np.count_nonzero(t2 > tau2))
    deficits = np.sort(tau2 - t2[t2 <= tau2])  # ascending: the cheapest to lift first
    fits = int(np.searchsorted(np.cumsum(deficits), miss, side="right"))
    extra = fits
    if fits == deficits.size:  # then the values past the sketch (t = 0) need tau^2 each
        left = miss - float(deficits.sum())
        extra += min(r - int(t.size), int(left // tau2) if tau2 > 0 else r)
    hi = min(r, above + extra)
    return lo, hi, above


def _energy_rank(sv: np.ndarray, energy: float) -> tuple[int, bool]:
    cumulative = np.cumsum(sv.astype(np.float64) ** 2)
    reached = np.nonzero(cumulative >= ENERGY_FRACTION * energy * (1 - 1e-12))[0]
    if reached.size:
        return int(reached[0]) + 1, True
    return int(sv.size), False


def _exact_estimate(d: np.ndarray, rtol: float, fro2: float) -> RankEstimate:
    sv = _exact_singular_values(d)
    top = tuple(float(x) for x in sv[:_TOP_SINGULAR_VALUES])
    if sv.size == 0 or sv[0] <= 0.0:
        return RankEstimate(0, 0, False, "exact", rtol, int(sv.size), top)
    effective = int(np.count_nonzero(sv > rtol * sv[0]))
    energy99, _ = _energy_rank(sv, fro2 if fro2 > 0 else float(np.sum(sv**2)))
    return RankEstimate(effective, energy99, False, "exact", rtol, int(sv.size), top)


def rank_of_delta(
    d: np.ndarray,
    *,
    rtol: float = DEFAULT_RANK_RTOL,
    fro2: float | None = None,
    exact_max_dim: int = EXACT_MAX_DIM,
    max_sketch: int = MAX_SKETCH,
    sketch_start: int = SKETCH_START,
    power_iters: int = POWER_ITERS,
    exact_fallback_macs: float = EXACT_FALLBACK_MACS,
    exact_cheap_macs: float = EXACT_CHEAP_MACS,
    seed: int = 0,
) -> RankEstimate:
    """The effective rank of a difference matrix (see the module docstring).

    Args:
        d: The difference ``b - a``, 2-D, float32 or float64, every element finite.
        rtol: Relative singular-value threshold of the numerical rank.
        fro2: ``||D||_F^2`` when already known (the statistics' ``l2_diff`` squared, computed in
            float64 before ``d`` was rounded to float32); else computed from ``d``.
        exact_max_dim: Matrices whose smaller dimension (of the nonzero rows) is at most this
            get exact singular values.
        max_sketch: The most columns the randomized sketch grows to.
        sketch_start: The sketch's first number of columns.
        power_iters: Power iterations of the sketch.
        exact_fallback_macs: A sketch that cannot narrow its interval below a quarter of the
            columns falls back to exact values when they cost at most this.
        exact_cheap_macs: Matrices whose exact values cost at most this many multiply-adds
            (``m * n * min(m, n)``) are exact whatever their size.
        seed: Seed of the Gaussian test matrix (fixed: the same inputs give the same answer).

    Returns:
        The estimate; a zero difference has rank 0.

    Raises:
        ValueError: ``d`` is not 2-D, or too large for float32.
    """
    if d.ndim != 2:
        raise ValueError(f"need a 2-D difference, got shape {d.shape}")
    d = nonzero_rows(d)
    m, n = int(d.shape[0]), int(d.shape[1])
    r = min(m, n)
    if r == 0:
        return RankEstimate(0, 0, False, "exact", rtol, 0, ())
    if fro2 is None:
        fro2 = _fro2(d)
    else:
        # ||b - a||^2 in float64 from the statistics: d holds it rounded to float32, each
        # element within a relative 2^-24, so its own squared norm is within 2^-22 of this.
        fro2 *= 1.0 + 2.0**-22
    if not math.isfinite(fro2) or fro2 > 1e76:
        raise ValueError("the difference is too large for a float32 rank estimate")
    if fro2 <= 0.0:
        return RankEstimate(0, 0, False, "exact", rtol, r, ())
    if r <= exact_max_dim or float(m) * n * r <= exact_cheap_macs:
        return _exact_estimate(d, rtol, fro2)
    if m < n:
        d = d.T  # sketch the column space of the taller side: Q is max(m, n) x k
        m, n = n, m
    rng = np.random.default_rng(seed)
    k, q = max(1, min(sketch_start, max_sketch, r)), 0
    while True:
        t, captured, ortho = _sketch(d, k, q, rng)
        # Missed energy, widened by rounding: Q's loss of orthogonality inflates ||B||_F^2.
        miss = max(fro2 - captured, 0.0) + (ortho + 1e-12) * fro2
        kk = int(t.size)
        lo, hi, point = _interval(t, miss, r, rtol)
        if hi - lo <= max(2, point // 20) or k >= r:
            break
        # The next try: a power iteration, then twice the columns. A sketch of k columns with
        # one power iteration costs about 4 m n k multiply-adds, the exact values m n r.
        nk, nq = (k, power_iters) if q < power_iters else (min(2 * k, max_sketch, r), power_iters)
        if (4 * nk >= r or nk == k and q >= power_iters) and float(
            m
        ) * n * r <= exact_fallback_macs:
            return _exact_estimate(d, rtol, fro2)
        if nk == k and nq == q:
            break
        k, q = nk, nq
    point = min(max(point, lo), hi)
    top = tuple(float(x) for x in t[:_TOP_SINGULAR_VALUES])
    energy99, _ = _energy_rank(t, fro2)
    return RankEstimate(point, energy99, hi > point, "randomized", rtol, kk, top, lo, hi)
