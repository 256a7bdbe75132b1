"""Object model: ids, values (tensor, tree, commit) and the content-addressed store."""

from __future__ import annotations

from mgit.objects.ids import Oid, hash_object, is_oid
from mgit.objects.model import (
    DTYPE_SIZES,
    FLOAT_DTYPES,
    RELATIONS,
    Commit,
    FileEntry,
    ParentLink,
    TensorManifest,
    Tree,
)

__all__ = [
    "Oid",
    "hash_object",
    "is_oid",
    "DTYPE_SIZES",
    "FLOAT_DTYPES",
    "RELATIONS",
    "Commit",
    "FileEntry",
    "ParentLink",
    "TensorManifest",
    "Tree",
]
