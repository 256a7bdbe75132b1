"""Helpers the codecs share that need no numpy: buffer views, element sizes, byte scratch.

Importing :mod:`mgit.codecs` and the lossless codecs must not import numpy (it costs 80-100 ms of
process start-up); numpy is only loaded by the lossy codec and by the fallback kernels used when
the C extension :mod:`mgit._planes` is not built. So everything on the lossless path lives here.
"""

from __future__ import annotations

import threading

from mgit.errors import CodecError

__all__ = [
    "MAX_ITEMSIZE",
    "QUANT_PLANES_ZSTD",
    "LOSSY_DTYPES",
    "CAST_PLANES_ZSTD",
    "CAST_DTYPES",
    "as_bytes",
    "check_itemsize",
    "effective_itemsize",
    "byte_scratch",
]

#: Largest element size a codec accepts (complex128 is 16; anything beyond is surely a bug).
MAX_ITEMSIZE = 64

#: Codec id of the lossy codec (:mod:`mgit.codecs.lossy`), here so that naming it needs no numpy.
QUANT_PLANES_ZSTD = "quant-planes-zstd/1"

#: Safetensors dtype names the lossy codec accepts: the codec's choice among the real float dtypes
#: of :mod:`mgit.formats.dtypes` (element sizes and mantissa bits come from that table; fp8 is
#: left lossless).
LOSSY_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})

#: Codec id of the dtype-cast codec (:mod:`mgit.codecs.cast`), here so that naming it needs no numpy.
CAST_PLANES_ZSTD = "cast-planes-zstd/1"

#: Safetensors dtype names the cast codec converts between (IEEE binary formats and bfloat16).
CAST_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


def as_bytes(data: bytes | bytearray | memoryview) -> memoryview:
    """View any C-contiguous buffer as a flat memoryview of unsigned bytes, without copying.

    Args:
        data: The buffer.

    Returns:
        A ``memoryview`` of format ``"B"``.

    Raises:
        CodecError: If the buffer is not C-contiguous.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format == "B" and view.ndim == 1:
        return view
    if not view.c_contiguous:
        raise CodecError("codec input must be a contiguous buffer")
    return view.cast("B")


def check_itemsize(itemsize: object) -> int:
    """Validate an element size.

    Args:
        itemsize: The size in bytes of one element.

    Returns:
        The size as an int.

    Raises:
        CodecError: If it is not an integer from 1 to 64.
    """
    if (
        isinstance(itemsize, bool)
        or not isinstance(itemsize, int)
        or not 1 <= itemsize <= MAX_ITEMSIZE
    ):
        raise CodecError(f"itemsize must be an integer from 1 to {MAX_ITEMSIZE}, got {itemsize!r}")
    return itemsize


def effective_itemsize(size: int, itemsize: int) -> int:
    """The element size a codec actually uses for ``size`` bytes.

    Chunks always hold whole elements; a buffer that does not is treated as plain bytes so that
    every length still round-trips. Encoder and decoder both apply this rule.
    """
    return itemsize if size % itemsize == 0 else 1


#: Scratch buffers up to this size are kept per thread and reused; larger ones are not kept.
SCRATCH_MAX = 64 << 20


class _ByteScratch(threading.local):
    """Per-thread reusable byte buffers (``bytearray``) for the lossless hot paths.

    A fresh multi-megabyte buffer costs a page fault per 4 KiB on first touch, which is more than
    the plane kernels themselves; planes are written into (and decompressed into) a buffer kept
    per thread instead. Scratch memory never leaves the codecs: what is returned is always a new
    ``bytes`` (merged from the scratch) or a freshly compressed frame.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, memoryview] = {}

    def get(self, name: str, nbytes: int) -> memoryview:
        """A writable memoryview of exactly ``nbytes`` bytes; its content is garbage."""
        if nbytes > SCRATCH_MAX:
            return memoryview(bytearray(nbytes))
        buf = self.buffers.get(name)
        if buf is None or len(buf) < nbytes:
            # A new buffer rather than a resize: slices of the old one may still be alive.
            buf = self.buffers[name] = memoryview(bytearray(max(nbytes, 1 << 16)))
        return buf[:nbytes]


#: The per-thread byte scratch buffers (see :class:`_ByteScratch`).
byte_scratch = _ByteScratch()
