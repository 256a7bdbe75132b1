"""Text rendering of a :class:`~mgit.diff.model_diff.ModelDiff`.

The report is grouped (by block by default), groups sorted by size of change. A group with
changes gets a summary line and one line per changed tensor; a group whose tensors were all
added or all removed is one line; the groups with no change are folded into one count line.
When the diff has several component folders (``unet``, ``vae``, ``checkpoint-30``) each gets
its own heading and groups. Files follow: every file added, removed or changed (JSON files
with their changed keys), and re-sharded components. A LoRA adapter on one side is shown as
the effective change of each target module.
Colours follow MGit: red for what is only in the first model (removed), green for what is
only in the second (added); yellow for changed values, magenta for dtype or shape changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mgit.diff.files import FileDiff
from mgit.diff.groups import GroupSummary
from mgit.diff.lora import LoraDiff
from mgit.diff.model_diff import ModelDiff, TensorDiff
from mgit.diff.names import ROOT_GROUP
from mgit.diff.stats import TensorStats

__all__ = [
    "render_text",
    "render_tensor_line",
    "format_number",
    "format_count",
    "format_bytes",
    "ANSI",
    "STATUS_MARK",
    "paint",
]

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


def format_bytes(n: int | None) -> str:
    """Format a byte count (``1.2 MB``; ``-`` for ``None``)."""
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def _stats_text(s: TensorStats) -> str:
    if s.raw_codes_compared:
        return (
            f"raw integer codes compared with floats (scales not recognised): "
            f"{100.0 * s.fraction_changed:.3g}% of stored numbers differ"
        )
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


def _display_name(t: TensorDiff, prefix: str, qualify: bool | None = None) -> str:
    name = t.bare_name
    name = name[len(prefix) :] if prefix and name.startswith(prefix) else name
    if qualify if qualify is not None else t.bare_name != t.name:
        name += f" @{t.file_b or t.file_a}"  # several files hold this name: say which one
    return name


def _quant_text(t: TensorDiff) -> str:
    parts = []
    for side, q in (("a", t.quant_a), ("b", t.quant_b)):
        if q is not None:
            g = f", group {q.group_size}" if q.group_size else ""
            parts.append(f"{side}: {q.scheme} {q.bits}-bit{g}")
    return f"  (dequantized {'; '.join(parts)})" if parts else ""


def render_tensor_line(
    t: TensorDiff, *, color: bool, prefix: str = "", width: int = 0, qualify: bool | None = None
) -> str:
    """Render one tensor entry as one line.

    Args:
        t: The entry.
        color: Emit ANSI colours.
        prefix: Group path removed from the front of the name (with its dot).
        width: Pad the name to this width.
        qualify: Name the tensor's file after its name (default: when its key is qualified).

    Returns:
        The line, without a newline.
    """
    mark, style = STATUS_MARK[t.status]
    name = _display_name(t, prefix, qualify)
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
    line += _quant_text(t)
    if t.renamed_from is not None:
        line += f"  (was {t.renamed_from})"
    if t.error is not None and not (t.stats is not None and t.stats.raw_codes_compared):
        line += f"  [error: {t.error}]"
    return line


def _group_line(g: GroupSummary, *, color: bool) -> str:
    if g.status in ("added", "removed"):
        mark, style = STATUS_MARK[g.status]
        n = g.numel_b if g.status == "added" else g.numel_a
        what = "added" if g.status == "added" else "removed"
        return paint(f"{mark} {g.path}", style, color) + (
            f"  ({g.tensors} tensors {what}, {format_count(n)} elements)"
        )
    structural = g.counts["added"] + g.counts["removed"] + g.counts["shape_changed"]
    style = "magenta" if structural else "yellow"
    parts = [f"{g.changed}/{g.tensors} tensors changed"]
    if g.l2_diff > 0:
        parts.append(f"L2 {format_number(g.l2_diff)}")
    if g.max_relative_change is not None:
        parts.append(f"max rel {format_number(g.max_relative_change)}")
    return paint(f"~ {g.path}", style, color) + "  " + "  ".join(parts)


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
    if diff.files is not None:
        lines.append("  " + _files_count_line(diff, color=color))
    if s.identical:
        lines.append("  models are identical")
        return lines
    if s.tensors_identical and diff.lora is None and diff.tensors:
        lines.append("  tensors are identical; files differ")
    if diff.lora is not None:
        lines.extend(_lora_lines(diff, diff.lora, color=color, limit=max_tensors_per_group))
    elif len(diff.components) > 1:
        for comp in diff.components:
            lines.append("")
            lines.append(_component_line(comp, color=color))
            if comp.status == "unchanged" and not show_unchanged:
                continue
            members = [g for g in groups if g.component == comp.component]
            lines.extend(
                _group_lines(diff, members, color=color, level=level, show_unchanged=show_unchanged,
                             max_tensors_per_group=max_tensors_per_group, indent="  ")  # fmt: skip
            )
    else:
        lines.extend(
            _group_lines(diff, groups, color=color, level=level, show_unchanged=show_unchanged,
                         max_tensors_per_group=max_tensors_per_group)  # fmt: skip
        )
    lines.extend(_file_lines(diff, color=color, show_unchanged=show_unchanged))
    return lines


def _group_lines(
    diff: ModelDiff,
    groups: Sequence[GroupSummary],
    *,
    color: bool,
    level: str,
    show_unchanged: bool,
    max_tensors_per_group: int | None,
    indent: str = "",
) -> list[str]:
    lines: list[str] = []
    by_name = {t.name: t for t in diff.tensors}
    seen: dict[tuple[str, str], int] = {}
    for t in diff.tensors:
        seen[(t.component, t.bare_name)] = seen.get((t.component, t.bare_name), 0) + 1
    unchanged_groups: list[GroupSummary] = []
    for g in groups:
        if g.status == "unchanged":
            unchanged_groups.append(g)
            continue
        lines.append("")
        lines.append(indent + _group_line(g, color=color))
        if g.status in ("added", "removed"):
            continue
        members = [by_name[n] for n in g.names if by_name[n].is_change]
        members.sort(key=_tensor_sort_key)
        shown = members if max_tensors_per_group is None else members[:max_tensors_per_group]
        prefix = "" if g.path == ROOT_GROUP else g.path + "."
        qualify = {t.name: seen[(t.component, t.bare_name)] > 1 for t in shown}
        width = min(
            48, max((len(_display_name(t, prefix, qualify[t.name])) for t in shown), default=0)
        )
        for t in shown:
            line = render_tensor_line(
                t, color=color, prefix=prefix, width=width, qualify=qualify[t.name]
            )
            lines.append(indent + "    " + line)
        if len(shown) < len(members):
            lines.append(f"{indent}    ... {len(members) - len(shown)} more changed tensors")
    if unchanged_groups:
        lines.append("")
        n_tensors = sum(g.tensors for g in unchanged_groups)
        if show_unchanged:
            for g in sorted(unchanged_groups, key=lambda g: g.name):
                lines.append(indent + paint(f"= {g.path}  ({g.tensors} tensors)", "dim", color))
        else:
            names = [g.path for g in sorted(unchanged_groups, key=lambda g: g.name)]
            listed = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            lines.append(
                indent
                + paint(
                    f"= {len(unchanged_groups)} unchanged {level}"
                    f"{'s' if len(unchanged_groups) != 1 else ''} "
                    f"({n_tensors} tensor{'s' if n_tensors != 1 else ''}): {listed}",
                    "dim",
                    color,
                )
            )
    return lines


def _component_line(g: GroupSummary, *, color: bool) -> str:
    name = g.component or ROOT_GROUP
    if g.status == "unchanged":
        return paint(f"component {name}: {g.tensors} tensors, unchanged", "dim", color)
    if g.status in ("added", "removed"):
        mark, style = STATUS_MARK[g.status]
        return paint(f"{mark} component {name}: {g.tensors} tensors {g.status}", style, color)
    parts = [f"{g.changed}/{g.tensors} tensors changed"]
    if g.l2_diff > 0:
        parts.append(f"L2 {format_number(g.l2_diff)}")
    if g.max_relative_change is not None:
        parts.append(f"max rel {format_number(g.max_relative_change)}")
    return paint(f"component {name}:", "bold", color) + " " + "  ".join(parts)


def _files_count_line(diff: ModelDiff, *, color: bool) -> str:
    s = diff.summary
    fc = s.file_counts or {}
    counts = [
        paint(f"{fc.get('added', 0)} added", "green", color and fc.get("added", 0) > 0),
        paint(f"{fc.get('removed', 0)} removed", "red", color and fc.get("removed", 0) > 0),
        f"{fc.get('changed', 0)} changed",
        f"{fc.get('unchanged', 0)} unchanged",
    ]
    return f"{s.files_a} files in a, {s.files_b} in b: " + ", ".join(counts)


def _value(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _file_line(f: FileDiff, *, color: bool, moved_out: bool) -> list[str]:
    mark, style = STATUS_MARK[f.status]
    head = "  " + paint(f"{mark} {f.path}", style, color)
    if f.status == "added":
        body = format_bytes(f.size_b) + (f"  ({f.tensors_b} tensors)" if f.tensors_b else "")
    elif f.status == "removed":
        body = format_bytes(f.size_a) + (f"  ({f.tensors_a} tensors)" if f.tensors_a else "")
    elif f.status == "unchanged":
        body = format_bytes(f.size_b)
    else:
        body = f"{format_bytes(f.size_a)} -> {format_bytes(f.size_b)}"
        if f.json_changes_total is not None:
            n = f.json_changes_total
            if n:
                body += f"  ({n} key{'s' if n != 1 else ''} changed)"
            else:
                body += "  (same keys and values, other bytes)"
        elif f.is_tensor_file:
            if f.tensors_changed:
                body += f"  ({f.tensors_changed} of its tensors changed)"
            elif not moved_out:
                body += "  (its tensors are unchanged: header or metadata differs)"
        else:
            body += "  (compared as bytes: not read as tensors)"
    out = [f"{head}  {body}"]
    if f.note:
        out.append(f"      {f.note}")
    for c in f.json_changes or ():
        m, st = STATUS_MARK[c.status]
        if c.status == "changed":
            text = f"{_value(c.a)} -> {_value(c.b)}"
        else:
            text = _value(c.b if c.status == "added" else c.a)
        out.append("      " + paint(f"{m} {c.path}", st, color) + f": {text}")
    total = f.json_changes_total or 0
    if f.json_changes is not None and total > len(f.json_changes):
        out.append(f"      ... {f.json_changes_total - len(f.json_changes)} more keys changed")
    return out


def _file_lines(diff: ModelDiff, *, color: bool, show_unchanged: bool) -> list[str]:
    if diff.files is None:
        return []
    relaid = {c.component for c in diff.layout}
    listed = []
    for f in diff.files:
        if f.status == "unchanged" and not show_unchanged:
            continue
        if f.status == "changed" and f.is_tensor_file and f.tensors_changed and not f.note:
            continue  # its tensors above say what changed
        listed.append(f)
    if not listed and not diff.layout:
        return []
    lines = ["", "files:"]
    for f in listed:
        lines.extend(_file_line(f, color=color, moved_out=f.component in relaid))
    for c in diff.layout:
        where = f"{c.component}: " if c.component else ""
        lines.append("  " + paint(f"{where}{c.description}", "magenta", color))
    return lines


def _lora_lines(diff: ModelDiff, lora: LoraDiff, *, color: bool, limit: int | None) -> list[str]:
    cfg = lora.config
    scale = "rsLoRA: alpha/sqrt(r)" if cfg.use_rslora else "alpha/r"
    paired = sum(1 for m in lora.modules if m.base_tensor is not None)
    base_side = "a" if lora.adapter_side == "b" else "b"
    lines = [
        "",
        paint(f"LoRA adapter in {lora.adapter_side} ({cfg.path}): ", "bold", color)
        + f"r={cfg.r}, lora_alpha={format_number(cfg.lora_alpha)} (scale {scale}), "
        f"{len(lora.modules)} target modules, {paired} paired with {base_side}'s weights",
    ]
    shown = lora.modules if limit is None else lora.modules[:limit]
    width = min(56, max((len(m.module) for m in shown), default=0))
    for m in shown:
        line = "    " + paint(f"~ {m.module.ljust(width)}", "yellow", color)
        line += f"  {_shape(m.shape)}  scale {format_number(m.scale)}"
        if m.stats is not None:
            st = m.stats
            line += f"  delta L2 {format_number(st.l2_diff)}"
            line += f"  rel {format_number(st.relative_change)}"
            if st.rank is not None:
                ge = ">=" if st.rank.lower_bound else ""
                line += f"  rank {ge}{st.rank.effective} (r={m.r})"
        if m.error:
            line += f"  [{m.error}]"
        lines.append(line)
    if len(shown) < len(lora.modules):
        lines.append(f"    ... {len(lora.modules) - len(shown)} more target modules")
    n_factors = 2 * len(lora.modules)
    side_tensors = diff.summary.tensors_a if base_side == "a" else diff.summary.tensors_b
    lines.append(
        f"  the adapter holds {n_factors} LoRA factors"
        + (f" and {len(lora.other_tensors)} other tensors" if lora.other_tensors else "")
        + f"; {base_side}'s {side_tensors} tensors are the weights it applies to"
    )
    return lines


def _tensor_sort_key(t: TensorDiff) -> tuple[int, float, str]:
    order = {"removed": 0, "added": 1, "shape_changed": 2, "dtype_changed": 3, "changed": 4}
    l2 = t.stats.l2_diff if t.stats is not None else 0.0
    return (order.get(t.status, 5), -l2, t.name)
