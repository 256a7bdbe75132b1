"""The one thing replay writes that :func:`mgit.lifecycle.arith.write_version` cannot: a
safetensors file whose tensor *list* differs from the base version's file (a task head MODEL
added to ``model.safetensors``, a tensor MODEL removed).

:func:`write_safetensors_file` streams one such file tensor by tensor (each tensor's bytes
produced and dropped one at a time, a replayed one slice by slice); the file then goes through
``write_version``'s ``files_override`` into the normal ingest path. Every other file is
rebuilt by ``write_version`` itself, and all rounding is :func:`mgit.lifecycle.arith.cast_rne`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit.errors import MgitError, UsageError

if TYPE_CHECKING:
    from mgit.objects.model import FileEntry
    from mgit.objects.store import DiskStore

__all__ = ["RebaseError", "header_metadata", "write_safetensors_file"]


class RebaseError(MgitError):
    """A rebase refused (incompatible shapes, tokenizers, conflicts, no recipe) or failed (a
    recipe). Defined here, the lowest rebase module, so that every rebase module can raise it."""


def header_metadata(store: DiskStore, entry: FileEntry) -> dict[str, str] | None:
    """The ``__metadata__`` of a stored safetensors file's header."""
    assert entry.header is not None
    raw = store.get(entry.header, kind="chunk")
    try:
        v = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    meta = v.get("__metadata__") if isinstance(v, dict) else None
    return dict(meta) if isinstance(meta, dict) else None


#: One tensor of an output file: name, dtype, shape, and a callable giving its bytes (whole, or
#: an iterable of pieces in order: a streamed tensor).
OutTensor = tuple[str, str, tuple[int, ...], Callable[[], "bytes | bytearray | memoryview | Iterable[memoryview]"]]


def write_safetensors_file(path: Path, tensors: Iterable[OutTensor], metadata: dict[str, str] | None) -> None:
    """Write one safetensors file, streaming: the header first (from dtypes and shapes),
    then each tensor's bytes, produced one at a time.

    Raises:
        UsageError: a tensor produced the wrong number of bytes (a bug).
    """
    from mgit.objects.model import DTYPE_SIZES

    items = list(tensors)
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    sizes = []
    for name, dtype, shape, _ in items:
        n = DTYPE_SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        sizes.append(n)
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for (name, _, _, produce), n in zip(items, sizes):
            data = produce()
            pieces = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
            got = 0
            for piece in pieces:
                got += len(piece)
                f.write(piece)
            del data, pieces
            if got != n:
                raise UsageError(f"internal error: tensor {name} has {got} bytes, expected {n}")
