"""Statistics of the difference between two versions of one tensor.

Everything is computed in float64, block by block (:class:`StatsAccumulator`), so a tensor is
never copied whole into float64: memory stays at the input blocks plus a few float64 blocks of
64 Ki elements (which stay in the CPU's cache). Blocks can be fed in any grouping (one chunk
of a stored tensor at a time, from several threads, merged in order afterwards) and give the
same numbers as the whole arrays up to the order of float64 additions.

Non-finite values (NaN, +-inf) never raise: an element where either side is non-finite is
left out of the norms, the maximum and the cosine, counted in ``nonfinite_a`` /
``nonfinite_b``, and counted as changed unless both sides hold the same value (NaN on both
sides counts as equal). In the rank estimate such an element's difference is taken as 0.

The effective rank of a 2-D difference is :func:`mgit.diff.rank.rank_of_delta` (exact when
the smaller dimension is at most 512, else a randomized sketch with a reported error bound).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mgit.diff.rank import (
    DEFAULT_RANK_RTOL,
    EXACT_CHEAP_MACS,
    EXACT_FALLBACK_MACS,
    EXACT_MAX_DIM,
    MAX_SKETCH,
    RankEstimate,
    rank_of_delta,
)

__all__ = [
    "DEFAULT_RANK_RTOL",
    "RankEstimate",
    "StatsAccumulator",
    "TensorStats",
    "as_float_blocks",
    "compute_stats",
    "estimate_rank",
    "wants_rank",
]

#: Elements per float64 block: 512 KiB per array, so a block's temporaries stay in cache.
BLOCK_ELEMS = 1 << 16


def _native() -> Any:
    """The one-pass C kernel (setup.py builds it when a compiler is there), or ``None``: not
    built, or ``MGIT_NO_NATIVE=1`` (the numpy code below then runs, as for the codecs)."""
    if os.environ.get("MGIT_NO_NATIVE", "") not in ("", "0"):
        return None
    try:
        from mgit import _diffstats
    except ImportError:  # pragma: no cover - depends on the build
        return None
    return _diffstats


#: :mod:`mgit._diffstats`, or ``None``. Tests may set it to ``None`` to force numpy.
_C = _native()


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


def as_float_blocks(x: np.ndarray) -> np.ndarray:
    """A 1-D array's values as float32 or float64 (bfloat16 widened exactly by a bit shift,
    integers and other floats cast to float64); float32 and float64 arrays are returned as
    they are."""
    dt = x.dtype
    if dt == np.float32 or dt == np.float64:
        return x
    if dt.name == "bfloat16":
        out: np.ndarray = (x.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        return out
    if dt == np.float16:
        return x.astype(np.float32)
    return x.astype(np.float64)


def _c_code(dt: np.dtype[Any]) -> str:
    """The element code of :mod:`mgit._diffstats` for a dtype (``""``: not handled there)."""
    if dt == np.float32:
        return "f"
    if dt == np.float64:
        return "d"
    if dt.name == "bfloat16":
        return "b"
    return ""


def _c_out(d_out: np.ndarray) -> np.ndarray:
    if not d_out.flags.c_contiguous or not d_out.flags.writeable:
        raise ValueError("d_out must be a writable contiguous float32 array")
    return d_out


class StatsAccumulator:
    """Running sums of :class:`TensorStats` over blocks of two flattened arrays.

    Feed matching 1-D pieces with :meth:`add` (or :meth:`add_same` for a piece known to be
    byte-identical on both sides), combine accumulators of consecutive pieces with
    :meth:`merge`, and read the statistics with :meth:`result`.
    """

    __slots__ = (
        "changed",
        "dot",
        "finite_pairs",
        "max_abs",
        "nonfinite_a",
        "nonfinite_b",
        "numel",
        "ss_a",
        "ss_b",
        "ss_d",
        "sum_abs",
    )  # fmt: skip

    def __init__(self) -> None:
        """Start from zero elements."""
        self.numel = 0
        self.ss_a = self.ss_b = self.ss_d = self.dot = self.sum_abs = self.max_abs = 0.0
        self.changed = self.nonfinite_a = self.nonfinite_b = self.finite_pairs = 0

    def add(self, xa: np.ndarray, xb: np.ndarray, d_out: np.ndarray | None = None) -> None:
        """Add one piece: matching 1-D arrays of any numeric dtypes.

        Args:
            xa: The piece of a.
            xb: The same elements of b.
            d_out: If given, a 1-D float array of the same length that receives ``b - a``
                (0 where either side is not finite), for the rank estimate.
        """
        if xa.shape != xb.shape:
            raise ValueError(f"shapes differ: {xa.shape} vs {xb.shape}")
        self.numel += int(xa.size)
        ca, cb = _c_code(xa.dtype), _c_code(xb.dtype)
        if _C is not None and ca and cb and (d_out is None or d_out.dtype == np.float32):
            self._add_sums(
                _C.pair_stats(
                    np.ascontiguousarray(xa), ca, np.ascontiguousarray(xb), cb,
                    None if d_out is None else _c_out(d_out),
                )
            )  # fmt: skip
            return
        for s in range(0, xa.size, BLOCK_ELEMS):
            e = s + BLOCK_ELEMS
            a = as_float_blocks(xa[s:e]).astype(np.float64)
            b = as_float_blocks(xb[s:e]).astype(np.float64)
            self._add_block(a, b, None if d_out is None else d_out[s:e])

    def _add_sums(
        self, t: tuple[float, float, float, float, float, float, int, int, int, int]
    ) -> None:
        self.ss_a += t[0]
        self.ss_b += t[1]
        self.ss_d += t[2]
        self.dot += t[3]
        self.sum_abs += t[4]
        self.max_abs = max(self.max_abs, t[5])
        self.changed += t[6]
        self.nonfinite_a += t[7]
        self.nonfinite_b += t[8]
        self.finite_pairs += t[9]

    def _add_block(self, a: np.ndarray, b: np.ndarray, d_out: np.ndarray | None) -> None:
        with np.errstate(all="ignore"):
            ss_a = float(np.dot(a, a))
            ss_b = float(np.dot(b, b))
            # A finite sum of squares means every element is finite (NaN and inf propagate):
            # the masks below are only needed for the rare block that holds one.
            if not (math.isfinite(ss_a) and math.isfinite(ss_b)):
                self._add_nonfinite(a, b, d_out)
                return
            d = b - a
            if d_out is not None:
                d_out[:] = d
            self.ss_a += ss_a
            self.ss_b += ss_b
            self.ss_d += float(np.dot(d, d))
            self.dot += float(np.dot(a, b))
            self.finite_pairs += int(d.size)
            self.changed += int(np.count_nonzero(d))
            np.abs(d, out=d)
            self.sum_abs += float(d.sum())
            if d.size:
                self.max_abs = max(self.max_abs, float(d.max()))

    def _add_nonfinite(self, a: np.ndarray, b: np.ndarray, d_out: np.ndarray | None) -> None:
        fin_a = np.isfinite(a)
        fin_b = np.isfinite(b)
        both = fin_a & fin_b
        self.finite_pairs += int(np.count_nonzero(both))
        self.nonfinite_a += int(a.size - np.count_nonzero(fin_a))
        self.nonfinite_b += int(b.size - np.count_nonzero(fin_b))
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        self.changed += int(a.size - np.count_nonzero(same))
        a = np.where(both, a, 0.0)
        b = np.where(both, b, 0.0)
        d = b - a
        if d_out is not None:
            d_out[:] = np.where(np.isfinite(d), d, 0.0)
        self.ss_a += float(np.dot(a, a))
        self.ss_b += float(np.dot(b, b))
        self.ss_d += float(np.dot(d, d))
        self.dot += float(np.dot(a, b))
        ad = np.abs(d)
        self.sum_abs += float(ad.sum())
        if ad.size:
            self.max_abs = max(self.max_abs, float(ad.max()))

    def add_same(self, x: np.ndarray, d_out: np.ndarray | None = None) -> None:
        """Add a piece whose bytes are equal on both sides (read once): no element changed.

        Args:
            x: The piece (1-D, any numeric dtype).
            d_out: If given, receives zeros.
        """
        c = _c_code(x.dtype)
        if _C is not None and c and (d_out is None or d_out.dtype == np.float32):
            x = np.ascontiguousarray(x)
            self.numel += int(x.size)
            self._add_sums(_C.pair_stats(x, c, x, c, None if d_out is None else _c_out(d_out)))
            return
        self.numel += int(x.size)
        if d_out is not None:
            d_out[:] = 0.0
        with np.errstate(all="ignore"):
            for s in range(0, x.size, BLOCK_ELEMS):
                v = as_float_blocks(x[s : s + BLOCK_ELEMS]).astype(np.float64)
                ss = float(np.dot(v, v))
                if not math.isfinite(ss):
                    fin = np.isfinite(v)
                    n_fin = int(np.count_nonzero(fin))
                    self.nonfinite_a += int(v.size) - n_fin
                    self.nonfinite_b += int(v.size) - n_fin
                    self.finite_pairs += n_fin
                    v = np.where(fin, v, 0.0)
                    ss = float(np.dot(v, v))
                else:
                    self.finite_pairs += int(v.size)
                self.ss_a += ss
                self.ss_b += ss
                self.dot += ss

    def merge(self, other: StatsAccumulator) -> None:
        """Add the sums of another accumulator (of other elements) to this one."""
        self.numel += other.numel
        self.ss_a += other.ss_a
        self.ss_b += other.ss_b
        self.ss_d += other.ss_d
        self.dot += other.dot
        self.sum_abs += other.sum_abs
        self.max_abs = max(self.max_abs, other.max_abs)
        self.changed += other.changed
        self.nonfinite_a += other.nonfinite_a
        self.nonfinite_b += other.nonfinite_b
        self.finite_pairs += other.finite_pairs

    def result(self, *, overlap: bool = False, rank: RankEstimate | None = None) -> TensorStats:
        """The statistics of every element added."""
        l2_a, l2_b, l2_d = math.sqrt(self.ss_a), math.sqrt(self.ss_b), math.sqrt(self.ss_d)
        rel = l2_d / l2_a if l2_a > 0 and math.isfinite(l2_a) else None
        cos = None
        if l2_a > 0 and l2_b > 0 and math.isfinite(l2_a * l2_b):
            cos = max(-1.0, min(1.0, self.dot / (l2_a * l2_b)))
        n = self.numel
        return TensorStats(
            numel=n,
            l2_a=l2_a,
            l2_b=l2_b,
            l2_diff=l2_d,
            relative_change=rel,
            max_abs_diff=self.max_abs,
            mean_abs_diff=(self.sum_abs / self.finite_pairs) if self.finite_pairs else 0.0,
            changed=self.changed,
            fraction_changed=(self.changed / n) if n else 0.0,
            cosine_similarity=cos,
            nonfinite_a=self.nonfinite_a,
            nonfinite_b=self.nonfinite_b,
            overlap=overlap,
            rank=rank,
        )


def wants_rank(shape: tuple[int, ...], *, rank: bool, is_float: bool) -> bool:
    """Whether a tensor of ``shape`` gets a rank estimate (2-D float, both sides >= 2)."""
    return rank and is_float and len(shape) == 2 and min(shape) >= 2


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
    acc = StatsAccumulator()
    d = np.empty(a.shape, np.float32) if wants_rank(a.shape, rank=rank, is_float=is_float) else None
    acc.add(a.reshape(-1), b.reshape(-1), None if d is None else d.reshape(-1))
    est = None
    if d is not None:
        try:
            est = rank_of_delta(d, rtol=rank_rtol, fro2=acc.ss_d)
        except ValueError:
            est = None  # a difference beyond float32: no rank, the statistics still hold
    return acc.result(overlap=overlap, rank=est)


def estimate_rank(
    a: np.ndarray,
    b: np.ndarray,
    *,
    rtol: float = DEFAULT_RANK_RTOL,
    exact_max_dim: int = EXACT_MAX_DIM,
    max_sketch: int = MAX_SKETCH,
    exact_fallback_macs: float = EXACT_FALLBACK_MACS,
    exact_cheap_macs: float = EXACT_CHEAP_MACS,
) -> RankEstimate:
    """Estimate the effective rank of ``b - a`` for 2-D arrays of the same shape.

    Args:
        a: The first version, 2-D.
        b: The second version, same shape.
        rtol: Relative singular-value threshold of the numerical rank.
        exact_max_dim: Matrices whose smaller dimension is at most this are exact; bigger
            ones use the randomized sketch (see :mod:`mgit.diff.rank`).
        max_sketch: Largest number of singular values the randomized sketch computes.
        exact_fallback_macs: Largest exact computation a sketch may fall back to.
        exact_cheap_macs: Matrices whose exact values cost at most this many multiply-adds
            are exact whatever their size.

    Returns:
        The estimate. A zero difference has rank 0.

    Raises:
        ValueError: The arrays are not 2-D of the same shape.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two 2-D arrays of one shape, got {a.shape} and {b.shape}")
    d = np.empty(a.shape, np.float32)
    StatsAccumulator().add(a.reshape(-1), b.reshape(-1), d.reshape(-1))
    return rank_of_delta(
        d, rtol=rtol, exact_max_dim=exact_max_dim, max_sketch=max_sketch,
        exact_fallback_macs=exact_fallback_macs, exact_cheap_macs=exact_cheap_macs,
    )  # fmt: skip
