"""Diff of two model versions: every tensor, every file.

:func:`diff_models` walks the tensors of two :class:`~mgit.diff.source.TensorSource` s one
pair at a time (never more than two tensors in memory), classifies each tensor (added,
removed, unchanged, changed, dtype changed, shape changed), measures value changes
(:mod:`mgit.diff.stats`) and summarizes them per module, per block and per component folder
(:mod:`mgit.diff.groups`). Around the tensors:

- every file of both sides is compared by checksum, JSON files key by key, and re-sharding is
  recognised (:mod:`mgit.diff.files`); two versions are ``identical`` only when every file is;
- a tensor is identified by its file and its name (:func:`~mgit.diff.names.pair_tensors`), so
  a diffusers ``unet/`` and ``vae/`` that both hold ``conv_in.weight`` are two tensors;
- quantized tensors are dequantized before they are compared (:mod:`mgit.diff.quant`); integer
  codes that cannot be are compared raw and say so (``raw_codes_compared``, no relative change);
- a PEFT LoRA adapter on one side is measured as the effective delta it makes to the other
  side's weights (:mod:`mgit.diff.lora`).

The result is a :class:`ModelDiff`, whose :meth:`ModelDiff.to_json` follows the schema in
:data:`JSON_SCHEMA_DOC`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

import numpy as np

from mgit._pool import WorkerPool
from mgit.diff.files import FILE_STATUSES, FileDiff, LayoutChange, diff_files, layout_changes
from mgit.diff.groups import (
    STATUSES,
    GroupSummary,
    finite_or_none,
    numel_of,
    summarize_groups,
    summarize_groups_by,
)
from mgit.diff.lora import LoraDiff, diff_lora, find_adapter, lora_factors
from mgit.diff.names import DEFAULT_HEAD_PREFIXES, ROOT_GROUP, block_of, module_of, pair_tensors
from mgit.diff.quant import DequantSource, QuantInfo
from mgit.diff.schema import JSON_SCHEMA_DOC
from mgit.diff.source import TensorInfo, TensorSource, is_float_dtype, is_int_dtype, numpy_dtype
from mgit.diff.stats import DEFAULT_RANK_RTOL, TensorStats, compute_stats
from mgit.diff.stream import (
    PieceReader,
    Scheduler,
    blas_single_threaded,
    current_progress,
    default_workers,
)

__all__ = [
    "JSON_SCHEMA_DOC",
    "SCHEMA_VERSION",
    "STATUSES",
    "DiffSummary",
    "GroupSummary",
    "ModelDiff",
    "Status",
    "TensorDiff",
    "diff_models",
    "summarize_groups",
]

Status = Literal["added", "removed", "changed", "unchanged", "dtype_changed", "shape_changed"]
#: Version of the JSON produced by :meth:`ModelDiff.to_json` (new keys are only ever added).
SCHEMA_VERSION = 1

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TensorDiff:
    """What happened to one tensor.

    Attributes:
        name: The tensor's key (in b; in a for a removed tensor): its name, or
            ``"<file>:<name>"`` when several files of that version hold the name.
        status: One of :data:`STATUSES`.
        dtype_a: dtype in a (``None`` if added).
        dtype_b: dtype in b (``None`` if removed).
        shape_a: shape in a (``None`` if added).
        shape_b: shape in b (``None`` if removed).
        stats: Value statistics for ``changed`` and ``dtype_changed`` tensors, and for
            ``shape_changed`` tensors of equal rank over their common region (``overlap``);
            ``None`` otherwise.
        renamed_from: The key in a when the tensor's name differs (paired across a task-head
            prefix, see :func:`~mgit.diff.names.pair_names`).
        error: Why statistics could not be computed, or why they mean less than usual.
        file_a: The file holding it in a (``None``: not in a, or no files).
        file_b: The file holding it in b.
        component: The component folder of its file (``""``: the root).
        quant_a: How it is stored quantized in a (it was dequantized), else ``None``.
        quant_b: How it is stored quantized in b.
        tensor_name: Its name inside its file (in b; in a for a removed tensor), when it differs
            from ``name``.
        key_a: Its key in a, when it differs from ``name`` and ``renamed_from``.
    """

    name: str
    status: str
    dtype_a: str | None
    dtype_b: str | None
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    stats: TensorStats | None = None
    renamed_from: str | None = None
    error: str | None = None
    file_a: str | None = None
    file_b: str | None = None
    component: str = ""
    quant_a: QuantInfo | None = None
    quant_b: QuantInfo | None = None
    tensor_name: str | None = None
    key_a: str | None = None

    @property
    def name_a(self) -> str | None:
        """The tensor's key in a, or ``None`` if it is not in a."""
        if self.status == "added":
            return None
        return self.renamed_from or self.key_a or self.name

    @property
    def name_b(self) -> str | None:
        """The tensor's key in b, or ``None`` if it is not in b."""
        return None if self.status == "removed" else self.name

    @property
    def bare_name(self) -> str:
        """The tensor's name inside its file (``name`` without a ``<file>:`` qualifier)."""
        return self.tensor_name if self.tensor_name is not None else self.name

    @property
    def module(self) -> str:
        """The module path of the tensor (see :func:`~mgit.diff.names.module_of`)."""
        return module_of(self.bare_name)

    @property
    def block(self) -> str:
        """The block of the tensor (see :func:`~mgit.diff.names.block_of`)."""
        return block_of(self.bare_name)

    @property
    def is_change(self) -> bool:
        """True for every status except ``unchanged``."""
        return self.status != "unchanged"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object of one tensor (see :data:`JSON_SCHEMA_DOC`)."""
        return {
            "name": self.name,
            "status": self.status,
            "renamed_from": self.renamed_from,
            "dtype_a": self.dtype_a,
            "dtype_b": self.dtype_b,
            "shape_a": list(self.shape_a) if self.shape_a is not None else None,
            "shape_b": list(self.shape_b) if self.shape_b is not None else None,
            "stats": self.stats.to_json() if self.stats is not None else None,
            "error": self.error,
            "file_a": self.file_a,
            "file_b": self.file_b,
            "component": self.component,
            "quant_a": self.quant_a.to_json() if self.quant_a is not None else None,
            "quant_b": self.quant_b.to_json() if self.quant_b is not None else None,
        }


@dataclass(frozen=True)
class DiffSummary:
    """Counts over the whole diff.

    Attributes:
        tensors_a: Tensors in a (as stored: a quantized weight's codes and scales count apart).
        tensors_b: Tensors in b.
        counts: Tensor entries per status (every status present).
        renamed: Tensors paired across a task-head prefix.
        loaded: Tensor pairs whose data was read (the rest were decided from metadata).
        numel_a: Elements in a.
        numel_b: Elements in b.
        numel_changed: Elements that differ, over tensors with statistics.
        l2_diff: ``sqrt(sum of l2_diff^2)`` over tensors with statistics.
        identical: True if every tensor and every file is unchanged (and no adapter applies).
        tensors_identical: True if every tensor is unchanged.
        files_a: Files in a (0 when the sources have no files).
        files_b: Files in b.
        file_counts: Files per status (:data:`~mgit.diff.files.FILE_STATUSES`).
        resharded: Components whose tensors moved to another set of files.
        quantized_a: Tensors of a read dequantized (one per quantized group).
        quantized_b: Tensors of b read dequantized.
        raw_codes_compared: Tensors whose integer codes were compared with floats.
        lora_modules: Target modules of a LoRA adapter measured against the other side.
    """

    tensors_a: int
    tensors_b: int
    counts: dict[str, int]
    renamed: int
    loaded: int
    numel_a: int
    numel_b: int
    numel_changed: int
    l2_diff: float
    identical: bool
    tensors_identical: bool = True
    files_a: int = 0
    files_b: int = 0
    file_counts: dict[str, int] | None = None
    resharded: int = 0
    quantized_a: int = 0
    quantized_b: int = 0
    raw_codes_compared: int = 0
    lora_modules: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the JSON ``summary`` object (see :data:`JSON_SCHEMA_DOC`)."""
        fc = self.file_counts or dict.fromkeys(FILE_STATUSES, 0)
        return {
            "tensors_a": self.tensors_a,
            "tensors_b": self.tensors_b,
            **{k: self.counts[k] for k in STATUSES},
            "renamed": self.renamed,
            "loaded": self.loaded,
            "numel_a": self.numel_a,
            "numel_b": self.numel_b,
            "numel_changed": self.numel_changed,
            "l2_diff": finite_or_none(self.l2_diff),
            "identical": self.identical,
            "tensors_identical": self.tensors_identical,
            "files_a": self.files_a,
            "files_b": self.files_b,
            **{f"files_{k}": fc[k] for k in FILE_STATUSES},
            "resharded": self.resharded,
            "quantized_a": self.quantized_a,
            "quantized_b": self.quantized_b,
            "raw_codes_compared": self.raw_codes_compared,
            "lora_modules": self.lora_modules,
        }


@dataclass(frozen=True)
class ModelDiff:
    """The diff of two model versions.

    Attributes:
        a: Label of the first side.
        b: Label of the second side.
        tensors: One entry per tensor of either side, sorted by name.
        modules: Per-module summaries, sorted by size of change.
        blocks: Per-block summaries, sorted by size of change.
        summary: Counts over the whole diff.
        files: One entry per file of either side, sorted by path (``None``: the sources have
            no files, e.g. arrays in memory).
        layout: Re-sharded components.
        components: Per-component summaries (``unet``, ``vae``, ``(root)``), sorted by name.
        lora: The effective change of a LoRA adapter on one side, else ``None``.
    """

    a: str
    b: str
    tensors: tuple[TensorDiff, ...]
    modules: tuple[GroupSummary, ...]
    blocks: tuple[GroupSummary, ...]
    summary: DiffSummary
    files: tuple[FileDiff, ...] | None = None
    layout: tuple[LayoutChange, ...] = ()
    components: tuple[GroupSummary, ...] = ()
    lora: LoraDiff | None = None

    def get(self, name: str, *, file: str | None = None) -> TensorDiff:
        """Return the entry of one tensor, by its key in b (or in a), or by its name and file.

        Args:
            name: A tensor key, or a tensor name (with ``file``: the name in that file; without:
                a name only one entry has).
            file: The file holding the tensor (in b, or in a).

        Returns:
            The entry.

        Raises:
            KeyError: No tensor (or more than one) has that name.
        """
        if file is None:
            for t in self.tensors:
                if t.name == name or t.renamed_from == name or t.key_a == name:
                    return t
        found = [
            t
            for t in self.tensors
            if t.bare_name == name and (file is None or file in (t.file_a, t.file_b))
        ]
        if len(found) == 1:
            return found[0]
        raise KeyError(name if file is None else f"{file}:{name}")

    def changes(self) -> list[TensorDiff]:
        """Return every entry whose status is not ``unchanged``."""
        return [t for t in self.tensors if t.is_change]

    def by_status(self, status: str) -> list[TensorDiff]:
        """Return the entries with one status."""
        return [t for t in self.tensors if t.status == status]

    def file(self, path: str) -> FileDiff:
        """Return the entry of one file.

        Raises:
            KeyError: No file has that path.
        """
        for f in self.files or ():
            if f.path == path:
                return f
        raise KeyError(path)

    def file_changes(self) -> list[FileDiff]:
        """Every file entry whose status is not ``unchanged``."""
        return [f for f in self.files or () if f.is_change]

    def to_json(self) -> dict[str, Any]:
        """Return the diff as JSON-ready data, in the schema of :data:`JSON_SCHEMA_DOC`."""
        return {
            "schema": SCHEMA_VERSION,
            "a": self.a,
            "b": self.b,
            "summary": self.summary.to_json(),
            "tensors": [t.to_json() for t in self.tensors],
            "groups": [g.to_json() for g in self.modules],
            "blocks": [g.to_json() for g in self.blocks],
            "files": [f.to_json() for f in self.files] if self.files is not None else None,
            "layout": [x.to_json() for x in self.layout],
            "components": [g.to_json() for g in self.components],
            "lora": self.lora.to_json() if self.lora is not None else None,
        }


def _classify(ia: TensorInfo, ib: TensorInfo) -> str:
    if ia.shape != ib.shape:
        return "shape_changed"
    if ia.dtype != ib.dtype:
        return "dtype_changed"
    return "changed"


def _same_bytes(x: np.ndarray, y: np.ndarray) -> bool:
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    bx = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
    by = np.ascontiguousarray(y).reshape(-1).view(np.uint8)
    return bool(np.array_equal(bx, by))


def _overlap(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    region = tuple(slice(0, min(p, q)) for p, q in zip(x.shape, y.shape, strict=True))
    return np.ascontiguousarray(x[region]), np.ascontiguousarray(y[region])


class _Side:
    """One side of a diff: its source, its tensors as stored, and its dequantized view."""

    def __init__(self, source: TensorSource, dequantize: bool) -> None:
        self.source = source
        self.raw = source.tensors()
        self.view: Any = DequantSource(source, self.raw) if dequantize else source
        self.infos: dict[str, TensorInfo] = self.view.tensors() if dequantize else self.raw
        self.quantized = self.view.quantized if dequantize else 0
        self.reader = PieceReader(source)

    def quant(self, key: str) -> QuantInfo | None:
        return self.view.quant(key) if isinstance(self.view, DequantSource) else None


def _raw_codes_note(
    ia: TensorInfo, ib: TensorInfo, qa: QuantInfo | None, qb: QuantInfo | None
) -> str | None:
    """Why the values of a pair are not comparable (integer codes vs floats), else ``None``."""
    codes_a = is_int_dtype(ia.dtype) and qa is None
    codes_b = is_int_dtype(ib.dtype) and qb is None
    float_a = is_float_dtype(ia.dtype) or qa is not None
    float_b = is_float_dtype(ib.dtype) or qb is not None
    if (codes_a and float_b) or (codes_b and float_a):
        side, dt = ("a", ia.dtype) if codes_a else ("b", ib.dtype)
        return (
            f"raw integer codes compared with floats: {side}'s {dt} values are quantization codes "
            "whose scales were not recognised, so the change is not a change of weights "
            "(relative change left out)"
        )
    return None


def diff_models(
    a: TensorSource,
    b: TensorSource,
    *,
    rank: bool = True,
    rank_rtol: float = DEFAULT_RANK_RTOL,
    pair_prefixes: bool = True,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
    progress: ProgressFn | None = None,
    dequantize: bool = True,
    adapters: bool = True,
    workers: int | None = None,
    progress_bytes: Callable[[int, int], None] | None = None,
) -> ModelDiff:
    """Compare every tensor and every file of two model versions.

    A tensor with equal content ids on both sides is ``unchanged`` without being loaded.
    Otherwise both versions are loaded (one pair at a time) and compared: equal bytes are
    ``unchanged``; a different shape is ``shape_changed`` (statistics over the common region
    when the ranks agree); a different dtype is ``dtype_changed`` (values compared in
    float64); anything else is ``changed``.

    Args:
        a: The first version ("before").
        b: The second version ("after").
        rank: Estimate the effective rank of 2-D float differences.
        rank_rtol: Relative threshold of the effective rank (see :mod:`mgit.diff.stats`).
        pair_prefixes: Pair names that differ by a task-head prefix
            (``embeddings.x`` / ``bert.embeddings.x``) instead of reporting removed + added.
        prefixes: The task-head prefixes used for pairing.
        progress: Called as ``progress(name, i, total)`` for each tensor pair in order, as
            its examination starts.
        dequantize: Recognise quantized layouts and compare dequantized values
            (:mod:`mgit.diff.quant`).
        adapters: Measure a PEFT LoRA adapter on one side against the other side's weights
            (:mod:`mgit.diff.lora`).
        workers: Threads comparing values (default: every core, ``MGIT_THREADS``); see
            :mod:`mgit.diff.stream` for how the work is cut and what memory it holds.
        progress_bytes: Called as ``(bytes read, bytes to read)`` as the values are read
            (default: the callback of an enclosing :func:`mgit.diff.stream.progress_to`).

    Returns:
        The diff.

    Example:
        >>> import numpy as np
        >>> from mgit.diff import DictTensorSource
        >>> w = np.ones((2, 2), np.float32)
        >>> d = diff_models(DictTensorSource("a", {"w": w}), DictTensorSource("b", {"w": w * 2}))
        >>> d.get("w").status
        'changed'
    """
    sa, sb = _Side(a, dequantize), _Side(b, dequantize)
    nworkers = max(1, workers if workers is not None else default_workers())
    with WorkerPool(nworkers) as pool, blas_single_threaded():
        report = progress_bytes if progress_bytes is not None else current_progress()
        sched = Scheduler(pool, nworkers, rank=rank, rank_rtol=rank_rtol, progress_bytes=report)
        entries, loaded = _walk_pairs(
            sa, sb, sched, rank, rank_rtol, pair_prefixes, prefixes, progress
        )
    entries.sort(key=lambda t: t.name)
    lora = _adapter_diff(sa, sb, rank_rtol) if adapters else None
    files = diff_files(a, b, sa.raw, sb.raw, entries)
    layout = layout_changes(sa.raw, sb.raw, entries)
    return _assemble(a.label, b.label, entries, sa, sb, loaded, files, layout, lora)


def _walk_pairs(
    sa: _Side,
    sb: _Side,
    sched: Scheduler,
    rank: bool,
    rank_rtol: float,
    pair_prefixes: bool,
    prefixes: Sequence[str],
    progress: ProgressFn | None,
) -> tuple[list[TensorDiff], int]:
    """Classify every pair; hand the ones whose values must be compared to ``sched``."""
    infos_a, infos_b = sa.infos, sb.infos
    pairs = pair_tensors(infos_a, infos_b, prefixes=prefixes if pair_prefixes else ())
    entries: list[TensorDiff] = []
    todo: list[tuple[int, str, str, TensorDiff, str]] = []  # entry index, keys, base, status
    pending: list[tuple[int, TensorDiff, str, bool]] = []  # entry index, base, status, streamed
    loaded = 0
    total = len(pairs)
    for i, (na, nb) in enumerate(pairs):
        if progress is not None:
            progress(nb if nb is not None else str(na), i, total)
        if nb is None:
            assert na is not None
            ia = infos_a[na]
            entries.append(
                TensorDiff(
                    na, "removed", ia.dtype, None, ia.shape, None, file_a=ia.file,
                    component=ia.component, quant_a=sa.quant(na), tensor_name=_bare(na, ia),
                )  # fmt: skip
            )
            continue
        ib = infos_b[nb]
        if na is None:
            entries.append(
                TensorDiff(
                    nb, "added", None, ib.dtype, None, ib.shape, file_b=ib.file,
                    component=ib.component, quant_b=sb.quant(nb), tensor_name=_bare(nb, ib),
                )  # fmt: skip
            )
            continue
        ia = infos_a[na]
        base = TensorDiff(
            nb,
            "unchanged",
            ia.dtype,
            ib.dtype,
            ia.shape,
            ib.shape,
            renamed_from=na if ia.name != ib.name else None,
            file_a=ia.file,
            file_b=ib.file,
            component=ib.component,
            quant_a=sa.quant(na),
            quant_b=sb.quant(nb),
            tensor_name=_bare(nb, ib),
            key_a=na if na != nb and ia.name == ib.name else None,
        )
        if (
            ia.content_id is not None
            and ia.content_id == ib.content_id
            and ia.dtype == ib.dtype
            and ia.shape == ib.shape
        ):
            entries.append(base)
            continue
        status = _classify(ia, ib)
        if status == "shape_changed" and len(ia.shape) != len(ib.shape):
            # Nothing to compare element by element; no need to read the data.
            entries.append(replace(base, status=status))
            continue
        loaded += 1
        todo.append((len(entries), na, nb, base, status))
        entries.append(base)
    # The whole amount first, so that a progress bar's total is known from the start.
    sched.plan_bytes(sum(_nbytes(infos_a[na]) + _nbytes(infos_b[nb]) for _, na, nb, _, _ in todo))
    for idx, na, nb, base, status in todo:
        streamed = _submit(sa, sb, na, nb, base, status, sched, rank, rank_rtol)
        pending.append((idx, base, status, streamed))
    for (idx, base, status, streamed), res in zip(pending, sched.results(), strict=True):
        if not streamed:
            entries[idx] = res
        elif not res.same_bytes:
            entries[idx] = replace(base, status=status, stats=res.stats, error=res.error)
    return entries, loaded


def _submit(
    sa: _Side,
    sb: _Side,
    na: str,
    nb: str,
    base: TensorDiff,
    status: str,
    sched: Scheduler,
    rank: bool,
    rank_rtol: float,
) -> bool:
    """Hand one pair to the scheduler: chunk by chunk when both sides are cut alike (same
    dtype and shape, neither quantized), else whole. Returns whether it was streamed."""
    ia, ib = sa.infos[na], sb.infos[nb]
    nbytes = _nbytes(ia) + _nbytes(ib)
    if status == "changed" and base.quant_a is None and base.quant_b is None:
        pa = sa.reader.pieces(na) if na in sa.raw else None
        pb = sb.reader.pieces(nb) if nb in sb.raw and pa is not None else None
        if (
            pa is not None
            and pb is not None
            and len(pa) == len(pb)
            and all(x.nbytes == y.nbytes for x, y in zip(pa, pb, strict=True))
            and sum(x.nbytes for x in pa) == _nbytes(ia)
        ):
            sched.stream(pa, pb, ia.dtype, ia.shape, is_float=is_float_dtype(ia.dtype))
            return True
    sched.whole(
        partial(_compare_loaded, sa, sb, na, nb, base, status, rank=rank, rank_rtol=rank_rtol),
        nbytes,
    )
    return False


def _nbytes(info: TensorInfo) -> int:
    try:
        return info.numel * numpy_dtype(info.dtype).itemsize
    except ValueError:
        return info.numel


def _bare(key: str, info: TensorInfo) -> str | None:
    return info.name if info.name != key else None


def _adapter_diff(sa: _Side, sb: _Side, rank_rtol: float) -> LoraDiff | None:
    cfg_a, cfg_b = find_adapter(sa.source), find_adapter(sb.source)
    if cfg_b is not None and cfg_a is None and lora_factors(sb.raw):
        return diff_lora(
            sb.source, sb.raw, sa.view, sa.infos, cfg_b, adapter_side="b", rank_rtol=rank_rtol
        )
    if cfg_a is not None and cfg_b is None and lora_factors(sa.raw):
        return diff_lora(
            sa.source, sa.raw, sb.view, sb.infos, cfg_a, adapter_side="a", rank_rtol=rank_rtol
        )
    return None


def _compare_loaded(
    sa: _Side,
    sb: _Side,
    na: str,
    nb: str,
    base: TensorDiff,
    status: str,
    *,
    rank: bool,
    rank_rtol: float,
) -> TensorDiff:
    ia, ib = sa.infos[na], sb.infos[nb]
    xa = sa.view.load(na)
    xb = sb.view.load(nb)
    if status == "changed" and _same_bytes(xa, xb):
        return base
    qa, qb = base.quant_a, base.quant_b
    raw_note = _raw_codes_note(ia, ib, qa, qb)
    is_float = (is_float_dtype(ia.dtype) or qa is not None) and (
        is_float_dtype(ib.dtype) or qb is not None
    )
    stats: TensorStats | None = None
    error: str | None = None
    try:
        if status == "shape_changed":
            pa, pb = _overlap(xa, xb)
            del xa, xb
            if pa.size:
                stats = compute_stats(
                    pa, pb, rank=rank, rank_rtol=rank_rtol, overlap=True, is_float=is_float
                )
        else:
            stats = compute_stats(xa, xb, rank=rank, rank_rtol=rank_rtol, is_float=is_float)
    except (ValueError, TypeError, ArithmeticError, np.linalg.LinAlgError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if raw_note is not None:
        error = raw_note if error is None else f"{raw_note}; {error}"
        if stats is not None:
            stats = replace(
                stats, relative_change=None, cosine_similarity=None, raw_codes_compared=True
            )
    return replace(base, status=status, stats=stats, error=error)


def _assemble(
    label_a: str,
    label_b: str,
    entries: list[TensorDiff],
    sa: _Side,
    sb: _Side,
    loaded: int,
    files: tuple[FileDiff, ...] | None,
    layout: tuple[LayoutChange, ...],
    lora: LoraDiff | None,
) -> ModelDiff:
    counts = dict.fromkeys(STATUSES, 0)
    ss = 0.0
    numel_changed = 0
    raw_codes = 0
    for t in entries:
        counts[t.status] += 1
        if t.stats is not None:
            if t.stats.raw_codes_compared:
                raw_codes += 1
                continue
            ss += t.stats.l2_diff**2
            numel_changed += t.stats.changed
    file_counts = dict.fromkeys(FILE_STATUSES, 0)
    for f in files or ():
        file_counts[f.status] += 1
    tensors_identical = counts["unchanged"] == len(entries)
    files_identical = file_counts["unchanged"] == len(files or ())
    summary = DiffSummary(
        tensors_a=len(sa.raw),
        tensors_b=len(sb.raw),
        counts=counts,
        renamed=sum(1 for t in entries if t.renamed_from is not None),
        loaded=loaded,
        numel_a=sum(numel_of(t.shape_a) for t in entries),
        numel_b=sum(numel_of(t.shape_b) for t in entries),
        numel_changed=numel_changed,
        l2_diff=math.sqrt(ss),
        identical=tensors_identical and files_identical and lora is None,
        tensors_identical=tensors_identical,
        files_a=sum(1 for f in files or () if f.size_a is not None),
        files_b=sum(1 for f in files or () if f.size_b is not None),
        file_counts=file_counts,
        resharded=len(layout),
        quantized_a=sa.quantized,
        quantized_b=sb.quantized,
        raw_codes_compared=raw_codes,
        lora_modules=len(lora.modules) if lora is not None else 0,
    )
    multi = len({t.component for t in entries}) > 1

    def by(level: Callable[[str], str]) -> Callable[[TensorDiff], str]:
        def key(t: TensorDiff) -> str:
            g = level(t.bare_name)
            return f"{t.component}/{g}" if multi and t.component else g

        return key

    components = summarize_groups_by(entries, lambda t: t.component or ROOT_GROUP, "component")
    components.sort(key=lambda g: (g.component != "", g.component))
    return ModelDiff(
        a=label_a,
        b=label_b,
        tensors=tuple(entries),
        modules=tuple(summarize_groups_by(entries, by(module_of), "module")),
        blocks=tuple(summarize_groups_by(entries, by(block_of), "block")),
        summary=summary,
        files=files,
        layout=layout,
        components=tuple(components),
        lora=lora,
    )
