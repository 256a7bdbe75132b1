"""numpy implementation of the byte-plane and delta kernels of :mod:`mgit._planes`.

Same functions, same arguments, same results byte for byte, same ``ValueError`` on misuse: the
lossless codecs use the C extension when it is built and this module otherwise (or when
``MGIT_NO_NATIVE=1``). The stored formats were defined by this code (on top of
:mod:`mgit.codecs._bits`), so it is also the reference the C kernels are tested against.

Kernels:

``split(src, itemsize, dst)``
    Byte planes: ``dst[p * n + i] = src[i * itemsize + p]``, ``n = len(src) // itemsize``.
``merge(planes, itemsize) -> bytes`` / ``merge_into(planes, itemsize, dst)``
    The inverse.
``delta_split(child, base, itemsize, dst, xor)``
    ``zigzag(child - base)`` (or ``child ^ base``) on little-endian words of ``itemsize`` bytes
    (1, 2, 4 or 8), split into byte planes.
``delta_merge(planes, base, itemsize, xor) -> bytes`` / ``delta_merge_into(..., dst, xor)``
    The inverse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mgit.codecs._bits import (
    MAX_ITEMSIZE,
    merge_planes,
    scratch,
    split_planes,
    unzigzag,
    word_dtype,
    zigzag,
)

__all__ = ["split", "merge", "merge_into", "delta_split", "delta_merge", "delta_merge_into"]

_WORD_SIZES = (1, 2, 4, 8)


def _length(obj: Any) -> int:
    return memoryview(obj).nbytes


def _check(src: Any, itemsize: int, words_only: bool, base: Any = None, dst: Any = None) -> int:
    """Validate like the C module does; return the length in bytes."""
    if words_only:
        if itemsize not in _WORD_SIZES:
            raise ValueError(f"itemsize must be 1, 2, 4 or 8, got {itemsize}")
    elif not 1 <= itemsize <= MAX_ITEMSIZE:
        raise ValueError(f"itemsize must be from 1 to {MAX_ITEMSIZE}, got {itemsize}")
    n = _length(src)
    if n % itemsize:
        raise ValueError(f"the input has {n} bytes, not a whole number of {itemsize}-byte elements")
    if base is not None and _length(base) != n:
        raise ValueError(f"the base has {_length(base)} bytes where {n} were expected")
    if dst is not None:
        if _length(dst) != n:
            raise ValueError(f"the output buffer has {_length(dst)} bytes where {n} were expected")
        if n and np.may_share_memory(_u8(dst), _u8(src)):
            raise ValueError("the output buffer overlaps the input")
        if n and base is not None and np.may_share_memory(_u8(dst), _u8(base)):
            raise ValueError("the output buffer overlaps the base")
    return n


def _u8(buf: Any) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint8)


def split(src: Any, itemsize: int, dst: Any) -> None:
    """Byte planes of ``src`` into ``dst``."""
    _check(src, itemsize, False, dst=dst)
    out = _u8(dst)
    if itemsize == 1:
        out[:] = _u8(src)
    else:
        split_planes(_u8(src), itemsize, out)


def merge_into(planes: Any, itemsize: int, dst: Any) -> None:
    """Inverse of :func:`split`, into ``dst``."""
    _check(planes, itemsize, False, dst=dst)
    merge_planes(_u8(planes), itemsize, _u8(dst))


def merge(planes: Any, itemsize: int) -> bytes:
    """Inverse of :func:`split`, as new bytes."""
    n = _check(planes, itemsize, False)
    return merge_planes(_u8(planes), itemsize, scratch.get("np_out", n)).tobytes()


def delta_split(child: Any, base: Any, itemsize: int, dst: Any, xor: bool) -> None:
    """``zigzag(child - base)`` (or ``child ^ base``) as byte planes in ``dst``."""
    n = _check(child, itemsize, True, base=base, dst=dst)
    word, _ = word_dtype(itemsize)
    c = np.frombuffer(child, dtype=word)
    b = np.frombuffer(base, dtype=word)
    out = _u8(dst)
    if itemsize == 1:
        delta = out
    else:
        delta = scratch.get("np_delta", n, word)
    if xor:
        np.bitwise_xor(c, b, out=delta)
    else:
        zigzag(np.subtract(c, b, out=delta), scratch.get("np_tmp", n, word))
    if itemsize > 1:
        split_planes(delta.view(np.uint8), itemsize, out)


def _delta_merge(planes: Any, base: Any, itemsize: int, xor: bool, out: np.ndarray) -> np.ndarray:
    n = out.size
    word, _ = word_dtype(itemsize)
    codes = merge_planes(_u8(planes), itemsize, out).view(word)
    parent = np.frombuffer(base, dtype=word)
    if xor:
        np.bitwise_xor(codes, parent, out=codes)
    else:
        np.add(unzigzag(codes, scratch.get("np_tmp", n, word)), parent, out=codes)
    return codes


def delta_merge_into(planes: Any, base: Any, itemsize: int, dst: Any, xor: bool) -> None:
    """Inverse of :func:`delta_split`, into ``dst``."""
    _check(planes, itemsize, True, base=base, dst=dst)
    _delta_merge(planes, base, itemsize, xor, _u8(dst))


def delta_merge(planes: Any, base: Any, itemsize: int, xor: bool) -> bytes:
    """Inverse of :func:`delta_split`, as new bytes."""
    n = _check(planes, itemsize, True, base=base)
    return _delta_merge(planes, base, itemsize, xor, scratch.get("np_delta", n)).tobytes()
