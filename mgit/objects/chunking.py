"""How tensor data is cut into chunks, and the ids a lossless commit gives them, computed
without storing anything.

A tensor's data is cut at multiples of its chunk size (:func:`~mgit.objects.model.tensor_chunk_size`:
the repository's chunk size cut down to whole elements), so chunk *i* of a child lines up with
chunk *i* of its parent. Ingest cuts by :func:`chunk_ranges`; :func:`tensor_chunk_ids` and
:func:`tensor_content_id` give, for a tensor of a model file on disk, the chunk ids and the
:attr:`~mgit.objects.model.TensorManifest.content_id` a lossless commit would record for it, so
the diff's working-tree side and parent guessing recognise unchanged tensors without storing them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from mgit.errors import InvalidModelFileError
from mgit.objects.ids import hash_object
from mgit.objects.model import (
    TensorManifest,
    is_small_tensor,
    packed_content_id,
    tensor_chunk_size,
)

if TYPE_CHECKING:
    from mgit.formats.safetensors import TensorSpec

__all__ = ["chunk_ranges", "tensor_chunk_size", "tensor_chunk_ids", "tensor_content_id"]


def chunk_ranges(total: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each chunk of ``total`` bytes cut every ``chunk_size`` bytes."""
    for off in range(0, total, chunk_size):
        yield off, min(off + chunk_size, total)


def tensor_chunk_ids(
    f: BinaryIO | str | os.PathLike[str], spec: TensorSpec, chunk_size: int
) -> list[str]:
    """Ids of a model file's tensor data chunk by chunk, as a lossless commit stores them.

    These are the tensor's :attr:`~mgit.objects.model.TensorManifest.data_ids` once committed:
    its chunk ids, or for a small (packed) tensor the one id of its bytes, its ``digest``
    (a repository's chunk size is at least 64 KiB, so a small tensor is a single range).

    Args:
        f: The safetensors file, or a binary file object open on it.
        spec: The tensor, from the file's header (``start``, ``nbytes``, ``dtype``).
        chunk_size: The repository's chunk size.

    Raises:
        InvalidModelFileError: the file ends before the tensor does.
    """
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as opened:
            return tensor_chunk_ids(opened, spec, chunk_size)
    f.seek(spec.start)
    ids = []
    for a, b in chunk_ranges(spec.nbytes, tensor_chunk_size(spec.dtype, chunk_size)):
        data = f.read(b - a)
        if len(data) != b - a:
            name = str(getattr(f, "name", "?"))
            raise InvalidModelFileError(name, "file shrank while it was being read")
        ids.append(hash_object("chunk", data))
    return ids


def tensor_content_id(
    f: BinaryIO | str | os.PathLike[str], spec: TensorSpec, chunk_size: int
) -> str:
    """The :attr:`~mgit.objects.model.TensorManifest.content_id` a model file's tensor gets once
    committed losslessly (see :func:`tensor_chunk_ids`)."""
    ids = tensor_chunk_ids(f, spec, chunk_size)
    if is_small_tensor(spec.nbytes):
        return packed_content_id(spec.dtype, spec.shape, ids[0])
    cs = tensor_chunk_size(spec.dtype, chunk_size)
    return TensorManifest(spec.dtype, spec.shape, cs, tuple(ids)).content_id
