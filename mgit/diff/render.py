"""Text rendering of a :class:`~mgit.diff.model_diff.ModelDiff`.

The report is grouped (by block by default), groups sorted by size of change. A group with
changes gets a summary line and one line per changed tensor; a group whose tensors were all
added or all removed is one line; the groups with no change are folded into one count line.
Colours follow MGit: red for what is only in the first model (removed), green for what is
only in the second (added); yellow for changed values, magenta for dtype or shape changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mgit.diff.model_diff import GroupSummary, ModelDiff, TensorDiff
from mgit.diff.names import ROOT_GROUP
from mgit.diff.stats import TensorStats

__all__ = ["render_text", "render_tensor_line", "format_number", "format_count", "ANSI", "STATUS_MARK", "paint"]

#: ANSI colour codes used when ``color=True``.
ANSI: dict[str, str] = {
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "magenta": "\x1b[35m",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "reset": "\x1b[0m",
}

STATUS_MARK = {
    "added": ("+", "green"),
    "removed": ("-", "red"),
    "changed": ("~", "yellow"),
    "dtype_changed": ("~", "magenta"),
    "shape_changed": ("!", "magenta"),
    "unchanged": ("=", "dim"),
}


def paint(text: str, style: str, color: bool) -> str:
    """``text`` in the ANSI ``style`` when ``color`` is on."""
    if not color or style not in ANSI:
        return text
    return f"{ANSI[style]}{text}{ANSI['reset']}"


def format_number(x: float | None) -> str:
    """Format a statistic compactly (3 significant digits; ``n/a`` for ``None``).

    Args:
        x: The number.

    Returns:
        The text.
    """
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}"


def format_count(n: int) -> str:
    """Format an element count with a K/M/G suffix (``1.2M``)."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _shape(shape: Sequence[int] | None) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape is not None else "-"


def _stats_text(s: TensorStats) -> str:
    parts = [
        f"L2 {format_number(s.l2_diff)}",
        f"rel {format_number(s.relative_change)}",
        f"max|d| {format_number(s.max_abs_diff)}",
        f"{100.0 * s.fraction_changed:.3g}% changed",
    ]
    if s.cosine_similarity is not None:
        parts.append(f"cos {s.cosine_similarity:.6f}")
    if s.rank is not None:
        ge = ">=" if s.rank.lower_bound else ""
        parts.append(f"rank {ge}{s.rank.effective}")
    if s.nonfinite_a or s.nonfinite_b:
        parts.append(f"non-finite {s.nonfinite_a}/{s.nonfinite_b}")
    if s.overlap:
        parts.append("(common region)")
    return "  ".join(parts)


def render_tensor_line(t: TensorDiff, *, color: bool, prefix: str = "", width: int = 0) -> str:
    """Render one tensor entry as one line.

    Args:
        t: The entry.
        color: Emit ANSI colours.
        prefix: Group path removed from the front of the name (with its dot).
        width: Pad the name to this width.

    Returns:
        The line, without a newline.
    """
    mark, style = STATUS_MARK[t.status]
    name = t.name[len(prefix) :] if prefix and t.name.startswith(prefix) else t.name
    head = f"{mark} {name.ljust(width)}"
    if t.status == "added":
        body = f"{t.dtype_b} {_shape(t.shape_b)}"
    elif t.status == "removed":
        body = f"{t.dtype_a} {_shape(t.shape_a)}"
    elif t.status == "shape_changed":
        body = f"{t.dtype_a} {_shape(t.shape_a)} -> {t.dtype_b} {_shape(t.shape_b)}"
    elif t.status == "dtype_changed":
        body = f"{t.dtype_a} -> {t.dtype_b} {_shape(t.shape_b)}"
    else:
        body = f"{t.dtype_b} {_shape(t.shape_b)}"
    line = f"{paint(head, style, color)}  {body}"
    if t.stats is not None:
        line += "  " + _stats_text(t.stats)
    if t.renamed_from is not None:
        line += f"  (was {t.renamed_from})"
    if t.error is not None:
        line += f"  [error: {t.error}]"
    return line


def _group_line(g: GroupSummary, *, color: bool) -> str:
    if g.status in ("added", "removed"):
        mark, style = STATUS_MARK[g.status]
        n = g.numel_b if g.status == "added" else g.numel_a
        what = "added" if g.status == "added" else "removed"
        return paint(f"{mark} {g.name}", style, color) + (
            f"  ({g.tensors} tensors {what}, {format_count(n)} elements)"
        )
    structural = g.counts["added"] + g.counts["removed"] + g.counts["shape_changed"]
    style = "magenta" if structural else "yellow"
    parts = [f"{g.changed}/{g.tensors} tensors changed"]
    if g.l2_diff > 0:
        parts.append(f"L2 {format_number(g.l2_diff)}")
    if g.max_relative_change is not None:
        parts.append(f"max rel {format_number(g.max_relative_change)}")
    return paint(f"~ {g.name}", style, color) + "  " + "  ".join(parts)


def render_text(
    diff: ModelDiff,
    *,
    color: bool,
    level: str = "block",
    show_unchanged: bool = False,
    max_tensors_per_group: int | None = None,
) -> list[str]:
    """Render a model diff as lines of text.

    Args:
        diff: The diff.
        color: Emit ANSI colour codes.
        level: Group by ``"block"`` (``encoder.layer.3``) or ``"module"``.
        show_unchanged: List unchanged groups one per line instead of folding them into one
            count line.
        max_tensors_per_group: Show at most this many tensors under a group (``None``: all).

    Returns:
        The lines, without newlines.

    Raises:
        ValueError: ``level`` is neither ``"block"`` nor ``"module"``.
    """
    if level == "block":
        groups = diff.blocks
    elif level == "module":
        groups = diff.modules
    else:
        raise ValueError(f"level must be 'block' or 'module', not {level!r}")
    s = diff.summary
    c = s.counts
    lines = [paint(f"diff {diff.a} -> {diff.b}", "bold", color)]
    counts = [
        paint(f"{c['added']} added", "green", color and c["added"] > 0),
        paint(f"{c['removed']} removed", "red", color and c["removed"] > 0),
        f"{c['changed']} changed",
        f"{c['dtype_changed']} dtype changed",
        f"{c['shape_changed']} shape changed",
        f"{c['unchanged']} unchanged",
    ]
    lines.append(f"  {s.tensors_a} tensors in a, {s.tensors_b} in b: " + ", ".join(counts))
    if s.renamed:
        example = next(t for t in diff.tensors if t.renamed_from is not None)
        lines.append(
            f"  {s.renamed} tensors paired across a head prefix "
            f"(e.g. {example.renamed_from} -> {example.name})"
        )
    if s.identical:
        lines.append("  models are identical")
        return lines
    by_name = {t.name: t for t in diff.tensors}
    unchanged_groups: list[GroupSummary] = []
    for g in groups:
        if g.status == "unchanged":
            unchanged_groups.append(g)
            continue
        lines.append("")
        lines.append(_group_line(g, color=color))
        if g.status in ("added", "removed"):
            continue
        members = [by_name[n] for n in g.names if by_name[n].is_change]
        members.sort(key=_tensor_sort_key)
        shown = members if max_tensors_per_group is None else members[:max_tensors_per_group]
        prefix = "" if g.name == ROOT_GROUP else g.name + "."
        width = min(48, max((len(t.name) - len(prefix) for t in shown), default=0))
        for t in shown:
            lines.append("    " + render_tensor_line(t, color=color, prefix=prefix, width=width))
        if len(shown) < len(members):
            lines.append(f"    ... {len(members) - len(shown)} more changed tensors")
    if unchanged_groups:
        lines.append("")
        n_tensors = sum(g.tensors for g in unchanged_groups)
        if show_unchanged:
            for g in sorted(unchanged_groups, key=lambda g: g.name):
                lines.append(paint(f"= {g.name}  ({g.tensors} tensors)", "dim", color))
        else:
            names = [g.name for g in sorted(unchanged_groups, key=lambda g: g.name)]
            listed = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            lines.append(
                paint(
                    f"= {len(unchanged_groups)} unchanged {level}"
                    f"{'s' if len(unchanged_groups) != 1 else ''} "
                    f"({n_tensors} tensor{'s' if n_tensors != 1 else ''}): {listed}",
                    "dim",
                    color,
                )
            )
    return lines


def _tensor_sort_key(t: TensorDiff) -> tuple[int, float, str]:
    order = {"removed": 0, "added": 1, "shape_changed": 2, "dtype_changed": 3, "changed": 4}
    l2 = t.stats.l2_diff if t.stats is not None else 0.0
    return (order.get(t.status, 5), -l2, t.name)
