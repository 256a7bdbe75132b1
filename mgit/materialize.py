"""Objects back into files, byte for byte, with bounded memory.

Chunks are decoded (and verified) on a thread pool, a bounded number in flight, and written
in order to a temp file beside the target, which is renamed into place only when its XXH3-128
matches the one recorded at commit time. A target directory is never written through a symlink.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xxhash

from mgit._fs import AtomicFile, safe_join
from mgit.errors import CorruptObjectError, InvalidModelFileError
from mgit.objects.model import FileEntry, TensorManifest
from mgit.objects.store import DiskStore

__all__ = ["file_chunks", "write_file", "tensor_array", "numpy_dtype"]


def _manifests(store: DiskStore, entry: FileEntry) -> list[TensorManifest]:
    return [TensorManifest.from_bytes(store.get(t, kind="tensor")) for _, t in entry.tensors]


def file_chunks(store: DiskStore, entry: FileEntry) -> Iterator[tuple[str | None, bytes | None]]:
    """The pieces of a file in order: ``(chunk_oid, None)`` to decode, or ``(None, literal)``."""
    if entry.kind == "blob":
        for oid in entry.chunks:
            yield oid, None
        return
    assert entry.header is not None
    header = store.get(entry.header, kind="chunk")
    yield None, struct.pack("<Q", len(header)) + header
    for m in _manifests(store, entry):
        for oid in m.chunks:
            yield oid, None


def write_file(
    store: DiskStore,
    entry: FileEntry,
    root: Path,
    relpath: str,
    *,
    pool: ThreadPoolExecutor,
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
    queue: deque[Future[bytes] | bytes] = deque()
    limit = 2 * workers + 1
    written = 0
    # Atomic (temp file + rename) but not fsynced, like cp and git checkout: these are copies
    # of what the object store already holds durably.
    out = AtomicFile(target, durable=False)
    try:
        def pop() -> None:
            nonlocal written
            item = queue.popleft()
            data = item if isinstance(item, bytes) else item.result()
            xxh.update(data)
            out.write(data)
            written += len(data)
            if progress:
                progress(len(data))

        for oid, literal in file_chunks(store, entry):
            while len(queue) >= limit:
                pop()
            if literal is not None:
                queue.append(literal)
            else:
                assert oid is not None
                queue.append(pool.submit(store.get, oid, kind="chunk"))
        while queue:
            pop()
        if written != entry.size or xxh.hexdigest() != entry.xxh:
            raise CorruptObjectError(
                entry.header or (entry.chunks[0] if entry.chunks else "?"),
                f"rebuilt {relpath} does not match its recorded checksum",
            )
        out.commit()
    except BaseException:
        for item in queue:
            if isinstance(item, Future):
                item.cancel()
        out.abort()
        raise


_NP_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "I64": "int64",
    "U64": "uint64",
    "F64": "float64",
    "C64": "complex64",
}


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of a safetensors dtype (bf16 and fp8 through ``ml_dtypes``)."""
    if dtype in _NP_DTYPES:
        return np.dtype(_NP_DTYPES[dtype]).newbyteorder("<")
    import ml_dtypes

    special = {
        "BF16": ml_dtypes.bfloat16,
        "F8_E4M3": ml_dtypes.float8_e4m3fn,
        "F8_E5M2": ml_dtypes.float8_e5m2,
        "F8_E8M0": getattr(ml_dtypes, "float8_e8m0fnu", np.uint8),
    }
    return np.dtype(special[dtype])


def tensor_bytes(store: DiskStore, m: TensorManifest) -> bytearray:
    """The raw bytes of one tensor (reads only its chunks)."""
    buf = bytearray(m.nbytes)
    off = 0
    for oid in m.chunks:
        data = store.get(oid, kind="chunk")
        buf[off : off + len(data)] = data
        off += len(data)
    if off != m.nbytes:
        raise CorruptObjectError(m.chunks[-1] if m.chunks else "?", "tensor chunks have the wrong total size")
    return buf


def tensor_array(store: DiskStore, m: TensorManifest) -> np.ndarray:
    """One tensor as a numpy array (little-endian, its own memory)."""
    buf = tensor_bytes(store, m)
    return np.frombuffer(buf, dtype=numpy_dtype(m.dtype)).reshape(m.shape)
