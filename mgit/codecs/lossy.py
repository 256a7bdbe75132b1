"""Lossy delta codec with a guaranteed absolute error bound: ``quant-planes-zstd/1``.

The change ``data - base`` is quantized to integers ``q = rint((data - base) / step)`` and decoded
as ``base + q * step``, rounded to the dtype; ``q == 0`` decodes to the base's exact bits. The step
is ``2 * (eps - ulp)``, where ``ulp`` is the unit in the last place of the largest magnitude in the
chunk, so that the rounding of the decode itself cannot push an element past ``eps``.

The encoder computes exactly what the decoder will (same functions, same order of operations, IEEE
float32/float64 arithmetic, which is deterministic), measures the error of every element, and
stores an exact correction for each element whose error would exceed ``eps`` (non-finite values,
overflow, or dtypes whose own rounding is coarser than ``eps``, such as bfloat16 near 1.0): the
zigzag-coded wrapping difference of its bit patterns against the quantized decode. So the bound
always holds, and the codec never has to give up on a float dtype.

When quantization fails for more than an eighth of the elements (bfloat16 at small ``eps``), the
encoder also tries "keep the base where it is within ``eps``, store the exact child elsewhere"
(every ``q`` is 0) and keeps the smaller payload.

Layout, one zstd frame: the zigzag-coded ``q`` clipped to ``2**bits - 1`` and packed ``8 // bits``
symbols per byte (``bits`` is 1, 2, 4 or 8: the narrowest whose escapes stay under 1/16 of the
elements; packing lets the byte-wise Huffman coder code 2-8 symbols jointly, which is what beats
LZMA on these low-entropy streams), then the escapes (``code - (2**bits - 1)`` for the clipped
elements, as byte planes of ``ebytes``-wide words), then, only when there are corrections, the
correction words as byte planes. Parameters: ``dtype``, ``eps``, ``max_err`` (the measured maximum
error), ``step``, ``bits``, ``escapes``, ``ebytes`` and ``corrections`` (elements stored exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgit._dtypes import DTYPES
from mgit.codecs import _zstd
from mgit.codecs._bits import (
    merge_planes,
    pack_bits,
    scratch,
    split_planes,
    unpack_bits,
    unzigzag,
    zigzag,
)
from mgit.codecs._common import LOSSY_DTYPES, QUANT_PLANES_ZSTD
from mgit.codecs.lossless import plane_level
from mgit.errors import CodecError

__all__ = ["QUANT_PLANES_ZSTD", "LOSSY_DTYPES", "encode_quant", "decode_quant"]


@dataclass(frozen=True)
class _Spec:
    """How one float dtype is stored and computed with."""

    bits: Any  # unsigned dtype of the stored bit pattern
    compute: Any  # float dtype the arithmetic runs in
    mantissa: int  # explicit mantissa bits of the stored dtype


_QTYPES: dict[int, Any] = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}
_UNSIGNED: dict[int, Any] = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _spec(name: str) -> _Spec:
    """The codec's view of a float dtype of the one dtype table: bit patterns as unsigned words of
    its size; arithmetic in float64 for F64, in float32 (exact for narrower floats) otherwise."""
    d = DTYPES[name]
    if not d.is_floating_point or d.mantissa is None:  # pragma: no cover - a programming error
        raise ImportError(f"the lossy codec cannot take {name}: not a real float dtype")
    return _Spec(_UNSIGNED[d.itemsize], np.float64 if d.itemsize == 8 else np.float32, d.mantissa)


#: Every dtype of LOSSY_DTYPES (in _common, so that naming them needs no numpy).
_SPECS: dict[str, _Spec] = {name: _spec(name) for name in sorted(LOSSY_DTYPES)}

_QMAX = 2**31 - 1


def _to_float(bits: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """Bit patterns of ``dtype`` as values in its compute dtype (exact; a view when possible)."""
    if dtype == "BF16":
        wide = out.view(np.uint32) if out is not None else np.empty(bits.size, dtype=np.uint32)
        np.copyto(wide, bits, casting="unsafe")
        np.left_shift(wide, 16, out=wide)
        return wide.view(np.float32)
    if dtype == "F16":
        vals = out if out is not None else np.empty(bits.size, dtype=np.float32)
        np.copyto(vals, bits.view(np.float16), casting="unsafe")
        return vals
    return bits.view(_SPECS[dtype].compute)


def _round_to_bits(vals: np.ndarray, dtype: str) -> np.ndarray:
    """Round compute-dtype values to ``dtype`` (round to nearest even); may overwrite ``vals``."""
    if dtype == "BF16":
        x = vals.view(np.uint32)
        # Round to nearest even on the upper half; exact IEEE rounding for finite values and
        # +-inf (inf + 0x7fff stays within the inf exponent). NaN never reaches here: q != 0 only
        # for finite base values and finite steps.
        low = (x >> np.uint32(16)) & np.uint32(1)
        np.add(x, low, out=x)
        np.add(x, np.uint32(0x7FFF), out=x)
        np.right_shift(x, 16, out=x)
        return x.astype(np.uint16)
    if dtype == "F16":
        return vals.astype(np.float16).view(np.uint16)
    return vals.view(_SPECS[dtype].bits)


def _reconstruct(
    q: np.ndarray,
    base_bits: np.ndarray,
    base_vals: np.ndarray,
    step: np.floating[Any],
    dtype: str,
    work: np.ndarray,
) -> np.ndarray:
    """The decoded bit patterns for quantized changes ``q``: shared by encoder and decoder.

    ``work`` is a compute-dtype array of ``q``'s length that may be (and for F32/F64 is) returned
    as the result's storage.
    """
    np.copyto(work, q, casting="unsafe")
    np.multiply(work, step, out=work)
    np.add(work, base_vals, out=work)
    out = _round_to_bits(work, dtype)
    # q == 0 means "unchanged": the base's exact bits (keeps -0.0, NaN payloads and infinities).
    np.copyto(out, base_bits, where=q == 0)
    return out


def _step_for(eps: float, amax: float, spec: _Spec) -> float:
    """Quantization step ``2 * (eps - ulp(amax))``: decode rounding then stays within ``eps``."""
    if amax > 0 and math.isfinite(amax):
        ulp = math.ldexp(1.0, math.frexp(amax)[1] - 1 - spec.mantissa)
    else:
        ulp = 0.0
    step = 2.0 * (eps - ulp) if eps > 2.0 * ulp else 2.0 * eps
    # The decoder multiplies in the compute dtype: store exactly the value it will use.
    return float(spec.compute(step))


def _safe_threshold(eps: float, compute: type[np.floating[Any]]) -> np.floating[Any]:
    """Largest compute-dtype ``t`` such that a computed ``|a - b| <= t`` proves ``|a - b| <= eps``.

    A rounded subtraction is within a relative ``2**-p`` of the exact difference (``p`` = 24 or
    53), so ``t * (1 + 2**(1 - p)) <= eps`` suffices.
    """
    p = np.finfo(compute).nmant + 1
    t = compute(eps)
    while float(t) * (1.0 + 2.0 ** (1 - p)) > eps:
        t = np.nextafter(t, compute(0))
    return t


def encode_quant(
    data: memoryview, base: memoryview, dtype: str, eps: float, level: int
) -> tuple[bytes, dict[str, Any]] | None:
    """Quantize ``data - base`` with an absolute error bound ``eps``.

    Args:
        data: The child chunk (whole elements of ``dtype``).
        base: The aligned parent chunk, same length.
        dtype: A safetensors float dtype name (``F64``, ``F32``, ``F16``, ``BF16``).
        eps: The absolute error bound, finite and > 0.
        level: zstd level (validated by the caller).

    Returns:
        ``(payload, params)``, or ``None`` for a dtype this codec does not handle.

    Raises:
        CodecError: If the lengths differ or are not whole elements.
    """
    spec = _SPECS.get(dtype)
    if spec is None:
        return None
    width = np.dtype(spec.bits).itemsize
    if len(data) % width:
        raise CodecError(f"{dtype} chunk of {len(data)} bytes is not a whole number of elements")
    n = len(data) // width
    cw = np.dtype(spec.compute).itemsize
    qtype = np.int64 if width == 8 else np.int32
    child_bits = np.frombuffer(data, dtype=spec.bits)
    base_bits = np.frombuffer(base, dtype=spec.bits)
    child = _to_float(child_bits, dtype, scratch.get("lq_child", n * cw, spec.compute))
    parent = _to_float(base_bits, dtype, scratch.get("lq_parent", n * cw, spec.compute))
    work = scratch.get("lq_work", n * cw, spec.compute)

    with np.errstate(all="ignore"):
        amax = 0.0
        if n:
            amax = max(float(np.abs(child, out=work).max()), float(np.abs(parent, out=work).max()))
            if not math.isfinite(amax):  # non-finite values: the margin comes from the finite ones
                finite = np.isfinite(work)
                amax = float(work[finite].max()) if finite.any() else 0.0
                np.abs(child, out=work)
                finite = np.isfinite(work)
                amax = max(amax, float(work[finite].max()) if finite.any() else 0.0)
        step = _step_for(eps, amax, spec)
        step_c = spec.compute(step)

        # q = rint((child - parent) / step); non-finite and out-of-range values get q = 0 and
        # are left to the exact corrections below.
        q = np.subtract(child, parent, out=work)
        np.multiply(q, spec.compute(1.0 / step), out=q)
        np.rint(q, out=q)
        finite = np.isfinite(q)
        if not finite.all():
            q[~finite] = 0
        np.clip(q, -_QMAX, _QMAX, out=q)
        qi = scratch.get("lq_q", n * np.dtype(qtype).itemsize, qtype)
        np.copyto(qi, q, casting="unsafe")

        decoded = _reconstruct(qi, base_bits, parent, step_c, dtype, work)
        # Error check in the compute dtype against a threshold that proves the exact bound.
        # Elements whose bits equal the child's are exact whatever they are (NaN, inf).
        dec_vals = _to_float(decoded, dtype, scratch.get("lq_dec", n * cw, spec.compute))
        err = np.subtract(dec_vals, child, out=scratch.get("lq_err", n * cw, spec.compute))
        np.abs(err, out=err)
        not_ok = ~(err <= _safe_threshold(eps, spec.compute))  # NaN errors are not ok
        bad = not_ok & (decoded != child_bits)
        n_bad = int(np.count_nonzero(bad))
        # Bad elements get an exact correction; the other not-ok ones are already bit-exact.
        err[not_ok] = 0
        if n_bad > n // 8:  # variant B below reuses the work arrays: keep what A needs
            err_a, dec_vals_a = err.copy(), dec_vals.copy()
            decoded = decoded.copy()
        payload, layout = _layout(qi, decoded, child_bits, bad, n_bad, width, level)

        if n_bad > n // 8:
            # Quantization failed for many elements (a dtype whose own rounding is coarser than
            # eps, such as bfloat16): also try keeping the base wherever it is within eps and the
            # exact child elsewhere, and keep the smaller payload.
            ok = np.subtract(parent, child, out=err)
            np.abs(ok, out=ok)
            b_err = ok
            b_not_ok = ~(b_err <= _safe_threshold(eps, spec.compute))
            b_bad = b_not_ok & (base_bits != child_bits)
            b_err[b_not_ok] = 0
            qi[:] = 0
            b_payload, b_layout = _layout(
                qi, base_bits, child_bits, b_bad, int(np.count_nonzero(b_bad)), width, level
            )
            if len(b_payload) < len(payload):
                payload, layout = b_payload, b_layout
                max_err = _exact_max(b_err, parent, child, eps, spec)
            else:
                max_err = _exact_max(err_a, dec_vals_a, child, eps, spec)
        else:
            max_err = _exact_max(err, dec_vals, child, eps, spec)

    params: dict[str, Any] = {"dtype": dtype, "eps": float(eps), "max_err": max_err, "step": step}
    params.update(layout)
    return payload, params


def _exact_max(
    err: np.ndarray, approx: np.ndarray, child: np.ndarray, eps: float, spec: _Spec
) -> float:
    """Exact maximum error, recomputed in float64 on the few elements near the computed maximum."""
    if err.size == 0:
        return 0.0
    top = float(err.max())
    if not top > 0:  # every element exact (the not-ok ones were zeroed by the caller)
        return 0.0
    near = np.flatnonzero(err >= spec.compute(top * (1 - 2.0**-20)))
    exact = np.abs(approx[near].astype(np.float64) - child[near].astype(np.float64))
    return min(float(exact.max()), eps)


def _layout(
    q: np.ndarray,
    decoded: np.ndarray,
    child_bits: np.ndarray,
    bad: np.ndarray,
    n_bad: int,
    width: int,
    level: int,
) -> tuple[bytes, dict[str, Any]]:
    """Build the payload: packed q symbols, escapes, corrections; ``q`` is overwritten."""
    n = q.size
    codes = zigzag(q.view(np.dtype(q.dtype).str.replace("i", "u")))
    small = np.minimum(codes, 255).astype(np.uint8)
    counts = np.bincount(small, minlength=256)
    # Narrowest symbol width whose escapes (codes >= 2**bits - 1) stay rare.
    bits = 8
    for candidate in (1, 2, 4):
        if int(counts[(1 << candidate) - 1 :].sum()) * 16 <= n:
            bits = candidate
            break
    esc = (1 << bits) - 1
    if bits < 8:
        np.minimum(small, esc, out=small)
    symbols = pack_bits(small, bits)
    where_esc = np.flatnonzero(codes >= esc)
    extra = codes[where_esc] - codes.dtype.type(esc)
    top = int(extra.max()) if extra.size else 0
    ebytes = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    escapes = split_planes(extra.astype(_UNSIGNED[ebytes]).view(np.uint8), ebytes)
    parts = [symbols, escapes]
    if n_bad:
        correction = np.subtract(
            child_bits, decoded, out=scratch.get("lq_corr", n * width, child_bits.dtype)
        )
        correction[~bad] = 0
        zigzag(correction, scratch.get("lq_tmp", n * width, child_bits.dtype))
        parts.append(split_planes(correction.view(np.uint8), width))
    payload = _zstd.compress(np.concatenate(parts), plane_level(level))
    layout = {"bits": bits, "escapes": int(where_esc.size), "ebytes": ebytes, "corrections": n_bad}
    return payload, layout


def decode_quant(payload: bytes, params: dict[str, Any], size: int, base: memoryview) -> bytes:
    """Decode ``quant-planes-zstd/1`` against ``base``.

    Raises:
        CodecError: If the parameters or the payload are invalid.
    """
    if not isinstance(params, dict):
        raise CodecError("lossy codec parameters must be a mapping")
    dtype = str(params.get("dtype"))
    spec = _SPECS.get(dtype)
    step = params.get("step")
    bits = params.get("bits")
    escapes = params.get("escapes")
    ebytes = params.get("ebytes")
    n_bad = params.get("corrections")
    if (
        spec is None
        or not isinstance(step, (int, float))
        or isinstance(step, bool)
        or not (math.isfinite(step) and step > 0)
        or bits not in (1, 2, 4, 8)
        or ebytes not in _UNSIGNED
        or not _is_count(escapes)
        or not _is_count(n_bad)
    ):
        raise CodecError(f"lossy codec parameters are invalid: {params!r}")
    assert isinstance(bits, int) and isinstance(ebytes, int)
    assert isinstance(escapes, int) and isinstance(n_bad, int)
    width = np.dtype(spec.bits).itemsize
    n = size // width
    if size % width or escapes > n or n_bad > n:
        raise CodecError(f"lossy codec parameters do not fit a {size}-byte {dtype} chunk")
    n_sym = (n * bits + 7) // 8
    expected = n_sym + escapes * ebytes + (n * width if n_bad else 0)
    raw = scratch.get("lq_buf", expected)
    _zstd.decompress_into(payload, raw)
    small = unpack_bits(raw[:n_sym], bits, n, scratch.get("lq_small", n))
    utype = _UNSIGNED[width if width == 8 else 4]
    codes = scratch.get("lq_codes", n * np.dtype(utype).itemsize, utype)
    np.copyto(codes, small, casting="unsafe")
    if escapes:
        where_esc = np.flatnonzero(small == (1 << bits) - 1)
        if where_esc.size != escapes:
            raise CodecError("lossy payload does not match its escape count")
        extra = merge_planes(raw[n_sym : n_sym + escapes * ebytes], ebytes).view(_UNSIGNED[ebytes])
        codes[where_esc] += extra.astype(utype)
    q = unzigzag(codes, scratch.get("lq_tmp", codes.nbytes, utype)).view(
        _QTYPES[np.dtype(utype).itemsize]
    )
    base_bits = np.frombuffer(base, dtype=spec.bits)
    cw = np.dtype(spec.compute).itemsize
    with np.errstate(all="ignore"):
        parent = _to_float(base_bits, dtype, scratch.get("lq_parent", n * cw, spec.compute))
        work = scratch.get("lq_work", n * cw, spec.compute)
        decoded = _reconstruct(q, base_bits, parent, spec.compute(step), dtype, work)
    if n_bad:
        start = n_sym + escapes * ebytes
        correction = merge_planes(raw[start:], width, scratch.get("lq_corr", n * width))
        words = correction.view(spec.bits)
        np.add(decoded, unzigzag(words, scratch.get("lq_tmp", n * width, spec.bits)), out=decoded)
    return decoded.tobytes()


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
