"""Objects back into files, byte for byte, with bounded memory.

Chunks are decoded (and verified) on a thread pool, a bounded number in flight, and written
in order to a temp file beside the target, which is renamed into place only when its XXH3-128
matches the one recorded at commit time. A target directory is never written through a symlink.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import xxhash

from mgit._fs import AtomicFile, safe_join
from mgit._pool import Job, WorkerPool
from mgit.errors import CorruptObjectError, InvalidModelFileError
from mgit._dtypes import numpy_dtype  # re-exported: the one dtype table's
from mgit.objects.ids import hash_object
from mgit.objects.model import FileEntry, TensorManifest
from mgit.objects.store import DiskStore

if TYPE_CHECKING:
    import numpy as np

__all__ = ["file_pieces", "write_file", "tensor_bytes", "tensor_array", "numpy_dtype"]


def file_pieces(store: DiskStore, entry: FileEntry) -> Iterator[tuple[str | None, int, int, bytes | None]]:
    """The pieces of a file in order: ``(chunk_oid, start, end, None)``, a byte range of a
    decoded chunk (``end`` -1: all of it), or ``(None, 0, 0, literal)``."""
    if entry.kind == "blob":
        for oid in entry.chunks:
            yield oid, 0, -1, None
        return
    if entry.kind == "torchzip":
        yield from _torchzip_pieces(store, entry)
        return
    assert entry.header is not None
    header = store.get(entry.header, kind="chunk")
    yield None, 0, 0, struct.pack("<Q", len(header)) + header
    for _, m in entry.tensors:
        for oid, start, end in m.segments():
            yield oid, start, end, None


def _torchzip_pieces(store: DiskStore, entry: FileEntry) -> Iterator[tuple[str | None, int, int, bytes | None]]:
    """A checkpoint's pieces: runs of its raw bytes (cut from the raw chunks, whose lengths
    come from their headers) and its storages, in layout order."""
    raw = [(oid, store.header(oid).size) for oid in entry.chunks]
    ci, at = 0, 0  # the raw chunk being read, and the offset in it
    for code in entry.layout:
        if code < 0:
            for oid, start, end in entry.tensors[-1 - code][1].segments():
                yield oid, start, end, None
            continue
        left = code
        while left > 0:
            if ci >= len(raw):
                raise CorruptObjectError(entry.chunks[-1] if entry.chunks else "torchzip", "raw bytes end early")
            oid, size = raw[ci]
            take = min(left, size - at)
            yield oid, at, at + take, None
            at += take
            left -= take
            if at == size:
                ci, at = ci + 1, 0


def write_file(
    store: DiskStore,
    entry: FileEntry,
    root: Path,
    relpath: str,
    *,
    pool: WorkerPool,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Rebuild one file under ``root`` atomically, verifying its checksum before the rename.

    Raises:
        CorruptObjectError: an object fails verification, or the rebuilt file's checksum differs.
        UnsafePathError: the path escapes ``root`` or goes through a symlink.
    """
    target = safe_join(root, relpath)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        raise InvalidModelFileError(target, "a directory is in the way")
    xxh = xxhash.xxh3_128()
    queue: deque[tuple[Job | bytes, int, int, str | None, int, int]] = deque()
    limit = 2 * workers + 1
    written = 0
    # Atomic (temp file + rename) but not fsynced, like cp and git checkout: these are copies
    # of what the object store already holds durably.
    out = AtomicFile(target, durable=False)
    try:
        pieces = list(file_pieces(store, entry))
        # A pack serves several tensors: decode it once, keep it until its last piece is out.
        last_use = {oid: i for i, (oid, _, _, _) in enumerate(pieces) if oid is not None}
        live: dict[str, Job] = {}

        def piece(data: bytes, start: int, end: int, oid: str | None) -> bytes | memoryview:
            if end < 0 or (start, end) == (0, len(data)):
                return data
            if end > len(data):
                raise CorruptObjectError(oid or "?", "a tensor lies past the end of its chunk")
            return memoryview(data)[start:end]

        def decode_and_write(oid: str, start: int, end: int, offset: int) -> bytes | memoryview:
            # In a worker: decode, verify and write at the piece's place in the file, so the
            # main thread only keeps the checksum running in order.
            data = piece(store.get(oid, kind="chunk"), start, end, oid)
            out.pwrite(data, offset)
            return data

        def pop() -> None:
            nonlocal written
            item, start, end, oid, idx, offset = queue.popleft()
            if isinstance(item, bytes):
                data: bytes | memoryview = item
                out.pwrite(data, written)
            elif offset < 0:  # shared (a pack), or a blob chunk of unknown length
                data = piece(item.result(), start, end, oid)
                out.pwrite(data, written)
            else:
                data = item.result()
            if oid is not None and last_use[oid] == idx:
                live.pop(oid, None)
            xxh.update(data)
            written += len(data)
            if progress:
                progress(len(data))

        offset = 0  # where the next piece goes, while every length is known (safetensors)
        for idx, (oid, start, end, literal) in enumerate(pieces):
            # Finished pieces at the head are written out at once (their buffers freed for
            # the next chunks) rather than when the queue is full.
            while queue and (len(queue) >= limit or _finished(queue[0][0])):
                pop()
            if literal is not None:
                queue.append((literal, 0, -1, None, idx, offset))
                offset += len(literal)
                continue
            assert oid is not None
            fut = live.get(oid)
            if fut is None and end >= 0 and offset >= 0 and last_use[oid] == idx:
                queue.append((pool.submit(decode_and_write, oid, start, end, offset),
                              start, end, oid, idx, offset))
            else:
                if fut is None:
                    fut = pool.submit(store.get, oid, kind="chunk")
                    if last_use[oid] != idx:
                        live[oid] = fut
                queue.append((fut, start, end, oid, idx, -1))
            offset = offset + end - start if end >= 0 and offset >= 0 else -1
        while queue:
            pop()
        if written != entry.size or xxh.hexdigest() != entry.xxh:
            raise CorruptObjectError(
                entry.header or (entry.chunks[0] if entry.chunks else "?"),
                f"rebuilt {relpath} does not match its recorded checksum",
            )
        out.commit()
    except BaseException:
        for item, *_ in queue:
            if isinstance(item, Job):
                item.cancel()
        for item, *_ in queue:  # no worker may still write into the temp file once it is gone
            if isinstance(item, Job) and not item.cancelled():
                try:
                    item.result()
                except BaseException:  # noqa: BLE001 - already failing; first error wins
                    pass
        out.abort()
        raise


def _finished(item: Job | bytes) -> bool:
    return isinstance(item, bytes) or item.done()


def tensor_bytes(store: DiskStore, m: TensorManifest) -> bytearray:
    """The raw bytes of one tensor (reads only its chunks, or its pack)."""
    buf = bytearray(m.nbytes)
    off = 0
    for oid, start, end in m.segments():
        data = store.get(oid, kind="chunk")
        if m.packed:
            if end > len(data):
                raise CorruptObjectError(oid, "a tensor lies past the end of its pack")
            data = data[start:end]
            if hash_object("chunk", data) != m.digest:
                raise CorruptObjectError(oid, "a packed tensor does not match its digest")
        if off + len(data) > m.nbytes:
            raise CorruptObjectError(oid, "tensor chunks have the wrong total size")
        buf[off : off + len(data)] = data
        off += len(data)
    if off != m.nbytes:
        raise CorruptObjectError(m.chunks[-1] if m.chunks else "?", "tensor chunks have the wrong total size")
    return buf


def tensor_array(store: DiskStore, m: TensorManifest) -> np.ndarray:
    """One tensor as a numpy array (little-endian, its own memory)."""
    import numpy as np

    buf = tensor_bytes(store, m)
    return np.frombuffer(buf, dtype=numpy_dtype(m.dtype)).reshape(m.shape)
