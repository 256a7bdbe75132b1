"""``cast-planes-zstd/1``: a chunk stored as a dtype cast of a parent chunk, plus a correction.

A model that is a dtype cast of its parent (``model.to(torch.bfloat16)`` of an fp32 model, or
the other way round) changes every byte of every tensor, so no ordinary delta applies: the child's
elements have another width. But each child element is, almost always, the round-to-nearest-even
(RNE) cast of the parent's element. This codec stores a chunk as

    content = cast(base elements [start, start + n), src -> dst)  "+"  correction

where ``n = size / itemsize(dst)``, the cast is defined below bit for bit, and the correction is
exactly a ``sub-planes-zstd/1`` delta of the chunk against the cast (zigzag of the wrapping
difference of the bit patterns, byte planes, zstd; :mod:`mgit.codecs.lossless`). For an exact cast
the correction is all zeros and its zstd frame is a few hundred bytes per 4 MiB; elements that
differ from the RNE cast (a NaN whose payload another converter set otherwise, a few edited
weights) are caught by it; a child that is not a cast at all (an fp32 finetune of a bf16 model)
gets a delta as good as a finetune's against its own dtype. Decoding is bit-exact and, like every
object, verified against the chunk's id by the store.

Parameters: ``{"itemsize": k, "src": S, "dst": D, "start": e}`` (``S``, ``D``: safetensors dtype
names among F64, F32, F16, BF16; ``e``: the element of the base the chunk's first element is a
cast of). ``src == dst`` is allowed (a plain element range of the base).

**One base per object.** The base is *one* chunk of the parent tensor, the one holding all ``n``
parent elements, as for every delta: the stored-object header keeps naming a single base, so
reachability, ``fsck``, ``gc``, the push order and fetch's wait for a delta's base (all of which
follow ``header.base``) work unchanged. Ingest makes one base always enough by choosing the
child's chunking (:func:`mgit.pairing.plan_tensor`): a cast tensor is cut into chunks of
``gcd(n_parent, n_default)`` elements (``n_parent``: elements per chunk of the parent tensor;
``n_default``: elements per chunk of the repository's chunk size in the child's dtype), so each
child chunk lies inside exactly one parent chunk. The base is thus longer than the chunk, and
:func:`mgit.codecs.decode` checks ``start`` and ``n`` against it instead of equal lengths.

- Widening (BF16/F16 -> F32, F32 -> F64) keeps the default chunking: a child chunk is half of a
  parent chunk (``start`` is 0 or the middle), and its chunk ids are the ones
  :mod:`mgit.objects.chunking` predicts from the file alone.
- Narrowing (F32 -> BF16/F16, F64 -> anything) cuts the child into chunks of the parent's element
  count (2 MiB of bf16 against 4 MiB of fp32), chunk *k* over parent chunk *k*; a later version of
  the same dtype is cut like its parent, so its chunks keep lining up for ordinary deltas. Such
  chunk ids depend on the parent: the diff against a folder and parent guessing, which predict
  ids from the file alone, compare those tensors by value instead.

The alternative, the default chunking with a list of bases in the header (two parent chunks per
child chunk for F32 -> BF16, four for F64 -> BF16), was not taken: every walker of delta chains
(reachability, fsck, fetch's ordering) would have to follow the list, and a fetch that wrote a
delta once its first base was in could find the second still missing.

**The cast** (:func:`cast_bits`), on bit patterns, integers only (no float arithmetic, so the
result cannot depend on the CPU, numpy's conversion loops or flush-to-zero flags): finite values are
rounded once, to nearest with ties to even, from the exact source value, with subnormal results
and overflow to infinity as IEEE 754 specifies; infinities and zeros keep their sign; a NaN keeps
its sign and the top bits of its payload (shifted left when the destination mantissa is wider;
when it is narrower, truncated and the quiet bit set, so it stays a NaN). For finite values this
is exactly what torch and numpy compute for ``.to(dtype)`` / ``astype`` (except that torch
rounds float64 -> float16 through float32, twice, where this rounds once, as numpy does); NaNs are
where converters disagree (torch 2.13 on the CPU turns every NaN into ``0xFFFF`` on fp32 -> bf16,
its scalar ``c10::BFloat16`` into ``0x7FC0``), and the correction records whatever they gave.

This module imports numpy; :mod:`mgit.codecs` imports it only when a cast chunk is encoded or
decoded, so ordinary commits and exports never load numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mgit.codecs import lossless
from mgit.codecs._common import CAST_DTYPES, as_bytes
from mgit.errors import CodecError

__all__ = ["FORMATS", "cast_bits", "encode_cast", "decode_cast", "check_params"]

#: dtype -> (exponent bits, explicit mantissa bits, element size)
FORMATS: dict[str, tuple[int, int, int]] = {
    "F64": (11, 52, 8),
    "F32": (8, 23, 4),
    "F16": (5, 10, 2),
    "BF16": (8, 7, 2),
}
assert set(FORMATS) == set(CAST_DTYPES)

_UINT = {8: np.dtype("<u8"), 4: np.dtype("<u4"), 2: np.dtype("<u2")}


def _convert(u: np.ndarray, src: str, dst: str) -> np.ndarray:
    """The general cast (module docstring) of bit patterns ``u`` (int64; for F64 the pattern
    reinterpreted as signed), returning the destination patterns as int64 (or uint64 for F64)."""
    es, ms, _ = FORMATS[src]
    ed, md, _ = FORMATS[dst]
    if src == "F64":
        uu = u.view(np.uint64)
        sign = (uu >> np.uint64(63)).astype(np.int64)
        e = ((uu >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
        m = (uu & np.uint64((1 << 52) - 1)).astype(np.int64)
    else:
        sign = (u >> (es + ms)) & 1
        e = (u >> ms) & ((1 << es) - 1)
        m = u & ((1 << ms) - 1)
    bias_s = (1 << (es - 1)) - 1
    bias_d = (1 << (ed - 1)) - 1
    emax_s = (1 << es) - 1
    emax_d = (1 << ed) - 1
    inf_d = emax_d << md

    normal = e > 0
    big_m = np.where(normal, m | (1 << ms), m)  # the integer significand
    big_e = np.where(normal, e, 1) - (bias_s + ms)  # value = big_m * 2**big_e
    bitlen = np.full(u.shape, ms + 1, dtype=np.int64)
    sub = (~normal) & (m != 0)
    if sub.any():
        # The bit length of a subnormal's significand: frexp of an integer below 2**53 is exact
        # (an integer is never a denormal, so flush-to-zero flags cannot change it).
        bitlen[sub] = np.frexp(big_m[sub].astype(np.float64))[1]
    lead = big_e + bitlen - 1  # exponent of the leading bit
    qmin = (1 - bias_d) - md  # the quantum of the destination's subnormals
    q = np.maximum(lead - md, qmin)  # the quantum exponent of the result
    shift = q - big_e
    right = np.clip(shift, 0, 62)
    left = np.clip(-shift, 0, 62)
    r = np.left_shift(big_m, left)
    down = shift > 0
    if down.any():
        rs = np.right_shift(big_m, right)
        rem = big_m - np.left_shift(rs, right)
        half = np.left_shift(np.ones_like(right), np.maximum(right - 1, 0))
        up = (rem > half) | ((rem == half) & ((rs & 1) == 1))
        r = np.where(down, rs + up, r)
    bits = ((q - qmin) << md) + r
    bits = np.where(bits >= inf_d, inf_d, bits)
    bits = np.where(big_m == 0, 0, bits)
    special = e == emax_s
    if special.any():
        if ms >= md:
            payload = m >> (ms - md)
            payload = np.where(m != 0, payload | (1 << (md - 1)), 0) if ms > md else payload
        else:
            payload = m << (md - ms)
        bits = np.where(special, inf_d | payload, bits)
    if dst == "F64":
        return (sign.astype(np.uint64) << np.uint64(63)) | bits.astype(np.uint64)
    return (sign << (ed + md)) | bits


def cast_bits(data: bytes | memoryview, src: str, dst: str) -> bytes:
    """The cast (see the module docstring) of little-endian ``src`` elements to ``dst``.

    Raises:
        CodecError: an unknown dtype, or ``data`` not whole elements.
    """
    if src not in FORMATS or dst not in FORMATS:
        raise CodecError(f"no cast from {src!r} to {dst!r}")
    view = as_bytes(data)
    si, di = FORMATS[src][2], FORMATS[dst][2]
    if len(view) % si:
        raise CodecError(f"{len(view)} bytes are not whole {src} elements")
    if src == dst:
        return bytes(view)
    a = np.frombuffer(view, dtype=_UINT[si])
    if src == "F32" and dst == "BF16":  # the common case, in uint32: the same result, faster
        nan = (a & 0x7FFFFFFF) > 0x7F800000
        r = (a + (0x7FFF + ((a >> 16) & 1))) >> 16
        r = np.where(nan, (a >> 16) | 0x40, r)
        return r.astype("<u2").tobytes()
    if src == "BF16" and dst == "F32":  # exact: the top half of the fp32 pattern
        return (a.astype("<u4") << 16).tobytes()
    out = _convert(a.astype(np.int64) if si < 8 else a.view(np.int64), src, dst)
    return out.astype(_UINT[di]).tobytes()


def check_params(params: dict[str, Any], size: int, base_len: int) -> tuple[str, str, int, int]:
    """``(src, dst, start, n)`` from a cast's parameters, checked against the chunk's size and
    the base's length.

    Raises:
        CodecError: invalid parameters, or elements beyond the base.
    """
    src, dst, start = params.get("src"), params.get("dst"), params.get("start")
    if src not in FORMATS or dst not in FORMATS:
        raise CodecError(f"cast parameters name no known dtypes: {params!r}")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise CodecError(f"cast parameters have no valid start element: {params!r}")
    si, di = FORMATS[src][2], FORMATS[dst][2]
    if size % di:
        raise CodecError(f"a cast chunk of {size} bytes is not whole {dst} elements")
    n = size // di
    if (start + n) * si > base_len:
        raise CodecError(f"a cast needs {src} elements {start}..{start + n} of a base of {base_len} bytes")
    return src, dst, start, n


def _predicted(base: memoryview, src: str, dst: str, start: int, n: int) -> bytes:
    si = FORMATS[src][2]
    return cast_bits(base[start * si : (start + n) * si], src, dst)


def encode_cast(
    data: memoryview, base: memoryview, *, src: str, dst: str, start: int, level: int
) -> tuple[bytes, dict[str, Any]]:
    """Encode a chunk of ``dst`` elements as the cast of ``base``'s ``src`` elements from
    ``start``, plus the correction. Returns ``(payload, params)``.

    Raises:
        CodecError: invalid dtypes, or elements beyond the base.
    """
    params: dict[str, Any] = {"src": src, "dst": dst, "start": start}
    _, _, _, n = check_params(params, len(data), len(base))
    di = FORMATS[dst][2]
    payload, pp = lossless.encode_delta_planes(
        data, as_bytes(_predicted(base, src, dst, start, n)), di, level, "sub"
    )
    params.update(pp)
    return payload, params


def decode_cast(payload: bytes, params: dict[str, Any], size: int, base: memoryview) -> bytes:
    """Decode ``cast-planes-zstd/1`` against its base chunk.

    Raises:
        CodecError: invalid parameters or payload.
    """
    src, dst, start, n = check_params(params, size, len(base))
    if params.get("itemsize") != FORMATS[dst][2]:
        raise CodecError(f"cast parameters have a wrong itemsize: {params!r}")
    predicted = as_bytes(_predicted(base, src, dst, start, n))
    return lossless.decode_delta_planes(payload, params, size, predicted, "sub")
