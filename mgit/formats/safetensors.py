"""safetensors headers: parse and validate everything before a byte of tensor data is trusted.

A safetensors file is ``u64 LE header length N | N bytes of JSON header | data``. The header maps
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
start of data) plus an optional ``"__metadata__"`` string map. mgit keeps the exact header bytes
(padding included) and the tensors in data order, so the file can be rebuilt byte for byte; for
that the tensors must tile the data section exactly: no overlap, no hole, nothing past the end.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgit._fs import open_regular
from mgit.errors import InvalidModelFileError
from mgit.formats.dtypes import DTYPE_SIZES
from mgit.limits import MAX_HEADER, name_problem, shape_problem, text_problem

__all__ = ["TensorSpec", "SafetensorsHeader", "parse_header", "read_header", "MAX_HEADER"]

# MAX_HEADER (headers larger than this are refused) is re-exported from mgit.limits, the one
# table of limits the tree validation shares.


class UnknownDtypeError(Exception):
    """A well-formed header with a dtype mgit does not chunk; the file is kept as a blob."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a safetensors file: offsets are absolute positions in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        """Length of the data."""
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: its exact bytes, metadata, and tensors in data order."""

    header_bytes: bytes
    metadata: dict[str, str] | None
    tensors: tuple[TensorSpec, ...]

    @property
    def data_start(self) -> int:
        """File offset of the first data byte."""
        return 8 + len(self.header_bytes)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate tensor name {k!r}")
        out[k] = v
    return out


def parse_header(path: object, prefix: bytes, file_size: int) -> SafetensorsHeader:
    """Validate a safetensors header.

    Args:
        path: for messages only.
        prefix: the file's first ``8 + N`` bytes (or more).
        file_size: the file's size in bytes.

    Raises:
        InvalidModelFileError: truncated file, header length past the end, header not JSON,
            duplicate names, bad dtype/shape/offsets, overlapping offsets, holes, data running
            out of range, or a shape and dtype that disagree with the byte length.
        UnknownDtypeError: well-formed but with a dtype outside :data:`DTYPE_SIZES`.
    """
    if file_size < 8 or len(prefix) < 8:
        raise InvalidModelFileError(path, "truncated: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER:
        raise InvalidModelFileError(path, f"header length {n} is larger than allowed")
    if 8 + n > file_size or 8 + n > len(prefix):
        raise InvalidModelFileError(path, f"header length {n} runs past the end of the file")
    raw = prefix[8 : 8 + n]
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise InvalidModelFileError(path, "header is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidModelFileError(path, f"header is not JSON ({exc.msg})") from None
    except RecursionError:
        raise InvalidModelFileError(path, "header is not JSON (nested too deeply)") from None
    except ValueError as exc:
        raise InvalidModelFileError(path, str(exc)) from None
    if not isinstance(header, dict):
        raise InvalidModelFileError(path, "header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InvalidModelFileError(path, "__metadata__ must map strings to strings")
    for text in (metadata or {}).items():
        for t in text:
            if text_problem(t) is not None:
                raise InvalidModelFileError(path, f"__metadata__ entry {t!r} {text_problem(t)}")
    data_len = file_size - 8 - n
    specs: list[TensorSpec] = []
    unknown: str | None = None
    for name, info in header.items():
        why = name_problem(name)
        if why is not None:
            raise InvalidModelFileError(path, f"tensor name {_shown(name)} {why}")
        if not isinstance(info, dict):
            raise InvalidModelFileError(path, f"tensor {name!r}: entry is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise InvalidModelFileError(path, f"tensor {name!r}: missing dtype")
        why = shape_problem(shape)
        if why is not None:
            raise InvalidModelFileError(path, f"tensor {name!r}: bad shape: it {why}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
        ):
            raise InvalidModelFileError(path, f"tensor {name!r}: bad data_offsets {offs!r}")
        begin, end = offs
        if not 0 <= begin <= end:
            raise InvalidModelFileError(path, f"tensor {name!r}: data_offsets {offs} are reversed")
        if end > data_len:
            raise InvalidModelFileError(
                path, f"tensor {name!r}: data_offsets {offs} run past the end of the data ({data_len} bytes)"
            )
        if dtype not in DTYPE_SIZES:
            unknown = dtype
        else:
            count = 1
            for d in shape:
                count *= d
            if count * DTYPE_SIZES[dtype] != end - begin:
                raise InvalidModelFileError(
                    path,
                    f"tensor {name!r}: shape {shape} of {dtype} needs {count * DTYPE_SIZES[dtype]} bytes, "
                    f"data_offsets give {end - begin}",
                )
        specs.append(TensorSpec(name, dtype, tuple(shape), 8 + n + begin, 8 + n + end))
    specs.sort(key=lambda s: (s.start, s.end))
    pos = 8 + n
    for s in specs:
        if s.start < pos:
            raise InvalidModelFileError(path, f"tensor {s.name!r} overlaps the previous tensor")
        if s.start > pos:
            raise InvalidModelFileError(path, f"hole of {s.start - pos} bytes before tensor {s.name!r}")
        pos = s.end
    if pos != file_size:
        raise InvalidModelFileError(path, f"{file_size - pos} bytes after the last tensor are not described")
    if unknown is not None:
        raise UnknownDtypeError(unknown)
    return SafetensorsHeader(bytes(raw), metadata, tuple(specs))


def _shown(name: str) -> str:
    """A name for a message: quoted, and cut short when very long."""
    return repr(name if len(name) <= 80 else name[:60] + "...")


def read_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of a safetensors file on disk.

    Raises:
        InvalidModelFileError: see :func:`parse_header`.
        UnreadableFileError: not a regular file (refused without blocking on a FIFO).
    """
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        first = f.read(8)
        if len(first) < 8:
            raise InvalidModelFileError(path, "truncated: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", first)
        if n > MAX_HEADER or 8 + n > size:
            return parse_header(path, first, size)
        rest = f.read(n)
    return parse_header(path, first + rest, size)
