"""Pairing a new version's tensors with its parent's, and planning how each is cut and stored.

A tensor is identified by its file and its name: tensors pair with the parent's first by the
same file path and name, then by the one name-pairing rule, :func:`mgit.formats.names.pair`
(equal names, else names equal once task-head prefixes are removed, one to one) among the names
only one parent file holds (:func:`pair_tensors`), over the whole model's tensors
(:meth:`ParentIndex.for_files`). So in a diffusers folder ``unet/`` pairs with ``unet/`` and
``vae/`` with ``vae/``, and a re-sharded model still pairs by name. Any file kind whose entry has
tensors takes part (:func:`file_tensor_names`: safetensors files and PyTorch zip checkpoints).

Chunk boundaries are :mod:`mgit.objects.chunking`'s (the repository's chunk size cut to whole
elements), with one exception (:func:`plan_tensor`): a tensor paired with a parent tensor of
another float dtype and the same shape (a dtype cast, ``model.to(torch.bfloat16)``) is cut so
that each chunk lies inside one parent chunk and stored as its cast (:mod:`mgit.codecs.cast`).
Small tensors are packed several to a chunk (:func:`plan_packs`), laid out like the parent's
pack when they pair with all of its members.

Pure planning: nothing here reads tensor data or writes objects (:mod:`mgit.ingest` does).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgit.codecs._common import CAST_DTYPES
from mgit.errors import InvalidModelFileError
from mgit.formats.dtypes import DTYPE_SIZES
from mgit.formats.names import pair
from mgit.formats.safetensors import UnknownDtypeError, read_header
from mgit.objects.model import FileEntry, TensorManifest, Tree, is_small_tensor, tensor_chunk_size
from mgit.objects.store import DiskStore

__all__ = [
    "ChildRef",
    "ParentIndex",
    "TensorPlan",
    "file_tensor_names",
    "torch_storage_plan",
    "TORCH_SUFFIXES",
    "pair_name",
    "pair_tensors",
    "plan_packs",
    "plan_tensor",
    "tensor_names",
    "tensor_refs",
]


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


def file_tensor_names(rel: str, src: FileEntry | Path) -> list[str]:
    """The tensor names of one file about to be committed, in file order.

    ``src`` is the entry an unchanged file keeps (its tensors, whatever kind of file holds them)
    or the file to ingest (``.safetensors`` files and PyTorch zip checkpoints have tensors). A
    file whose header cannot be read has none here (ingesting it reports the error or stores it
    as an opaque file).
    """
    if isinstance(src, FileEntry):
        return [name for name, _ in src.tensors]
    if rel.endswith(".safetensors"):
        try:
            header = read_header(Path(src))
        except (UnknownDtypeError, InvalidModelFileError, OSError):
            return []
        return [spec.name for spec in header.tensors]
    plan, _ = torch_storage_plan(rel, Path(src))
    return [] if plan is None else [name for name, *_ in plan.storages]


#: File names read as PyTorch checkpoints (when they hold one: the zip format is sniffed).
TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def torch_storage_plan(rel: str, path: Path) -> tuple[Any, str | None]:
    """``(plan, None)`` for a PyTorch zip checkpoint stored as tensors
    (:func:`mgit.formats.torchzip.storage_plan`); ``(None, why)`` for a file that looks like a
    checkpoint but stays opaque (a legacy pickle, a compressed or unsupported one, a pickle of
    something that is not tensors, like ``training_args.bin``); ``(None, None)`` for any other
    file. Nothing in the file is ever executed.
    """
    if not rel.endswith(TORCH_SUFFIXES):
        return None, None
    from mgit.formats import torchzip as tz  # zipfile only where a checkpoint is met

    try:
        if not tz.is_torch_zip(path):
            if tz.is_legacy_torch_pickle(path):
                return None, "a legacy (pre-zip) torch pickle"
            return None, None
        return tz.storage_plan(tz.read_layout(path)), None
    except tz.TorchZipUnsupportedError as exc:
        return None, exc.reason
    except InvalidModelFileError as exc:
        return None, exc.reason


def tensor_refs(files: Mapping[str, FileEntry | Path]) -> list[tuple[str, str]]:
    """``(file path, tensor name)`` of every tensor of a model about to be committed, files in
    path order (see :func:`file_tensor_names`)."""
    return [(rel, name) for rel in sorted(files) for name in file_tensor_names(rel, files[rel])]


def tensor_names(files: Mapping[str, FileEntry | Path]) -> list[str]:
    """The tensor names of a model about to be committed (:func:`tensor_refs` without paths)."""
    return [name for _, name in tensor_refs(files)]


#: A child tensor as pairing sees it: ``(file path, name)``; the path is None when unknown (a
#: caller that pairs bare names).
ChildRef = tuple["str | None", str]


def pair_tensors(
    child: Iterable[ChildRef], parent: Iterable[tuple[str, str]]
) -> dict[ChildRef, tuple[str, str]]:
    """Pair a model's tensors with its parent's, tensor identity being ``(file, name)``.

    1. A child tensor pairs with the parent's tensor of the same file path and name.
    2. The others pair by the one name rule, :func:`mgit.formats.names.pair`, with the parent's
       names that only one of its files holds and that step 1 left free (so a re-sharded model, a
       renamed file or an added head prefix still pair, and a ``conv_in.weight`` that both
       ``unet/`` and ``vae/`` hold pairs only within its own file).
    3. A child tensor still unpaired whose name only one parent file holds takes that tensor too,
       even if another child tensor took it (a ``checkpoint-30/`` folder beside the final model:
       both the model and the checkpoint get the parent model's tensor as their base).

    For a single file per side, or shards with unique names, this is exactly
    ``pair(child names, parent names)``: the pairs, and so the stored objects, are unchanged.

    Returns:
        ``{child ref: parent (path, name)}`` for every paired child tensor.
    """
    refs = list(dict.fromkeys(child))
    pkeys = list(dict.fromkeys(parent))
    in_parent = set(pkeys)
    out: dict[ChildRef, tuple[str, str]] = {}
    for ref in refs:
        if ref[0] is not None and ref in in_parent:
            out[ref] = ref  # type: ignore[assignment]
    files_of: dict[str, int] = {}
    for _, name in pkeys:
        files_of[name] = files_of.get(name, 0) + 1
    unique = {name: (path, name) for path, name in pkeys if files_of[name] == 1}
    taken = set(out.values())
    free = [n for n, key in unique.items() if key not in taken]
    left = [ref for ref in refs if ref not in out]
    by_name = pair([name for _, name in left], free)
    for ref in left:
        pname = by_name.get(ref[1])
        if pname is not None:
            out[ref] = unique[pname]
        elif ref[0] is not None and ref[1] in unique:
            out[ref] = unique[ref[1]]
    return out


@dataclass(frozen=True)
class TensorPlan:
    """How a child tensor is cut and what its chunks are deltas against.

    Attributes:
        chunk_size: the tensor's chunk size in bytes (whole elements).
        itemsize: the tensor's element size.
        base: the paired parent tensor, if its chunks serve as bases.
        cast: the base has another float dtype: chunks are stored as casts of it.
    """

    chunk_size: int
    itemsize: int
    base: TensorManifest | None = None
    cast: bool = False

    def base_of(self, i: int) -> tuple[str | None, int]:
        """``(base chunk id or None, first base element)`` for chunk ``i`` of the tensor."""
        m = self.base
        if m is None:
            return None, 0
        if not self.cast:
            return (m.chunks[i] if i < len(m.chunks) else None), 0
        first = i * (self.chunk_size // self.itemsize)
        per = m.chunk_size // m.itemsize
        k = first // per
        return (m.chunks[k] if k < len(m.chunks) else None), first - k * per


#: The smallest chunk, in elements, a cast tensor is cut into to line up with its parent's.
MIN_CAST_CHUNK = 4096


def plan_tensor(
    dtype: str, shape: tuple[int, ...], default_chunk: int, parent: TensorManifest | None
) -> TensorPlan:
    """The chunking and bases of a child tensor paired with ``parent`` (or none).

    Chunk *i* of a child is a delta against chunk *i* of its parent tensor when both have the
    same dtype and chunk size; a child whose parent tensor was cut into smaller chunks (a cast,
    below) is cut like it, so its chunks keep lining up. A child tensor of another float dtype
    and the same shape (F64, F32, F16, BF16 to any other of them) is a dtype cast of its parent:
    it is cut into chunks of ``g = gcd(parent elements per chunk, default elements per chunk)``
    elements (``g`` is the default for a widening cast, the parent's element count per chunk for
    a narrowing one), so every chunk lies inside one parent chunk, its single base
    (:mod:`mgit.codecs.cast`). Otherwise the tensor is cut at the repository's chunk size
    (:func:`~mgit.objects.model.tensor_chunk_size`) with no base.
    """
    item = DTYPE_SIZES[dtype]
    cs = tensor_chunk_size(dtype, default_chunk)
    m = parent
    if m is None or m.packed:
        return TensorPlan(cs, item)
    if m.dtype == dtype:
        if m.chunk_size == cs:
            return TensorPlan(cs, item, m)
        if m.chunk_size < cs:  # a parent cut finer (a cast): line up with it
            return TensorPlan(m.chunk_size, item, m)
        return TensorPlan(cs, item)
    if dtype in CAST_DTYPES and m.dtype in CAST_DTYPES and m.shape == tuple(shape):
        g = math.gcd(m.chunk_size // m.itemsize, cs // item)
        if g >= MIN_CAST_CHUNK:
            return TensorPlan(g * item, item, m, cast=True)
    return TensorPlan(cs, item)


class ParentIndex:
    """The parent model's tensors by ``(file, name)``, for pairing chunks (and packs) with
    their delta base (:func:`pair_tensors`).

    Child tensors pair over all the child's tensors when they are given (``child_names``:
    ``(path, name)`` pairs, or bare names to pair by name alone; :meth:`for_files`); otherwise
    :func:`ingest_file` pairs each file's tensors on its own.

    Attributes:
        tensors: the parent's tensors, ``(path, name) -> manifest``.
        manifests: the parent's tensors whose name only one of its files holds, by name.
        packs: pack chunk id -> its members' ``(offset, nbytes, dtype)``, in offset order.
    """

    def __init__(
        self,
        store: DiskStore,
        tree: Tree | None,
        child_names: Iterable[str | tuple[str, str]] | None = None,
    ) -> None:
        self.store = store
        self.files = dict(tree.files) if tree is not None else {}
        self.tensors: dict[tuple[str, str], TensorManifest] = {}
        self.manifests: dict[str, TensorManifest] = {}
        self.packs: dict[str, list[tuple[int, int, str]]] = {}
        #: child (path, name) -> the parent (path, name) it pairs with; None: not paired yet
        self.tensor_pairs: dict[ChildRef, tuple[str, str]] | None = None
        self._by_name: dict[str, set[tuple[str, str]]] | None = None
        if tree is not None:
            seen: dict[str, int] = {}
            for path, entry in tree.files.items():
                for name, m in entry.tensors:
                    self.tensors[(path, name)] = m
                    seen[name] = seen.get(name, 0) + 1
                    if m.offset is not None:
                        members = self.packs.setdefault(m.chunks[0], [])
                        if (m.offset, m.nbytes, m.dtype) not in members:
                            members.append((m.offset, m.nbytes, m.dtype))
            for members in self.packs.values():
                members.sort()
            self.manifests = {n: m for (_, n), m in self.tensors.items() if seen[n] == 1}
        if child_names is not None:
            self.tensor_pairs = pair_tensors(_refs(child_names), self.tensors)

    def file_chunks(self, path: str) -> tuple[str, ...]:
        """The raw-byte chunks of the parent's checkpoint at ``path`` (a ``torchzip`` entry),
        the delta bases of the child's same file's; empty for any other file."""
        entry = self.files.get(path)
        return entry.chunks if entry is not None and entry.kind == "torchzip" else ()

    @property
    def pairs(self) -> dict[str, str] | None:
        """Child name -> parent name of every pair (None: not paired yet); a by-name view of
        :attr:`tensor_pairs` for callers that pair bare names."""
        if self.tensor_pairs is None:
            return None
        return {c[1]: p[1] for c, p in self.tensor_pairs.items()}

    @classmethod
    def for_files(
        cls, store: DiskStore, tree: Tree | None, files: Mapping[str, FileEntry | Path]
    ) -> ParentIndex:
        """The index for committing ``files`` (see :func:`tensor_refs`) on top of ``tree``."""
        return cls(store, tree, tensor_refs(files) if tree is not None else None)

    def with_children(self, child_names: Iterable[str | tuple[str, str]]) -> ParentIndex:
        """This index with ``child_names`` paired (a shallow copy), unless already paired."""
        if self.tensor_pairs is not None:
            return self
        view = copy.copy(self)
        view.tensor_pairs = pair_tensors(_refs(child_names), self.tensors)
        view._by_name = None
        return view

    def _pair_key(self, name: str, file: str | None) -> tuple[str, str] | None:
        ref: ChildRef = (file, name)
        if self.tensor_pairs is None:
            return pair_tensors([ref], self.tensors).get(ref)
        key = self.tensor_pairs.get(ref)
        if key is None and file is None:
            # Paired by (file, name) but asked by name alone: the parent tensor every child
            # tensor of that name pairs with, when that is one tensor.
            if self._by_name is None:
                by_name: dict[str, set[tuple[str, str]]] = {}
                for (_, n), k in self.tensor_pairs.items():
                    by_name.setdefault(n, set()).add(k)
                self._by_name = by_name
            keys = self._by_name.get(name, set())
            key = next(iter(keys)) if len(keys) == 1 else None
        elif key is None:
            key = self.tensor_pairs.get((None, name))
        return key

    def parent_of(self, name: str, file: str | None = None) -> TensorManifest | None:
        """The parent tensor a child tensor (``file``: its path, when known) pairs with."""
        key = self._pair_key(name, file)
        return None if key is None else self.tensors[key]

    def parent_name(self, name: str, file: str | None = None) -> str | None:
        """The parent tensor name a child tensor pairs with, if any."""
        key = self._pair_key(name, file)
        return None if key is None else key[1]

    def find(self, name: str, dtype: str, chunk_size: int, *, file: str | None = None) -> TensorManifest | None:
        """The parent tensor to delta against, if one with the same dtype and chunking exists."""
        m = self.parent_of(name, file)
        if m is None or m.dtype != dtype or m.chunk_size != chunk_size or m.packed:
            return None
        return m

    def plan(self, name: str, dtype: str, shape: tuple[int, ...], default_chunk: int, *,
             file: str | None = None) -> TensorPlan:
        """How to cut and delta a child tensor (:func:`plan_tensor` with its paired parent)."""
        return plan_tensor(dtype, shape, default_chunk, self.parent_of(name, file))

    def packed_pair(self, name: str, dtype: str, nbytes: int, *, file: str | None = None) -> TensorManifest | None:
        """The parent's packed tensor that ``name`` pairs with, same dtype and size."""
        m = self.parent_of(name, file)
        if m is None or not m.packed or m.dtype != dtype or m.nbytes != nbytes:
            return None
        return m


def _refs(names: Iterable[str | tuple[str, str]]) -> list[ChildRef]:
    return [(None, n) if isinstance(n, str) else (n[0], n[1]) for n in names]


@dataclass
class _Pack:
    """Small tensors of one dtype stored together in one chunk."""

    dtype: str
    members: list[int] = field(default_factory=list)  # indices into the header's tensors
    offsets: list[int] = field(default_factory=list)
    size: int = 0
    base: str | None = None  # the parent's pack with the same layout
    oid: str = ""


def plan_packs(
    specs: list[Any], chunk_size: int, parents: ParentIndex | None, *, file: str | None = None
) -> list[_Pack]:
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
            pm = parents.packed_pair(spec.name, spec.dtype, spec.nbytes, file=file)
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
