"""The one dtype table: every safetensors dtype mgit chunks, and what each layer needs to know.

Every other module asks this one: the safetensors parser (is the dtype known, how many bytes per
element), the object model and ingest (element sizes, which dtypes are floats for the codecs),
the lossy codec (mantissa bits), export and the diff (numpy dtypes), ``Repository`` (torch dtypes).
Its public name is :mod:`mgit.formats.dtypes`, which re-exports everything here; the table itself
lives at the bottom of the stack, outside the ``mgit.formats`` package, because export reads
tensor manifests (element sizes) and decodes chunks (numpy dtypes) without loading the formats
package or its safetensors parser (``tests/cli/test_startup.py`` checks that export does not
import ``mgit.formats``). So the object model, export and the codecs import this module; other
layers import :mod:`mgit.formats.dtypes`.

Importing this module imports neither numpy nor torch: the commit and export paths must not pay
for them (``tests/cli/test_startup.py``). :func:`numpy_dtype` imports numpy (and ``ml_dtypes``
for bfloat16 and the float8 types) and :func:`torch_dtype` imports torch, when first called.

``is_float`` is the storage meaning: the elements are made of IEEE-style floating-point fields, so
the codecs may treat them as floats (``C64`` is two float32s: a float for storage).
``is_floating_point`` is the arithmetic meaning (``torch.is_floating_point``): a real float type,
``C64`` excluded; the diff computes float statistics only for those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DType",
    "DTYPES",
    "DTYPE_SIZES",
    "FLOAT_DTYPES",
    "itemsize",
    "is_float",
    "is_floating_point",
    "numpy_dtype",
    "dtype_from_numpy",
    "torch_dtype",
]


@dataclass(frozen=True)
class DType:
    """One safetensors dtype.

    Attributes:
        name: The safetensors name (``F32``, ``BF16``, ``F8_E4M3`` ...).
        itemsize: Bytes per element.
        is_float: Elements are floating-point fields (complex included); see the module docstring.
        is_complex: Elements are complex numbers (a pair of floats).
        mantissa: Explicit mantissa bits of a real float type, else ``None``.
        numpy: The numpy dtype name (``ml_dtypes`` registers ``bfloat16`` and ``float8_*``).
        torch: The ``torch`` attribute naming its dtype.
        fallback: The numpy and torch dtype name to use where an older numpy/``ml_dtypes`` or
            torch lacks the type (``F8_E8M0`` reads as ``uint8`` there), else ``None``.
    """

    name: str
    itemsize: int
    is_float: bool
    is_complex: bool
    mantissa: int | None
    numpy: str
    torch: str
    fallback: str | None = None

    @property
    def is_floating_point(self) -> bool:
        """A real floating-point type (``torch.is_floating_point``): floats, complex excluded."""
        return self.is_float and not self.is_complex


def _table(*rows: DType) -> Mapping[str, DType]:
    return MappingProxyType({d.name: d for d in rows})


#: safetensors dtype name -> :class:`DType`, for every dtype mgit chunks (a file with another
#: dtype is stored as a blob).
DTYPES: Mapping[str, DType] = _table(
    DType("BOOL", 1, False, False, None, "bool", "bool"),
    DType("U8", 1, False, False, None, "uint8", "uint8"),
    DType("I8", 1, False, False, None, "int8", "int8"),
    DType("F8_E4M3", 1, True, False, 3, "float8_e4m3fn", "float8_e4m3fn"),
    DType("F8_E5M2", 1, True, False, 2, "float8_e5m2", "float8_e5m2"),
    DType("F8_E8M0", 1, True, False, 0, "float8_e8m0fnu", "float8_e8m0fnu", fallback="uint8"),
    DType("I16", 2, False, False, None, "int16", "int16"),
    DType("U16", 2, False, False, None, "uint16", "uint16"),
    DType("F16", 2, True, False, 10, "float16", "float16"),
    DType("BF16", 2, True, False, 7, "bfloat16", "bfloat16"),
    DType("I32", 4, False, False, None, "int32", "int32"),
    DType("U32", 4, False, False, None, "uint32", "uint32"),
    DType("F32", 4, True, False, 23, "float32", "float32"),
    DType("I64", 8, False, False, None, "int64", "int64"),
    DType("U64", 8, False, False, None, "uint64", "uint64"),
    DType("F64", 8, True, False, 52, "float64", "float64"),
    DType("C64", 8, True, True, None, "complex64", "complex64"),
)

#: safetensors dtype name -> element size in bytes.
DTYPE_SIZES: dict[str, int] = {d.name: d.itemsize for d in DTYPES.values()}

#: The dtypes whose elements are floats for storage (see the module docstring; ``C64`` included).
FLOAT_DTYPES: frozenset[str] = frozenset(d.name for d in DTYPES.values() if d.is_float)

#: numpy dtype names that ``ml_dtypes`` provides (numpy itself has no such types).
_ML_DTYPES = ("bfloat16", "float8_")

#: numpy dtype name -> safetensors name.
_FROM_NUMPY: dict[str, str] = {d.numpy: d.name for d in DTYPES.values()}


def _get(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype name: {name!r}") from None


def itemsize(name: str) -> int:
    """Bytes per element of a safetensors dtype.

    Raises:
        ValueError: not a dtype of :data:`DTYPES`.
    """
    return _get(name).itemsize


def is_float(name: str) -> bool:
    """Whether the codecs may treat the dtype's elements as floats (``C64`` included).

    Raises:
        ValueError: not a dtype of :data:`DTYPES`.
    """
    return _get(name).is_float


def is_floating_point(name: str) -> bool:
    """Whether the dtype is a real floating-point type (``F*``, ``BF16``; not ``C64``).

    Raises:
        ValueError: not a dtype of :data:`DTYPES`.
    """
    return _get(name).is_floating_point


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a safetensors dtype (bf16 and fp8 through ``ml_dtypes``).

    Imports numpy, and ``ml_dtypes`` for the types numpy lacks, on first use.

    Raises:
        ValueError: not a dtype of :data:`DTYPES`.
    """
    import numpy as np

    d = _get(name)
    if not d.numpy.startswith(_ML_DTYPES):
        return np.dtype(d.numpy).newbyteorder("<")
    import ml_dtypes

    found = getattr(ml_dtypes, d.numpy, None)
    if found is None:
        if d.fallback is None:  # pragma: no cover - ml_dtypes lacks a type mgit needs
            raise ValueError(f"ml_dtypes {ml_dtypes.__version__} has no {d.numpy}")
        return np.dtype(d.fallback).newbyteorder("<")
    return np.dtype(found)


def dtype_from_numpy(dtype: Any) -> str | None:
    """The safetensors name of a numpy (or ``ml_dtypes``) dtype, or ``None`` if it has none."""
    import numpy as np

    return _FROM_NUMPY.get(np.dtype(dtype).name)


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` of a safetensors dtype. Imports torch on first use.

    Raises:
        ValueError: not a dtype of :data:`DTYPES`.
    """
    import torch

    d = _get(name)
    found = getattr(torch, d.torch, None)
    if found is None:
        if d.fallback is None:  # pragma: no cover - torch lacks a type mgit needs
            raise ValueError(f"torch {torch.__version__} has no {d.torch}")
        return getattr(torch, d.fallback)
    return found
