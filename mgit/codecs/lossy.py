"""Lossy delta codec with a guaranteed absolute error bound: ``quant-planes-zstd/1``.

The change ``data - base`` is quantized to integers ``q = rint((data - base) / step)`` and decoded as
``base + q * step``, rounded to the dtype; ``q == 0`` decodes to the base's exact bits. The step is
``2 * (eps - ulp)``, where ``ulp`` is the unit in the last place of the largest magnitude in the chunk,
so that the rounding of the decode itself cannot push an element past ``eps``.

The encoder computes exactly what the decoder will (same functions, same order of operations, IEEE
float32/float64 arithmetic, which is deterministic), measures the error of every element, and
stores an exact correction for each element whose error would exceed ``eps`` (non-finite values,
overflow, or dtypes whose own rounding is coarser than ``eps``, such as bfloat16 near 1.0): the
zigzag-coded wrapping difference of its bit patterns against the quantized decode. So the bound
always holds, and the codec never has to give up on a float dtype.

Layout: the zigzag-coded ``q`` in the narrowest integer type that holds it (int8/16/32), byte
planes, then (only when there are corrections) the correction words as byte planes, all in one zstd
frame. Parameters: ``dtype``, ``eps``, ``max_err`` (the measured maximum error), ``step``, ``qbytes``
and ``corrections`` (how many elements are stored exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mgit.codecs import _zstd
from mgit.codecs._bits import merge_planes, split_planes, unzigzag, zigzag
from mgit.errors import CodecError

__all__ = ["QUANT_PLANES_ZSTD", "LOSSY_DTYPES", "encode_quant", "decode_quant"]

QUANT_PLANES_ZSTD = "quant-planes-zstd/1"


@dataclass(frozen=True)
class _Spec:
    """How one float dtype is stored and computed with."""

    bits: Any  # unsigned dtype of the stored bit pattern
    compute: Any  # float dtype the arithmetic runs in
    mantissa: int  # explicit mantissa bits of the stored dtype


_SPECS: dict[str, _Spec] = {
    "F64": _Spec(np.uint64, np.float64, 52),
    "F32": _Spec(np.uint32, np.float32, 23),
    "F16": _Spec(np.uint16, np.float32, 10),
    "BF16": _Spec(np.uint16, np.float32, 7),
}

#: Safetensors dtype names the lossy codec accepts.
LOSSY_DTYPES = frozenset(_SPECS)

_QTYPES: dict[int, Any] = {1: np.int8, 2: np.int16, 4: np.int32}
_QMAX = 2**31 - 1


def _to_float(bits: np.ndarray, dtype: str) -> np.ndarray:
    """Bit patterns of ``dtype`` as values in its compute dtype (exact)."""
    if dtype == "BF16":
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    if dtype == "F16":
        return bits.view(np.float16).astype(np.float32)
    return bits.view(_SPECS[dtype].compute)


def _to_bits(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round values in the compute dtype to ``dtype`` (round to nearest even); a new bit array."""
    if dtype == "BF16":
        x = values.view(np.uint32)
        # Round to nearest even on the upper half. Only used on finite values or +-inf, for which
        # this is exact IEEE rounding (inf + 0x7fff stays within the inf exponent).
        rounded = x + np.uint32(0x7FFF) + ((x >> np.uint32(16)) & np.uint32(1))
        return (rounded >> np.uint32(16)).astype(np.uint16)
    if dtype == "F16":
        return values.astype(np.float16).view(np.uint16)
    return values.view(_SPECS[dtype].bits).copy()


def _reconstruct(q: np.ndarray, base_bits: np.ndarray, base_vals: np.ndarray, step: Any, dtype: str) -> np.ndarray:
    """The decoded bit patterns for quantized changes ``q`` (shared by encoder and decoder)."""
    spec = _SPECS[dtype]
    vals = q.astype(spec.compute)
    np.multiply(vals, step, out=vals)
    np.add(vals, base_vals, out=vals)
    out = _to_bits(vals, dtype)
    # q == 0 means "unchanged": the base's exact bits (keeps -0.0, NaN payloads and infinities).
    np.copyto(out, base_bits, where=q == 0)
    return out


def _step_for(eps: float, amax: float, spec: _Spec) -> float:
    """Quantization step: ``2 * (eps - ulp(amax))``, so that decode rounding stays within ``eps``."""
    if amax > 0 and math.isfinite(amax):
        ulp = math.ldexp(1.0, math.frexp(amax)[1] - 1 - spec.mantissa)
    else:
        ulp = 0.0
    step = 2.0 * (eps - ulp) if eps > 2.0 * ulp else 2.0 * eps
    # The decoder multiplies in the compute dtype: store exactly the value it will use.
    return float(spec.compute(step))


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
    child_bits = np.frombuffer(data, dtype=spec.bits)
    base_bits = np.frombuffer(base, dtype=spec.bits)
    child = _to_float(child_bits, dtype)
    parent = _to_float(base_bits, dtype)
    n = child_bits.size

    with np.errstate(all="ignore"):
        finite = np.isfinite(child)
        finite &= np.isfinite(parent)
        all_finite = bool(finite.all())
        amax = 0.0
        if n:
            mags = np.abs(child if all_finite else np.where(finite, child, 0))
            amax = float(mags.max())
            mags = np.abs(parent if all_finite else np.where(finite, parent, 0), out=mags)
            amax = max(amax, float(mags.max()))
        step = _step_for(eps, amax, spec)
        step_c = spec.compute(step)

        q = np.subtract(child, parent)
        np.multiply(q, spec.compute(1.0 / step), out=q)
        np.rint(q, out=q)
        if not all_finite:
            q[~finite] = 0
        too_big = np.abs(q) > _QMAX
        if too_big.any():
            q[too_big] = 0
        qi = q.astype(np.int64 if width == 8 else np.int32)

        decoded = _reconstruct(qi, base_bits, parent, step_c, dtype)
        # Error of every element, in float64 (exact for the 16/32-bit dtypes).
        err = np.abs(_to_float(decoded, dtype).astype(np.float64) - child.astype(np.float64))
        bad = ~(err <= eps)  # NaN errors count as bad
        if not all_finite:
            # Non-finite elements with q == 0 decode to the base bits: fine only where identical.
            bad |= (~finite) & (decoded != child_bits)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            err[bad] = 0.0
        max_err = float(err.max()) if n else 0.0

    qmax = int(np.abs(qi).max()) if n else 0
    qbytes = 1 if qmax <= 127 else 2 if qmax <= 32767 else 4
    qt = _QTYPES[qbytes]
    codes = zigzag(qi.astype(qt).view(np.dtype(qt).str.replace("i", "u")))
    parts = [split_planes(codes.view(np.uint8), qbytes)]
    if n_bad:
        correction = np.where(bad, child_bits - decoded, spec.bits(0)).astype(spec.bits)
        parts.append(split_planes(zigzag(correction).view(np.uint8), width))
    buffer = parts[0] if len(parts) == 1 else np.concatenate(parts)
    payload = _zstd.compress(buffer, 1 if level <= 3 else level)
    params: dict[str, Any] = {
        "dtype": dtype,
        "eps": float(eps),
        "max_err": max_err,
        "step": step,
        "qbytes": qbytes,
        "corrections": n_bad,
    }
    return payload, params


def decode_quant(payload: bytes, params: dict[str, Any], size: int, base: memoryview) -> bytes:
    """Decode ``quant-planes-zstd/1`` against ``base``.

    Raises:
        CodecError: If the parameters or the payload are invalid.
    """
    if not isinstance(params, dict):
        raise CodecError("lossy codec parameters must be a mapping")
    dtype = params.get("dtype")
    spec = _SPECS.get(dtype) if isinstance(dtype, str) else None
    step = params.get("step")
    qbytes = params.get("qbytes")
    n_bad = params.get("corrections")
    if (
        spec is None
        or not isinstance(step, (int, float))
        or isinstance(step, bool)
        or not (math.isfinite(step) and step > 0)
        or qbytes not in _QTYPES
        or not isinstance(n_bad, int)
        or isinstance(n_bad, bool)
    ):
        raise CodecError(f"lossy codec parameters are invalid: {params!r}")
    width = np.dtype(spec.bits).itemsize
    n = size // width
    if size % width or not 0 <= n_bad <= n:
        raise CodecError(f"lossy codec parameters do not fit a {size}-byte {dtype} chunk")
    expected = n * qbytes + (n * width if n_bad else 0)
    raw = np.frombuffer(_zstd.decompress(payload, expected), dtype=np.uint8)
    qt = _QTYPES[qbytes]
    codes = merge_planes(raw[: n * qbytes], qbytes)
    if qbytes == 1:
        codes = codes.copy()
    q = unzigzag(codes.view(np.dtype(qt).str.replace("i", "u"))).view(qt)
    base_bits = np.frombuffer(base, dtype=spec.bits)
    with np.errstate(all="ignore"):
        decoded = _reconstruct(q, base_bits, _to_float(base_bits, dtype), spec.compute(step), dtype)
    if n_bad:
        correction = merge_planes(raw[n * qbytes :], width).view(spec.bits)
        if width == 1:  # pragma: no cover - no 1-byte lossy dtype
            correction = correction.copy()
        np.add(decoded, unzigzag(correction), out=decoded)
    return decoded.tobytes()
