"""Tensor-level diff of two model versions.

:func:`diff_models` walks the tensors of two :class:`~mgit.diff.source.TensorSource` s one
pair at a time (never more than two tensors in memory), classifies each tensor (added,
removed, unchanged, changed, dtype changed, shape changed), measures value changes
(:mod:`mgit.diff.stats`) and summarizes them per module and per block
(:mod:`mgit.diff.names`). The result is a :class:`ModelDiff`, whose :meth:`ModelDiff.to_json`
follows the schema in :data:`JSON_SCHEMA_DOC`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mgit.diff.names import DEFAULT_HEAD_PREFIXES, block_of, module_of, pair_names
from mgit.diff.source import TensorInfo, TensorSource, is_float_dtype
from mgit.diff.stats import DEFAULT_RANK_RTOL, TensorStats, compute_stats

__all__ = [
    "Status",
    "STATUSES",
    "TensorDiff",
    "GroupSummary",
    "DiffSummary",
    "ModelDiff",
    "diff_models",
    "summarize_groups",
    "SCHEMA_VERSION",
    "JSON_SCHEMA_DOC",
]

Status = Literal["added", "removed", "changed", "unchanged", "dtype_changed", "shape_changed"]
#: Every tensor status, in the order reports list them.
STATUSES: tuple[str, ...] = (
    "removed",
    "added",
    "shape_changed",
    "dtype_changed",
    "changed",
    "unchanged",
)
#: Version of the JSON produced by :meth:`ModelDiff.to_json`.
SCHEMA_VERSION = 1

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TensorDiff:
    """What happened to one tensor.

    Attributes:
        name: The tensor's name (in b; in a for a removed tensor).
        status: One of :data:`STATUSES`.
        dtype_a: dtype in a (``None`` if added).
        dtype_b: dtype in b (``None`` if removed).
        shape_a: shape in a (``None`` if added).
        shape_b: shape in b (``None`` if removed).
        stats: Value statistics for ``changed`` and ``dtype_changed`` tensors, and for
            ``shape_changed`` tensors of equal rank over their common region (``overlap``);
            ``None`` otherwise.
        renamed_from: The name in a when it differs from ``name`` (paired across a task-head
            prefix, see :func:`~mgit.diff.names.pair_names`).
        error: Why statistics could not be computed, if they could not.
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

    @property
    def name_a(self) -> str | None:
        """The tensor's name in a, or ``None`` if it is not in a."""
        if self.status == "added":
            return None
        return self.renamed_from or self.name

    @property
    def name_b(self) -> str | None:
        """The tensor's name in b, or ``None`` if it is not in b."""
        return None if self.status == "removed" else self.name

    @property
    def module(self) -> str:
        """The module path of the tensor (see :func:`~mgit.diff.names.module_of`)."""
        return module_of(self.name)

    @property
    def block(self) -> str:
        """The block of the tensor (see :func:`~mgit.diff.names.block_of`)."""
        return block_of(self.name)

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
        }


@dataclass(frozen=True)
class GroupSummary:
    """Summary of the tensors of one module or block.

    Attributes:
        name: The module or block path (``(root)`` for top-level tensors).
        level: ``"module"`` or ``"block"``.
        status: ``"added"`` or ``"removed"`` if every tensor of the group was, ``"unchanged"``
            if none changed, else ``"changed"``.
        tensors: Number of tensors in the group (in a, b or both).
        counts: Number of tensors per status (every status present, zeros included).
        changed: Number of tensors whose status is not ``unchanged``.
        l2_diff: ``sqrt(sum of l2_diff^2)`` over tensors with statistics.
        max_relative_change: Largest relative change among them (``None`` if none defined).
        numel_a: Elements in a.
        numel_b: Elements in b.
        names: The tensor names, sorted.
    """

    name: str
    level: str
    status: str
    tensors: int
    counts: dict[str, int]
    changed: int
    l2_diff: float
    max_relative_change: float | None
    numel_a: int
    numel_b: int
    names: tuple[str, ...] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object of one group (see :data:`JSON_SCHEMA_DOC`)."""
        return {
            "name": self.name,
            "level": self.level,
            "status": self.status,
            "tensors": self.tensors,
            "changed": self.changed,
            "counts": dict(self.counts),
            "l2_diff": _finite_or_none(self.l2_diff),
            "max_relative_change": _finite_or_none(self.max_relative_change),
            "numel_a": self.numel_a,
            "numel_b": self.numel_b,
            "names": list(self.names),
        }

    def sort_key(self) -> tuple[int, float, float, str]:
        """Order groups by size of change: structural first, then by L2, then by name."""
        structural = self.counts["added"] + self.counts["removed"] + self.counts["shape_changed"]
        if structural:
            klass = 0
        elif self.changed:
            klass = 1
        else:
            klass = 2
        rel = self.max_relative_change if self.max_relative_change is not None else 0.0
        return (klass, -self.l2_diff, -rel, self.name)


@dataclass(frozen=True)
class DiffSummary:
    """Counts over the whole diff.

    Attributes:
        tensors_a: Tensors in a.
        tensors_b: Tensors in b.
        counts: Tensors per status (every status present).
        renamed: Tensors paired across a task-head prefix.
        loaded: Tensor pairs whose data was read (the rest were decided from metadata).
        numel_a: Elements in a.
        numel_b: Elements in b.
        numel_changed: Elements that differ, over tensors with statistics.
        l2_diff: ``sqrt(sum of l2_diff^2)`` over tensors with statistics.
        identical: True if every tensor is unchanged.
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

    def to_json(self) -> dict[str, Any]:
        """Return the JSON ``summary`` object (see :data:`JSON_SCHEMA_DOC`)."""
        return {
            "tensors_a": self.tensors_a,
            "tensors_b": self.tensors_b,
            **{k: self.counts[k] for k in STATUSES},
            "renamed": self.renamed,
            "loaded": self.loaded,
            "numel_a": self.numel_a,
            "numel_b": self.numel_b,
            "numel_changed": self.numel_changed,
            "l2_diff": _finite_or_none(self.l2_diff),
            "identical": self.identical,
        }


@dataclass(frozen=True)
class ModelDiff:
    """The tensor-level diff of two model versions.

    Attributes:
        a: Label of the first side.
        b: Label of the second side.
        tensors: One entry per tensor of either side, sorted by name.
        modules: Per-module summaries, sorted by size of change.
        blocks: Per-block summaries, sorted by size of change.
        summary: Counts over the whole diff.
    """

    a: str
    b: str
    tensors: tuple[TensorDiff, ...]
    modules: tuple[GroupSummary, ...]
    blocks: tuple[GroupSummary, ...]
    summary: DiffSummary

    def get(self, name: str) -> TensorDiff:
        """Return the entry of one tensor, by its name in b (or in a).

        Args:
            name: A tensor name.

        Returns:
            The entry.

        Raises:
            KeyError: No tensor has that name.
        """
        for t in self.tensors:
            if t.name == name or t.renamed_from == name:
                return t
        raise KeyError(name)

    def changes(self) -> list[TensorDiff]:
        """Return every entry whose status is not ``unchanged``."""
        return [t for t in self.tensors if t.is_change]

    def by_status(self, status: str) -> list[TensorDiff]:
        """Return the entries with one status."""
        return [t for t in self.tensors if t.status == status]

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
        }


def _finite_or_none(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


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


def diff_models(
    a: TensorSource,
    b: TensorSource,
    *,
    rank: bool = True,
    rank_rtol: float = DEFAULT_RANK_RTOL,
    pair_prefixes: bool = True,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
    progress: ProgressFn | None = None,
) -> ModelDiff:
    """Compare every tensor of two model versions.

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
        progress: Called as ``progress(name, i, total)`` before each tensor pair is examined.

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
    infos_a = a.tensors()
    infos_b = b.tensors()
    if pair_prefixes:
        pairs = pair_names(infos_a, infos_b, prefixes=prefixes)
    else:
        pairs = pair_names(infos_a, infos_b, prefixes=())
    entries: list[TensorDiff] = []
    loaded = 0
    total = len(pairs)
    for i, (na, nb) in enumerate(pairs):
        if progress is not None:
            progress(nb if nb is not None else str(na), i, total)
        if nb is None:
            assert na is not None
            ia = infos_a[na]
            entries.append(TensorDiff(na, "removed", ia.dtype, None, ia.shape, None))
            continue
        ib = infos_b[nb]
        if na is None:
            entries.append(TensorDiff(nb, "added", None, ib.dtype, None, ib.shape))
            continue
        ia = infos_a[na]
        renamed = na if na != nb else None
        if (
            ia.content_id is not None
            and ia.content_id == ib.content_id
            and ia.dtype == ib.dtype
            and ia.shape == ib.shape
        ):
            entries.append(
                TensorDiff(
                    nb, "unchanged", ia.dtype, ib.dtype, ia.shape, ib.shape, renamed_from=renamed
                )
            )
            continue
        status = _classify(ia, ib)
        if status == "shape_changed" and len(ia.shape) != len(ib.shape):
            # Nothing to compare element by element; no need to read the data.
            entries.append(
                TensorDiff(nb, status, ia.dtype, ib.dtype, ia.shape, ib.shape, renamed_from=renamed)
            )
            continue
        loaded += 1
        entries.append(
            _compare_loaded(a, b, na, nb, ia, ib, status, renamed, rank=rank, rank_rtol=rank_rtol)
        )
    entries.sort(key=lambda t: t.name)
    return _assemble(a.label, b.label, entries, len(infos_a), len(infos_b), loaded)


def _compare_loaded(
    a: TensorSource,
    b: TensorSource,
    na: str,
    nb: str,
    ia: TensorInfo,
    ib: TensorInfo,
    status: str,
    renamed: str | None,
    *,
    rank: bool,
    rank_rtol: float,
) -> TensorDiff:
    xa = a.load(na)
    xb = b.load(nb)
    if status == "changed" and _same_bytes(xa, xb):
        return TensorDiff(
            nb, "unchanged", ia.dtype, ib.dtype, ia.shape, ib.shape, renamed_from=renamed
        )
    is_float = is_float_dtype(ia.dtype) and is_float_dtype(ib.dtype)
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
    return TensorDiff(
        nb,
        status,
        ia.dtype,
        ib.dtype,
        ia.shape,
        ib.shape,
        stats=stats,
        renamed_from=renamed,
        error=error,
    )


def _numel(shape: tuple[int, ...] | None) -> int:
    if shape is None:
        return 0
    return math.prod(int(d) for d in shape)


def _group_status(counts: dict[str, int], n: int) -> str:
    if counts["added"] == n:
        return "added"
    if counts["removed"] == n:
        return "removed"
    if counts["unchanged"] == n:
        return "unchanged"
    return "changed"


def summarize_groups(
    entries: Iterable[TensorDiff], key: Callable[[str], str], level: str
) -> list[GroupSummary]:
    """Summarize tensor entries per group, sorted by size of change.

    Args:
        entries: Tensor entries.
        key: Maps a tensor name to its group (e.g. :func:`~mgit.diff.names.module_of`).
        level: The level name recorded in each summary (``"module"``, ``"block"``).

    Returns:
        One summary per group: structural changes first, then by decreasing L2 of the
        change, then unchanged groups by name.
    """
    groups: dict[str, list[TensorDiff]] = {}
    for t in entries:
        groups.setdefault(key(t.name), []).append(t)
    out: list[GroupSummary] = []
    for name, members in groups.items():
        counts = dict.fromkeys(STATUSES, 0)
        ss = 0.0
        max_rel: float | None = None
        for t in members:
            counts[t.status] += 1
            if t.stats is not None:
                ss += t.stats.l2_diff**2
                r = t.stats.relative_change
                if r is not None and math.isfinite(r) and (max_rel is None or r > max_rel):
                    max_rel = r
        n = len(members)
        out.append(
            GroupSummary(
                name=name,
                level=level,
                status=_group_status(counts, n),
                tensors=n,
                counts=counts,
                changed=n - counts["unchanged"],
                l2_diff=math.sqrt(ss),
                max_relative_change=max_rel,
                numel_a=sum(_numel(t.shape_a) for t in members),
                numel_b=sum(_numel(t.shape_b) for t in members),
                names=tuple(sorted(t.name for t in members)),
            )
        )
    out.sort(key=GroupSummary.sort_key)
    return out


def _assemble(
    label_a: str,
    label_b: str,
    entries: list[TensorDiff],
    n_a: int,
    n_b: int,
    loaded: int,
) -> ModelDiff:
    counts = dict.fromkeys(STATUSES, 0)
    ss = 0.0
    numel_changed = 0
    for t in entries:
        counts[t.status] += 1
        if t.stats is not None:
            ss += t.stats.l2_diff**2
            numel_changed += t.stats.changed
    summary = DiffSummary(
        tensors_a=n_a,
        tensors_b=n_b,
        counts=counts,
        renamed=sum(1 for t in entries if t.renamed_from is not None),
        loaded=loaded,
        numel_a=sum(_numel(t.shape_a) for t in entries),
        numel_b=sum(_numel(t.shape_b) for t in entries),
        numel_changed=numel_changed,
        l2_diff=math.sqrt(ss),
        identical=counts["unchanged"] == len(entries),
    )
    return ModelDiff(
        a=label_a,
        b=label_b,
        tensors=tuple(entries),
        modules=tuple(summarize_groups(entries, module_of, "module")),
        blocks=tuple(summarize_groups(entries, block_of, "block")),
        summary=summary,
    )


JSON_SCHEMA_DOC = """\
### `mgit diff --json` (schema 1)

Top level:

| key       | type   | meaning                                                          |
|-----------|--------|------------------------------------------------------------------|
| `schema`  | int    | schema version, `1`                                              |
| `a`, `b`  | string | labels of the two sides (`"minilm@1a2b3c"`); `a` is "before"    |
| `summary` | object | counts over the whole diff (below)                               |
| `tensors` | array  | one object for **every** tensor of either side, sorted by `name` |
| `groups`  | array  | one summary per module (name minus its last component)          |
| `blocks`  | array  | one summary per block (`encoder.layer.3`, `embeddings`)          |

`groups` and `blocks` are sorted by size of change (see below).

`summary`: `tensors_a`, `tensors_b` (int); one int per status: `removed`, `added`,
`shape_changed`, `dtype_changed`, `changed`, `unchanged`; `renamed` (tensors paired across a
task-head prefix such as `bert.`); `loaded` (tensor pairs whose data had to be read; the
others were decided from content ids); `numel_a`, `numel_b` (elements); `numel_changed`
(elements whose value differs); `l2_diff` (float, `sqrt` of the sum of squared per-tensor
`l2_diff`); `identical` (bool).

Each `tensors[]` object:

- `name` (string): the name in b (in a for a removed tensor).
- `status` (string): `added` (only in b), `removed` (only in a), `unchanged`, `changed`
  (same dtype and shape, other values), `dtype_changed` (values compared in float64),
  `shape_changed`.
- `renamed_from` (string or null): the name in a when it differs from `name` (paired across
  a task-head prefix).
- `dtype_a`, `dtype_b` (string or null): safetensors dtypes (`F32`, `BF16`, ...); null on the
  side that lacks the tensor.
- `shape_a`, `shape_b` (int array or null): shapes; null on the side that lacks the tensor.
- `stats` (object or null): for `changed` and `dtype_changed`; for `shape_changed` of equal
  rank, over the common leading region (`overlap: true`); else null.
- `error` (string or null): why `stats` could not be computed.

`stats` (all computed in float64; an element that is NaN or infinite on either side is left
out of the norms and counted in `nonfinite_a` / `nonfinite_b`; floats that would be NaN or
infinite are written as null):

| key                 | type          | meaning                                          |
|---------------------|---------------|--------------------------------------------------|
| `numel`             | int           | elements compared                                |
| `l2_a`, `l2_b`      | float         | L2 (Frobenius) norms of a and b                  |
| `l2_diff`           | float         | `‖b − a‖`                                        |
| `relative_change`   | float or null | `‖b − a‖ / ‖a‖`; null when `‖a‖ = 0`             |
| `max_abs_diff`      | float         | `max(abs(b − a))`                                    |
| `mean_abs_diff`     | float         | `mean(abs(b − a))`                                |
| `changed`           | int           | elements whose value differs (NaN = NaN)         |
| `fraction_changed`  | float         | `changed / numel`                                |
| `cosine_similarity` | float or null | `⟨a, b⟩ / (‖a‖ ‖b‖)`; null when a norm is 0      |
| `nonfinite_a`, `nonfinite_b` | int  | NaN / inf elements on each side                  |
| `overlap`           | bool          | stats cover only the common region of two shapes |
| `rank`              | object or null | for 2-D float tensors (below), else null        |

`rank` (singular values `s1 ≥ s2 ≥ …` of `D = b − a`): `effective` (int: number of `s_i >
rtol·s1`, the numerical rank; a merged rank-r LoRA gives r), `energy99` (int: smallest k with
`s1² + … + sk² ≥ 0.99·‖D‖²`), `lower_bound` (bool: the randomized sketch was too small, the true
values are at least these), `method` (`exact`: eigenvalues of the Gram matrix in float64;
`randomized`: randomized range finder with `sketch` columns and one power iteration, for big
matrices), `rtol` (float, default 0.01), `sketch` (int: singular values computed),
`singular_values` (up to 8 largest, floats).

Each `groups[]` / `blocks[]` object: `name` (module or block path; `(root)` for top-level
tensors), `level` (`module` or `block`), `status` (`added`/`removed` when every tensor of the
group is, `unchanged` when none changed, else `changed`), `tensors` (int), `changed` (int:
tensors not unchanged), `counts` (object: int per status), `l2_diff` (float: `sqrt` of the sum
of squared `l2_diff` of its tensors), `max_relative_change` (float or null), `numel_a`,
`numel_b` (int), `names` (string array: its tensors). Sorted: groups with added, removed or
reshaped tensors first, then by decreasing `l2_diff`, then by decreasing
`max_relative_change`, then unchanged groups by name.
"""
