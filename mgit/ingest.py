"""Files into objects: read, chunk, encode in parallel, build tree entries.

A safetensors file becomes its exact header bytes plus its tensors in data order; a PyTorch zip
checkpoint (``pytorch_model.bin``, read without running its pickle) becomes its storages as
tensors plus its other bytes (zip records, ``data.pkl``) end to end; any other file is a blob of
fixed-size chunks. Each tensor is split into element-aligned chunks, each offered its paired
parent chunk as a delta base, and small tensors are packed several to a chunk
(:mod:`mgit.pairing` decides the pairs and the cuts). Chunks are encoded on a thread pool (zstd
and blake3 release the GIL) with a bounded number in flight, so peak memory is a small multiple
of the chunk size whatever the model size. The file's checksum is computed in file order as
chunks complete. Tensor manifests go inline into the file entry; the caller writes tree,
commit, then ref, after every chunk.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from mgit._fs import open_regular
from mgit._pool import Job, WorkerPool
from mgit.errors import InvalidModelFileError
from mgit.formats.dtypes import DTYPE_SIZES, FLOAT_DTYPES
from mgit.formats.safetensors import TensorSpec, UnknownDtypeError, read_header
from mgit.objects.chunking import chunk_ranges
from mgit.objects.ids import hash_object
from mgit.objects.model import FileEntry, TensorManifest, TensorView, tensor_chunk_size
from mgit.objects.store import ChunkPut, DiskStore
from mgit.pairing import ParentIndex, TensorPlan, plan_packs, plan_tensor, torch_storage_plan

__all__ = ["IngestStats", "ingest_file"]


@dataclass
class IngestStats:
    """What an ingest wrote."""

    logical_bytes: int = 0
    new_bytes: int = 0
    chunks: int = 0
    new_chunks: int = 0
    delta_chunks: int = 0
    lossy_chunks: int = 0
    max_err: float = 0.0
    codecs: dict[str, int] = field(default_factory=dict)
    #: Files stored as opaque bytes though they look like model files, and why.
    warnings: list[str] = field(default_factory=list)

    def add(self, put: ChunkPut) -> None:
        """Account one chunk."""
        self.chunks += 1
        if put.new:
            self.new_chunks += 1
            self.new_bytes += put.stored_bytes
            self.codecs[put.codec] = self.codecs.get(put.codec, 0) + 1
            if put.depth:
                self.delta_chunks += 1
        if put.max_err:
            self.lossy_chunks += 1
            self.max_err = max(self.max_err, put.max_err)


class _Pipeline:
    """Bounded in-flight chunk jobs whose results are consumed in submission order."""

    def __init__(self, pool: WorkerPool, workers: int) -> None:
        self.pool = pool
        self.limit = 2 * workers + 1
        self.queue: deque[tuple[Job, Callable[[Any], None]]] = deque()

    def submit(self, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self._make_room()
        self.queue.append((self.pool.submit(fn), done))

    def add_done(self, done: Callable[[Any], None]) -> None:
        """Queue a callback with no job, to run in order with the jobs' callbacks."""
        self._make_room()
        self.queue.append((Job.done_with(None), done))

    def _make_room(self) -> None:
        # Finished jobs at the head are consumed at once, so that their chunks do not wait
        # in memory for the queue to fill (fresh memory costs a page fault per 4 KiB).
        while self.queue and (len(self.queue) >= self.limit or self.queue[0][0].done()):
            self._pop()

    def _pop(self) -> None:
        fut, done = self.queue.popleft()
        done(fut.result())

    def drain(self) -> None:
        while self.queue:
            self._pop()

    def cancel(self) -> None:
        for fut, _ in self.queue:
            fut.cancel()
        for fut, _ in self.queue:
            if not fut.cancelled():
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 - already failing; first error wins
                    pass
        self.queue.clear()


class _Reader:
    """Reads byte ranges of a file with ``pread``: the copy out of the page cache happens with
    the GIL released (slicing a mapping held it, and that was a quarter of a commit's GIL time),
    and no mapping of the file counts against the process's memory."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.fd = open_regular(path)  # a file swapped for a FIFO since the scan: refused at once
        self.size = os.fstat(self.fd).st_size

    def read(self, start: int, end: int) -> bytes:
        if start == end:
            return b""
        if end > self.size:
            raise InvalidModelFileError(self.name, "file shrank while it was being read")
        data = os.pread(self.fd, end - start, start)
        if len(data) != end - start:
            raise InvalidModelFileError(self.name, "file shrank while it was being read")
        return data

    def close(self) -> None:
        os.close(self.fd)


def ingest_file(
    store: DiskStore,
    path: Path,
    *,
    relpath: str,
    chunk_size: int,
    parents: ParentIndex | None,
    pool: WorkerPool,
    workers: int,
    stats: IngestStats,
    eps: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> FileEntry:
    """Store one file of a model folder and return its tree entry.

    Raises:
        InvalidModelFileError: a ``.safetensors`` file that is malformed, or a file that changed
            while it was being read.
    """
    header = torch = None
    if relpath.endswith(".safetensors"):
        try:
            header = read_header(path)
        except UnknownDtypeError:
            header = None
    else:
        torch, why = torch_storage_plan(relpath, path)
        if why is not None:
            stats.warnings.append(f"{relpath}: stored as an opaque file ({why})")
    reader = _Reader(path)
    pipe = _Pipeline(pool, workers)
    xxh = xxhash.xxh3_128()
    try:
        size = reader.size
        stats.logical_bytes += size
        if header is not None:
            hdr_bytes = reader.read(0, header.data_start)
            if hdr_bytes[8:] != header.header_bytes or reader.size != os.path.getsize(path):
                raise InvalidModelFileError(path, "file changed while it was being read")
            xxh.update(hdr_bytes)
            header_oid = store.put("chunk", hdr_bytes[8:])
            specs = list(header.tensors)
            layout: Sequence[int] = [-1 - i for i in range(len(specs))]
            start = header.data_start
        elif torch is not None:
            specs = [TensorSpec(n, dt, shape, a, b) for n, dt, shape, a, b in torch.storages]
            layout, start = torch.layout, 0
        else:
            chunks: list[str] = []
            for a, b in chunk_ranges(size, chunk_size):
                _submit_chunk(store, reader, pipe, xxh, stats, progress, a, b, chunks, itemsize=1, is_float=False)
            pipe.drain()
            _check_size(path, size)
            return FileEntry(kind="blob", size=size, xxh=xxh.hexdigest(), chunks=tuple(chunks))
        tensors, raw = _ingest_tensors(
            store, reader, pipe, xxh, stats, progress, specs, layout, start, relpath=relpath,
            chunk_size=chunk_size, parents=parents, eps=eps,
        )
        pipe.drain()
        _check_size(path, size)
        if header is not None:
            return FileEntry(
                kind="safetensors", size=size, xxh=xxh.hexdigest(), header=header_oid, tensors=tensors
            )
        assert torch is not None
        return FileEntry(
            kind="torchzip", size=size, xxh=xxh.hexdigest(), tensors=tensors, layout=tuple(layout),
            chunks=_store_raw(store, raw, chunk_size, parents, relpath, stats),
            views=tuple(TensorView(*v) for v in torch.views),
        )
    except BaseException:
        pipe.cancel()
        raise
    finally:
        reader.close()


def _check_size(path: Path, size: int) -> None:
    if os.path.getsize(path) != size:
        raise InvalidModelFileError(path, "file changed while it was being read")


def _submit_chunk(
    store: DiskStore, reader: _Reader, pipe: _Pipeline, xxh: Any, stats: IngestStats,
    progress: Callable[[int], None] | None, a: int, b: int, oids: list[str], **put_kw: Any,
) -> None:
    """Store bytes ``a:b`` of the file as one chunk, appending its id to ``oids``."""

    def job() -> tuple[ChunkPut, bytes]:
        # Workers read their own range (pread, GIL released) and hand the bytes back for the
        # in-order checksum.
        d = reader.read(a, b)
        return store.put_chunk(d, **put_kw), d

    def done(res: tuple[ChunkPut, bytes]) -> None:
        put, d = res
        # The file checksum covers what export gives back: for a lossy chunk, its decoded
        # bytes. Callbacks run in file order, so the running hash is exact.
        xxh.update(put.content if put.content is not None else d)
        oids.append(put.oid)
        stats.add(put)

    pipe.submit(job, done)
    if progress:
        progress(b - a)


def _ingest_tensors(
    store: DiskStore, reader: _Reader, pipe: _Pipeline, xxh: Any, stats: IngestStats,
    progress: Callable[[int], None] | None, specs: list[TensorSpec], layout: Sequence[int],
    start: int, *, relpath: str, chunk_size: int, parents: ParentIndex | None, eps: float | None,
) -> tuple[tuple[tuple[str, TensorManifest], ...], list[bytes]]:
    """Store the tensors of a file laid out, from byte ``start`` to its end, as ``layout``
    (``n >= 0``: ``n`` raw bytes, read and hashed in place; ``-1 - i``: tensor ``specs[i]``);
    returns the manifests and the raw bytes in order."""
    if parents is not None:
        parents = parents.with_children((relpath, spec.name) for spec in specs)
    chunk_ids: list[list[str]] = [[] for _ in specs]
    plans: dict[int, TensorPlan] = {}
    # Small tensors first, packed; each pack is read, hashed and stored as one chunk.
    packed: dict[int, tuple[Any, int, str]] = {}  # tensor index -> (pack, offset, digest)
    for pack in plan_packs(specs, chunk_size, parents, file=relpath):
        buf = bytearray(pack.size)
        for i, off in zip(pack.members, pack.offsets):
            spec = specs[i]
            data = reader.read(spec.start, spec.start + spec.nbytes)
            buf[off : off + len(data)] = data
            packed[i] = (pack, off, hash_object("chunk", data))
        itemsize = DTYPE_SIZES[pack.dtype]

        def pack_job(d: bytearray = buf, it: int = itemsize, dt: str = pack.dtype,
                     bo: str | None = pack.base) -> ChunkPut:
            # Lossless even under --lossy: norms and biases are few bytes and sensitive.
            return store.put_chunk(d, itemsize=it, is_float=dt in FLOAT_DTYPES, base=bo, dtype=dt)

        def pack_done(put: ChunkPut, pack: Any = pack) -> None:
            pack.oid = put.oid
            stats.add(put)

        pipe.submit(pack_job, pack_done)
    raw: list[bytes] = []
    pos = start
    for code in layout:
        if code >= 0:  # raw bytes between tensors: hashed in file order, kept for the caller
            data = reader.read(pos, pos + code)
            raw.append(data)
            pos += code
            pipe.add_done(lambda _, d=data: xxh.update(d))
            if progress:
                progress(code)
            continue
        idx = -1 - code
        spec = specs[idx]
        if spec.start != pos:
            raise InvalidModelFileError(relpath, "tensor data is not where the layout says")
        pos = spec.end
        if idx in packed:
            data = reader.read(spec.start, spec.start + spec.nbytes)
            if hash_object("chunk", data) != packed[idx][2]:  # what went into its pack
                raise InvalidModelFileError(relpath, "file changed while it was being read")
            pipe.add_done(lambda _, d=data: xxh.update(d))
            if progress:
                progress(spec.nbytes)
            continue
        plan = (
            parents.plan(spec.name, spec.dtype, spec.shape, chunk_size, file=relpath)
            if parents is not None else plan_tensor(spec.dtype, spec.shape, chunk_size, None)
        )
        plans[idx] = plan
        base_dtype = plan.base.dtype if plan.cast and plan.base is not None else None
        for i, (a, b) in enumerate(chunk_ranges(spec.nbytes, plan.chunk_size)):
            base_oid, base_start = plan.base_of(i)
            _submit_chunk(
                store, reader, pipe, xxh, stats, progress, spec.start + a, spec.start + b,
                chunk_ids[idx], itemsize=plan.itemsize, is_float=spec.dtype in FLOAT_DTYPES,
                base=base_oid, dtype=spec.dtype, eps=eps, base_dtype=base_dtype, base_start=base_start,
            )
    if pos != reader.size:
        raise InvalidModelFileError(relpath, "the layout does not cover the file")
    pipe.drain()
    tensors: list[tuple[str, TensorManifest]] = []
    for idx, spec in enumerate(specs):
        cs = tensor_chunk_size(spec.dtype, chunk_size)
        if idx in packed:
            pack, off, digest = packed[idx]
            m = TensorManifest(spec.dtype, spec.shape, cs, (pack.oid,), off, digest)
        else:
            m = TensorManifest(spec.dtype, spec.shape, plans[idx].chunk_size, tuple(chunk_ids[idx]))
        tensors.append((spec.name, m))
    return tuple(tensors), raw


def _store_raw(
    store: DiskStore, raw: list[bytes], chunk_size: int, parents: ParentIndex | None, relpath: str,
    stats: IngestStats,
) -> tuple[str, ...]:
    """Store a checkpoint's bytes other than its storages (zip records, ``data.pkl``), end to
    end, in chunks; chunk *i* is a delta against the parent's same file's chunk *i* (the pickle
    and most records are the same from one version to the next)."""
    data = b"".join(raw)
    bases = parents.file_chunks(relpath) if parents is not None else ()
    out = []
    for i, (a, b) in enumerate(chunk_ranges(len(data), chunk_size)):
        put = store.put_chunk(data[a:b], itemsize=1, is_float=False, base=bases[i] if i < len(bases) else None)
        stats.add(put)
        out.append(put.oid)
    return tuple(out)
