"""Objects back into files, byte for byte, with bounded memory.

Chunks are decoded (and verified) on a thread pool, a bounded number in flight, and written
in order to a temp file beside the target, which is renamed into place only when its XXH3-128
matches the one recorded at commit time. A target directory is never written through a symlink.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import xxhash

from mgit._fs import AtomicFile, safe_join
from mgit._pool import Job, WorkerPool, default_workers
from mgit.errors import CorruptObjectError, InvalidModelFileError
from mgit._dtypes import numpy_dtype  # re-exported: the one dtype table's
from mgit.objects.ids import hash_object
from mgit.objects.model import FileEntry, TensorManifest
from mgit.objects.store import DiskStore

if TYPE_CHECKING:
    import numpy as np

__all__ = ["file_pieces", "write_file", "tensor_bytes", "tensor_buffer", "tensor_array", "numpy_dtype"]


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
    _read_tensor_into(store, m, memoryview(buf))
    return buf


def tensor_buffer(store: DiskStore, m: TensorManifest) -> np.ndarray:
    """The raw bytes of one tensor as a new uint8 array (as :func:`tensor_bytes`, without
    zero-filling the memory first; numpy backs a large one with huge pages)."""
    import numpy as np

    arr = np.empty(m.nbytes, dtype=np.uint8)
    _read_tensor_into(store, m, memoryview(arr))
    return arr


def _read_tensor_into(store: DiskStore, m: TensorManifest, view: memoryview) -> None:
    """Decode one tensor into ``view`` (``m.nbytes`` bytes).

    Each chunk is decoded (and verified) straight into its place, with no intermediate copy;
    a tensor of several chunks is decoded on the decode threads, one chunk each (zstd, the
    plane kernels and BLAKE3 release the GIL).
    """
    if m.packed:
        oid, start, end = m.segments()[0]
        data = store.get(oid, kind="chunk")
        if end > len(data):
            raise CorruptObjectError(oid, "a tensor lies past the end of its pack")
        piece = memoryview(data)[start:end]
        if hash_object("chunk", piece) != m.digest:
            raise CorruptObjectError(oid, "a packed tensor does not match its digest")
        view[:] = piece
        return
    parts: list[tuple[str, memoryview]] = []
    off = 0
    for oid, _start, end in m.segments():
        if end <= 0 or off + end > m.nbytes:
            raise CorruptObjectError(oid, "tensor chunks have the wrong total size")
        parts.append((oid, view[off : off + end]))
        off += end
    if off != m.nbytes:
        raise CorruptObjectError(m.chunks[-1] if m.chunks else "?", "tensor chunks have the wrong total size")
    _decode_parts(store, parts)


_decoding = threading.local()  # .worker: this thread is one of the decode threads
_decode_pool_lock = threading.Lock()
_decode_pool_obj: list[WorkerPool] = []


def _decode_pool() -> WorkerPool | None:
    """The decode threads (one per core, started on first use and kept, with their scratch
    buffers), or None with a single core."""
    workers = default_workers()
    if workers < 2:
        return None
    with _decode_pool_lock:
        if not _decode_pool_obj:
            _decode_pool_obj.append(WorkerPool(workers))
        return _decode_pool_obj[0]


def _decode_one(store: DiskStore, oid: str, out: memoryview) -> None:
    _decoding.worker = True
    store.get_into(oid, out, kind="chunk")


def _decode_parts(store: DiskStore, parts: list[tuple[str, memoryview]]) -> None:
    """Decode each ``(chunk id, slice)`` into its slice: on the decode threads when there are
    several (never from one of them: a job waiting on jobs queued behind it could wait
    forever), else here."""
    if len(parts) > 1:  # a cold read: the disk fetches every chunk at once
        store.loose.prefetch([oid for oid, _ in parts])
    pool = None if len(parts) < 2 or getattr(_decoding, "worker", False) else _decode_pool()
    if pool is None:
        for oid, out in parts:
            store.get_into(oid, out, kind="chunk")
        return
    jobs = [pool.submit(_decode_one, store, oid, out) for oid, out in parts]
    try:
        for job in jobs:
            job.result()
    except BaseException:
        for job in jobs:
            job.cancel()
        for job in jobs:  # no thread may still write into the caller's buffer
            if not job.cancelled():
                try:
                    job.result()
                except BaseException:  # noqa: BLE001 - the first error is the one raised
                    pass
        raise


def tensor_array(store: DiskStore, m: TensorManifest) -> np.ndarray:
    """One tensor as a numpy array (little-endian, its own memory)."""
    return tensor_buffer(store, m).view(numpy_dtype(m.dtype)).reshape(m.shape)
