"""Per-group summaries of tensor entries: by module, by block, by component folder.

A group summary counts its tensors per status and sums the size of their changes; groups sort by
size of change (structural changes first, then by L2 of the change, then unchanged groups by
name). Statistics marked ``raw_codes_compared`` (integer codes compared with floats, see
:mod:`mgit.diff.model_diff`) are meaningless and left out of the sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from mgit.diff.stats import TensorStats

__all__ = [
    "GroupSummary",
    "STATUSES",
    "summarize_groups",
    "summarize_groups_by",
    "numel_of",
    "finite_or_none",
]

#: Every tensor status, in the order reports list them.
STATUSES: tuple[str, ...] = (
    "removed",
    "added",
    "shape_changed",
    "dtype_changed",
    "changed",
    "unchanged",
)


class _Entry(Protocol):
    """What a summary reads of a tensor entry (:class:`mgit.diff.model_diff.TensorDiff`)."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def stats(self) -> TensorStats | None: ...
    @property
    def shape_a(self) -> tuple[int, ...] | None: ...
    @property
    def shape_b(self) -> tuple[int, ...] | None: ...
    @property
    def component(self) -> str: ...


E = TypeVar("E", bound=_Entry)


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float, or ``None`` when it is ``None``, NaN or infinite."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def numel_of(shape: tuple[int, ...] | None) -> int:
    """Elements of a shape (0 for ``None``)."""
    if shape is None:
        return 0
    return math.prod(int(d) for d in shape)


@dataclass(frozen=True)
class GroupSummary:
    """Summary of the tensors of one module, block or component.

    Attributes:
        name: The module or block path (``(root)`` for top-level tensors), prefixed with its
            component folder (``unet/down_blocks.0``) when the diff has several components;
            for a component summary, the component (``(root)`` for the root).
        level: ``"module"``, ``"block"`` or ``"component"``.
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
        component: The component folder of its tensors (``""``: the root).
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
    component: str = ""

    @property
    def path(self) -> str:
        """The name without its component prefix (the module or block path)."""
        prefix = self.component + "/"
        if self.component and self.name.startswith(prefix):
            return self.name[len(prefix) :]
        return self.name

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object of one group (see the diff's JSON schema)."""
        return {
            "name": self.name,
            "level": self.level,
            "status": self.status,
            "tensors": self.tensors,
            "changed": self.changed,
            "counts": dict(self.counts),
            "l2_diff": finite_or_none(self.l2_diff),
            "max_relative_change": finite_or_none(self.max_relative_change),
            "numel_a": self.numel_a,
            "numel_b": self.numel_b,
            "names": list(self.names),
            "component": self.component,
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


def _group_status(counts: dict[str, int], n: int) -> str:
    if counts["added"] == n:
        return "added"
    if counts["removed"] == n:
        return "removed"
    if counts["unchanged"] == n:
        return "unchanged"
    return "changed"


def summarize_groups_by(
    entries: Iterable[E], key: Callable[[E], str], level: str
) -> list[GroupSummary]:
    """Summarize tensor entries per group, sorted by size of change.

    Args:
        entries: Tensor entries.
        key: Maps an entry to its group's name.
        level: The level name recorded in each summary (``"module"``, ``"block"``,
            ``"component"``).

    Returns:
        One summary per group: structural changes first, then by decreasing L2 of the
        change, then unchanged groups by name.
    """
    groups: dict[str, list[E]] = {}
    for t in entries:
        groups.setdefault(key(t), []).append(t)
    out: list[GroupSummary] = []
    for name, members in groups.items():
        counts = dict.fromkeys(STATUSES, 0)
        ss = 0.0
        max_rel: float | None = None
        for t in members:
            counts[t.status] += 1
            if t.stats is not None and not t.stats.raw_codes_compared:
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
                numel_a=sum(numel_of(t.shape_a) for t in members),
                numel_b=sum(numel_of(t.shape_b) for t in members),
                names=tuple(sorted(t.name for t in members)),
                component=members[0].component,
            )
        )
    out.sort(key=GroupSummary.sort_key)
    return out


def summarize_groups(
    entries: Iterable[E], key: Callable[[str], str], level: str
) -> list[GroupSummary]:
    """:func:`summarize_groups_by` with ``key`` applied to each entry's tensor name (e.g.
    :func:`~mgit.diff.names.module_of`)."""
    return summarize_groups_by(entries, lambda t: key(t.name), level)
