"""Tensor sources for the diff engine: a stored model version, or a model folder on disk.

Both give each tensor a ``content_id`` (:attr:`TensorManifest.content_id`: dtype, shape and
chunk ids, or for a small packed tensor the id of its bytes), so a tensor unchanged between a
stored version and the working tree is recognised without comparing values, and between two
stored versions without reading any tensor data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mgit.diff.source import TensorInfo
from mgit.formats.safetensors import UnknownDtypeError, read_header
from mgit.formats.dtypes import numpy_dtype
from mgit.materialize import tensor_array
from mgit.objects.chunking import tensor_content_id
from mgit.worktree.scan import scan

if TYPE_CHECKING:
    from mgit.core import RepoCore

__all__ = ["RepoTensorSource", "FolderTensorSource"]


class RepoTensorSource:
    """The tensors of a stored model version; data is read one tensor at a time."""

    def __init__(self, repo: RepoCore, ref: str) -> None:
        self.repo = repo
        self.oid = repo.resolve(ref)
        c = repo.read_commit(self.oid)
        self.label = f"{c.model}@{self.oid[:12]}"
        self._tree = repo.read_tree(c.tree)
        self._manifests = {name: m for e in self._tree.files.values() for name, m in e.tensors}

    def tensors(self) -> dict[str, TensorInfo]:
        """Name -> info; ``content_id`` is the tensor's content id (no data is read)."""
        return {
            name: TensorInfo(name, m.dtype, m.shape, m.content_id)
            for name, m in self._manifests.items()
        }

    def load(self, name: str) -> np.ndarray:
        """One tensor's values."""
        return tensor_array(self.repo.store, self._manifests[name])

    def config(self) -> dict[str, Any] | None:
        """The version's ``config.json``, if any."""
        entry = self._tree.files.get("config.json")
        if entry is None or entry.kind != "blob":
            return None
        data = b"".join(self.repo.store.get(c, kind="chunk") for c in entry.chunks)
        try:
            v = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        return v if isinstance(v, dict) else None


class FolderTensorSource:
    """The tensors of a model folder (the working tree, or any HF folder)."""

    def __init__(self, folder: Path, *, chunk_size: int, label: str = "working tree") -> None:
        self.folder = Path(folder)
        self.chunk_size = chunk_size
        self.label = label
        self._specs: dict[str, tuple[Path, Any]] = {}
        for rel, path in scan(self.folder).items():
            if rel.endswith(".safetensors"):
                try:
                    header = read_header(path)
                except UnknownDtypeError:
                    continue
                for spec in header.tensors:
                    self._specs[spec.name] = (path, spec)

    def _manifest_id(self, path: Path, spec: Any) -> str:
        return tensor_content_id(path, spec, self.chunk_size)

    def tensors(self) -> dict[str, TensorInfo]:
        """Name -> info; ``content_id`` is the id the tensor would have once committed."""
        return {
            name: TensorInfo(name, spec.dtype, spec.shape, self._manifest_id(path, spec))
            for name, (path, spec) in self._specs.items()
        }

    def load(self, name: str) -> np.ndarray:
        """One tensor's values."""
        path, spec = self._specs[name]
        with open(path, "rb") as f:
            f.seek(spec.start)
            buf = f.read(spec.nbytes)
        return np.frombuffer(buf, dtype=numpy_dtype(spec.dtype)).reshape(spec.shape)

    def config(self) -> dict[str, Any] | None:
        """``config.json`` of the folder, if any."""
        try:
            v = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        return v if isinstance(v, dict) else None
