"""Reading stored versions: whole files (export), tensors and state dicts, and diffs.

Functions take a :class:`mgit.core.RepoCore`; ``Repository.export/tensors/load_tensor/
load_state_dict/diff/structural_diff`` delegate here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit._fs import check_not_in_mgit_dir
from mgit._globs import select
from mgit.core import RepoCore
from mgit.errors import AmbiguousTensorError, NoTensorsError, RefNotFoundError, UsageError
from mgit.materialize import tensor_array, tensor_buffer, write_file
from mgit.objects.model import FileEntry, TensorManifest, TensorView, Tree

__all__ = [
    "ExportResult",
    "diff",
    "export",
    "load_state_dict",
    "load_tensor",
    "structural_diff",
    "tensor_manifests",
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
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> ExportResult:
    """Write REF's files into ``directory``, byte-identical to what was committed.

    ``include``/``exclude`` (globs, :mod:`mgit._globs`: the same matching as
    ``materialize``) write only the files that match an ``include`` glob (all when None) and
    no ``exclude`` glob.

    Raises:
        UsageError: ``directory`` has files that would be overwritten (without ``force``); no
            file of REF is selected, or a bad pattern (nothing is written then).
        UnsafePathError: ``directory`` is inside a repository's ``.mgit`` (or a bare store),
            ``force`` or not: its refs, config and HEAD are never written over.
    """
    out = Path(directory).absolute()
    check_not_in_mgit_dir(out, action="export")
    oid = core.resolve(ref)
    tree = core.commit_tree(oid)
    chosen = select(tree.files, include, exclude)
    if not chosen and tree.files:
        shown = ", ".join(sorted(tree.files)[:10]) + (" ..." if len(tree.files) > 10 else "")
        raise UsageError(
            f"no file of {ref} matches the --include/--exclude patterns",
            hint=f"its files: {shown or '(none)'}",
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"not a folder: {directory}")
    if not force:
        clash = [rel for rel in chosen if (out / rel).exists() or (out / rel).is_symlink()]
        if clash:
            raise UsageError(
                f"export would overwrite {len(clash)} file(s) in {directory}, e.g. {clash[0]}",
                hint="choose an empty folder, or pass --force",
            )
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    with core.pool() as pool:
        for rel in chosen:
            entry = tree.files[rel]
            write_file(core.store, entry, out, rel, pool=pool, workers=core.workers, progress=progress)
            total += entry.size
    return ExportResult(oid, str(out), chosen, total)


def _tensor_files(tree: Tree) -> dict[str, FileEntry]:
    """The files of a version that hold tensors, by path (any kind of file with tensors)."""
    return {path: e for path, e in sorted(tree.files.items()) if e.tensors}


def _select(tree: Tree, ref: str, file: str | None) -> dict[str, FileEntry]:
    """The tensor files ``file`` names: the file itself, or every tensor file under the folder
    ``file`` (``"unet"``, ``"checkpoint-30/"``); all of them for None, ``""`` or ``"."``.

    Raises:
        NoTensorsError: ``file`` names no tensor file.
    """
    files = _tensor_files(tree)
    if file is None:
        return files
    sel = str(file).replace("\\", "/").strip("/")
    while sel.startswith("./"):
        sel = sel[2:]
    if sel in ("", "."):
        return files
    if sel in files:
        return {sel: files[sel]}
    under = {p: e for p, e in files.items() if p.startswith(sel + "/")}
    if not under:
        raise NoTensorsError(ref, sorted(tree.files), selector=str(file), tensor_files=list(files))
    return under


def _keyed(files: dict[str, FileEntry]) -> dict[str, tuple[str, str, TensorManifest]]:
    """key -> (path, name, manifest), keys by :func:`mgit.formats.names.tensor_keys` over
    ``files``: the bare name when only one of them holds it, else ``"<path>:<name>"``."""
    from mgit.formats.names import tensor_keys  # not at import: export must not load mgit.formats

    items = [(path, name, m) for path, e in files.items() for name, m in e.tensors]
    keys = tensor_keys((path, name) for path, name, _ in items)
    return {keys[(path, name)]: (path, name, m) for path, name, m in items}


def tensor_manifests(core: RepoCore, ref: str, *, file: str | None = None) -> dict[str, TensorManifest]:
    """Every tensor of REF by key (manifests only: no tensor data is read).

    A tensor is identified by its file and its name: its key is the bare name when no other file
    of the version (of the part selected by ``file``) holds that name, else ``"<path>:<name>"``
    (:func:`mgit.formats.names.tensor_keys`), so no tensor hides another. ``file`` selects a
    tensor file or a component folder (``"unet"``): then only its tensors, keyed over it.
    A version without tensors gives ``{}``.

    Raises:
        NoTensorsError: ``file`` names no tensor file of the version.
    """
    tree = core.commit_tree(core.resolve(ref))
    return {key: m for key, (_, _, m) in _keyed(_select(tree, ref, file)).items()}


def tree_manifests(tree: Tree) -> dict[str, TensorManifest]:
    """Every tensor of a tree by key, as :func:`tensor_manifests` gives a version's."""
    return {key: m for key, (_, _, m) in _keyed(_tensor_files(tree)).items()}


def load_tensor(core: RepoCore, ref: str, name: str, *, file: str | None = None,
                torch: bool = False) -> Any:
    """One tensor of REF, reading only that tensor's chunks.

    ``name`` is a tensor name, or a key ``"<path>:<name>"`` (:func:`tensor_manifests`);
    ``file`` (a tensor file or a component folder) says where to look when several files hold
    the name.

    Raises:
        RefNotFoundError: unknown REF, or no such tensor.
        AmbiguousTensorError: several files (of those ``file`` selects) hold ``name``.
        NoTensorsError: the version has no tensors, or ``file`` names no tensor file.
    """
    tree = core.commit_tree(core.resolve(ref))
    files = _select(tree, ref, file)
    if not files:
        raise NoTensorsError(ref, sorted(tree.files))
    keyed = _keyed(files)
    hit = keyed.get(name)
    if hit is None:
        holders = sorted(path for path, n, _ in keyed.values() if n == name)
        if len(holders) > 1:
            raise AmbiguousTensorError(ref, name, holders)
        where = f"no such tensor in {file}" if file is not None else "no such tensor"
        raise RefNotFoundError(f"{ref}:{name}", reason=where)
    return _value(core, hit[2], torch)


def load_state_dict(core: RepoCore, ref: str, *, file: str | None = None,
                    torch: bool = False) -> dict[str, Any]:
    """Tensors of REF as numpy arrays (bf16/fp8 via ml_dtypes) or torch tensors, by key
    (:func:`tensor_manifests`): with ``file`` (a file or a component folder such as ``"unet"``)
    that part's tensors, by bare name where unique within it.

    Raises:
        NoTensorsError: the version (or the part ``file`` selects) has no tensors.
    """
    tree = core.commit_tree(core.resolve(ref))
    files = _select(tree, ref, file)
    if not files:
        raise NoTensorsError(ref, sorted(tree.files))
    out = {key: _value(core, m, torch) for key, (_, _, m) in _keyed(files).items()}
    views = [(path, v, e) for path, e in files.items() for v in e.views]
    if views:  # a checkpoint's tied weights and other views of its storages
        from mgit.formats.names import tensor_keys

        names = [(p, n) for p, e in files.items() for n, _ in e.tensors] + [(p, v.name) for p, v, _ in views]
        keys = tensor_keys(names)
        for path, v, e in views:
            out[keys[(path, v.name)]] = _view_value(core, e.tensors[v.storage][1], v, torch)
    return out


def _view_value(core: RepoCore, storage: TensorManifest, view: TensorView, as_torch: bool) -> Any:
    """A strided view of a checkpoint's storage, as its own (contiguous) tensor."""
    import numpy as np

    flat = np.asarray(tensor_array(core.store, storage)).reshape(-1)
    bits = flat.view(f"u{flat.dtype.itemsize}")  # as_strided cannot take bf16/fp8 arrays
    step = bits.dtype.itemsize
    picked = np.lib.stride_tricks.as_strided(
        bits[view.offset :], shape=view.shape, strides=[s * step for s in view.stride], writeable=False
    )
    arr = np.ascontiguousarray(picked).view(flat.dtype)
    if not as_torch:
        return arr
    import torch

    from mgit.formats.dtypes import torch_dtype

    t = torch.from_numpy(np.ascontiguousarray(picked).copy())
    return t.view(torch_dtype(storage.dtype)) if t.numel() else torch.empty(view.shape, dtype=torch_dtype(storage.dtype))


def _value(core: RepoCore, m: TensorManifest, as_torch: bool) -> Any:
    if not as_torch:
        return tensor_array(core.store, m)
    import torch

    from mgit.formats.dtypes import torch_dtype

    tdt = torch_dtype(m.dtype)
    if not m.nbytes:
        return torch.empty(m.shape, dtype=tdt)
    return torch.frombuffer(tensor_buffer(core.store, m), dtype=tdt).reshape(m.shape)


def _diff_sources(core: RepoCore, a: str, b: str | None) -> tuple[Any, Any]:
    from mgit.sources import FolderTensorSource, RepoTensorSource

    left = RepoTensorSource(core, a)
    if b is None:
        from mgit.worktree.index import Index

        core.need_worktree()
        index = Index.load(core.mgit_dir)  # its stat cache spares re-hashing unchanged files
        right: Any = FolderTensorSource(core.root, chunk_size=core.chunk_size, xxh_of=index.current_xxh)
    else:
        right = RepoTensorSource(core, b)
    return left, right


def diff(core: RepoCore, a: str, b: str | None = None, *, rank: bool = True) -> Any:
    """Which tensors and files changed from REF ``a`` to REF ``b`` (default: the working tree),
    and by how much. Tensors with equal ids are recognised as unchanged without reading data;
    files are compared by checksum, JSON files key by key; quantized weights are dequantized
    and a LoRA adapter is measured against the other side's weights.

    Returns:
        A :class:`mgit.diff.ModelDiff`.
    """
    from mgit.diff import diff_models

    left, right = _diff_sources(core, a, b)
    return diff_models(left, right, rank=rank)


def structural_diff(core: RepoCore, a: str, b: str | None = None, *, dataflow: bool = True) -> Any:
    """The architecture diff of two versions: module tree, config.json, dataflow graph, and
    the files that are not compared as tensors.

    Returns:
        A :class:`mgit.diff.StructuralDiff`.
    """
    from mgit.diff import structural_diff as _structural

    left, right = _diff_sources(core, a, b)
    return _structural(left, right, dataflow=dataflow)
