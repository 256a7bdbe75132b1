"""PyTorch zip checkpoints (``torch.save``, the default since torch 1.6): their byte layout, read
without executing anything from the file.

All members sit in one folder ``<archive>/`` (the file's stem; ``archive`` for a stream):
``data.pkl``, small records (``.format_version``, ``.storage_alignment``, ``byteorder``,
``version``, ``.data/serialization_id``) and one ``data/<key>`` per storage, stored uncompressed
and padded (an ``FB`` local-header extra field) to start at a multiple of 64. Sizes come from the
central directory (local headers have none), checked against the file. ``data.pkl`` is decoded by
:mod:`pickletools` and interpreted over placeholders, accepting only the globals
``torch.load(weights_only=True)`` accepts; nothing is imported or called.
"""

from __future__ import annotations

import _compat_pickle
import math
import os
import pickletools
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mgit._fs import open_regular
from mgit.errors import InvalidModelFileError, UnreadableFileError
from mgit.formats.dtypes import DTYPES

__all__ = ["Region", "TorchStorage", "TorchTensor", "TorchZipLayout", "TorchZipUnsupportedError",
           "CompressedStorageError", "read_layout", "is_torch_zip", "is_legacy_torch_pickle",
           "MAX_PICKLE", "StoragePlan", "storage_plan"]  # fmt: skip

#: ``data.pkl`` members larger than this are refused.
MAX_PICKLE = 256 * 1024 * 1024
#: torch's magic number, the first object of a legacy (non-zip) checkpoint.
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_MAX_DEPTH = 200
_DATA_PKL = re.compile(r"([^/]+)/data\.pkl")
_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
               struct.error, IndexError, KeyError, NotImplementedError, RuntimeError)  # fmt: skip
#: legacy typed storage class (``torch.X``, ``torch.cuda.X``) -> torch dtype name.
_STORAGE_TYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
    "QInt8Storage": "qint8", "QInt32Storage": "qint32", "QUInt8Storage": "quint8",
    "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4"}  # fmt: skip
#: every ``torch.<dtype>`` global weights_only allows.
_TORCH_DTYPES = frozenset(
    set(_STORAGE_TYPES.values()) | {f"{k}{n}" for k in ("int", "uint") for n in range(1, 8)}
    | {"uint16", "uint32", "uint64", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
       "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
       "float4_e2m1fn_x2", "complex32"})  # fmt: skip
_REBUILD = "torch._utils._rebuild_"
_PLAIN_TENSORS = ("torch.Tensor", "torch.nn.parameter.Parameter")
#: torch dtype name -> safetensors dtype name, from the one dtype table.
_FROM_TORCH = {d.torch: d.name for d in DTYPES.values()}
_Member = tuple[zipfile.ZipInfo, int]  # the member, the offset of its data in the file


#: the globals of ``torch._weights_only_unpickler._get_allowed_globals`` (torch 2.13).
_ALLOWED: set[str] = {
    "collections.OrderedDict", "collections.Counter", "torch.serialization._get_layout",
    "torch.Size", "torch.device", "_codecs.encode", "builtins.bytearray", "builtins.set",
    "builtins.complex", "torch._tensor._rebuild_from_type_v2", "torch.storage.TypedStorage",
    "torch.storage.UntypedStorage", *_PLAIN_TENSORS,
    *(f"torch.{t}" for t in (*_TORCH_DTYPES, *_STORAGE_TYPES)),
    *(f"torch.cuda.{s}" for s in _STORAGE_TYPES if not s.startswith("Q")),
    *(f"torch.per_{q}" for q in ("tensor_affine", "tensor_symmetric", "channel_affine",
                                 "channel_symmetric", "channel_affine_float_qparams")),
    *(f"{m}.{t}Tensor" for m in ("torch", "torch.cuda", "torch.sparse", "torch.cuda.sparse")
      for t in ("Double", "Float", "Half", "Long", "Int", "Short", "Char", "Byte", "Bool",
                "BFloat16")),
    *(_REBUILD + f for f in (
        "parameter", "parameter_with_state", "qtensor", "tensor", "tensor_v2", "tensor_v3",
        "sparse_tensor", "meta_tensor_no_storage", "nested_tensor", "wrapper_subclass",
        "device_tensor_from_numpy", "device_tensor_from_cpu_tensor")),
}  # fmt: skip


class TorchZipUnsupportedError(Exception):
    """A well-formed checkpoint mgit cannot represent as tensor data (``path``, ``reason``)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"torch checkpoint {path} not representable: {reason}")
        self.path = path
        self.reason = reason


class CompressedStorageError(TorchZipUnsupportedError):
    """A storage member is compressed (torch writes them ``ZIP_STORED``; it reads DEFLATE too)."""


@dataclass(frozen=True)
class Region:
    """One byte range ``[start, end)`` of the file.

    Attributes:
        kind: ``"storage"`` (one storage's bytes) or ``"raw"`` (zip headers, ``data.pkl`` ...).
        start: Offset of the first byte.
        end: Offset one past the last byte.
        key: The storage key of a ``"storage"`` region, else ``None``.
    """

    kind: str
    start: int
    end: int
    key: str | None = None


@dataclass(frozen=True)
class TorchStorage:
    """One storage: the bytes of the member ``<archive>/data/<key>``.

    Attributes:
        key: The storage key (``"0"``, ``"1"`` ...).
        dtype: safetensors name of its elements' dtype (``F32``, ``BF16``, ``F8_E4M3`` ...).
        start: Offset of its first byte in the file.
        end: Offset one past its last byte.
        numel: Number of elements.
        member: The zip member's name.
        location: The device it was saved from (``"cpu"``, ``"cuda:0"`` ...).
    """

    key: str
    dtype: str
    start: int
    end: int
    numel: int
    member: str
    location: str

    @property
    def nbytes(self) -> int:
        """Length of the data."""
        return self.end - self.start


@dataclass(frozen=True)
class TorchTensor:
    """One tensor: a strided view of a storage, counted in elements of the storage's dtype.

    Attributes:
        name: Its key path, joined with ``.`` (``"model.fc.weight"``, ``"0"``; ``""`` at the root).
        storage_key: The :class:`TorchStorage` it views (tied weights share one).
        storage_offset: Offset of its first element in the storage.
        shape: Its size.
        stride: Its strides, as stored.
        dtype: safetensors dtype name (the storage's).
        conj: The conjugate bit is set: the value is the conjugate of the stored view.
        neg: The negative bit is set: the value is the negation of the stored view.
    """

    name: str
    storage_key: str
    storage_offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    conj: bool = False
    neg: bool = False


@dataclass(frozen=True)
class TorchZipLayout:
    """A torch zip checkpoint's layout.

    Attributes:
        archive: The folder all members sit in.
        file_size: The file's size in bytes.
        byteorder: ``"little"`` (the only order accepted; assumed when the record is absent).
        regions: In file order, covering ``[0, file_size)`` exactly once: one region per storage
            (empty for an empty storage) and non-empty raw regions between them.
        storages: The storages the pickle references, in file order.
        tensors: The tensors, in the pickle's order.
    """

    archive: str
    file_size: int
    byteorder: str
    regions: tuple[Region, ...]
    storages: tuple[TorchStorage, ...]
    tensors: tuple[TorchTensor, ...]

    def storage(self, key: str) -> TorchStorage:
        """The storage with this key (``KeyError`` if none)."""
        return {s.key: s for s in self.storages}[key]


# -- the restricted unpickler: placeholders for what the pickle would build ----------------------


@dataclass(frozen=True)
class _Global:
    name: str


@dataclass(eq=False)
class _Storage:
    key: str
    dtype: str | None  # torch dtype name; None: an UntypedStorage (numel in bytes)
    location: str
    numel: int
    viewed: str | None = None  # the dtype of the tensors viewing it


@dataclass(eq=False)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str  # torch dtype name
    conj: bool = False
    neg: bool = False


class _ODict(dict):  # type: ignore[type-arg]
    """An ``OrderedDict`` or ``Counter``: may receive a ``BUILD`` state (``_metadata``)."""


class _PSet(tuple):  # type: ignore[type-arg]
    """A ``set``, kept in pickle order."""


def _ints(v: Any) -> bool:
    return type(v) is tuple and all(type(x) is int and x >= 0 for x in v)


def _latin1(a: tuple[Any, ...]) -> bool:
    return len(a) == 2 and type(a[0]) is str and a[1] in ("latin1", "latin-1")


_MARK = object()
_NEW: dict[str, Callable[[], Any]] = {
    "NONE": lambda: None, "NEWTRUE": lambda: True, "NEWFALSE": lambda: False, "EMPTY_TUPLE": tuple,
    "EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_SET": _PSet}  # fmt: skip
_LITERALS = frozenset(
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT BINUNICODE SHORT_BINUNICODE UNICODE"
    " BINUNICODE8 STRING BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8".split())
#: allowed global -> (are these arguments what torch writes, the placeholder calling it builds).
_SIMPLE: dict[str, tuple[Callable[[tuple[Any, ...]], bool], Callable[[tuple[Any, ...]], Any]]] = {
    "collections.OrderedDict": (lambda a: len(a) < 2 and all(isinstance(x, (list, tuple, dict))
                                                             for x in a), lambda a: _ODict(*a)),
    "builtins.set": (lambda a: len(a) < 2 and all(type(x) in (list, tuple) for x in a),
                     lambda a: _PSet(*a)),
    "builtins.complex": (lambda a: 1 <= len(a) <= 2 and all(type(x) in (int, float) for x in a),
                         lambda a: complex(*a)),
    "_codecs.encode": (_latin1, lambda a: a[0].encode("latin-1")),
    "builtins.bytearray": (lambda a: _latin1(a) or (len(a) == 1 and type(a[0]) is bytes),
                           lambda a: bytearray(*a)),
    "torch.Size": (lambda a: len(a) == 1 and _ints(a[0]), lambda a: a[0]),
    "torch.device": (lambda a: 1 <= len(a) <= 2 and type(a[0]) is str, lambda a: a[0]),
    "torch.serialization._get_layout": (lambda a: len(a) == 1 and type(a[0]) is str,
                                        lambda a: _Global(f"torch.{a[0]}")),
}  # fmt: skip
_SIMPLE["collections.Counter"] = _SIMPLE["collections.OrderedDict"]


@dataclass
class _Unpickler:
    """Interprets pickle opcodes over placeholders; calls nothing, imports nothing."""

    path: object
    storages: dict[str, _Storage] = field(default_factory=dict)
    tensors: list[_Tensor] = field(default_factory=list)

    def bad(self, reason: str) -> InvalidModelFileError:
        return InvalidModelFileError(self.path, f"data.pkl: {reason}")

    def unsupported(self, reason: str) -> TorchZipUnsupportedError:
        return TorchZipUnsupportedError(self.path, reason)

    def load(self, data: bytes) -> tuple[Any, int]:
        """Interpret ``data``; returns the root object and the number of opcodes."""
        stack: list[Any] = []
        memo: dict[int, Any] = {}
        try:
            for n, (op, arg, _pos) in enumerate(pickletools.genops(data), 1):
                if op.name == "STOP":
                    if len(stack) != 1 or stack[0] is _MARK:
                        raise self.bad("not one object on the stack at STOP")
                    return stack[0], n
                self.step(op.name, arg, stack, memo)
        except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
            raise self.bad(f"malformed pickle ({type(exc).__name__}: {exc})") from None
        raise self.bad("no STOP opcode")

    def step(self, name: str, arg: Any, stack: list[Any], memo: dict[int, Any]) -> None:
        """Run one opcode."""

        def pop(k: int = 1) -> list[Any]:
            items = stack[-k:]
            if len(items) != k or _MARK in items:
                raise self.bad(f"{name} on a short stack")
            del stack[-k:]
            return items

        def pop_mark() -> list[Any]:
            at = len(stack) - 1  # from the top (linear time); no MARK ends in an IndexError
            while stack[at] is not _MARK:
                at -= 1
            items = stack[at + 1 :]
            del stack[at:]
            return items

        if name in _NEW:
            stack.append(_NEW[name]())
        elif name in _LITERALS:
            stack.append(arg)
        elif name == "PROTO" and not 2 <= arg <= 5:
            raise self.bad(f"pickle protocol {arg} (torch writes 2)")
        elif name in ("MARK", "DUP"):
            stack.append(_MARK if name == "MARK" else stack[-1])
        elif name in ("POP", "POP_MARK"):
            pop() if name == "POP" else pop_mark()
        elif name in ("TUPLE", "LIST", "DICT", "TUPLE1", "TUPLE2", "TUPLE3"):
            items = pop(int(name[-1])) if name[-1] in "123" else pop_mark()
            stack.append(list(items) if name == "LIST" else tuple(items) if name[0] == "T"
                         else dict(zip(items[::2], items[1::2], strict=True)))  # fmt: skip
        elif name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS"):
            items = pop_mark() if name[-1] == "S" else pop(1 if name == "APPEND" else 2)
            target = stack[-1]
            if type(target) not in ((list,) if name[0] == "A" else (dict, _ODict)):
                raise self.bad(f"{name} on a {type(target).__name__}")
            if name[0] == "A":
                target.extend(items)
            else:
                target.update(zip(items[::2], items[1::2], strict=True))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            stack.extend(pop())
            memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[int(arg)])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            module, attr = arg.split(" ", 1) if name == "GLOBAL" else pop(2)
            if type(module) is not str or type(attr) is not str:
                raise self.bad("STACK_GLOBAL of non-strings")
            stack.append(self.global_(module, attr))
        elif name == "BINPERSID":
            stack.append(self.persistent(pop()[0]))
        elif name in ("REDUCE", "NEWOBJ"):
            func, args = pop(2)
            if not isinstance(func, _Global) or type(args) is not tuple:
                raise self.bad(f"{name} of something that is not an allowed global")
            if name == "NEWOBJ" and func.name != "torch.nn.parameter.Parameter":
                raise self.bad(f"NEWOBJ of {func.name} (only Parameter is allowed)")
            stack.append(self.call(func.name, args))
        elif name == "BUILD":  # an OrderedDict's attributes (_metadata), kept out of the names
            if type(pop()[0]) is not dict or type(stack[-1]) is not _ODict:
                raise self.unsupported(f"BUILD of a {type(stack[-1]).__name__}")
        elif name not in ("PROTO", "FRAME"):
            raise self.bad(f"opcode {name} is not allowed")

    def global_(self, module: str, attr: str) -> _Global:
        """An allowed global, as a name."""
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # __builtin__ -> builtins
        if (full := f"{module}.{attr}") not in _ALLOWED:
            raise self.bad(f"global {full} is not allowed (only what torch's weights_only allows)")
        return _Global(full)

    def persistent(self, pid: Any) -> _Storage:
        """A storage reference ``('storage', storage_type, key, location, numel)``."""
        if type(pid) is not tuple or len(pid) != 5 or pid[0] not in ("storage", b"storage"):
            raise self.bad(f"persistent id {pid!r:.80} is not a storage")
        _, cls, key, location, numel = pid
        short = cls.name.rpartition(".")[2] if isinstance(cls, _Global) else None
        if short not in _STORAGE_TYPES and cls != _Global("torch.storage.UntypedStorage"):
            raise self.unsupported(f"storage of type {cls!r}")
        if type(key) is not str or not _KEY.fullmatch(key) or key in (".", ".."):
            raise self.bad(f"storage key {key!r:.80}")
        if type(location) is not str or type(numel) is not int or numel < 0:
            raise self.bad(f"storage {key}: bad location or size")
        dtype = _STORAGE_TYPES.get(short or "")
        old = self.storages.setdefault(key, _Storage(key, dtype, location, numel, dtype))
        if (old.dtype, old.location, old.numel) != (dtype, location, numel):
            raise self.bad(f"storage {key} referenced with two different types or sizes")
        return old

    def call(self, func: str, args: tuple[Any, ...]) -> Any:
        """What calling the allowed global ``func`` would build, as a placeholder."""
        a0 = args[0] if args else None
        if func in _SIMPLE:
            check, build = _SIMPLE[func]
            if not check(args):
                raise self.bad(f"{func} with odd arguments")
            return build(args)
        if func == "torch._tensor._rebuild_from_type_v2":  # (func, new_type, args, state)
            if len(args) != 4 or not isinstance(a0, _Global) or type(args[2]) is not tuple:
                raise self.bad("_rebuild_from_type_v2 with odd arguments")
            if args[1] not in tuple(map(_Global, _PLAIN_TENSORS)):
                raise self.unsupported(f"tensor subclass {args[1]!r:.80}")
            if not a0.name.startswith(_REBUILD):
                raise self.bad(f"_rebuild_from_type_v2 calling {a0.name}")
            return self.call(a0.name, args[2])  # the state (Python attributes) is dropped
        if func in (_REBUILD + "parameter", _REBUILD + "parameter_with_state", _PLAIN_TENSORS[1]):
            if not isinstance(a0, _Tensor):
                raise self.bad(f"{func} of a non-tensor")
            return a0
        if func not in (_REBUILD + "tensor", _REBUILD + "tensor_v2", _REBUILD + "tensor_v3"):
            raise self.unsupported(f"{func} (only dense tensors are representable)")
        # _rebuild_tensor(storage, offset, size, stride), _v2(..., requires_grad,
        # backward_hooks[, metadata]), _v3(..., requires_grad, backward_hooks, dtype[, metadata])
        low, high = {"tensor": (4, 4), "tensor_v2": (6, 7)}.get(func[len(_REBUILD) :], (7, 8))
        if not low <= len(args) <= high:
            raise self.bad(f"{func} with {len(args)} arguments")
        storage, offset, shape, stride = args[:4]
        if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0:
            raise self.bad(f"{func}: bad storage or offset")
        if not (_ints(shape) and _ints(stride)) or len(shape) != len(stride):
            raise self.bad(f"{func}: bad shape or stride")
        dtype = storage.dtype or "uint8"
        if high == 8:
            dtype = args[6].name[6:] if isinstance(args[6], _Global) else ""
            if f"torch.{dtype}" != getattr(args[6], "name", "") or dtype not in _TORCH_DTYPES:
                raise self.bad("_rebuild_tensor_v3 without a dtype")
        if (storage.viewed or dtype) != dtype:
            raise self.unsupported(f"storage {storage.key} viewed as two dtypes")
        storage.viewed = dtype
        metadata = args[-1] if len(args) == high > 4 else None
        if metadata and (type(metadata) is not dict or not set(metadata) <= {"conj", "neg"}
                         or not all(type(v) is bool for v in metadata.values())):  # fmt: skip
            raise self.unsupported(f"tensor metadata {metadata!r:.80}")
        self.tensors.append(_Tensor(storage, offset, shape, stride, dtype, **(metadata or {})))
        return self.tensors[-1]


def _name_tensors(path: object, root: Any, budget: int) -> list[tuple[str, _Tensor]]:
    """Every tensor reachable through dicts, lists, tuples and sets, with its dotted key path."""
    out: list[tuple[str, _Tensor]] = []
    left = [budget]

    def walk(obj: Any, keys: tuple[Any, ...]) -> None:
        left[0] -= 1
        if left[0] < 0 or len(keys) > _MAX_DEPTH:
            raise InvalidModelFileError(path, "data.pkl: object graph too deep or too large")
        if isinstance(obj, _Tensor):
            if any(type(k) not in (str, int) for k in keys):
                raise TorchZipUnsupportedError(path, f"a tensor under the key {keys!r:.80}")
            out.append((".".join(map(str, keys)), obj))
            return
        for k, v in obj.items() if isinstance(obj, dict) else enumerate(obj):
            if isinstance(v, (_Tensor, dict, list, tuple)):
                walk(v, (*keys, k))

    if isinstance(root, (_Tensor, dict, list, tuple)):
        walk(root, ())
    return out


# -- the zip container ----------------------------------------------------------------------------


def _members(path: object, f: BinaryIO, zf: zipfile.ZipFile, size: int) -> dict[str, _Member]:
    """Every member and the offset of its data, checked against the file size; no overlaps."""
    out: dict[str, _Member] = {}
    for info in zf.infolist():
        where, name = info.header_offset, info.filename
        if name in out:
            raise InvalidModelFileError(path, f"duplicate zip member {name!r}")
        if not 0 <= where <= size - 30:
            raise InvalidModelFileError(path, f"zip member {name!r} is past the end")
        f.seek(where)
        sig, flags, nlen, elen = struct.unpack("<4s2xH18xHH", f.read(30))
        local = f.read(nlen).decode("utf-8" if flags & 0x800 else "cp437", "replace")
        if sig != b"PK\x03\x04" or local != info.orig_filename:
            raise InvalidModelFileError(path, f"no local header for zip member {name!r}")
        start = where + 30 + nlen + elen
        if start + info.compress_size > size:
            raise InvalidModelFileError(path, f"zip member {name!r} runs past the end of the file")
        out[name] = (info, start)
    end = 0
    for info, start in sorted(out.values(), key=lambda m: m[0].header_offset):
        if info.header_offset < end:
            raise InvalidModelFileError(path, f"zip member {info.filename!r} overlaps another")
        end = start + info.compress_size
    if end > getattr(zf, "start_dir", size):
        raise InvalidModelFileError(path, "zip members overlap the central directory")
    return out


def _read_member(path: object, zf: zipfile.ZipFile, m: _Member, limit: int) -> bytes:
    """A small member's bytes (decompressed, CRC checked), at most ``limit`` of them."""
    try:
        if m[0].file_size <= limit:
            with zf.open(m[0]) as fh:
                if len(data := fh.read(limit + 1)) <= limit:
                    return data
    except _ZIP_ERRORS as exc:
        raise InvalidModelFileError(path, f"{m[0].filename}: {exc}") from None
    raise InvalidModelFileError(path, f"{m[0].filename} is larger than allowed")


def read_layout(path: str | os.PathLike[str]) -> TorchZipLayout:
    """Read a torch zip checkpoint's layout without executing anything from it.

    Args:
        path: The checkpoint (``pytorch_model.bin``, ``*.pt`` ...).

    Returns:
        The validated layout: regions tiling the file, storages and tensors.

    Raises:
        InvalidModelFileError: not a zip, truncated, overlapping members, a malformed pickle, a
            global or opcode ``weights_only`` refuses (``os.system`` ...), a storage member
            missing or of the wrong size, a view outside its storage.
        CompressedStorageError: a storage member is compressed (or encrypted).
        TorchZipUnsupportedError: not representable: TorchScript, big-endian, sparse, quantized
            or subclass tensors, a dtype outside :data:`~mgit.formats.dtypes.DTYPES`, a storage
            seen as two dtypes, a tensor with no key path or sharing one.
    """
    with os.fdopen(open_regular(path), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            zf = zipfile.ZipFile(f)
        except _ZIP_ERRORS as exc:
            raise InvalidModelFileError(path, f"not a readable zip ({exc})") from None
        with zf:
            members = _members(path, f, zf, size)
            archives = {m.group(1) for n in members if (m := _DATA_PKL.fullmatch(n))}
            if len(archives) != 1:
                raise InvalidModelFileError(path, "expected exactly one <archive>/data.pkl")
            archive = archives.pop()
            if any(n.startswith((f"{archive}/constants.pkl", f"{archive}/code/")) for n in members):
                raise TorchZipUnsupportedError(path, "a TorchScript archive")
            order = members.get(f"{archive}/byteorder")
            if order is not None and (b := _read_member(path, zf, order, 16)) != b"little":
                raise TorchZipUnsupportedError(path, f"byteorder {b!r}")
            pkl = _read_member(path, zf, members[f"{archive}/data.pkl"], MAX_PICKLE)
    up = _Unpickler(path)
    root, nops = up.load(pkl)
    named = _name_tensors(path, root, 4 * nops + 64)
    if {id(t) for _, t in named} != {id(t) for t in up.tensors}:
        raise TorchZipUnsupportedError(path, "a tensor that no key path names")
    if len({n for n, _ in named}) != len(named):
        raise TorchZipUnsupportedError(path, "two tensors with the same key path")
    storages: dict[str, TorchStorage] = {}
    for key, s in up.storages.items():
        if (tdtype := s.viewed or "uint8") not in _FROM_TORCH:
            raise TorchZipUnsupportedError(path, f"storage {key} has dtype {tdtype}")
        dtype = _FROM_TORCH[tdtype]
        item = DTYPES[dtype].itemsize
        nbytes = s.numel * item if s.dtype else s.numel
        if (m := members.get(member := f"{archive}/data/{key}")) is None:
            raise InvalidModelFileError(path, f"storage member {member} is missing")
        info, start = m
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
            raise CompressedStorageError(path, f"storage member {member} is compressed")
        if info.compress_size != nbytes or info.file_size != nbytes or nbytes % item:
            raise InvalidModelFileError(path, f"storage {key}: the member holds "
                                        f"{info.compress_size} bytes, the pickle says {nbytes}")
        storages[key] = TorchStorage(key, dtype, start, start + nbytes, nbytes // item, member,
                                     s.location)  # fmt: skip
    tensors = []
    for name, t in named:
        st = storages[t.storage.key]
        extent = sum((d - 1) * s for d, s in zip(t.shape, t.stride, strict=True))
        if math.prod(t.shape) and t.offset + extent >= st.numel:
            raise InvalidModelFileError(path, f"tensor {name!r} runs past its storage")
        tensors.append(TorchTensor(name, st.key, t.offset, t.shape, t.stride, st.dtype,
                                   t.conj, t.neg))  # fmt: skip
    ordered = sorted(storages.values(), key=lambda s: s.start)
    regions: list[Region] = []
    pos = 0
    for s in ordered:
        regions += [Region("raw", pos, s.start)] if s.start > pos else []
        regions.append(Region("storage", s.start, s.end, s.key))
        pos = s.end
    regions += [Region("raw", pos, size)] if size > pos else []
    return TorchZipLayout(archive, size, "little", tuple(regions), tuple(ordered), tuple(tensors))


def is_torch_zip(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with zip magic and has a ``*/data.pkl`` member; never raises."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return False
            with zipfile.ZipFile(f) as zf:
                return any(_DATA_PKL.fullmatch(n) for n in zf.namelist())
    except (*_ZIP_ERRORS, UnreadableFileError):
        return False


def is_legacy_torch_pickle(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a legacy (pre-1.6, non-zip) torch checkpoint (mgit keeps it opaque):
    a pickle of torch's magic number (``PROTO`` 2-5, ``FRAME`` if 4+, then ``LONG1``) first."""
    try:
        with os.fdopen(open_regular(path), "rb") as f:
            head = f.read(32)
    except (OSError, UnreadableFileError):
        return False
    if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        return False
    rest = head[11:] if head[2:3] == b"\x95" else head[2:]
    return rest[:12] == b"\x8a\x0a" + _LEGACY_MAGIC


@dataclass(frozen=True)
class StoragePlan:
    """How a checkpoint is stored as tensors (see ``mgit.objects.model.FileEntry``).

    Attributes:
        storages: One ``(name, dtype, shape, start, end)`` per storage, in file order: named after
            the first tensor that views it, with that tensor's shape when it views the whole
            storage contiguously (then the storage *is* that tensor, as in a safetensors file),
            else flat and named ``"<tensor name>#storage"``.
        layout: The file in order: ``n >= 0`` raw bytes, ``-1 - i`` storage ``i``.
        views: ``(name, storage index, offset, shape, stride)`` of every tensor that is not the
            whole view its storage is named after (tied weights, slices, transposes).
    """

    storages: tuple[tuple[str, str, tuple[int, ...], int, int], ...]
    layout: tuple[int, ...]
    views: tuple[tuple[str, int, int, tuple[int, ...], tuple[int, ...]], ...]


def _contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    want = 1
    for d, s in zip(reversed(shape), reversed(stride)):
        if d != 1 and s != want:
            return False
        want *= d
    return True


def storage_plan(layout: TorchZipLayout) -> StoragePlan:
    """Name each storage after the tensor that views it and list the other views.

    Raises:
        TorchZipUnsupportedError: a tensor with the conjugate or negative bit (its value is not
            its bytes), or a storage no tensor views.
    """
    index = {s.key: i for i, s in enumerate(layout.storages)}
    primary: dict[str, TorchTensor] = {}
    for t in layout.tensors:
        if t.conj or t.neg:
            raise TorchZipUnsupportedError(t.name, "a tensor with the conjugate or negative bit")
        primary.setdefault(t.storage_key, t)
    storages, whole = [], set()
    for s in layout.storages:
        t = primary.get(s.key)
        if t is None:
            raise TorchZipUnsupportedError(s.key, "a storage that no tensor views")
        if t.storage_offset == 0 and math.prod(t.shape) == s.numel and _contiguous(t.shape, t.stride):
            whole.add(t.name)
            storages.append((t.name, s.dtype, t.shape, s.start, s.end))
        else:
            storages.append((f"{t.name}#storage", s.dtype, (s.numel,), s.start, s.end))
    codes = tuple(
        -1 - index[r.key] if r.kind == "storage" and r.key is not None else r.end - r.start
        for r in layout.regions
    )
    views = tuple(
        (t.name, index[t.storage_key], t.storage_offset, t.shape, t.stride)
        for t in layout.tensors if t.name not in whole
    )
    return StoragePlan(tuple(storages), codes, views)
