"""Reading stored versions: whole files (export), tensors and state dicts, and diffs.

Functions take a :class:`mgit.core.RepoCore`; ``Repository.export/tensors/load_tensor/
load_state_dict/diff/structural_diff`` delegate here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit.core import RepoCore
from mgit.errors import RefNotFoundError, UsageError
from mgit.materialize import tensor_array, tensor_bytes, write_file
from mgit.objects.model import TensorManifest

__all__ = [
    "ExportResult",
    "export",
    "tensor_manifests",
    "load_tensor",
    "load_state_dict",
    "diff",
    "structural_diff",
]


@dataclass(frozen=True)
class ExportResult:
    """Files written by ``export``."""

    commit: str
    directory: str
    files: list[str]
    bytes: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"commit": self.commit, "directory": self.directory, "files": self.files, "bytes": self.bytes}


def export(
    core: RepoCore,
    ref: str,
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write REF's files into ``directory``, byte-identical to what was committed.

    Raises:
        UsageError: ``directory`` has files that would be overwritten (without ``force``).
    """
    oid = core.resolve(ref)
    tree = core.commit_tree(oid)
    out = Path(directory).absolute()
    if out.exists() and not out.is_dir():
        raise UsageError(f"not a folder: {directory}")
    if not force:
        clash = [rel for rel in tree.files if (out / rel).exists() or (out / rel).is_symlink()]
        if clash:
            raise UsageError(
                f"export would overwrite {len(clash)} file(s) in {directory}, e.g. {clash[0]}",
                hint="choose an empty folder, or pass --force",
            )
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    with core.pool() as pool:
        for rel, entry in sorted(tree.files.items()):
            write_file(core.store, entry, out, rel, pool=pool, workers=core.workers, progress=progress)
            total += entry.size
    return ExportResult(oid, str(out), sorted(tree.files), total)


def tensor_manifests(core: RepoCore, ref: str) -> dict[str, TensorManifest]:
    """Every tensor of REF by name (manifests only: no tensor data is read)."""
    tree = core.commit_tree(core.resolve(ref))
    out: dict[str, TensorManifest] = {}
    for entry in tree.files.values():
        for name, m in entry.tensors:
            out[name] = m
    return out


def load_tensor(core: RepoCore, ref: str, name: str, *, torch: bool = False) -> Any:
    """One tensor of REF, reading only that tensor's chunks.

    Raises:
        RefNotFoundError: unknown REF or tensor name.
    """
    tensors = tensor_manifests(core, ref)
    if name not in tensors:
        raise RefNotFoundError(f"{ref}:{name}", reason="no such tensor")
    return _value(core, tensors[name], torch)


def load_state_dict(core: RepoCore, ref: str, *, torch: bool = False) -> dict[str, Any]:
    """Every tensor of REF as numpy arrays (bf16/fp8 via ml_dtypes) or torch tensors."""
    return {name: _value(core, m, torch) for name, m in tensor_manifests(core, ref).items()}


def _value(core: RepoCore, m: TensorManifest, as_torch: bool) -> Any:
    if not as_torch:
        return tensor_array(core.store, m)
    import torch

    from mgit.formats.dtypes import torch_dtype

    tdt = torch_dtype(m.dtype)
    buf = tensor_bytes(core.store, m)
    if not buf:
        return torch.empty(m.shape, dtype=tdt)
    return torch.frombuffer(buf, dtype=tdt).reshape(m.shape)


def _diff_sources(core: RepoCore, a: str, b: str | None) -> tuple[Any, Any]:
    from mgit.sources import FolderTensorSource, RepoTensorSource

    left = RepoTensorSource(core, a)
    if b is None:
        core.need_worktree()
        right: Any = FolderTensorSource(core.root, chunk_size=core.chunk_size)
    else:
        right = RepoTensorSource(core, b)
    return left, right


def diff(core: RepoCore, a: str, b: str | None = None, *, rank: bool = True) -> Any:
    """Which tensors changed from REF ``a`` to REF ``b`` (default: the working tree), and by
    how much. Tensors with equal ids are recognised as unchanged without reading data.

    Returns:
        A :class:`mgit.diff.ModelDiff`.
    """
    from mgit.diff import diff_models

    left, right = _diff_sources(core, a, b)
    return diff_models(left, right, rank=rank)


def structural_diff(core: RepoCore, a: str, b: str | None = None, *, dataflow: bool = True) -> Any:
    """The architecture diff of two versions: module tree, config.json, dataflow graph.

    Returns:
        A :class:`mgit.diff.StructuralDiff`.
    """
    from mgit.diff import structural_diff as _structural

    left, right = _diff_sources(core, a, b)
    return _structural(left, right, dataflow=dataflow)
