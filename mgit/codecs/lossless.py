"""Lossless chunk codecs: stored, zstd, byte planes + zstd, and deltas against a base chunk.

Codec ids (stable: they are written into stored objects):

``raw/1``
    The bytes themselves (used when nothing else makes them smaller).
``zstd/1``
    One zstd frame of the bytes. Used for 1-byte elements (fp8, int8, bool).
``planes-zstd/1``
    Byte planes (byte *k* of every element together, ZipNN-style) in one zstd frame. Used for
    elements of 2 bytes or more: the sign/exponent plane of a float compresses well, the low
    mantissa planes do not, and keeping them apart stops each from spoiling the other's statistics.
``sub-planes-zstd/1``
    Delta against the aligned base chunk: the wrapping integer difference of the bit patterns
    (``child - base`` as unsigned words of the element's width), zigzag-coded so that small
    changes of either sign give small codes, then byte planes in one zstd frame. This is what
    :func:`encode_delta` produces; it beat XOR by 3-14% on real finetunes (see
    ``benchmarks/bench_codecs.py``).
``xor-planes-zstd/1``
    Delta as the XOR of the bit patterns, then byte planes in one zstd frame (the ZipLLM
    baseline; kept decodable and available through ``encode_delta(..., transform="xor")``).

Parameters stored beside the payload: ``{"itemsize": k}`` for the plane codecs, ``{}`` otherwise.
A buffer whose length is not a multiple of ``itemsize`` is treated as 1-byte elements. The delta
words are the element itself for 1, 2, 4 and 8-byte elements and single bytes for any other size
(the byte planes still use the element size).

The byte-plane and delta kernels are the C extension :mod:`mgit._planes` when it is built (one
fused pass, no numpy, about 3x faster than numpy), else the numpy implementation in
:mod:`mgit.codecs._npkernels`, imported on first use. Both give the same bytes. Setting the
environment variable ``MGIT_NO_NATIVE=1`` before import forces the numpy kernels; tests may also
set :data:`native` to ``None``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from mgit.codecs import _zstd
from mgit.codecs._common import byte_scratch, check_itemsize, effective_itemsize
from mgit.errors import CodecError

__all__ = [
    "RAW",
    "ZSTD",
    "PLANES_ZSTD",
    "SUB_PLANES_ZSTD",
    "XOR_PLANES_ZSTD",
    "DELTA_TRANSFORMS",
    "plane_level",
    "encode_zstd",
    "encode_planes",
    "encode_delta_planes",
    "decode_raw",
    "decode_zstd",
    "decode_planes",
    "decode_delta_planes",
    "kernels",
    "kernels_name",
]

RAW = "raw/1"
ZSTD = "zstd/1"
PLANES_ZSTD = "planes-zstd/1"
SUB_PLANES_ZSTD = "sub-planes-zstd/1"
XOR_PLANES_ZSTD = "xor-planes-zstd/1"

#: Delta transform name -> codec id.
DELTA_TRANSFORMS: dict[str, str] = {"sub": SUB_PLANES_ZSTD, "xor": XOR_PLANES_ZSTD}


def plane_level(level: int) -> int:
    """The zstd setting used on byte planes for a requested ``level``.

    On byte planes of weights and of weight deltas, zstd level 1 gave both smaller output and 3-4x
    the speed of levels 2-9 (a longer minimum match skips short, useless matches and leaves the
    bytes to the Huffman coder); only level 19 was smaller, by under 1.5%, at a few MB/s. Going
    further the same way (:data:`mgit.codecs._zstd.PLANES_FAST`: minimum match 7, tiny hash table)
    was smaller still and twice as fast. So levels 1-3 (the default) all mean ``PLANES_FAST`` here,
    and higher levels are passed to zstd unchanged.

    Args:
        level: The requested level (1-22, already validated).

    Returns:
        The zstd level to use, or ``PLANES_FAST``.
    """
    return _zstd.PLANES_FAST if level <= 3 else level


def _load_native() -> ModuleType | None:
    if os.environ.get("MGIT_NO_NATIVE", "") not in ("", "0"):
        return None
    try:
        from mgit import _planes
    except ImportError:
        return None
    return _planes


#: The C kernels (:mod:`mgit._planes`), or ``None`` when not built or disabled by
#: ``MGIT_NO_NATIVE=1``. Tests may set it to ``None`` to force the numpy kernels.
native: ModuleType | None = _load_native()

#: Element sizes whose delta words are the element itself (otherwise bytes).
_WORD_SIZES = (1, 2, 4, 8)


def kernels() -> Any:
    """The kernel module in use: :mod:`mgit._planes`, or :mod:`mgit.codecs._npkernels`."""
    if native is not None:
        return native
    from mgit.codecs import _npkernels

    return _npkernels


def kernels_name() -> str:
    """``"native"`` when the C kernels are in use, else ``"numpy"``."""
    return "native" if native is not None else "numpy"


# ----------------------------------------------------------------------------------------------
# Standalone
# ----------------------------------------------------------------------------------------------


def decode_raw(payload: bytes, params: dict[str, Any], size: int, out: Any = None) -> Any:
    """Decode ``raw/1`` (into ``out``, a writable buffer of ``size`` bytes, when given; then
    ``out`` is returned).

    Raises:
        CodecError: If the payload is not ``size`` bytes long.
    """
    if len(payload) != size:
        raise CodecError(f"raw payload has {len(payload)} bytes where {size} were expected")
    if out is None:
        return bytes(payload)
    memoryview(out).cast("B")[:] = payload
    return out


def encode_zstd(data: bytes | memoryview, level: int) -> tuple[bytes, dict[str, Any]]:
    """One zstd frame of ``data`` at ``level``."""
    return _zstd.compress(data, level), {}


def decode_zstd(payload: bytes, params: dict[str, Any], size: int, out: Any = None) -> Any:
    """Decode ``zstd/1`` (into ``out`` when given, as :func:`decode_raw`).

    Raises:
        CodecError: If the payload is not a valid frame of ``size`` bytes.
    """
    if out is None:
        return _zstd.decompress(payload, size)
    return _zstd.decompress_into(payload, out)


def _params_itemsize(params: dict[str, Any], size: int) -> int:
    itemsize = params.get("itemsize") if isinstance(params, dict) else None
    try:
        itemsize = check_itemsize(itemsize)
    except CodecError:
        raise CodecError(f"codec parameters have no valid itemsize: {params!r}") from None
    return effective_itemsize(size, itemsize)


def encode_planes(data: memoryview, itemsize: int, level: int) -> tuple[bytes, dict[str, Any]]:
    """Byte planes of ``data`` in one zstd frame (``planes-zstd/1``)."""
    itemsize = check_itemsize(itemsize)
    k = effective_itemsize(len(data), itemsize)
    if k == 1:
        return _zstd.compress(data, plane_level(level)), {"itemsize": itemsize}
    planes = byte_scratch.get("planes", len(data))
    kernels().split(data, k, planes)
    return _zstd.compress(planes, plane_level(level)), {"itemsize": itemsize}


def decode_planes(payload: bytes, params: dict[str, Any], size: int, out: Any = None) -> Any:
    """Decode ``planes-zstd/1`` (into ``out`` when given, as :func:`decode_raw`).

    Raises:
        CodecError: If the parameters or the payload are invalid.
    """
    k = _params_itemsize(params, size)
    if k == 1:
        return decode_zstd(payload, params, size, out)
    planes = byte_scratch.get("planes", size)
    _zstd.decompress_into(payload, planes)
    if out is None:
        return kernels().merge(planes, k)
    kernels().merge_into(planes, k, out)
    return out


# ----------------------------------------------------------------------------------------------
# Deltas
# ----------------------------------------------------------------------------------------------


def encode_delta_planes(
    data: memoryview, base: memoryview, itemsize: int, level: int, transform: str
) -> tuple[bytes, dict[str, Any]]:
    """Delta of ``data`` against ``base`` (same length), as byte planes in one zstd frame.

    Args:
        data: The child chunk.
        base: The aligned parent chunk, of the same length.
        itemsize: Element size in bytes.
        level: Requested level (see :func:`plane_level`).
        transform: ``"sub"`` (zigzag of the wrapping difference) or ``"xor"``.

    Returns:
        ``(payload, params)``.
    """
    itemsize = check_itemsize(itemsize)
    k = effective_itemsize(len(data), itemsize)
    xor = transform != "sub"
    kern = kernels()
    planes = byte_scratch.get("planes", len(data))
    if k in _WORD_SIZES:
        kern.delta_split(data, base, k, planes, xor)
    else:
        # Odd element sizes: byte-wise delta, then planes of the element size.
        codes = byte_scratch.get("codes", len(data))
        kern.delta_split(data, base, 1, codes, xor)
        kern.split(codes, k, planes)
    return _zstd.compress(planes, plane_level(level)), {"itemsize": itemsize}


def decode_delta_planes(
    payload: bytes,
    params: dict[str, Any],
    size: int,
    base: memoryview,
    transform: str,
    out: Any = None,
) -> Any:
    """Decode ``sub-planes-zstd/1`` or ``xor-planes-zstd/1`` against ``base`` (into ``out``
    when given, as :func:`decode_raw`; ``out`` must not overlap ``base``).

    Raises:
        CodecError: If the parameters or the payload are invalid.
    """
    k = _params_itemsize(params, size)
    xor = transform != "sub"
    kern = kernels()
    planes = byte_scratch.get("planes", size)
    _zstd.decompress_into(payload, planes)
    if k not in _WORD_SIZES:
        codes = byte_scratch.get("codes", size)
        kern.merge_into(planes, k, codes)
        planes, k = codes, 1
    if out is None:
        return kern.delta_merge(planes, base, k, xor)
    kern.delta_merge_into(planes, base, k, out, xor)
    return out
