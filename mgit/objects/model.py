"""Object values: tensor manifests, trees and commits, with a canonical byte encoding.

These are pure values: no I/O. ``to_bytes`` is canonical (sorted keys, no spaces, UTF-8) so that
equal values always get equal ids; ``from_bytes`` validates everything, because objects may come
from a remote and nothing read from outside is trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mgit._dtypes import DTYPE_SIZES, FLOAT_DTYPES
from mgit._fs import check_relpath
from mgit.errors import CorruptObjectError, UnsafePathError
from mgit.limits import name_problem, shape_problem, text_problem
from mgit.objects.ids import hash_object, is_oid

__all__ = [
    "RELATIONS",
    "DTYPE_SIZES",
    "FLOAT_DTYPES",
    "SMALL_TENSOR",
    "TensorManifest",
    "is_small_tensor",
    "tensor_chunk_size",
    "packed_content_id",
    "FileEntry",
    "TensorView",
    "Tree",
    "ParentLink",
    "Commit",
    "canonical_json",
]

#: How a model was made from a parent, written on each parent edge; the lineage views list them
#: in this order. The one list: the CLI's choices, commit validation and the views all use it.
RELATIONS: tuple[str, ...] = (
    "version", "finetune", "adapter", "distill", "prune", "quantize", "merge", "other",
)

# DTYPE_SIZES (safetensors dtype name -> element size) and FLOAT_DTYPES are re-exported from the
# one dtype table, mgit._dtypes (public name: mgit.formats.dtypes).


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _load(kind: str, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptObjectError("?", f"{kind} object is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise CorruptObjectError("?", f"{kind} object is not a JSON object")
    return value


def _bad(kind: str, why: str) -> CorruptObjectError:
    return CorruptObjectError("?", f"malformed {kind} object: {why}")


def _oid_list(kind: str, value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(o, str) and is_oid(o) for o in value):
        raise _bad(kind, f"{what} must be a list of object ids")
    return tuple(value)


#: Tensors with fewer bytes than this (biases, norms, small heads) are stored packed together,
#: several to a chunk, instead of one chunk object each.
SMALL_TENSOR = 64 * 1024


def is_small_tensor(nbytes: int) -> bool:
    """Whether a tensor of ``nbytes`` is stored in a pack (see :data:`SMALL_TENSOR`)."""
    return 0 < nbytes < SMALL_TENSOR


def tensor_chunk_size(dtype: str, chunk_size: int) -> int:
    """The chunk size of a tensor of ``dtype``: ``chunk_size`` cut down to whole elements.

    A tensor's chunk *i* covers bytes ``[i * size, (i + 1) * size)`` of its data (the last one
    shorter); this is the ``chunk_size`` its manifest records.
    """
    return chunk_size - chunk_size % DTYPE_SIZES[dtype]


def packed_content_id(dtype: str, shape: tuple[int, ...] | list[int], digest: str) -> str:
    """Content id of a packed tensor: its dtype, shape and the id of its bytes."""
    return hash_object("tensor", canonical_json({"dtype": dtype, "shape": list(shape), "digest": digest}))


def _check_shape(kind: str, shape: Any) -> tuple[int, ...]:
    # The limits the safetensors parser enforced when the tensor was imported (mgit.limits).
    why = shape_problem(shape)
    if why is not None:
        raise _bad(kind, f"bad shape: it {why}")
    return tuple(shape)


def _check_name(kind: str, name: str) -> str:
    # The reader's rule: what an older mgit may have written (empty, NUL) still reads.
    why = name_problem(name, strict=False)
    if why is not None:
        raise _bad(kind, f"tensor name {why}")
    return name


@dataclass(frozen=True)
class TensorManifest:
    """One tensor: dtype, shape and where its bytes are.

    A tensor of :data:`SMALL_TENSOR` bytes or more is split into fixed-size, element-aligned
    chunks (``chunks``, ``chunk_size`` bytes each but the last). A smaller one is *packed*: it
    lies at byte ``offset`` of its single chunk, a pack shared with other small tensors of the
    file, and ``digest`` is the id of its own bytes (the chunk id they would have alone).

    Manifests live inline in the tree's file entries. The name is not part of a manifest (it
    lives in the file entry), so a tensor renamed between models keeps its :attr:`content_id`.
    """

    dtype: str
    shape: tuple[int, ...]
    chunk_size: int
    chunks: tuple[str, ...]
    offset: int | None = None
    digest: str | None = None

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return DTYPE_SIZES[self.dtype]

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data."""
        n = self.itemsize
        for d in self.shape:
            n *= d
        return n

    @property
    def numel(self) -> int:
        """Number of elements."""
        return self.nbytes // self.itemsize

    @property
    def packed(self) -> bool:
        """Whether the tensor lies inside a pack shared with other small tensors."""
        return self.offset is not None

    def segments(self) -> list[tuple[str, int, int]]:
        """``(chunk id, start, end)`` byte ranges of the decoded chunks, in tensor order."""
        if self.offset is not None:
            return [(self.chunks[0], self.offset, self.offset + self.nbytes)]
        total = self.nbytes
        return [
            (oid, 0, min(self.chunk_size, total - i * self.chunk_size))
            for i, oid in enumerate(self.chunks)
        ]

    @property
    def data_ids(self) -> tuple[str, ...]:
        """Ids of the tensor's bytes chunk by chunk, as if stored unpacked (equal ids, equal bytes)."""
        return (self.digest,) if self.digest is not None else self.chunks

    @cached_property
    def content_id(self) -> str:
        """An id of the tensor's dtype, shape and bytes: equal ids mean identical tensors.

        For an unpacked tensor it is the id its manifest had as a separate object in format 1.
        """
        if self.digest is not None:
            return packed_content_id(self.dtype, self.shape, self.digest)
        return hash_object("tensor", self.to_bytes())

    def to_json(self) -> dict[str, Any]:
        """JSON value (inside a tree's file entry)."""
        d: dict[str, Any] = {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }
        if self.offset is not None:
            d["offset"] = self.offset
            d["digest"] = self.digest
        return d

    def to_bytes(self) -> bytes:
        """Canonical encoding of :meth:`to_json`."""
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> TensorManifest:
        """Parse and validate a canonical encoding.

        Raises:
            CorruptObjectError: malformed.
        """
        return cls.from_json(_load("tensor", data))

    @classmethod
    def from_json(cls, v: Any) -> TensorManifest:
        """Validate and build.

        Raises:
            CorruptObjectError: malformed.
        """
        if not isinstance(v, dict):
            raise _bad("tree", "tensor manifest is not an object")
        dtype = v.get("dtype")
        cs = v.get("chunk_size")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise _bad("tree", f"unknown dtype {dtype!r}")
        shape = _check_shape("tree", v.get("shape"))
        if not isinstance(cs, int) or isinstance(cs, bool) or cs <= 0 or cs % DTYPE_SIZES[dtype]:
            raise _bad("tree", "bad chunk size")
        chunks = _oid_list("tree", v.get("chunks"), "chunks")
        offset, digest = v.get("offset"), v.get("digest")
        if offset is None:
            if digest is not None:
                raise _bad("tree", "digest without offset")
            m = cls(dtype=dtype, shape=shape, chunk_size=cs, chunks=chunks)
            expected = -(-m.nbytes // cs) if m.nbytes else 0
            if len(chunks) != expected:
                raise _bad("tree", f"{len(chunks)} chunks for {m.nbytes} bytes")
            return m
        if (
            not isinstance(offset, int) or isinstance(offset, bool) or offset < 0
            or offset % DTYPE_SIZES[dtype] or offset >= cs
        ):
            raise _bad("tree", "bad packed tensor offset")
        if not isinstance(digest, str) or not is_oid(digest):
            raise _bad("tree", "bad packed tensor digest")
        m = cls(dtype=dtype, shape=shape, chunk_size=cs, chunks=chunks, offset=offset, digest=digest)
        if len(chunks) != 1 or not is_small_tensor(m.nbytes) or offset + m.nbytes > cs:
            raise _bad("tree", "a packed tensor lies inside exactly one chunk")
        return m


@dataclass(frozen=True)
class TensorView:
    """A tensor of a PyTorch checkpoint that is not its storage's own whole view: a tied weight
    (a second name on the same storage), a slice, a transposed view.

    ``storage`` is the index of the storage in the entry's ``tensors``; ``offset`` (elements),
    ``shape`` and ``stride`` are as ``torch.as_strided`` takes them.
    """

    name: str
    storage: int
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def to_json(self) -> list[Any]:
        """JSON value."""
        return [self.name, self.storage, self.offset, list(self.shape), list(self.stride)]

    @classmethod
    def from_json(cls, v: Any, storages: tuple[tuple[str, TensorManifest], ...]) -> TensorView:
        """Validate (the view lies inside its storage) and build.

        Raises:
            CorruptObjectError: malformed.
        """
        if not (isinstance(v, list) and len(v) == 5 and isinstance(v[0], str)):
            raise _bad("tree", "bad tensor view")
        name, idx, offset, shape, stride = v
        _check_name("tree", name)
        for x in (idx, offset):
            if not isinstance(x, int) or isinstance(x, bool) or x < 0:
                raise _bad("tree", "bad tensor view")
        shape = _check_shape("tree", shape)
        if not isinstance(stride, list) or len(stride) != len(shape) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in stride
        ):
            raise _bad("tree", "bad tensor view stride")
        if idx >= len(storages):
            raise _bad("tree", "tensor view of a missing storage")
        numel = storages[idx][1].numel
        extent = 0 if 0 in shape else 1 + sum((d - 1) * st for d, st in zip(shape, stride))
        if extent and offset + extent > numel:
            raise _bad("tree", "tensor view outside its storage")
        return cls(name, idx, offset, shape, tuple(stride))


@dataclass(frozen=True)
class FileEntry:
    """A file of the model folder.

    ``kind`` is one of:

    - ``"safetensors"``: ``header`` is the chunk holding the exact header bytes, ``tensors`` the
      (name, manifest) pairs in data order.
    - ``"torchzip"`` (a ``torch.save`` zip checkpoint, ``pytorch_model.bin``): ``tensors`` are
      its storages in file order, each named after the first tensor that views it (with that
      tensor's shape when it views the whole storage contiguously, else flat); ``chunks`` hold the
      file's other bytes (zip records, ``data.pkl``) end to end; ``layout`` is the file in order:
      ``n >= 0`` is the next ``n`` of those bytes, ``-1 - i`` is storage ``i``; ``views`` are the
      tensors that are not their storage's own whole view (tied weights, slices).
    - ``"blob"``: ``chunks`` are the file's bytes in fixed-size chunks.

    ``xxh`` is the XXH3-128 of the whole file, for change detection and as an end-to-end check
    of rebuilt files.
    """

    kind: str
    size: int
    xxh: str
    chunks: tuple[str, ...] = ()
    header: str | None = None
    tensors: tuple[tuple[str, TensorManifest], ...] = ()
    layout: tuple[int, ...] = ()
    views: tuple[TensorView, ...] = ()

    def chunk_ids(self) -> set[str]:
        """Every chunk the file needs directly (header, tensor chunks and packs, blob chunks)."""
        out = set(self.chunks)
        if self.header is not None:
            out.add(self.header)
        for _, m in self.tensors:
            out.update(m.chunks)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON value (used inside the tree encoding)."""
        d: dict[str, Any] = {"kind": self.kind, "size": self.size, "xxh": self.xxh}
        if self.kind == "blob":
            d["chunks"] = list(self.chunks)
        elif self.kind == "torchzip":
            d["chunks"] = list(self.chunks)
            d["layout"] = list(self.layout)
            d["tensors"] = [[n, m.to_json()] for n, m in self.tensors]
            d["views"] = [v.to_json() for v in self.views]
        else:
            d["header"] = self.header
            d["tensors"] = [[n, m.to_json()] for n, m in self.tensors]
        return d

    @classmethod
    def from_json(cls, v: Any) -> FileEntry:
        """Validate and build.

        Raises:
            CorruptObjectError: malformed.
        """
        if not isinstance(v, dict):
            raise _bad("tree", "file entry is not an object")
        kind, size, xxh = v.get("kind"), v.get("size"), v.get("xxh")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad("tree", "bad file size")
        if not isinstance(xxh, str) or len(xxh) != 32:
            raise _bad("tree", "bad file checksum")
        if kind == "blob":
            return cls(kind="blob", size=size, xxh=xxh, chunks=_oid_list("tree", v.get("chunks"), "chunks"))
        if kind not in ("safetensors", "torchzip"):
            raise _bad("tree", f"unknown file kind {kind!r}")
        tensors_v = v.get("tensors")
        if not isinstance(tensors_v, list) or not all(
            isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) for t in tensors_v
        ):
            raise _bad("tree", "bad tensor list")
        tensors = tuple((_check_name("tree", t[0]), TensorManifest.from_json(t[1])) for t in tensors_v)
        if kind == "safetensors":
            header = v.get("header")
            if not isinstance(header, str) or not is_oid(header):
                raise _bad("tree", "bad header id")
            return cls(kind="safetensors", size=size, xxh=xxh, header=header, tensors=tensors)
        layout = v.get("layout")
        if not isinstance(layout, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in layout):
            raise _bad("tree", "bad torchzip layout")
        if [-1 - x for x in layout if x < 0] != list(range(len(tensors))):
            raise _bad("tree", "a torchzip layout holds each storage once, in order")
        raw = sum(x for x in layout if x >= 0)
        if raw + sum(m.nbytes for _, m in tensors) != size:
            raise _bad("tree", "torchzip layout does not add up to the file size")
        views_v = v.get("views")
        if not isinstance(views_v, list):
            raise _bad("tree", "bad tensor views")
        views = tuple(TensorView.from_json(x, tensors) for x in views_v)
        return cls(
            kind="torchzip", size=size, xxh=xxh, chunks=_oid_list("tree", v.get("chunks"), "chunks"),
            tensors=tensors, layout=tuple(layout), views=views,
        )


@dataclass(frozen=True)
class Tree:
    """The files of one model version: relative POSIX path -> entry."""

    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Canonical encoding."""
        return canonical_json({"files": {p: e.to_json() for p, e in self.files.items()}})

    @classmethod
    def from_bytes(cls, data: bytes) -> Tree:
        """Parse and validate, paths included (no ``..``, no absolute paths).

        Raises:
            CorruptObjectError: malformed or unsafe.
        """
        v = _load("tree", data)
        files = v.get("files")
        if not isinstance(files, dict):
            raise _bad("tree", "files must be an object")
        out: dict[str, FileEntry] = {}
        for p, e in files.items():
            try:
                check_relpath(p)
            except UnsafePathError as exc:
                raise _bad("tree", str(exc)) from None
            out[p] = FileEntry.from_json(e)
        return cls(files=out)

    @property
    def logical_bytes(self) -> int:
        """Total size of the files."""
        return sum(e.size for e in self.files.values())


@dataclass(frozen=True)
class ParentLink:
    """A parent edge of the lineage graph: the parent commit and how the child was made from it."""

    oid: str
    relation: str


@dataclass(frozen=True)
class Commit:
    """A model version.

    ``parents[0]`` is the delta base: the previous version of the same model, or the model it
    was derived from. ``lossy`` is ``None`` for a bit-exact commit, else ``{"eps": .., "max_err": ..}``.
    """

    tree: str
    parents: tuple[ParentLink, ...]
    model: str
    author: str
    time: int
    message: str
    meta: dict[str, str] = field(default_factory=dict)
    recipe: dict[str, Any] | None = None
    lossy: dict[str, float] | None = None

    def to_bytes(self) -> bytes:
        """Canonical encoding."""
        return canonical_json(
            {
                "tree": self.tree,
                "parents": [{"oid": p.oid, "relation": p.relation} for p in self.parents],
                "model": self.model,
                "author": self.author,
                "time": self.time,
                "message": self.message,
                "meta": self.meta,
                "recipe": self.recipe,
                "lossy": self.lossy,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Commit:
        """Parse and validate.

        Raises:
            CorruptObjectError: malformed.
        """
        v = _load("commit", data)
        tree = v.get("tree")
        if not isinstance(tree, str) or not is_oid(tree):
            raise _bad("commit", "bad tree id")
        parents_v = v.get("parents")
        if not isinstance(parents_v, list):
            raise _bad("commit", "parents must be a list")
        parents = []
        for p in parents_v:
            if (
                not isinstance(p, dict)
                or not isinstance(p.get("oid"), str)
                or not is_oid(p["oid"])
                or p.get("relation") not in RELATIONS
            ):
                raise _bad("commit", "bad parent")
            parents.append(ParentLink(p["oid"], p["relation"]))
        model, author, message = v.get("model"), v.get("author"), v.get("message")
        t = v.get("time")
        if not (isinstance(model, str) and isinstance(author, str) and isinstance(message, str)):
            raise _bad("commit", "model, author and message must be strings")
        if not isinstance(t, int) or isinstance(t, bool):
            raise _bad("commit", "bad time")
        meta = v.get("meta")
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in meta.items()
        ):
            raise _bad("commit", "meta must map strings to strings")
        for text in (model, author, message, *meta, *meta.values()):
            if text_problem(text) is not None:
                raise _bad("commit", "a text field is not valid UTF-8")
        recipe = v.get("recipe")
        if recipe is not None and not isinstance(recipe, dict):
            raise _bad("commit", "recipe must be an object")
        lossy = v.get("lossy")
        if lossy is not None and (
            not isinstance(lossy, dict)
            or set(lossy) != {"eps", "max_err"}
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lossy.values())
        ):
            raise _bad("commit", "lossy must be {eps: number, max_err: number}")
        return cls(
            tree=tree, parents=tuple(parents), model=model, author=author, time=t,
            message=message, meta=meta, recipe=recipe, lossy=lossy,
        )
