"""Where the tensors of each side of a diff come from.

The diff engine never opens files or the object store itself: each side is a
:class:`TensorSource`, which lists its tensors (name, dtype, shape and an optional content id)
and loads one tensor at a time on request. Equal content ids on both sides mean identical
bytes, so the engine can call such a tensor unchanged without loading it.

A tensor is identified by its file and its name: a source's :meth:`TensorSource.tensors` is
keyed by the tensor's *key* (:func:`mgit.formats.names.tensor_keys`: the bare name when no
other file of the version holds that name, else ``"<path>:<name>"``), and each
:class:`TensorInfo` carries its bare ``name`` and its ``file``.

A source may also list its files (``files()``: path -> :class:`FileInfo`, with the XXH3-128
of each file's bytes) and read small ones (``read_file(path)``), for the file-level section of
the diff; :func:`source_files` and :func:`read_source_file` ask for them where a source can
answer and give nothing where it cannot.

:class:`DictTensorSource` is the in-memory implementation, for tests and for callers that
already hold arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import xxhash

from mgit.formats import dtypes as _dtypes

__all__ = [
    "TensorInfo",
    "FileInfo",
    "TensorSource",
    "component_of",
    "source_files",
    "read_source_file",
    "is_int_dtype",
    "DictTensorSource",
    "dtype_name",
    "numpy_dtype",
    "is_float_dtype",
]


@dataclass(frozen=True)
class TensorInfo:
    """What a source knows about one tensor without reading its data.

    Attributes:
        name: The tensor's name, e.g. ``encoder.layer.0.attention.self.query.weight``.
        dtype: The safetensors dtype name (``F32``, ``BF16``, ``F8_E4M3``, ``I64``, ``BOOL`` ...).
        shape: The tensor's shape.
        content_id: An id of the tensor's bytes, dtype and shape, or ``None`` if unknown. Equal
            ids on both sides of a diff mean identical tensors; different ids mean nothing.
        file: The path (relative, ``/``-separated) of the file holding the tensor, or ``None``
            when the source has no files (arrays in memory).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    content_id: str | None = None
    file: str | None = None

    @property
    def component(self) -> str:
        """The component folder of the tensor's file (``""``: the root; :func:`component_of`)."""
        return component_of(self.file)

    @property
    def numel(self) -> int:
        """The number of elements (1 for a scalar)."""
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass(frozen=True)
class FileInfo:
    """One file of a model version.

    Attributes:
        path: The relative, ``/``-separated path.
        size: Bytes.
        xxh: XXH3-128 of the file's bytes (hex): equal checksums, equal files.
    """

    path: str
    size: int
    xxh: str


def component_of(path: str | None) -> str:
    """The component folder of a file: its first folder (``unet`` for
    ``unet/diffusion_pytorch_model.safetensors``, ``checkpoint-30``), ``""`` for a file at the
    root or no file.

    Example:
        >>> component_of("vae/diffusion_pytorch_model.safetensors"), component_of("m.safetensors")
        ('vae', '')
    """
    if not path or "/" not in path:
        return ""
    return path.split("/", 1)[0]


@runtime_checkable
class TensorSource(Protocol):
    """One side of a diff: a model version whose tensors can be listed and loaded one by one.

    Attributes:
        label: A short name for the side, shown in reports (e.g. ``"minilm@1a2b3c"``).
    """

    label: str

    def tensors(self) -> dict[str, TensorInfo]:
        """Return every tensor of the model, by key (the bare name unless several files hold
        that name), without loading data."""
        ...

    def load(self, name: str) -> np.ndarray:
        """Return one tensor's data.

        Args:
            name: A key from :meth:`tensors`.

        Returns:
            The tensor as a numpy array of its own dtype (``bfloat16`` and ``float8`` types as
            ``ml_dtypes`` arrays), with the shape given by :meth:`tensors`.
        """
        ...

    def config(self) -> dict[str, Any] | None:
        """Return the model's parsed ``config.json``, or ``None`` if it has none."""
        ...


def source_files(source: Any) -> dict[str, FileInfo] | None:
    """The files of a source (path -> :class:`FileInfo`), or ``None`` when it has no files."""
    files = getattr(source, "files", None)
    if files is None:
        return None
    out = files()
    return dict(out) if out is not None else None


def read_source_file(source: Any, path: str, *, max_bytes: int) -> bytes | None:
    """The bytes of one file of a source, or ``None`` when the source cannot read it or it is
    larger than ``max_bytes``."""
    read = getattr(source, "read_file", None)
    if read is None:
        return None
    data = read(path, max_bytes=max_bytes)
    return data if isinstance(data, bytes) else None


def dtype_name(dtype: np.dtype[Any] | type) -> str:
    """Return the safetensors name of a numpy (or ml_dtypes) dtype.

    Args:
        dtype: A numpy dtype or scalar type.

    Returns:
        The safetensors dtype name, e.g. ``F32`` or ``BF16`` (:mod:`mgit.formats.dtypes`); the
        numpy name in upper case for a dtype safetensors does not have.
    """
    return _dtypes.dtype_from_numpy(dtype) or np.dtype(dtype).name.upper()


def numpy_dtype(name: str) -> np.dtype[Any]:
    """Return the numpy dtype for a safetensors dtype name.

    Args:
        name: A safetensors dtype name such as ``F32`` or ``BF16``.

    Returns:
        The numpy dtype (an ``ml_dtypes`` one for ``BF16`` and the ``F8`` types).

    Raises:
        ValueError: The name is not a dtype of :mod:`mgit.formats.dtypes`.
    """
    return _dtypes.numpy_dtype(name)


def is_float_dtype(name: str) -> bool:
    """Tell whether a dtype name is a real floating-point type (``F*`` or ``BF16``, not ``C64``).

    Names outside :mod:`mgit.formats.dtypes` (the upper-cased numpy names :func:`dtype_name`
    gives, such as ``FLOAT8_E4M3FNUZ``) count as float when they start with ``F``.
    """
    d = _dtypes.DTYPES.get(name)
    return d.is_floating_point if d is not None else name.startswith("F")


def is_int_dtype(name: str) -> bool:
    """Tell whether a dtype name is an integer type (``I8`` ... ``U64``; not ``BOOL``)."""
    return name[:1] in ("I", "U") and name[1:].isdigit()


def _content_id(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(dtype_name(arr.dtype).encode())
    h.update(repr(tuple(int(d) for d in arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).tobytes())
    return h.hexdigest()


class DictTensorSource:
    """An in-memory :class:`TensorSource` over a dict of numpy arrays.

    Content ids are SHA-256 hashes of dtype, shape and bytes, so two sources holding equal
    arrays report equal ids.

    Args:
        label: The side's label.
        tensors: Tensor name to array.
        config: The model's config dict, if any.
        files: The version's files, path -> bytes (``None``: a source without files).
        tensor_files: Tensor name -> path of the file holding it (for names of ``tensors``
            that are qualified keys, ``"<path>:<name>"``, the bare name is the part after the
            path).

    Example:
        >>> import numpy as np
        >>> src = DictTensorSource("a", {"w": np.zeros((2, 2), np.float32)})
        >>> src.tensors()["w"].dtype
        'F32'
    """

    def __init__(
        self,
        label: str,
        tensors: Mapping[str, np.ndarray],
        config: dict[str, Any] | None = None,
        *,
        files: Mapping[str, bytes] | None = None,
        tensor_files: Mapping[str, str] | None = None,
    ) -> None:
        """Hold the arrays and compute their content ids (see the class docstring)."""
        self.label = label
        self._arrays: dict[str, np.ndarray] = {}
        self._infos: dict[str, TensorInfo] = {}
        for name, value in tensors.items():
            arr = np.asarray(value)
            self._arrays[name] = arr
            path = (tensor_files or {}).get(name)
            bare = name[len(path) + 1 :] if path and name.startswith(path + ":") else name
            self._infos[name] = TensorInfo(
                name=bare,
                dtype=dtype_name(arr.dtype),
                shape=tuple(int(d) for d in arr.shape),
                content_id=_content_id(arr),
                file=path,
            )
        self._config = config
        self._files = dict(files) if files is not None else None
        #: How many times :meth:`load` was called (handy in tests).
        self.loads = 0

    def tensors(self) -> dict[str, TensorInfo]:
        """Return every tensor's info, by name."""
        return dict(self._infos)

    def load(self, name: str) -> np.ndarray:
        """Return one tensor (a read-only view of the stored array).

        Args:
            name: A tensor name.

        Returns:
            The array.

        Raises:
            KeyError: No tensor has that name.
        """
        self.loads += 1
        view = self._arrays[name].view()
        view.flags.writeable = False
        return view

    def config(self) -> dict[str, Any] | None:
        """Return the config dict given at construction, if any."""
        return self._config

    def files(self) -> dict[str, FileInfo] | None:
        """Return the files given at construction (``None`` if none were)."""
        if self._files is None:
            return None
        return {
            p: FileInfo(p, len(data), xxhash.xxh3_128(data).hexdigest())
            for p, data in self._files.items()
        }

    def read_file(self, path: str, *, max_bytes: int) -> bytes | None:
        """Return one file's bytes (``None`` if absent or larger than ``max_bytes``)."""
        data = (self._files or {}).get(path)
        return data if data is not None and len(data) <= max_bytes else None

    def __repr__(self) -> str:
        """Show the label and the number of tensors."""
        return f"DictTensorSource({self.label!r}, {len(self._arrays)} tensors)"
