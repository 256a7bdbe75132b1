"""Object ids: BLAKE3-256 over a typed header plus the object's content.

``oid = blake3(kind + b" " + str(len(content)) + b"\\0" + content)``, as lowercase hex. The id
never depends on how the object is stored (whole, as a delta, recompressed).
"""

from __future__ import annotations

import re
from typing import NewType

import blake3

__all__ = ["Oid", "KINDS", "OID_HEX_LEN", "hash_object", "Hasher", "is_oid"]

Oid = NewType("Oid", str)

#: Object kinds. ``chunk``: raw bytes (a piece of a tensor or a file, a pack of small tensors, a
#: safetensors header); ``tree`` and ``commit``: canonical JSON. ``tensor`` names the typed
#: header of tensor content ids (manifests live inline in trees since format 2).
KINDS = ("chunk", "tensor", "tree", "commit")
OID_HEX_LEN = 64
_OID_RE = re.compile(r"^[0-9a-f]{64}$")

# blake3 releases the GIL and can use several threads for large inputs.
_MT_THRESHOLD = 1 << 20


def _header(kind: str, size: int) -> bytes:
    return f"{kind} {size}\0".encode("ascii")


def hash_object(kind: str, content: bytes | memoryview) -> Oid:
    """Return the id of an object of ``kind`` with ``content``."""
    h = blake3.blake3(_header(kind, len(content)))
    h.update(content)
    return Oid(h.hexdigest())


class Hasher:
    """Incremental id computation for an object whose size is known up front."""

    def __init__(self, kind: str, size: int) -> None:
        self._h = blake3.blake3(_header(kind, size))

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes of the content."""
        self._h.update(data)

    def oid(self) -> Oid:
        """The id."""
        return Oid(self._h.hexdigest())


def is_oid(text: str) -> bool:
    """True for a full 64-hex lowercase object id."""
    return bool(_OID_RE.match(text))
