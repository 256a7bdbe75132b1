"""Versions written from a training process: a state dict from memory, or the model files of
a Trainer checkpoint folder (its optimizer, scheduler and RNG state left out).

:func:`commit_state_dict` writes the tensors as one safetensors file to a temp file in
``.mgit/tmp`` (one tensor in memory at a time beyond the caller's own) and commits it through
the normal ingest path (:func:`mgit.commit.write_commit`): stored as deltas against the first
parent, exported byte-identical to that temp file. The file is laid out as
``safetensors.torch.save_file`` lays it out, so for any dict ``save_file`` accepts the
exported file is byte-identical to what ``save_file(state_dict, path, metadata)`` writes: the
header is ``{"__metadata__": ..., name: {"dtype", "shape", "data_offsets"}, ...}`` as compact
JSON (UTF-8, not ASCII-escaped), tensors ordered by dtype (largest safetensors dtype rank
first, :data:`SAVE_ORDER`) then by name, data in that order, the header padded with spaces to
a multiple of 8 bytes. One difference: ``metadata`` keys are written in the dict's order, while
``save_file`` writes several keys in an arbitrary order (one key, as transformers writes
``{"format": "pt"}``, is the same). Tensors that share memory are written as separate copies
(``save_file`` refuses them).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit.core import RepoCore
from mgit.errors import UsageError
from mgit.worktree.scan import DEFAULT_IGNORE

if TYPE_CHECKING:
    from mgit.commit import CommitResult
    from mgit.objects.model import FileEntry

__all__ = [
    "CHECKPOINT_EXCLUDE",
    "SAVE_ORDER",
    "checkpoint_files",
    "commit_checkpoint",
    "commit_state_dict",
    "state_dict_header",
    "write_state_dict",
]

#: safetensors dtypes in the order ``save_file`` sorts them (the last first).
SAVE_ORDER = (
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32",
    "U32", "F32", "C64", "F64", "I64", "U64",
)  # fmt: skip

#: Files of a Trainer checkpoint that are training state, not the model: never committed. The
#: one list :func:`mgit.worktree.scan.scan` leaves out of ``add`` and ``import`` by default too.
CHECKPOINT_EXCLUDE = DEFAULT_IGNORE


def _tensor_info(name: str, value: Any) -> tuple[str, tuple[int, ...], Any]:
    """(safetensors dtype, shape, the value as a contiguous CPU tensor or numpy array)."""
    from mgit.formats.dtypes import DTYPES, dtype_from_numpy

    if not isinstance(name, str) or not name:
        raise UsageError(f"bad tensor name {name!r}")
    mod = type(value).__module__
    if mod.startswith("torch"):
        import torch

        if not isinstance(value, torch.Tensor):
            raise UsageError(f"{name}: not a tensor ({type(value).__name__})")
        by_torch = {getattr(torch, d.torch, None): d.name for d in DTYPES.values()}
        st = by_torch.get(value.dtype)
        if st is None:
            raise UsageError(f"{name}: torch dtype {value.dtype} has no safetensors name")
        if value.layout != torch.strided:
            raise UsageError(f"{name}: a {value.layout} tensor; make it dense first")
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        return st, tuple(int(s) for s in t.shape), t.contiguous()
    import numpy as np

    if not isinstance(value, np.ndarray):
        raise UsageError(f"{name}: not a tensor or array ({type(value).__name__})")
    st = dtype_from_numpy(value.dtype)
    if st is None:
        raise UsageError(f"{name}: numpy dtype {value.dtype} has no safetensors name")
    arr = np.ascontiguousarray(value)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return st, tuple(int(s) for s in arr.shape), arr


def _bytes_of(value: Any) -> Any:
    """The raw little-endian bytes of a contiguous tensor or array (a buffer, no copy)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.reshape(-1).view(np.uint8)
    import torch

    return value.reshape(-1).view(torch.uint8).numpy()


def state_dict_header(
    state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> tuple[bytes, list[tuple[str, Any]]]:
    """The header bytes ``save_file`` would write, and the tensors in data order.

    Raises:
        UsageError: a value that is not a tensor, a bad name, an unknown dtype, bad metadata.
    """
    from mgit.formats.dtypes import itemsize

    infos = [(name, *_tensor_info(name, v)) for name, v in state_dict.items()]
    rank = {d: i for i, d in enumerate(SAVE_ORDER)}
    infos.sort(key=lambda x: (-rank[x[1]], x[0].encode("utf-8")))
    header: dict[str, Any] = {}
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise UsageError(f"safetensors metadata must map strings to strings: {k!r}")
        header["__metadata__"] = dict(metadata)
    off = 0
    for name, dtype, shape, _ in infos:
        if name == "__metadata__":
            raise UsageError("'__metadata__' is not a tensor name")
        n = itemsize(dtype)
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return raw, [(name, value) for name, _, _, value in infos]


def write_state_dict(
    path: Path, state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> int:
    """Write ``state_dict`` as a safetensors file at ``path`` (see the module docstring for the
    byte layout), one tensor at a time; returns its size."""
    header, items = state_dict_header(state_dict, metadata)
    size = 8 + len(header)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for _, value in items:
            data = _bytes_of(value)
            f.write(data)
            size += data.nbytes
    return size


def _links(
    core: RepoCore,
    model: str,
    tip: str | None,
    parent: str | Sequence[str] | None,
    relation: str | None,
) -> list[Any]:
    from mgit.commit import plan_parents

    refs = [parent] if isinstance(parent, str) else list(parent or [])
    resolved = []
    for p in refs:
        oid = core.resolve(p)
        resolved.append((oid, core.read_commit(oid).model))
    return plan_parents(model, tip, resolved, relation)


def _write(
    core: RepoCore,
    files: dict[str, FileEntry | Path],
    *,
    model: str,
    message: str,
    parent: str | Sequence[str] | None,
    relation: str | None,
    meta: dict[str, str] | None,
) -> CommitResult:
    from mgit.commit import CommitResult, check_meta, check_text, write_commit
    from mgit.refs.store import HEADS, check_name

    check_name(model, what="model name")
    check_text(message, "the commit message")
    meta = check_meta(meta)
    tip = core.refs.read(HEADS + model)  # the line moves from here, by compare-and-swap
    links = _links(core, model, tip, parent, relation)
    info, stats = write_commit(
        core, model=model, tip=tip, parents=links, files=files, message=message, meta=meta, eps=None
    )
    return CommitResult(info, stats, len(files))


def commit_state_dict(
    core: RepoCore,
    state_dict: Mapping[str, Any],
    *,
    model: str,
    message: str,
    parent: str | Sequence[str] | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    files: Mapping[str, bytes] | None = None,
    files_from: str | None = None,
    filename: str = "model.safetensors",
    metadata: Mapping[str, str] | None = None,
) -> CommitResult:
    """Commit tensors from memory (torch tensors of any dtype, bf16 included, on any device, or
    numpy arrays) as the next version of ``model``, without writing a model folder.

    Args:
        state_dict: name -> tensor, written as ``filename`` (see the module docstring).
        model: the model line; a new one derives from ``parent``.
        message: the commit message.
        parent: REF(s) the version derives from besides the line's latest version.
        relation: the relation to ``parent`` (default ``finetune`` for another line's version).
        meta: version metadata (metrics, task...).
        files: other files of the version, path -> bytes (``config.json``, tokenizer files).
        files_from: a REF whose other files (all but ``filename`` and those in ``files``) the
            version keeps as they are stored (no copy: the same objects).
        metadata: the safetensors header's ``__metadata__`` (transformers writes
            ``{"format": "pt"}``).

    Raises:
        UsageError: a value that is not a tensor, an empty state dict, a bad path or name.
        RefConflictError: the model line moved meanwhile.
    """
    from mgit._fs import check_relpath

    if not state_dict:
        raise UsageError("the state dict is empty")
    rel = check_relpath(filename)
    extra = {check_relpath(p): data for p, data in (files or {}).items()}
    if rel in extra:
        raise UsageError(f"{rel} is both the tensor file and one of files")
    for p, data in extra.items():
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UsageError(f"files[{p!r}] must be bytes")
    out: dict[str, FileEntry | Path] = {}
    if files_from is not None:
        for p, e in core.commit_tree(core.resolve(files_from)).files.items():
            if p != rel and p not in extra:
                out[p] = e
    tmpdir = core.mgit_dir / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        fd, tmp = tempfile.mkstemp(prefix="sd-", suffix=".safetensors", dir=tmpdir)
        os.close(fd)
        temps.append(Path(tmp))
        write_state_dict(Path(tmp), state_dict, metadata)
        out[rel] = Path(tmp)
        for p, data in extra.items():
            fd, tmp = tempfile.mkstemp(prefix="sd-", dir=tmpdir)
            temps.append(Path(tmp))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            out[p] = Path(tmp)
        return _write(
            core, out, model=model, message=message, parent=parent, relation=relation, meta=meta
        )
    finally:
        for p in temps:
            p.unlink(missing_ok=True)


def checkpoint_files(folder: Path, exclude: Iterable[str] = CHECKPOINT_EXCLUDE) -> dict[str, Path]:
    """The model files of a checkpoint folder (relative path -> path): every file but the
    training state (``exclude``: globs on the path, the file name or a folder above it).

    Raises:
        UsageError: not a folder, or no model file in it.
    """
    from mgit.cache import path_matches
    from mgit.worktree.scan import scan

    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    pats = list(exclude)
    found = {
        rel: p for rel, p in scan(folder, strict=True, defaults=False).items()
        if not path_matches(rel, pats)
    }
    if not found:
        raise UsageError(f"no model files in {folder}")
    return found


def commit_checkpoint(
    core: RepoCore,
    folder: str | os.PathLike[str],
    *,
    model: str,
    message: str,
    parent: str | Sequence[str] | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    exclude: Iterable[str] = CHECKPOINT_EXCLUDE,
) -> CommitResult:
    """Commit the model files of a Trainer checkpoint folder (config, weights, tokenizer...) as
    the next version of ``model``, leaving out its training state (:data:`CHECKPOINT_EXCLUDE`:
    optimizer, scheduler, scaler, RNG state, ``training_args.bin``, ``trainer_state.json``).

    Raises:
        UsageError: not a folder, or nothing but training state in it.
        RefConflictError: the model line moved meanwhile.
    """
    from mgit._fs import check_relpath

    found = checkpoint_files(Path(folder), exclude)
    files: dict[str, FileEntry | Path] = {check_relpath(rel): p for rel, p in found.items()}
    return _write(
        core, files, model=model, message=message, parent=parent, relation=relation, meta=meta
    )
