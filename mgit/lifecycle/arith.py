"""Streamed tensor arithmetic shared by ``merge`` and ``rebase``: rounding casts and a writer that
builds a new model version tensor by tensor.

:func:`cast_rne` rounds float64/float32 values to a safetensors float dtype with
round-to-nearest-even (BF16 by bit arithmetic, never through a double rounding).

:func:`write_version` rebuilds the base version's tree: each safetensors file gets the same
tensors in the same order (same header key order and shapes; dtypes kept unless asked), each
tensor's bytes coming from a callback, or the base's bytes when the callback returns ``None``;
other files are kept as they are. The callback may return a whole array or a :class:`Streamed`
value, whose flat slices are cast and written one by one (the next slice computed on a worker
while one is written), so a tensor larger than memory can be produced. The rebuilt files are written one tensor at a time to temp files
in ``.mgit/tmp`` and committed through :func:`mgit.commit.write_commit`, so the result is stored as
deltas against its first parent and peak memory is a few tensors, never the model. A file whose
tensors are all kept is not rewritten: its entry (and chunks) is reused as is.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit.core import CommitInfo, RepoCore
from mgit.errors import UsageError
from mgit.objects.model import FileEntry, ParentLink, TensorManifest
from mgit.refs.store import HEADS

if TYPE_CHECKING:
    import numpy as np

    from mgit.ingest import IngestStats

__all__ = [
    "CAST_DTYPES",
    "Streamed",
    "TensorFn",
    "build_header",
    "cast_rne",
    "out_pieces",
    "write_version",
]

#: The dtypes :func:`cast_rne` produces.
CAST_DTYPES = ("F64", "F32", "F16", "BF16")


@dataclass
class Streamed:
    """A tensor's new value as consecutive flat slices (float arrays, in element order, as many
    elements in all as the tensor has), each cast and written as it comes."""

    pieces: Iterator[np.ndarray]


#: ``tensors(file, name, base manifest)``: the new value of a tensor (any float array of its
#: shape, or a :class:`Streamed` one, cast to the output dtype with :func:`cast_rne`), or
#: ``None`` to keep the base's bytes.
TensorFn = Callable[[str, str, TensorManifest], "np.ndarray | Streamed | None"]


def cast_rne(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` (float64 or float32; other floats are widened first) as safetensors dtype ``dtype``,
    rounded to nearest, ties to even, directly from ``x`` (no double rounding); NaN and
    infinities are kept, values past the range become infinities.

    Raises:
        UsageError: ``dtype`` is not one of :data:`CAST_DTYPES`.
    """
    import numpy as np

    from mgit.formats.dtypes import numpy_dtype

    if dtype not in CAST_DTYPES:
        raise UsageError(f"cannot cast to {dtype}: use one of {', '.join(CAST_DTYPES)}")
    x = np.asarray(x)
    if x.dtype not in (np.float64, np.float32):
        x = x.astype(np.float64)
    if dtype == "F64":
        return x.astype(np.float64)
    if dtype in ("F32", "F16"):
        with np.errstate(over="ignore"):  # IEEE conversions: to nearest even, past the range -> inf
            return x.astype(np.float32 if dtype == "F32" else np.float16)
    # BF16: to float32 rounding to odd (exact for the final rounding: 24 >= 8 + 2 bits),
    # then float32 -> bf16 to nearest even on the bits.
    if x.dtype == np.float64:
        with np.errstate(over="ignore", invalid="ignore"):
            y = x.astype(np.float32)
            inexact = (y.astype(np.float64) != x) & np.isfinite(x)
        if inexact.any():
            even = (y.view(np.uint32) & 1) == 0
            fix = inexact & even
            y[fix] = np.nextafter(y[fix], _toward(x[fix], y[fix]))
    else:
        y = x
    u = np.ascontiguousarray(y).view(np.uint32)
    nan = np.isnan(y)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(
        np.uint16
    )
    if nan.any():
        r[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return r.view(numpy_dtype("BF16")).reshape(x.shape)


def _toward(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A float32 direction for ``nextafter(y, .)``: toward ``x`` (which is not ``y``)."""
    import numpy as np

    return np.where(x > y.astype(np.float64), np.float32(np.inf), np.float32(-np.inf)).astype(
        np.float32
    )


def build_header(
    header: bytes, dtypes: Mapping[str, str], order: list[tuple[str, TensorManifest]]
) -> bytes:
    """A safetensors header like ``header`` (same key order, ``__metadata__`` kept), with the
    dtypes of ``dtypes`` and data offsets recomputed for tensors laid out in ``order``; padded
    with spaces to a multiple of 8 bytes. ``header`` itself when nothing changes."""
    from mgit.formats.dtypes import itemsize

    if all(dtypes.get(n, m.dtype) == m.dtype for n, m in order):
        return header
    d = json.loads(header.decode("utf-8"))
    off = 0
    for name, m in order:
        dt = dtypes.get(name, m.dtype)
        nbytes = itemsize(dt)
        for s in m.shape:
            nbytes *= s
        d[name] = {**d[name], "dtype": dt, "data_offsets": [off, off + nbytes]}
        off += nbytes
    raw = json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def _tensor_out(arr: Any, m: TensorManifest, want: str, where: str) -> bytes | memoryview:
    """The bytes of a callback's result, cast to ``want`` and checked against the base shape."""
    import numpy as np

    from mgit.formats.dtypes import dtype_from_numpy, numpy_dtype

    arr = np.asarray(arr)
    if tuple(arr.shape) != tuple(m.shape):
        raise UsageError(
            f"{where}: computed shape {list(arr.shape)} is not the base's {list(m.shape)}"
        )
    if dtype_from_numpy(arr.dtype) != want:
        if want in CAST_DTYPES and (arr.dtype.kind == "f" or arr.dtype.name == "bfloat16"):
            arr = cast_rne(arr, want)
        else:
            arr = arr.astype(numpy_dtype(want))
    return memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _piece_out(arr: Any, want: str) -> memoryview:
    import numpy as np

    from mgit.formats.dtypes import dtype_from_numpy, numpy_dtype

    arr = np.asarray(arr).reshape(-1)
    if dtype_from_numpy(arr.dtype) != want:
        arr = cast_rne(arr, want) if want in CAST_DTYPES else arr.astype(numpy_dtype(want))
    return memoryview(np.ascontiguousarray(arr).view(np.uint8))


def out_pieces(
    value: Any, m: TensorManifest, want: str, where: str, *, pool: Any = None
) -> Iterator[Any]:
    """The bytes of a tensor callback's result (an array or a :class:`Streamed`) cast to ``want``,
    in pieces (one for an array); a streamed value's next slice is computed on ``pool`` while the
    caller handles one.

    Raises:
        UsageError: the value has another shape (or element count) than ``m``.
    """
    if not isinstance(value, Streamed):
        yield _tensor_out(value, m, want, where)
        return
    count = 0
    for piece in _ahead(value.pieces, pool):
        count += piece.size
        if count > m.numel:
            break
        yield _piece_out(piece, want)
    if count != m.numel:
        raise UsageError(f"{where}: computed {count} elements, the base has {m.numel}")


_END = object()


def _ahead(it: Iterator[Any], pool: Any) -> Iterator[Any]:
    """The items of ``it``, the next one computed on ``pool`` (if any) while one is handled."""
    if pool is None:
        yield from it
        return
    job = pool.submit(next, it, _END)
    try:
        while True:
            item = job.result()
            if item is _END:
                return
            job = pool.submit(next, it, _END)
            yield item
    finally:
        if not job.cancel():  # running: let it finish before ``it`` is dropped
            try:
                job.result()
            except BaseException:  # noqa: BLE001, S110 - the caller's error wins
                pass


def write_version(
    core: RepoCore,
    *,
    model: str,
    message: str,
    parents: list[ParentLink],
    base_ref: str,
    tensors: TensorFn,
    meta: dict[str, str] | None = None,
    recipe: dict[str, Any] | None = None,
    dtype: Callable[[str, str, TensorManifest], str] | None = None,
    files_override: Mapping[str, FileEntry | None] | None = None,
    update_ref: bool = True,
    lookahead: int = 2,
    on_stats: Callable[[IngestStats], None] | None = None,
) -> CommitInfo:
    """Write a new version of ``model``: ``base_ref``'s tree with every safetensors file rebuilt
    tensor by tensor from ``tensors`` (see :data:`TensorFn`), other files kept; then commit it
    with ``parents`` (the first is the delta base) and move the model line (compare-and-swap
    from its current tip) unless ``update_ref`` is False.

    Args:
        dtype: the output dtype of a tensor, ``(file, name, manifest) -> dtype`` (default: the
            base's); a kept tensor whose dtype changes is read and cast.
        files_override: files replaced (an entry) or removed (None) in the output, applied
            after the rebuild (for files that are not safetensors).
        lookahead: tensors computed ahead on worker threads (bounded memory, both cores); the
            results are written in order, so the output does not depend on it.

    Raises:
        UsageError: a computed tensor has another shape than the base's.
        RefConflictError: the model line moved meanwhile.
    """
    from mgit.commit import check_meta, check_text, write_commit
    from mgit.refs.store import check_name

    check_name(model, what="model name")
    meta = check_meta(meta)
    check_text(message, "the commit message")
    tip = core.refs.read(HEADS + model)  # the line moves from here, by compare-and-swap
    base = core.commit_tree(core.resolve(base_ref))
    tmpdir = core.mgit_dir / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, FileEntry | Path] = {}
    temps: list[Path] = []
    try:
        with core.pool() as pool:
            for rel, entry in sorted(base.files.items()):
                if entry.kind != "safetensors" or not entry.tensors:
                    files[rel] = entry
                    continue
                out = _rebuild(core, pool, rel, entry, tensors, dtype, tmpdir, max(0, lookahead))
                if out is None:
                    files[rel] = entry
                else:
                    temps.append(out)
                    files[rel] = out
        for rel, e in (files_override or {}).items():
            if e is None:
                files.pop(rel, None)
            else:
                files[rel] = e
        info, stats = write_commit(
            core,
            model=model,
            tip=tip,
            parents=parents,
            files=files,
            message=message,
            meta=meta,
            eps=None,
            recipe=recipe,
            update_ref=update_ref,
        )
    finally:
        for p in temps:
            p.unlink(missing_ok=True)
    if on_stats is not None:
        on_stats(stats)
    return info


def _rebuild(
    core: RepoCore,
    pool: Any,
    rel: str,
    entry: FileEntry,
    tensors: TensorFn,
    dtype: Callable[[str, str, TensorManifest], str] | None,
    tmpdir: Path,
    lookahead: int,
) -> Path | None:
    """Rebuild one safetensors file into a temp file; None when every tensor is kept as is."""
    order = list(entry.tensors)
    want = {n: (dtype(rel, n, m) if dtype is not None else m.dtype) for n, m in order}
    assert entry.header is not None
    header = core.store.get(entry.header, kind="chunk")
    new_header = build_header(header, want, order)
    jobs: deque[Any] = deque()
    it = iter(order)

    def submit() -> bool:
        nxt = next(it, None)
        if nxt is None:
            return False
        name, m = nxt
        jobs.append(
            (
                name,
                m,
                pool.submit(tensors, rel, name, m) if lookahead else _Now(tensors(rel, name, m)),
            )
        )
        return True

    for _ in range(max(1, lookahead)):
        submit()
    fh = None
    path: Path | None = None
    kept: list[
        tuple[str, TensorManifest]
    ] = []  # leading kept tensors, written once a file is needed
    try:
        while jobs:
            name, m, job = jobs.popleft()
            value = job.result()
            submit()
            if value is None and want[name] == m.dtype:
                if fh is None:
                    kept.append((name, m))
                else:
                    _copy_stored(fh, core.store, m)
                continue
            if value is None:  # kept, but cast to another dtype
                value = stored_slices(core.store, m)
            if fh is None:
                fd, tmp = tempfile.mkstemp(prefix="arith-", suffix=".safetensors", dir=tmpdir)
                path = Path(tmp)
                fh = os.fdopen(fd, "wb")
                fh.write(struct.pack("<Q", len(new_header)) + new_header)
                for _, km in kept:
                    _copy_stored(fh, core.store, km)
                kept.clear()
            for piece in out_pieces(
                value, m, want[name], f"{rel}:{name}", pool=pool if lookahead else None
            ):
                fh.write(piece)
            del value
        if fh is None:
            return None
        fh.close()
        fh = None
        return path
    except BaseException:
        for _, _, job in jobs:
            if hasattr(job, "cancel"):
                job.cancel()
        if fh is not None:
            fh.close()
        if path is not None:
            path.unlink(missing_ok=True)
        raise


#: Elements per slice when a stored tensor is streamed (:func:`stored_slices`).
SLICE_ELEMENTS = 1 << 20


def stored_slices(store: Any, m: TensorManifest, step: int = SLICE_ELEMENTS) -> Streamed:
    """A stored tensor as a :class:`Streamed` value (read ``step`` elements at a time)."""
    from mgit.lifecycle.slices import TensorReader, slice_ranges

    reader = TensorReader(store, m)
    return Streamed(reader.read(a, b) for a, b in slice_ranges(m.numel, step))


def _copy_stored(fh: Any, store: Any, m: TensorManifest) -> None:
    """Write a stored tensor's bytes chunk by chunk (a pack: the tensor's part, digest checked)."""
    from mgit.lifecycle.slices import TensorReader

    reader = TensorReader(store, m)
    step = max(1, m.chunk_size // m.itemsize) if not m.packed else max(1, m.numel)
    for a in range(0, m.numel, step):
        fh.write(reader.read_bytes(a, min(a + step, m.numel)))


class _Now:
    """A finished job (``lookahead`` 0: computed in the caller's thread)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value
