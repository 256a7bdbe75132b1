"""The one dtype table, under the formats layer's name: safetensors dtype name -> element size,
float or not, mantissa bits, numpy dtype (bf16 and fp8 through ``ml_dtypes``) and torch dtype.

Everything here is :mod:`mgit._dtypes`, re-exported: the table lives below the ``mgit.formats``
package so that export, which reads tensor manifests and decodes chunks but parses no safetensors
header, does not load this package (see that module's docstring). Layers above the object model
(ingest, diff, guess, tensors) import it from here. Importing it imports neither numpy nor torch.
"""

from __future__ import annotations

from mgit._dtypes import (
    DTYPE_SIZES,
    DTYPES,
    FLOAT_DTYPES,
    DType,
    dtype_from_numpy,
    is_float,
    is_floating_point,
    itemsize,
    numpy_dtype,
    torch_dtype,
)

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
