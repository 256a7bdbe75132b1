"""Files into objects: chunk, pair with the parent, encode in parallel, build tree entries.

A safetensors file becomes its exact header bytes plus its tensors in data order; each tensor
is split into fixed-size, element-aligned chunks; chunk *i* is offered the parent tensor's
chunk *i* as a delta base. Small tensors (biases, norms) are packed several to a chunk, laid
out like the parent's pack when they pair with all of its members, so a pack is a delta
against the parent's pack. Any other file is a blob of fixed-size chunks. Chunks are encoded on
a thread pool (zstd and blake3 release the GIL) with a bounded number in flight, so peak
memory is a small multiple of the chunk size whatever the model size. Tensor manifests go
inline into the file entry; the caller writes tree, commit, then ref, after every chunk.

Tensors pair with the parent's by the one name-pairing rule, :func:`mgit.formats.names.pair`
(equal names, else names equal once task-head prefixes are removed, one to one), over the whole
model's tensor names (:meth:`ParentIndex.for_files`). Chunk boundaries are
:mod:`mgit.objects.chunking`'s, which also computes what a lossless commit stores for a tensor
(chunk ids, content id) without storing it.
"""

from __future__ import annotations

import copy
import os
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from mgit._pool import Job, WorkerPool
from mgit.errors import InvalidModelFileError
from mgit.formats.dtypes import DTYPE_SIZES, FLOAT_DTYPES
from mgit.formats.names import HEAD_PREFIXES, pair
from mgit.formats.safetensors import UnknownDtypeError, read_header
from mgit.objects.chunking import chunk_ranges
from mgit.objects.ids import hash_object
from mgit.objects.model import (
    FileEntry,
    TensorManifest,
    Tree,
    is_small_tensor,
    tensor_chunk_size,
)
from mgit.objects.store import ChunkPut, DiskStore

__all__ = [
    "IngestStats",
    "ParentIndex",
    "TASK_PREFIXES",
    "ingest_file",
    "pair_name",
    "plan_packs",
    "tensor_names",
]

#: Prefixes that task-head model classes put before the base model's tensor names (an alias of
#: :data:`mgit.formats.names.HEAD_PREFIXES`).
TASK_PREFIXES = HEAD_PREFIXES

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


def pair_name(name: str, names: Mapping[str, Any] | Collection[str]) -> str | None:
    """The name among ``names`` that ``name`` pairs with alone, by :func:`mgit.formats.names.pair`.

    ``bert.embeddings.x`` pairs with ``embeddings.x`` and the other way round. Kept for callers
    that pair one name at a time; pair a whole model at once instead
    (:func:`~mgit.formats.names.pair`, once per model rather than a scan of ``names`` per name),
    as storage and diff do: the result differs from this only where another of the model's names
    takes the partner (the same name, or a second name with the same key).
    """
    if name in names:
        return name
    return pair([name], names).get(name)


def tensor_names(files: Mapping[str, FileEntry | Path]) -> list[str]:
    """The tensor names of a model about to be committed, for :meth:`ParentIndex.for_files`.

    ``files`` maps each relative path to the entry it keeps (an unchanged file) or to the file
    to ingest; only ``.safetensors`` files have tensors. A file whose header cannot be read is
    skipped here (ingesting it reports the error).
    """
    out: list[str] = []
    for rel in sorted(files):
        src = files[rel]
        if isinstance(src, FileEntry):
            out.extend(name for name, _ in src.tensors)
        elif rel.endswith(".safetensors"):
            try:
                header = read_header(Path(src))
            except (UnknownDtypeError, InvalidModelFileError, OSError):
                continue
            out.extend(spec.name for spec in header.tensors)
    return out


class ParentIndex:
    """The parent model's tensors by name, for pairing chunks (and packs) with their delta base.

    Child tensor names pair with the parent's by :func:`mgit.formats.names.pair`, over all the
    child's names when they are given (``child_names``, :meth:`for_files`); otherwise
    :func:`ingest_file` pairs each file's names on its own.
    """

    def __init__(
        self, store: DiskStore, tree: Tree | None, child_names: Iterable[str] | None = None
    ) -> None:
        self.store = store
        self.manifests: dict[str, TensorManifest] = {}
        #: pack chunk id -> its members' (offset, nbytes, dtype), in offset order
        self.packs: dict[str, list[tuple[int, int, str]]] = {}
        #: child tensor name -> the parent tensor name it pairs with; None: not paired yet
        self.pairs: dict[str, str] | None = None
        if tree is not None:
            for entry in tree.files.values():
                for name, m in entry.tensors:
                    self.manifests.setdefault(name, m)
                    if m.offset is not None:
                        members = self.packs.setdefault(m.chunks[0], [])
                        if (m.offset, m.nbytes, m.dtype) not in members:
                            members.append((m.offset, m.nbytes, m.dtype))
            for members in self.packs.values():
                members.sort()
        if child_names is not None:
            self.pairs = pair(child_names, self.manifests)

    @classmethod
    def for_files(
        cls, store: DiskStore, tree: Tree | None, files: Mapping[str, FileEntry | Path]
    ) -> ParentIndex:
        """The index for committing ``files`` (see :func:`tensor_names`) on top of ``tree``."""
        return cls(store, tree, tensor_names(files) if tree is not None else None)

    def with_children(self, child_names: Iterable[str]) -> ParentIndex:
        """This index with ``child_names`` paired (a shallow copy), unless already paired."""
        if self.pairs is not None:
            return self
        view = copy.copy(self)
        view.pairs = pair(child_names, self.manifests)
        return view

    def parent_name(self, name: str) -> str | None:
        """The parent tensor name a child tensor name pairs with, if any."""
        if self.pairs is not None:
            return self.pairs.get(name)
        return pair_name(name, self.manifests)

    def find(self, name: str, dtype: str, chunk_size: int) -> TensorManifest | None:
        """The parent tensor to delta against, if one with the same dtype and chunking exists."""
        pname = self.parent_name(name)
        if pname is None:
            return None
        m = self.manifests[pname]
        if m.dtype != dtype or m.chunk_size != chunk_size or m.packed:
            return None
        return m

    def packed_pair(self, name: str, dtype: str, nbytes: int) -> TensorManifest | None:
        """The parent's packed tensor that ``name`` pairs with, same dtype and size."""
        pname = self.parent_name(name)
        if pname is None:
            return None
        m = self.manifests[pname]
        if not m.packed or m.dtype != dtype or m.nbytes != nbytes:
            return None
        return m


@dataclass
class _Pack:
    """Small tensors of one dtype stored together in one chunk."""

    dtype: str
    members: list[int] = field(default_factory=list)  # indices into the header's tensors
    offsets: list[int] = field(default_factory=list)
    size: int = 0
    base: str | None = None  # the parent's pack with the same layout
    oid: str = ""


def plan_packs(specs: list[Any], chunk_size: int, parents: ParentIndex | None) -> list[_Pack]:
    """Group a file's small tensors into packs.

    Tensors that pair with every member of one of the parent's packs (same dtypes and sizes)
    are laid out exactly like it, so the pack is a delta against the parent's (or identical to
    it, and stored once); the rest are packed in file order, per dtype, up to ``chunk_size``.
    """
    small = [i for i, spec in enumerate(specs) if is_small_tensor(spec.nbytes)]
    packs: list[_Pack] = []
    used: set[int] = set()
    if parents is not None and parents.packs:
        by_pack: dict[str, dict[int, int]] = {}
        for i in small:
            spec = specs[i]
            pm = parents.packed_pair(spec.name, spec.dtype, spec.nbytes)
            if pm is not None:
                assert pm.offset is not None
                by_pack.setdefault(pm.chunks[0], {}).setdefault(pm.offset, i)
        for poid, members in by_pack.items():
            layout = parents.packs[poid]
            if len(layout) != len(members) or any(off not in members for off, _, _ in layout):
                continue
            pack = _Pack(dtype=layout[0][2], base=poid)
            for off, nbytes, _ in layout:
                pack.members.append(members[off])
                pack.offsets.append(off)
                pack.size = max(pack.size, off + nbytes)
            used.update(pack.members)
            packs.append(pack)
    open_packs: dict[str, _Pack] = {}
    for i in small:
        if i in used:
            continue
        spec = specs[i]
        pack = open_packs.get(spec.dtype)
        if pack is None or pack.size + spec.nbytes > chunk_size:
            pack = open_packs[spec.dtype] = _Pack(dtype=spec.dtype)
            packs.append(pack)
        pack.members.append(i)
        pack.offsets.append(pack.size)
        pack.size += spec.nbytes
    return packs


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
        self.fd = os.open(path, os.O_RDONLY)
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
        InvalidModelFileError: a ``.safetensors`` file that is malformed.
    """
    header = None
    if relpath.endswith(".safetensors"):
        try:
            header = read_header(path)
        except UnknownDtypeError:
            header = None
    reader = _Reader(path)
    pipe = _Pipeline(pool, workers)
    xxh = xxhash.xxh3_128()

    def submit_chunk(a: int, b: int, oids: list[str], **put_kw: Any) -> None:
        """Store bytes ``a:b`` of the file as one chunk, appending its id to ``oids``."""

        def job() -> tuple[ChunkPut, bytes]:
            # Workers read their own range (pread, GIL released) and hand the bytes back for
            # the in-order checksum.
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

    try:
        size = reader.size
        stats.logical_bytes += size
        if header is None:
            chunks: list[str] = []
            for a, b in chunk_ranges(size, chunk_size):
                submit_chunk(a, b, chunks, itemsize=1, is_float=False)
            pipe.drain()
            if os.path.getsize(path) != size:
                raise InvalidModelFileError(path, "file changed while it was being read")
            return FileEntry(kind="blob", size=size, xxh=xxh.hexdigest(), chunks=tuple(chunks))

        hdr_bytes = reader.read(0, header.data_start)
        if hdr_bytes[8:] != header.header_bytes or reader.size != os.path.getsize(path):
            raise InvalidModelFileError(path, "file changed while it was being read")
        xxh.update(hdr_bytes)
        header_oid = store.put("chunk", hdr_bytes[8:])
        specs = list(header.tensors)
        if parents is not None:
            parents = parents.with_children(spec.name for spec in specs)
        chunk_ids: list[list[str]] = [[] for _ in specs]
        # Small tensors first, packed; each pack is read, hashed and stored as one chunk.
        packed: dict[int, tuple[_Pack, int, str]] = {}  # tensor index -> (pack, offset, digest)
        for pack in plan_packs(specs, chunk_size, parents):
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

            def pack_done(put: ChunkPut, pack: _Pack = pack) -> None:
                pack.oid = put.oid
                stats.add(put)

            pipe.submit(pack_job, pack_done)
        for idx, spec in enumerate(specs):
            if idx in packed:
                data = reader.read(spec.start, spec.start + spec.nbytes)
                if hash_object("chunk", data) != packed[idx][2]:  # what went into its pack
                    raise InvalidModelFileError(path, "file changed while it was being read")

                def literal_done(_: Any, d: bytes = data) -> None:
                    xxh.update(d)

                pipe.add_done(literal_done)
                if progress:
                    progress(spec.nbytes)
                continue
            itemsize = DTYPE_SIZES[spec.dtype]
            cs = tensor_chunk_size(spec.dtype, chunk_size)
            base = parents.find(spec.name, spec.dtype, cs) if parents is not None else None
            for i, (a, b) in enumerate(chunk_ranges(spec.nbytes, cs)):
                base_oid = base.chunks[i] if base is not None and i < len(base.chunks) else None
                submit_chunk(
                    spec.start + a, spec.start + b, chunk_ids[idx], itemsize=itemsize,
                    is_float=spec.dtype in FLOAT_DTYPES, base=base_oid, dtype=spec.dtype, eps=eps,
                )
        pipe.drain()
        if os.path.getsize(path) != size:
            raise InvalidModelFileError(path, "file changed while it was being read")
        tensors: list[tuple[str, TensorManifest]] = []
        for idx, spec in enumerate(specs):
            cs = tensor_chunk_size(spec.dtype, chunk_size)
            if idx in packed:
                pack, off, digest = packed[idx]
                m = TensorManifest(spec.dtype, spec.shape, cs, (pack.oid,), off, digest)
            else:
                m = TensorManifest(spec.dtype, spec.shape, cs, tuple(chunk_ids[idx]))
            tensors.append((spec.name, m))
        return FileEntry(
            kind="safetensors", size=size, xxh=xxh.hexdigest(), header=header_oid,
            tensors=tuple(tensors),
        )
    except BaseException:
        pipe.cancel()
        raise
    finally:
        reader.close()
