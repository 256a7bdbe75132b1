"""The content-addressed object store under ``.mgit/objects``.

One file per object at ``objects/ab/cdef...`` (the id's first two hex digits shard the folder).
A stored object is::

    b"MGO\\x01" | kind (1 byte) | meta length (u32 LE) | meta (JSON) | payload

where meta is ``{"codec", "size", "params", "base", "depth"}``: the codec that turns the payload
back into the content, the content length, the codec's parameters, and for a delta the id of
the base chunk and the chain depth. The id is over the *content*, never the stored encoding.
Every delta names exactly one base, a stored chunk, and its depth is the base's plus one; a
dtype cast (``cast-planes-zstd/1``, :mod:`mgit.codecs.cast`) is such a delta too, whose base is
the parent chunk holding the elements it casts (ingest cuts cast tensors so that one suffices).

Objects are write-once (temp file, rename; "already exists" is success), read-only on disk, and
verified on every read: a mismatch raises :class:`CorruptObjectError`, never returns wrong bytes.
Durability is batched: :meth:`DiskStore.sync` makes every object written so far durable (an
fsync per new file and folder, on a few threads), and callers run it before they write a ref
that points at those objects. A crash before that leaves only unreferenced objects, which
are complete or absent (the rename is atomic) and which ``gc`` removes.

Layers: the files themselves (paths, write-once, listing, pending fsyncs) are
:mod:`mgit.objects.loose`, shared with the path transport; what a chunk is stored as (reuse,
standalone, delta, lossy, the depth cap) is the pure :func:`mgit.codecs.choose.choose`.
:class:`DiskStore` hashes, asks the policy, encodes, writes, reads, verifies and caches.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit import codecs
from mgit.codecs import choose as policy
from mgit.codecs.choose import MAX_CHAIN_DEPTH
from mgit._dtypes import DTYPE_SIZES
from mgit.errors import CodecError, CorruptObjectError, ObjectNotFoundError, ObjectTooLargeError
from mgit._lockfile import LockHolder, create_with_holder, process_alive, read_holder
from mgit.limits import MAX_HEADER
from mgit.objects.ids import KINDS, Hasher, Oid, hash_object, is_oid
from mgit.objects.loose import LooseObjects

__all__ = [
    "MAGIC",
    "MAX_CHAIN_DEPTH",
    "DiskStore",
    "StoredHeader",
    "ChunkPut",
    "MAX_CHUNK_SIZE",
    "MAX_CONTENT",
    "MARK_SLACK",
    "max_stored_size",
    "WriterMark",
]

MAGIC = b"MGO\x01"
_KIND_CODE = {"chunk": b"c", "tensor": b"t", "tree": b"r", "commit": b"m"}
_CODE_KIND = {v[0]: k for k, v in _KIND_CODE.items()}
_MAX_META = 1 << 16
_MAX_SIZE = 1 << 31

#: The largest chunk size a repository may have (``mgit init --chunk-size``).
MAX_CHUNK_SIZE = 64 << 20

#: The largest content an object of each kind can have, whatever wrote it: a chunk is at most
#: the largest chunk size or a whole safetensors header (stored as one chunk); trees and
#: commits are JSON well under these. An object declaring more is refused before anything is
#: decompressed or allocated for it (a 33 KB zstd frame can declare 1 GiB of zeros).
MAX_CONTENT: dict[str, int] = {
    "chunk": max(MAX_CHUNK_SIZE, MAX_HEADER),
    "tensor": MAX_CHUNK_SIZE,
    "tree": 256 << 20,
    "commit": 16 << 20,
}

#: Seconds subtracted from a writer mark's time and from gc's start when gc decides which
#: objects are too young to delete: file timestamps come from a coarser clock than time.time().
MARK_SLACK = 2.0


def max_stored_size(kind: str | None = None) -> int:
    """The most bytes a stored object of ``kind`` (any kind: None) can take: its largest
    content plus the worst case of the encodings (zstd's bound, the header, the meta)."""
    content = max(MAX_CONTENT.values()) if kind is None else MAX_CONTENT[kind]
    return content + content // 128 + (1 << 17) + _MAX_META + 9
_CACHE_MAX_OBJ = 256 * 1024
_CACHE_ENTRIES = 4096


@dataclass(frozen=True)
class StoredHeader:
    """The parsed header of a stored object."""

    kind: str
    codec: str
    size: int
    params: dict[str, Any]
    base: str | None
    depth: int
    payload_offset: int


def _policy_base(read: tuple[StoredHeader, memoryview]) -> policy.Base:
    """What the encoding policy needs to know of a delta base."""
    h, payload = read
    return policy.Base(h.kind, h.size, h.depth, h.payload_offset + len(payload))


@dataclass(frozen=True)
class ChunkPut:
    """What :meth:`DiskStore.put_chunk` did."""

    oid: Oid
    new: bool
    stored_bytes: int
    codec: str
    depth: int
    max_err: float = 0.0
    #: For a lossily stored chunk, the bytes it decodes to (what export will give back).
    content: bytes | None = None


def _parse_header(oid: str, data: bytes | memoryview) -> StoredHeader:
    if len(data) < 9 or bytes(data[:4]) != MAGIC:
        raise CorruptObjectError(oid, "bad magic or truncated object file")
    kind = _CODE_KIND.get(data[4])
    if kind is None:
        raise CorruptObjectError(oid, f"unknown object kind byte {data[4]!r}")
    (mlen,) = struct.unpack_from("<I", data, 5)
    if mlen > _MAX_META or 9 + mlen > len(data):
        raise CorruptObjectError(oid, "bad meta length")
    try:
        meta = json.loads(bytes(data[9 : 9 + mlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptObjectError(oid, "meta is not JSON") from None
    if not isinstance(meta, dict):
        raise CorruptObjectError(oid, "meta is not an object")
    codec, size, params = meta.get("codec"), meta.get("size"), meta.get("params", {})
    base, depth = meta.get("base"), meta.get("depth", 0)
    if not isinstance(codec, str) or not isinstance(params, dict):
        raise CorruptObjectError(oid, "bad codec meta")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_SIZE:
        raise CorruptObjectError(oid, "bad size")
    if size > MAX_CONTENT[kind]:
        raise ObjectTooLargeError(oid, size, MAX_CONTENT[kind])
    if base is not None and (not isinstance(base, str) or not is_oid(base) or base == oid):
        raise CorruptObjectError(oid, "bad base id")
    if not isinstance(depth, int) or not 0 <= depth <= MAX_CHAIN_DEPTH:
        raise CorruptObjectError(oid, "bad chain depth")
    if (base is None) != (depth == 0) or (base is not None and kind != "chunk"):
        raise CorruptObjectError(oid, "inconsistent delta meta")
    return StoredHeader(kind, codec, size, params, base, depth, 9 + mlen)


def _encode_file(kind: str, enc: codecs.Encoded, size: int, base: str | None, depth: int) -> list[bytes]:
    meta: dict[str, Any] = {"codec": enc.codec, "size": size}
    if enc.params:
        meta["params"] = enc.params
    if base is not None:
        meta["base"] = base
        meta["depth"] = depth
    mb = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    return [MAGIC, _KIND_CODE[kind], struct.pack("<I", len(mb)), mb, enc.payload]


@dataclass(frozen=True)
class WriterMark:
    """A writer's mark file (``<store>/../writers/<pid>.<hex>``) and what it says."""

    path: Path
    holder: LockHolder | None
    #: True: the writer runs; False: provably gone; None: cannot tell (another host).
    alive: bool | None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class DiskStore:
    """Objects in a sharded directory. Thread-safe; safe for several processes at once.

    **Writers against gc.** Before its first object write or reuse, a store creates a writer
    mark, ``writers/<pid>.<hex>`` beside the objects folder, naming its process and the time;
    it is removed when the store is dropped (a killed process leaves one behind, which the next
    writer or gc sees is dead and removes). ``gc`` keeps every object whose mtime is not older
    than the oldest live mark (minus :data:`MARK_SLACK`), and reusing an object refreshes its
    mtime, so an object a running writer has written or reused cannot be deleted before that
    writer's ref points at it, however long it runs and whatever ``--prune`` says.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        #: The files (:mod:`mgit.objects.loose`): paths, write-once, listing, pending fsyncs.
        self.loose = LooseObjects(root)
        self._lock = threading.Lock()
        self._mark: tuple[int, Path] | None = None  # (pid, path) of this store's writer mark
        # id -> (kind, content) of small non-chunk objects
        self._cache: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    # -- paths and raw access -------------------------------------------------------------

    def path_for(self, oid: str) -> Path:
        """The file of an object (whether or not it exists).

        Raises:
            ObjectNotFoundError: ``oid`` is not an object id.
        """
        return self.loose.path_for(oid)

    def __contains__(self, oid: object) -> bool:
        return isinstance(oid, str) and self.loose.exists(oid)

    def _reuse(self, oid: str) -> bool:
        """True if the object exists; then refresh its mtime, so that ``gc`` (which only prunes
        unreachable objects older than a grace period and than every live writer mark) cannot
        delete an object a commit in progress has just decided to reuse."""
        self.ensure_writer_mark()
        return self.loose._touch(self.path_for(oid))

    @property
    def writers_dir(self) -> Path:
        """Where writer marks live: ``writers/`` beside the objects folder."""
        return self.root.parent / "writers"

    def ensure_writer_mark(self) -> None:
        """Create this store's writer mark if it has none yet (see the class docstring); on
        the way, remove marks of writers that provably no longer run."""
        mark = self._mark
        pid = os.getpid()
        if mark is not None and mark[0] == pid:
            return
        with self._lock:
            if self._mark is not None and self._mark[0] == pid:
                return
            d = self.writers_dir
            d.mkdir(parents=True, exist_ok=True)
            for m in self.writer_marks():
                if m.alive is False:
                    _unlink_quietly(m.path)
            path = d / f"{pid}.{os.urandom(4).hex()}"
            if not create_with_holder(path):  # never seen without its holder line
                raise FileExistsError(errno.EEXIST, "writer mark exists", str(path))
            self._mark = (pid, path)
            weakref.finalize(self, _unlink_quietly, path)

    def release_writer_mark(self) -> None:
        """Remove this store's writer mark (once whatever it wrote is referenced by a ref, or
        given up); the next write creates a new one."""
        with self._lock:
            mark, self._mark = self._mark, None
        if mark is not None and mark[0] == os.getpid():
            _unlink_quietly(mark[1])

    def writer_marks(self) -> list[WriterMark]:
        """Every writer mark beside this store, with whether its writer still runs."""
        try:
            names = sorted(os.listdir(self.writers_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            path = self.writers_dir / name
            holder, _ino = read_holder(path)
            alive = None if holder is None else process_alive(holder)
            out.append(WriterMark(path, holder, alive))
        return out

    def read_raw(self, oid: str) -> bytes:
        """The stored bytes of an object, unverified (for transfer; the receiver verifies).

        Raises:
            ObjectNotFoundError: absent.
            CorruptObjectError: not a regular file, or larger than any object can be.
        """
        return self.loose.read(oid, max_size=max_stored_size())

    def _read(self, oid: str) -> tuple[StoredHeader, memoryview]:
        """An object's parsed header and its payload (unverified).

        Raises:
            ObjectNotFoundError: absent.
            CorruptObjectError: not a well-formed stored object.
        """
        raw = self.read_raw(oid)
        h = _parse_header(oid, raw)
        return h, memoryview(raw)[h.payload_offset :]

    def stored_size(self, oid: str) -> int:
        """Bytes the object takes on disk."""
        try:
            return self.path_for(oid).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(oid) from None

    def header(self, oid: str) -> StoredHeader:
        """Read and parse only the header of a stored object."""
        self.loose.check_regular(oid)  # a FIFO in its place would block open()
        try:
            with open(self.path_for(oid), "rb") as f:
                head = f.read(4096)
                if len(head) >= 9:
                    (mlen,) = struct.unpack_from("<I", head, 5)
                    if 9 + mlen > len(head) and mlen <= _MAX_META:
                        head += f.read(9 + mlen - len(head))
        except FileNotFoundError:
            raise ObjectNotFoundError(oid) from None
        return _parse_header(oid, head)

    @staticmethod
    def parse_header(oid: str, data: bytes | memoryview) -> StoredHeader:
        """Parse the header of an object's stored bytes (e.g. received from a remote).

        Raises:
            CorruptObjectError: not a well-formed stored object.
        """
        return _parse_header(oid, data)

    def decode_raw(self, oid: str, data: bytes, *, kind: str | None = None) -> bytes:
        """Decode and verify an object's stored bytes without writing them.

        A delta's base must be in this store.

        Raises:
            CorruptObjectError: malformed, of another kind, or not hashing to ``oid``.
            ObjectNotFoundError: a delta whose base is missing.
        """
        h = _parse_header(oid, data)
        if kind is not None and h.kind != kind:
            raise CorruptObjectError(oid, f"expected a {kind} object, found a {h.kind}")
        return self._decode_verify(oid, h, memoryview(data)[h.payload_offset :])

    def iter_oids(self) -> Iterator[str]:
        """Every object id in the store (unordered)."""
        return self.loose.iter_oids()

    def oids_with_prefix(self, prefix: str) -> list[str]:
        """Stored object ids starting with ``prefix`` (at least two hex digits), sorted."""
        return self.loose.oids_with_prefix(prefix)

    # -- writing ----------------------------------------------------------------------------

    def _write_file(self, oid: str, parts: list[bytes]) -> bool:
        """Write an object's file once (not fsynced: see :meth:`sync`); False if present."""
        self.ensure_writer_mark()
        return self.loose.write(oid, parts)

    def sync(self) -> None:
        """Make every object written so far durable: contents, names and folders.

        Only what this store wrote is flushed: an fsync per new object file, then per folder
        that got one, then of the objects folder when a shard folder was made. (A
        whole-filesystem flush, ``syncfs``, is a few milliseconds cheaper when nothing else is
        being written, but it also waits for every other dirty page of the filesystem, such as
        the checkpoint a training run has just saved, so a commit would take as long as other
        programs' writes: see ``benchmarks/bench_durability.py``.) Each object's writeback started when it was written
        (:func:`mgit._fs.start_writeback`); the fsyncs run on a few threads, which the
        filesystem journal batches. (fsyncing each object in the background as soon as it was
        written measured slower: every fsync commits the journal, which stalls the workers
        still creating objects.)

        Raises:
            OSError: a file or folder could not be synced (the caller must not move a ref);
                what is not durable yet is tried again by the next call.
        """
        self.loose.sync()

    def put(self, kind: str, content: bytes) -> Oid:
        """Store a whole object (metadata objects, small chunks). Idempotent.

        Returns:
            The object id.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind}")
        oid = hash_object(kind, content)
        if self._reuse(oid):
            return oid
        enc = codecs.encode_standalone(content, itemsize=1, is_float=False)
        self._write_file(oid, _encode_file(kind, enc, len(content), None, 0))
        return oid

    def put_chunk(
        self,
        data: bytes | memoryview,
        *,
        itemsize: int,
        is_float: bool,
        base: str | None = None,
        dtype: str | None = None,
        eps: float | None = None,
        oid: str | None = None,
        base_dtype: str | None = None,
        base_start: int = 0,
    ) -> ChunkPut:
        """Store a chunk of tensor or file data: whole, or as a delta against ``base``.

        With ``base_dtype`` other than ``dtype`` the base is a chunk of a parent tensor of
        another float dtype, and the chunk is stored as its cast (:meth:`_put_cast`, always
        lossless, ``eps`` is ignored).

        Lossless unless ``eps`` is given: then the delta against ``base`` is quantized with
        absolute error at most ``eps`` where the codec can guarantee it, and the chunk's id is
        the id of what decoding gives back. A delta is used only when smaller than storing the
        chunk whole, and never past :data:`MAX_CHAIN_DEPTH`.

        Args:
            data: the chunk's bytes.
            itemsize: element size (for byte-plane codecs).
            is_float: whether the elements are floating point.
            base: id of the aligned chunk of the parent model, if any.
            dtype: safetensors dtype name (needed for lossy).
            eps: absolute error bound for lossy storage.
            oid: the id of ``data`` if the caller has it already.
            base_dtype: the dtype of the base's elements, when it differs from ``dtype``.
            base_start: for a cast, the base element the chunk's first element is a cast of.

        Returns:
            A :class:`ChunkPut`.
        """
        if base_dtype is not None and base_dtype != dtype and base is not None:
            assert dtype is not None
            return self._put_cast(data, base, base_dtype, dtype, base_start, itemsize, oid)
        # The policy (reuse, standalone, delta, lossy; the depth cap) is the pure function
        # mgit.codecs.choose.choose; this method supplies the facts it asks for, computing each
        # (hash, base read, codec run) only when asked, and writes what it picked.
        size = len(data)
        base_read: tuple[StoredHeader, memoryview] | None = None
        base_content: bytes | None = None
        lossy_enc: codecs.Encoded | None = None
        lossy_content: bytes | None = None
        lossy_oid: str | None = None
        delta_enc: codecs.Encoded | None = None
        alone_enc: codecs.Encoded | None = None

        def chunk_oid() -> str:
            nonlocal oid
            if oid is None:
                oid = hash_object("chunk", data)
            return oid

        def stored() -> bool:
            return self._reuse(chunk_oid())

        def base_info() -> policy.Base | None:
            nonlocal base_read
            base_read = self._read_base(base)
            return None if base_read is None else _policy_base(base_read)

        def base_bytes() -> bytes:
            nonlocal base_content
            if base_content is None:
                assert base is not None and base_read is not None
                base_content = self._decode_verify(base, *base_read)
            return base_content

        def lossy_size() -> int | None:
            nonlocal lossy_enc
            assert dtype is not None and eps is not None
            lossy_enc = codecs.encode_lossy(data, base_bytes(), dtype=dtype, eps=eps)
            return None if lossy_enc is None else len(lossy_enc.payload)

        def lossy_stored() -> bool:
            nonlocal lossy_content, lossy_oid
            assert lossy_enc is not None
            lossy_content = codecs.decode(
                lossy_enc.codec, lossy_enc.payload, lossy_enc.params, size=size, base=base_bytes()
            )
            lossy_oid = hash_object("chunk", lossy_content)
            return self._reuse(lossy_oid)

        def delta_size() -> int:
            nonlocal delta_enc
            delta_enc = codecs.encode_delta(data, base_bytes(), itemsize=itemsize, is_float=is_float)
            return len(delta_enc.payload)

        def standalone_size() -> int:
            nonlocal alone_enc
            alone_enc = codecs.encode_standalone(data, itemsize=itemsize, is_float=is_float)
            return len(alone_enc.payload)

        choice = policy.choose(
            size,
            lossy=eps is not None and policy.lossy_capable(dtype),
            stored=stored,
            base=base_info,
            lossy_size=lossy_size,
            lossy_stored=lossy_stored,
            delta_size=delta_size,
            standalone_size=standalone_size,
        )
        action, depth = choice.action, choice.depth
        if action == policy.REUSE:
            return ChunkPut(Oid(chunk_oid()), False, 0, "", 0)
        if action in (policy.LOSSY, policy.REUSE_LOSSY):
            assert lossy_enc is not None and lossy_oid is not None and base is not None
            max_err = float(lossy_enc.params.get("max_err", 0.0))
            loid = Oid(lossy_oid)
            if action == policy.REUSE_LOSSY:
                return ChunkPut(loid, False, 0, lossy_enc.codec, depth, max_err, lossy_content)
            self._write_file(loid, _encode_file("chunk", lossy_enc, size, base, depth))
            return ChunkPut(
                loid, True, self.stored_size(loid), lossy_enc.codec, depth, max_err, lossy_content
            )
        use_base: str | None = None
        if action == policy.DELTA:
            assert delta_enc is not None
            enc, use_base = delta_enc, base
        else:
            enc = alone_enc if alone_enc is not None else codecs.encode_standalone(
                data, itemsize=itemsize, is_float=is_float
            )
        new = self._write_file(chunk_oid(), _encode_file("chunk", enc, size, use_base, depth))
        return ChunkPut(Oid(chunk_oid()), new, self.stored_size(chunk_oid()) if new else 0, enc.codec, depth)

    def _read_base(self, base: str | None) -> tuple[StoredHeader, memoryview] | None:
        """A delta base's header and payload, or None when there is none to use (no id, or
        not stored: the chunk is then stored whole)."""
        if base is None or not is_oid(base):
            return None
        try:
            return self._read(base)
        except ObjectNotFoundError:
            return None

    def _put_cast(
        self, data: bytes | memoryview, base: str, src: str, dst: str, start: int,
        itemsize: int, oid: str | None,
    ) -> ChunkPut:
        """Store a chunk as the cast of ``src`` elements of ``base`` from ``start`` on to
        ``dst``, plus a correction, when :func:`mgit.codecs.choose.choose_cast` says so."""
        size = len(data)
        base_read: tuple[StoredHeader, memoryview] | None = None
        cast_enc: codecs.Encoded | None = None
        alone_enc: codecs.Encoded | None = None
        chunk_oid = oid if oid is not None else hash_object("chunk", data)

        def base_info() -> policy.Base | None:
            nonlocal base_read
            base_read = self._read_base(base)
            return None if base_read is None else _policy_base(base_read)

        def cast_size() -> int:
            nonlocal cast_enc
            assert base_read is not None
            base_bytes = self._decode_verify(base, *base_read)
            cast_enc = codecs.encode_cast(data, base_bytes, src=src, dst=dst, start=start)
            return len(cast_enc.payload)

        def standalone_size() -> int:
            nonlocal alone_enc
            alone_enc = codecs.encode_standalone(data, itemsize=itemsize, is_float=True)
            return len(alone_enc.payload)

        src_size = DTYPE_SIZES.get(src, 0)
        need = (start + size // max(itemsize, 1)) * src_size
        choice = policy.choose_cast(
            size, base_bytes=need, stored=lambda: self._reuse(chunk_oid), base=base_info,
            cast_size=cast_size, standalone_size=standalone_size,
        )
        if choice.action == policy.REUSE:
            return ChunkPut(Oid(chunk_oid), False, 0, "", 0)
        use_base: str | None = None
        if choice.action == policy.CAST:
            assert cast_enc is not None
            enc, use_base = cast_enc, base
        else:
            enc = alone_enc if alone_enc is not None else codecs.encode_standalone(
                data, itemsize=itemsize, is_float=True
            )
        new = self._write_file(chunk_oid, _encode_file("chunk", enc, size, use_base, choice.depth))
        return ChunkPut(Oid(chunk_oid), new, self.stored_size(chunk_oid) if new else 0, enc.codec,
                        choice.depth)

    def write_raw(self, oid: str, data: bytes) -> bool:
        """Store an object received in its stored encoding, after verifying it fully.

        A delta's base must already be in the store.

        Returns:
            False if the object was already present.

        Raises:
            CorruptObjectError: the bytes do not decode to content with id ``oid``.
            ObjectNotFoundError: a delta whose base is missing.
        """
        if self._reuse(oid):
            return False
        h = _parse_header(oid, data)
        self._decode_verify(oid, h, memoryview(data)[h.payload_offset :])
        return self._write_file(oid, [data])

    def replace_raw(self, oid: str, data: bytes) -> None:
        """Store an object received in its stored encoding after verifying it fully, over
        whatever is in its place (a damaged copy: ``fsck --repair``). Durable on return.

        Raises:
            CorruptObjectError: the bytes do not decode to content with id ``oid``.
            ObjectNotFoundError: a delta whose base is missing.
        """
        h = _parse_header(oid, data)
        self._decode_verify(oid, h, memoryview(data)[h.payload_offset :])
        with self._lock:
            self._cache.pop(oid, None)
        self.ensure_writer_mark()
        self.loose.write(oid, [data], durable=True, replace=True)

    # -- reading ----------------------------------------------------------------------------

    def _decode_verify(
        self,
        oid: str,
        h: StoredHeader,
        payload: memoryview | bytes,
        *,
        verify: bool = True,
        out: Any = None,
    ) -> Any:
        """Decode an object's payload (and its delta chain) and, with ``verify``, check the
        content against ``oid``; into ``out`` (a writable buffer of the object's size) when
        given, which is then returned.

        Bases inside a chain are decoded without hashing them: the chunk at the top is hashed,
        and its content depends on every base below, so a damaged base cannot go unnoticed.
        When the top does not verify, the chain is verified level by level to name the damaged
        object in the error.
        """
        base_bytes = None
        if h.base is not None:
            try:
                bh, bpayload = self._read(h.base)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(h.base, context=f"delta base of {oid}") from None
            if bh.kind != "chunk":
                raise CorruptObjectError(h.base, f"expected a chunk object, found a {bh.kind}")
            if bh.depth != h.depth - 1:
                raise CorruptObjectError(oid, f"chain depth {h.depth} but base has depth {bh.depth}")
            base_bytes = self._decode_verify(h.base, bh, bpayload, verify=False)
        try:
            content = codecs.decode(h.codec, payload, h.params, size=h.size, base=base_bytes, out=out)  # type: ignore[arg-type]
        except CodecError as exc:
            if verify and h.base is not None:
                self._verify_chain(h.base)
            raise CorruptObjectError(oid, str(exc)) from None
        if memoryview(content).nbytes != h.size:
            raise CorruptObjectError(oid, "decoded size differs from the recorded size")
        if verify:
            hasher = Hasher(h.kind, h.size)
            hasher.update(content)
            actual = hasher.oid()
            if actual != oid:
                if h.base is not None:
                    self._verify_chain(h.base)
                raise CorruptObjectError(oid, f"content hashes to {actual}", actual=actual)
        return content

    def _verify_chain(self, base: str) -> None:
        """Raise the error of the first damaged object of a delta chain (if any is damaged)."""
        self._decode_verify(base, *self._read(base))

    def get(self, oid: str, *, kind: str | None = None) -> bytes:
        """The verified content of an object.

        Raises:
            ObjectNotFoundError: absent (or a delta base is absent).
            CorruptObjectError: the stored bytes do not give back content with this id, or
                the object is not of ``kind``.
        """
        with self._lock:
            hit = self._cache.get(oid)
            if hit is not None:
                self._cache.move_to_end(oid)
        if hit is not None:
            hit_kind, content = hit
            if kind is not None and hit_kind != kind:
                raise CorruptObjectError(oid, f"expected a {kind} object, found a {hit_kind}")
            return content
        h, payload = self._read(oid)
        if kind is not None and h.kind != kind:
            raise CorruptObjectError(oid, f"expected a {kind} object, found a {h.kind}")
        content = self._decode_verify(oid, h, payload)
        if h.kind != "chunk" and len(content) <= _CACHE_MAX_OBJ:
            with self._lock:
                self._cache[oid] = (h.kind, content)
                if len(self._cache) > _CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return content

    def get_into(self, oid: str, out: Any, *, kind: str | None = None) -> None:
        """Decode the verified content of an object into ``out``, a writable C-contiguous
        buffer of exactly its size (a slice of a tensor's buffer): :meth:`get` without the
        copy and the fresh allocation. On an error the content of ``out`` is undefined.

        Raises:
            ObjectNotFoundError: absent (or a delta base is absent).
            CorruptObjectError: as :meth:`get`; also when the object's size is not ``out``'s.
        """
        h, payload = self._read(oid)
        if kind is not None and h.kind != kind:
            raise CorruptObjectError(oid, f"expected a {kind} object, found a {h.kind}")
        if h.size != memoryview(out).nbytes:
            raise CorruptObjectError(
                oid, f"holds {h.size} bytes where {memoryview(out).nbytes} were expected"
            )
        self._decode_verify(oid, h, payload, out=out)

    def kind_of(self, oid: str) -> str:
        """The kind of a stored object (header only)."""
        return self.header(oid).kind
