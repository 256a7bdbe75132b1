"""Tensor sources for the diff engine: a stored model version, or a model folder on disk.

Both give each tensor a ``content_id`` (:attr:`TensorManifest.content_id`: dtype, shape and
chunk ids, or for a small packed tensor the id of its bytes), so a tensor unchanged between a
stored version and the working tree is recognised without comparing values, and between two
stored versions without reading any tensor data.

A folder's tensors are those its version would store: every tensor of its ``.safetensors``
files, and the storages of its PyTorch zip checkpoints (``pytorch_model.bin``), as ingest
stores them.

A tensor is identified by its file and its name: both sources key their tensors by
:func:`mgit.formats.names.tensor_keys` (the bare name, or ``"<path>:<name>"`` where several
files hold that name), so no tensor hides another. Both also list their files with the
XXH3-128 of each (a stored version from its tree entries; a folder by hashing, or from the
index's stat cache for the working tree) and read small files, for the diff's file section.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mgit._fs import read_regular
from mgit.diff.source import FileInfo, TensorInfo
from mgit.errors import UnreadableFileError
from mgit.formats.dtypes import numpy_dtype
from mgit.formats.names import tensor_keys
from mgit.formats.safetensors import TensorSpec, UnknownDtypeError, read_header
from mgit.materialize import tensor_array
from mgit.objects.chunking import tensor_content_id
from mgit.worktree.index import file_xxh
from mgit.worktree.scan import scan

if TYPE_CHECKING:
    from mgit.core import RepoCore
    from mgit.objects.model import TensorManifest

__all__ = ["RepoTensorSource", "FolderTensorSource"]


class RepoTensorSource:
    """The tensors and files of a stored model version; data is read one tensor at a time."""

    def __init__(self, repo: RepoCore, ref: str) -> None:
        self.repo = repo
        self.oid = repo.resolve(ref)
        c = repo.read_commit(self.oid)
        self.label = f"{c.model}@{self.oid[:12]}"
        self._tree = repo.read_tree(c.tree)
        items = [(path, name, m) for path, e in self._tree.files.items() for name, m in e.tensors]
        keys = tensor_keys((p, n) for p, n, _ in items)
        self._manifests: dict[str, tuple[str, str, TensorManifest]] = {
            keys[(p, n)]: (p, n, m) for p, n, m in items
        }

    def tensors(self) -> dict[str, TensorInfo]:
        """Key -> info; ``content_id`` is the tensor's content id (no data is read)."""
        return {
            key: TensorInfo(name, m.dtype, m.shape, m.content_id, path)
            for key, (path, name, m) in self._manifests.items()
        }

    def load(self, name: str) -> np.ndarray:
        """One tensor's values, by key."""
        return tensor_array(self.repo.store, self._manifests[name][2])

    def files(self) -> dict[str, FileInfo]:
        """Every file of the version, with its size and checksum (from the tree)."""
        return {p: FileInfo(p, e.size, e.xxh) for p, e in self._tree.files.items()}

    def read_file(self, path: str, *, max_bytes: int) -> bytes | None:
        """The bytes of a file stored as a blob, if it has at most ``max_bytes``."""
        entry = self._tree.files.get(path)
        if entry is None or entry.kind != "blob" or entry.size > max_bytes:
            return None
        return b"".join(self.repo.store.get(c, kind="chunk") for c in entry.chunks)

    def config(self) -> dict[str, Any] | None:
        """The version's ``config.json``, if any."""
        data = self.read_file("config.json", max_bytes=64 << 20)
        if data is None:
            return None
        try:
            v = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        return v if isinstance(v, dict) else None


def _torch_specs(rel: str, path: Path) -> list[TensorSpec]:
    """The tensors a PyTorch zip checkpoint is stored as (its storages, as ingest stores them:
    :func:`mgit.pairing.torch_storage_plan`, nothing in the file executed); none for any other
    file, or one that stays opaque."""
    from mgit.pairing import torch_storage_plan

    plan, _ = torch_storage_plan(rel, path)
    if plan is None:
        return []
    return [TensorSpec(n, dt, tuple(shape), a, b) for n, dt, shape, a, b in plan.storages]


class FolderTensorSource:
    """The tensors and files of a model folder (the working tree, or any HF folder).

    Args:
        folder: The folder.
        chunk_size: The repository's chunk size (content ids depend on it).
        label: The side's label.
        xxh_of: ``xxh_of(relative path, path)`` -> the file's XXH3-128 (e.g. the index's
            cached checksums); default: hash the file.
    """

    def __init__(
        self,
        folder: Path,
        *,
        chunk_size: int,
        label: str = "working tree",
        xxh_of: Callable[[str, Path], str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.chunk_size = chunk_size
        self.label = label
        self._xxh_of = xxh_of
        self._paths = scan(self.folder)
        items: list[tuple[str, Path, Any]] = []
        for rel, path in self._paths.items():
            if rel.endswith(".safetensors"):
                try:
                    header = read_header(path)
                except UnknownDtypeError:
                    continue
                for spec in header.tensors:
                    items.append((rel, path, spec))
            else:
                items.extend((rel, path, spec) for spec in _torch_specs(rel, path))
        keys = tensor_keys((rel, spec.name) for rel, _, spec in items)
        self._specs: dict[str, tuple[str, Path, Any]] = {
            keys[(rel, spec.name)]: (rel, path, spec) for rel, path, spec in items
        }
        self._files: dict[str, FileInfo] | None = None

    def _manifest_id(self, path: Path, spec: Any) -> str:
        return tensor_content_id(path, spec, self.chunk_size)

    def tensors(self) -> dict[str, TensorInfo]:
        """Key -> info; ``content_id`` is the id the tensor would have once committed."""
        return {
            key: TensorInfo(spec.name, spec.dtype, spec.shape, self._manifest_id(path, spec), rel)
            for key, (rel, path, spec) in self._specs.items()
        }

    def load(self, name: str) -> np.ndarray:
        """One tensor's values, by key."""
        _, path, spec = self._specs[name]
        with open(path, "rb") as f:
            f.seek(spec.start)
            buf = f.read(spec.nbytes)
        return np.frombuffer(buf, dtype=numpy_dtype(spec.dtype)).reshape(spec.shape)

    def files(self) -> dict[str, FileInfo]:
        """Every file of the folder (as :func:`mgit.worktree.scan.scan` lists them), with its
        size and checksum."""
        if self._files is None:
            out = {}
            for rel, path in self._paths.items():
                try:
                    size = path.stat().st_size
                    xxh = self._xxh_of(rel, path) if self._xxh_of is not None else file_xxh(path)
                except FileNotFoundError:
                    continue
                out[rel] = FileInfo(rel, size, xxh)
            self._files = out
        return dict(self._files)

    def read_file(self, path: str, *, max_bytes: int) -> bytes | None:
        """The bytes of one file, if it has at most ``max_bytes``."""
        p = self._paths.get(path)
        try:
            if p is None or p.stat().st_size > max_bytes:
                return None
            return read_regular(p)
        except (OSError, UnreadableFileError):
            return None

    def config(self) -> dict[str, Any] | None:
        """``config.json`` of the folder, if any."""
        try:
            # read without blocking: a FIFO named config.json is refused, not waited on
            v = json.loads(read_regular(self.folder / "config.json").decode("utf-8"))
        except (OSError, UnreadableFileError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None
        return v if isinstance(v, dict) else None
