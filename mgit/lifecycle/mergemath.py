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

Streaming (a tensor processed in slices of its flattened elements, bounded memory):

- :func:`top_thresholds` finds TIES' top-k magnitude threshold of each task vector exactly, in a
  few passes over the slices (a radix select on :func:`magnitude_keys`, the order-preserving
  integer bits of ``|τ|``), never holding more than ``limit`` keys; :func:`trim_slice` then trims
  slice by slice exactly as :func:`trim_top` trims the whole tensor (ties at the threshold: the
  lowest flat indices kept).
- :func:`dare_mask` gives the part of :func:`rng_for`'s whole-tensor mask that falls in a slice
  (the Philox counter advanced to the slice start), so DARE is the same whatever the slicing.
- :func:`slerp_sums` and :func:`slerp_coefs`: slerp's dot products as exactly rounded sums of
  per-block pairwise sums over fixed :data:`SUM_BLOCK`-element blocks of the flattened tensors,
  so the result does not depend on slices (multiples of the block) nor on threads or BLAS.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SLERP_COLINEAR",
    "SUM_BLOCK",
    "dare_apply",
    "dare_drop",
    "dare_mask",
    "linear",
    "magnitude_keys",
    "rng_for",
    "slerp",
    "slerp_coefs",
    "slerp_sums",
    "task_arithmetic",
    "ties_merge",
    "top_thresholds",
    "trim_slice",
    "trim_top",
]

#: |cos| above which slerp interpolates linearly (the sphere arc is numerically a line).
SLERP_COLINEAR = 0.9995

#: Elements per partial sum of slerp's dot products: slices of a tensor are multiples of it.
SUM_BLOCK = 4096

_NO_SIGN = 0x7FFF_FFFF_FFFF_FFFF
_DIGIT = 16  # bits resolved per radix-select pass


def _philox_key(seed: int, file: str, name: str, index: int) -> int:
    h = hashlib.blake2b(
        f"{int(seed)}\0{file}\0{name}\0{int(index)}".encode(), digest_size=16
    ).digest()
    return int.from_bytes(h, "little")


def rng_for(seed: int, file: str, name: str, index: int) -> np.random.Generator:
    """A counter-based generator for input ``index`` of tensor ``file:name`` under ``seed``."""
    import numpy as np

    return np.random.Generator(np.random.Philox(key=_philox_key(seed, file, name, index)))


def dare_mask(
    seed: int, file: str, name: str, index: int, start: int, count: int, density: float
) -> np.ndarray:
    """Elements ``[start, start + count)`` of the flattened keep mask ``rng_for(...).random(shape)
    < density``, without drawing the values before ``start``: each ``random()`` value is one
    64-bit Philox output and each counter step gives four, so the counter is advanced by
    ``start // 4`` and ``start % 4`` values are skipped."""
    import numpy as np

    bits = np.random.Philox(key=_philox_key(seed, file, name, index))
    bits.advance(int(start) // 4)
    gen = np.random.Generator(bits)
    if start % 4:
        gen.random(int(start) % 4)
    return gen.random(int(count)) < float(density)


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
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1) on the flattened tensors
    (``s0 a + s1 b`` with :func:`slerp_coefs` of :func:`slerp_sums`): linear when either is
    zero or they are nearly colinear (``|cos| > SLERP_COLINEAR``)."""
    s0, s1 = slerp_coefs(slerp_sums([(a.reshape(-1), b.reshape(-1))]), t)
    return s0 * a + s1 * b


def _block_sums(x: np.ndarray) -> list[float]:
    """Pairwise (numpy) sums of each :data:`SUM_BLOCK`-element block of flat ``x``, the last
    block possibly shorter: the same values however the blocks are grouped into arrays."""
    whole = x.size - x.size % SUM_BLOCK
    out = x[:whole].reshape(-1, SUM_BLOCK).sum(axis=1).tolist() if whole else []
    if whole < x.size:
        out.append(float(x[whole:].sum()))
    return out


def slerp_sums(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    """``(a·b, a·a, b·b)`` over consecutive flat slices ``(a, b)`` of two tensors (each slice but
    the last a multiple of :data:`SUM_BLOCK` elements): per-block pairwise sums of the float64
    products, then one exactly rounded sum (:func:`math.fsum`) of the blocks' sums."""
    import numpy as np

    ab: list[float] = []
    aa: list[float] = []
    bb: list[float] = []
    for a, b in pairs:
        a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        ab += _block_sums(a64 * b64)
        aa += _block_sums(a64 * a64)
        bb += _block_sums(b64 * b64)
    return math.fsum(ab), math.fsum(aa), math.fsum(bb)


def slerp_coefs(sums: tuple[float, float, float], t: float) -> tuple[float, float]:
    """slerp's ``(s0, s1)`` from :func:`slerp_sums`: ``(1 - t, t)`` when a norm is 0 or not finite
    or ``|cos| > SLERP_COLINEAR``; else ``sin((1-t)θ)/sin θ`` and ``sin(tθ)/sin θ``, θ the angle."""
    ab, aa, bb = sums
    t = float(t)
    na, nb = math.sqrt(aa) if aa >= 0 else math.nan, math.sqrt(bb) if bb >= 0 else math.nan
    if na == 0.0 or nb == 0.0 or not (math.isfinite(na) and math.isfinite(nb)):
        return 1.0 - t, t
    cos = ab / (na * nb)
    if not math.isfinite(cos) or abs(cos) > SLERP_COLINEAR:
        return 1.0 - t, t
    theta = math.acos(min(1.0, max(-1.0, cos)))
    sin = math.sin(theta)
    return math.sin(theta * (1.0 - t)) / sin, math.sin(theta * t) / sin


def task_arithmetic(
    base: np.ndarray,
    xs: Sequence[np.ndarray],
    weights: Sequence[float],
    lam: float,
    normalize: bool = False,
) -> np.ndarray:
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


def magnitude_keys(x: np.ndarray) -> np.ndarray:
    """``|x|`` of a float64 array as flat uint64 keys (its bits without the sign): ordered as the
    magnitudes are (``+0 = -0``; NaN above ``inf``, as :func:`numpy.partition` orders them)."""
    import numpy as np

    return np.ascontiguousarray(x, dtype=np.float64).reshape(-1).view(np.uint64) & np.uint64(
        _NO_SIGN
    )


def top_thresholds(
    scan: Callable[[], Iterator[Sequence[np.ndarray]]],
    n: int,
    ks: Sequence[int],
    limit: int,
) -> list[tuple[int, int] | None]:
    """TIES' trimming thresholds of several task vectors of ``n`` elements, exactly, with memory
    bounded by ``limit`` keys per vector: for vector i, keeping its ``ks[i]`` largest magnitudes.

    ``scan()`` iterates over the slices of all the vectors at once (a list of
    :func:`magnitude_keys` arrays, one per vector, per slice; fresh arrays, which this function
    may keep and reorder); it is called once per pass. A radix
    select: each pass either histograms the next 16 bits of the keys that share the bits found so
    far, or, once at most ``limit`` keys share them, collects those and selects among them. The
    threshold is the key of ascending rank ``n - k`` (:func:`trim_top`'s ``np.partition``), and
    ``room`` is ``k`` minus the count of keys above it.

    Returns:
        per vector ``(key, room)``: entries whose key is above ``key`` are kept, and the first
        ``room`` (in flat order) of those equal to it; None when ``k >= n`` (nothing trimmed);
        ``(2**64 - 1, 0)`` when ``k <= 0`` (everything trimmed).
    """
    import numpy as np

    out: list[tuple[int, int] | None] = [None] * len(ks)
    # per open vector: [rank wanted among the keys sharing the prefix, their count, prefix bits,
    # bits still undetermined (below the prefix), count of keys above the prefix's range]
    open_: dict[int, list[int]] = {}
    for i, k in enumerate(ks):
        if k <= 0:
            out[i] = (2**64 - 1, 0)
        elif k < n:
            open_[i] = [n - k, n, 0, 64, 0]
    while open_:
        hists: dict[int, np.ndarray] = {}
        cands: dict[int, list[np.ndarray]] = {}
        for i, (_, count, _, _, _) in open_.items():
            if count <= limit:
                cands[i] = []
            else:
                hists[i] = np.zeros(1 << _DIGIT, dtype=np.int64)
        for keys in scan():
            for i, (_, _, prefix, shift, _) in open_.items():
                k_ = keys[i]
                if shift < 64:
                    k_ = k_[(k_ >> np.uint64(shift)) == np.uint64(prefix)]
                if i in cands:
                    cands[i].append(k_)
                else:
                    digit = (k_ >> np.uint64(shift - _DIGIT)) & np.uint64((1 << _DIGIT) - 1)
                    hists[i] += np.bincount(digit.astype(np.intp), minlength=1 << _DIGIT)
        for i in list(open_):
            rank, count, prefix, shift, above = open_[i]
            k = ks[i]
            if i in cands:
                parts = cands.pop(i)
                c = (
                    parts[0]
                    if len(parts) == 1
                    else np.concatenate(parts)
                    if parts
                    else np.zeros(0, np.uint64)
                )
                del parts
                if c.size != count:
                    raise RuntimeError("top_thresholds: the scans do not agree")  # pragma: no cover
                c.partition(rank)  # in place: the keys are ours (see above)
                thr = int(c[rank])
                above += int(np.count_nonzero(c > np.uint64(thr)))
                out[i] = (thr, k - above)
                del open_[i]
                continue
            cum = np.cumsum(hists.pop(i))
            if int(cum[-1]) != count:
                raise RuntimeError("top_thresholds: the scans do not agree")  # pragma: no cover
            d = int(np.searchsorted(cum, rank, side="right"))
            below = int(cum[d - 1]) if d else 0
            above += count - int(cum[d])
            rank, count = rank - below, int(cum[d]) - below
            prefix, shift = (prefix << _DIGIT) | d, shift - _DIGIT
            if shift == 0:  # every remaining key equals the prefix
                out[i] = (prefix, k - above)
                del open_[i]
            else:
                open_[i] = [rank, count, prefix, shift, above]
    return out


def trim_slice(tv: np.ndarray, threshold: tuple[int, int] | None, seen: int) -> int:
    """Trim, in place, one flat float64 slice of a task vector by its :func:`top_thresholds`
    threshold, as :func:`trim_top` trims the whole vector; ``seen``: entries equal to the
    threshold in the slices before this one. Returns ``seen`` with this slice's added."""
    import numpy as np

    if threshold is None:
        return seen
    thr, room = threshold
    keys = magnitude_keys(tv)
    t = np.uint64(thr)
    drop = keys <= t
    if room > seen:
        at = np.flatnonzero(keys == t)
        drop[at[: room - seen]] = False
        seen += int(at.size)
    del keys
    tv[drop.reshape(tv.shape)] = 0
    return seen


def ties_merge(
    tvs: Sequence[np.ndarray], weights: Sequence[float], normalize: bool = True
) -> np.ndarray:
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


def dare_drop(
    tv: np.ndarray, density: float, rng: np.random.Generator, *, inplace: bool = False
) -> np.ndarray:
    """Keep each entry with probability ``density`` (``rng.random() < density``), scaled by
    ``1 / density``; zero the rest."""
    d = float(density)
    out = tv if inplace else tv.copy()
    if d >= 1.0:
        return out
    if d <= 0.0:
        out[...] = 0
        return out
    return dare_apply(out, d, rng.random(tv.shape) < d)


def dare_apply(tv: np.ndarray, density: float, keep: np.ndarray) -> np.ndarray:
    """In place: ``tv`` scaled by ``1 / density`` where ``keep``, zero elsewhere (``keep`` of
    ``tv``'s shape or flat); ``density >= 1`` leaves it, ``<= 0`` zeroes it."""
    d = float(density)
    if d >= 1.0:
        return tv
    if d <= 0.0:
        tv[...] = 0
        return tv
    tv /= d
    tv[~keep.reshape(tv.shape)] = 0
    return tv
