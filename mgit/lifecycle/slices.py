"""Element ranges of stored tensors, read chunk by chunk: the slice reader behind the streamed
merge (and any arithmetic that must not hold a whole tensor).

A tensor of :data:`~mgit.objects.model.SMALL_TENSOR` bytes or more is stored as element-aligned
chunks of ``chunk_size`` bytes, so elements ``[start, stop)`` lie in a known run of chunks:
:class:`TensorReader` decodes (and verifies) only those, keeping the last chunk it decoded for
the next read, so consecutive slices smaller than a chunk decode each chunk once. A packed
(small) tensor is read whole once, through :func:`mgit.materialize.tensor_bytes`, which checks
its digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from mgit.errors import CorruptObjectError
from mgit.objects.model import TensorManifest

if TYPE_CHECKING:
    import numpy as np

    from mgit.objects.store import DiskStore

__all__ = ["TensorReader", "slice_ranges"]


def slice_ranges(numel: int, step: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive slices of ``step`` elements (the last one shorter)."""
    for a in range(0, numel, step):
        yield a, min(a + step, numel)


class TensorReader:
    """Reads element ranges of one stored tensor; memory: the range read plus one chunk."""

    def __init__(self, store: DiskStore, manifest: TensorManifest) -> None:
        from mgit.formats.dtypes import numpy_dtype

        self.store = store
        self.manifest = manifest
        self.numel = manifest.numel
        self.dtype = numpy_dtype(manifest.dtype)
        self._at: int = -1  # index of the cached chunk (-2: the whole packed tensor)
        self._data: bytes | bytearray = b""

    def read_bytes(self, start: int, stop: int) -> bytes | bytearray | memoryview:
        """The raw bytes of elements ``[start, stop)``.

        Raises:
            CorruptObjectError: a chunk fails verification or has the wrong size.
            ValueError: the range is outside the tensor.
        """
        m = self.manifest
        if not 0 <= start <= stop <= self.numel:
            raise ValueError(f"elements [{start}, {stop}) outside a tensor of {self.numel}")
        isz = m.itemsize
        lo, hi = start * isz, stop * isz
        if lo == hi:
            return b""
        if m.packed:
            if self._at != -2:
                from mgit.materialize import tensor_bytes

                self._data, self._at = tensor_bytes(self.store, m), -2
            return memoryview(self._data)[lo:hi]
        cs = m.chunk_size
        first, last = lo // cs, (hi - 1) // cs
        if first == last:
            base = first * cs
            return memoryview(self._chunk(first))[lo - base : hi - base]
        out = bytearray(hi - lo)
        for i in range(first, last + 1):
            base = i * cs
            data = self._chunk(i)
            a, b = max(lo, base), min(hi, base + len(data))
            out[a - lo : b - lo] = memoryview(data)[a - base : b - base]
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Elements ``[start, stop)`` of the flattened tensor, in its dtype (read-only)."""
        import numpy as np

        return np.frombuffer(self.read_bytes(start, stop), dtype=self.dtype)

    def _chunk(self, i: int) -> bytes:
        if self._at == i:
            return self._data  # type: ignore[return-value]
        m = self.manifest
        if i >= len(m.chunks):
            raise CorruptObjectError(
                m.chunks[-1] if m.chunks else "?", "tensor chunks have the wrong total size"
            )
        oid = m.chunks[i]
        data = self.store.get(oid, kind="chunk")
        want = min(m.chunk_size, m.nbytes - i * m.chunk_size)
        if len(data) != want:
            raise CorruptObjectError(oid, "tensor chunks have the wrong total size")
        self._data, self._at = data, i
        return data
