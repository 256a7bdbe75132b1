"""The file-level section of a diff: every file of both versions, and shard layout changes.

Tensors are only part of a model folder: ``config.json``, tokenizer files, a
``pytorch_model.bin`` not read as tensors, the shard index. :func:`diff_files` compares the
files of two sources by their XXH3-128 checksums (a stored version's tree entries carry them; a
folder's are computed, or taken from the index's stat cache), so a version is identical to
another only when every file is. For a changed JSON file the changed keys are listed (dotted
paths, old -> new, at most :data:`JSON_CHANGES_SHOWN`); in a safetensors index
(``*.safetensors.index.json``) the ``weight_map`` is summarised instead (tensors moved to
another file, added, removed).

:func:`layout_changes` reports re-sharding per component folder: the set of files holding the
component's tensors changed and tensors moved between files (``re-sharded: 4 files -> 1,
tensors unchanged``).

A file that holds tensors (``tensors_a`` / ``tensors_b`` > 0) is a *tensor file*: its values
are compared tensor by tensor. Any other file is compared as bytes. A format that starts
exposing its tensors (a ``.bin`` read as tensors) simply becomes a tensor file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mgit.diff.jsondiff import ConfigChange, diff_configs
from mgit.diff.source import FileInfo, TensorInfo, component_of, read_source_file, source_files

__all__ = [
    "FileDiff",
    "LayoutChange",
    "FILE_STATUSES",
    "JSON_MAX_BYTES",
    "JSON_CHANGES_SHOWN",
    "diff_files",
    "layout_changes",
]

#: Every file status, in the order reports list them.
FILE_STATUSES: tuple[str, ...] = ("removed", "added", "changed", "unchanged")
#: JSON files larger than this (either side) are compared as bytes only.
JSON_MAX_BYTES = 16 << 20
#: At most this many key changes are kept per JSON file (``json_changes_total`` counts all).
JSON_CHANGES_SHOWN = 20


@dataclass(frozen=True)
class FileDiff:
    """What happened to one file.

    Attributes:
        path: The file's relative path.
        status: ``added``, ``removed``, ``changed`` or ``unchanged`` (by checksum).
        component: Its component folder (``""``: the root).
        size_a: Bytes in a (``None`` if absent).
        size_b: Bytes in b (``None`` if absent).
        tensors_a: Tensors the file holds in a (0 if none, or absent).
        tensors_b: Tensors the file holds in b.
        tensors_changed: Tensors of this file (in b, or in a for a removed file) whose status is
            not ``unchanged``.
        json_changes: For a changed JSON file, its key changes (at most
            :data:`JSON_CHANGES_SHOWN`); ``None`` otherwise.
        json_changes_total: How many key changes there are in all (``None`` when not compared).
        note: One line about the file (not valid JSON, too large to compare keys, the shard
            index's ``weight_map`` summary), or ``None``.
    """

    path: str
    status: str
    component: str
    size_a: int | None
    size_b: int | None
    tensors_a: int = 0
    tensors_b: int = 0
    tensors_changed: int = 0
    json_changes: tuple[ConfigChange, ...] | None = None
    json_changes_total: int | None = None
    note: str | None = None

    @property
    def is_tensor_file(self) -> bool:
        """The file holds tensors on a side that has it (its values are compared per tensor)."""
        return self.tensors_a > 0 or self.tensors_b > 0

    @property
    def is_change(self) -> bool:
        """Every status but ``unchanged``."""
        return self.status != "unchanged"

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one file (see the diff's JSON schema)."""
        return {
            "path": self.path,
            "status": self.status,
            "component": self.component,
            "size_a": self.size_a,
            "size_b": self.size_b,
            "tensors_a": self.tensors_a,
            "tensors_b": self.tensors_b,
            "tensors_changed": self.tensors_changed,
            "json_changes": (
                [c.to_json() for c in self.json_changes] if self.json_changes is not None else None
            ),
            "json_changes_total": self.json_changes_total,
            "note": self.note,
        }


@dataclass(frozen=True)
class LayoutChange:
    """The files holding one component's tensors changed, and tensors moved between them.

    Attributes:
        component: The component folder (``""``: the root).
        files_a: The component's tensor files in a.
        files_b: The component's tensor files in b.
        moved: Tensors present on both sides whose file changed.
        tensors: Tensors of the component paired on both sides.
        changed: Tensors of the component (either side) whose status is not ``unchanged``.
    """

    component: str
    files_a: tuple[str, ...]
    files_b: tuple[str, ...]
    moved: int
    tensors: int
    changed: int

    @property
    def description(self) -> str:
        """``re-sharded: 4 files -> 1, tensors unchanged`` (or ``3 tensors changed``)."""
        na, nb = len(self.files_a), len(self.files_b)
        if na != nb:
            head = f"re-sharded: {na} file{'s' if na != 1 else ''} -> {nb}"
        else:
            head = f"tensor files changed: {', '.join(self.files_a)} -> {', '.join(self.files_b)}"
        tail = "tensors unchanged" if not self.changed else f"{self.changed} tensors changed"
        return f"{head}, {tail}"

    def to_json(self) -> dict[str, Any]:
        """The JSON object (see the diff's JSON schema)."""
        return {
            "component": self.component,
            "files_a": list(self.files_a),
            "files_b": list(self.files_b),
            "moved": self.moved,
            "tensors": self.tensors,
            "changed": self.changed,
            "description": self.description,
        }


class _Entry(Protocol):
    status: str
    file_a: str | None
    file_b: str | None


def _per_file(infos: Mapping[str, TensorInfo]) -> Counter[str]:
    return Counter(i.file for i in infos.values() if i.file is not None)


def _load_json(data: bytes | None) -> tuple[Any, str | None]:
    if data is None:
        return None, "too large to compare keys"
    try:
        return json.loads(data.decode("utf-8")), None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None, "not valid JSON"


def _weight_map_note(wa: Mapping[str, Any], wb: Mapping[str, Any]) -> str:
    moved = sum(1 for k in wa if k in wb and wa[k] != wb[k])
    added = sum(1 for k in wb if k not in wa)
    removed = sum(1 for k in wa if k not in wb)
    files_a, files_b = len(set(map(str, wa.values()))), len(set(map(str, wb.values())))
    parts = [f"weight_map: {files_a} file{'s' if files_a != 1 else ''} -> {files_b}"]
    parts.append(f"{moved} tensors in another file")
    if added:
        parts.append(f"{added} added")
    if removed:
        parts.append(f"{removed} removed")
    return ", ".join(parts)


def _json_section(
    a: Any, b: Any, path: str
) -> tuple[tuple[ConfigChange, ...] | None, int | None, str | None]:
    """(shown key changes, total, note) of a JSON file changed between two sources."""
    va, err_a = _load_json(read_source_file(a, path, max_bytes=JSON_MAX_BYTES))
    vb, err_b = _load_json(read_source_file(b, path, max_bytes=JSON_MAX_BYTES))
    if err_a or err_b:
        return None, None, "; ".join(f"{s}: {e}" for s, e in (("a", err_a), ("b", err_b)) if e)
    if not isinstance(va, dict) or not isinstance(vb, dict):
        changes = [] if va == vb else [ConfigChange("(document)", "changed", va, vb)]
        return tuple(changes[:JSON_CHANGES_SHOWN]), len(changes), None
    note = None
    if path.endswith(".index.json") and isinstance(va.get("weight_map"), dict) and isinstance(
        vb.get("weight_map"), dict
    ):
        note = _weight_map_note(va["weight_map"], vb["weight_map"])
        va = {k: v for k, v in va.items() if k != "weight_map"}
        vb = {k: v for k, v in vb.items() if k != "weight_map"}
    changes = diff_configs(va, vb)
    return tuple(changes[:JSON_CHANGES_SHOWN]), len(changes), note


def diff_files(
    a: Any,
    b: Any,
    infos_a: Mapping[str, TensorInfo],
    infos_b: Mapping[str, TensorInfo],
    entries: Iterable[_Entry] = (),
) -> tuple[FileDiff, ...] | None:
    """Compare every file of two sources.

    Args:
        a: The first source (its ``files()`` and ``read_file()``, where it has them).
        b: The second source.
        infos_a: a's tensors (their ``file`` counts each file's tensors).
        infos_b: b's tensors.
        entries: The tensor entries of the diff (``status``, ``file_a``, ``file_b``), to count
            each file's changed tensors.

    Returns:
        One entry per file of either side, sorted by path; ``None`` when neither source has
        files (arrays in memory).
    """
    fa: dict[str, FileInfo] | None = source_files(a)
    fb: dict[str, FileInfo] | None = source_files(b)
    if fa is None and fb is None:
        return None
    fa, fb = fa or {}, fb or {}
    count_a, count_b = _per_file(infos_a), _per_file(infos_b)
    changed_in: Counter[str] = Counter()
    for t in entries:
        if t.status != "unchanged":
            f = t.file_b if t.file_b is not None else t.file_a
            if f is not None:
                changed_in[f] += 1
    out: list[FileDiff] = []
    for path in sorted(set(fa) | set(fb)):
        ia, ib = fa.get(path), fb.get(path)
        if ia is None:
            status = "added"
        elif ib is None:
            status = "removed"
        elif ia.xxh == ib.xxh and ia.size == ib.size:
            status = "unchanged"
        else:
            status = "changed"
        shown: tuple[ConfigChange, ...] | None = None
        total: int | None = None
        note: str | None = None
        if status == "changed" and path.endswith(".json"):
            shown, total, note = _json_section(a, b, path)
        out.append(
            FileDiff(
                path=path,
                status=status,
                component=component_of(path),
                size_a=ia.size if ia is not None else None,
                size_b=ib.size if ib is not None else None,
                tensors_a=count_a.get(path, 0) if ia is not None else 0,
                tensors_b=count_b.get(path, 0) if ib is not None else 0,
                tensors_changed=changed_in.get(path, 0),
                json_changes=shown,
                json_changes_total=total,
                note=note,
            )
        )
    return tuple(out)


def layout_changes(
    infos_a: Mapping[str, TensorInfo],
    infos_b: Mapping[str, TensorInfo],
    entries: Iterable[_Entry],
) -> tuple[LayoutChange, ...]:
    """Re-sharding per component: its tensor files differ and tensors moved between files.

    Args:
        infos_a: a's tensors (with their files).
        infos_b: b's tensors.
        entries: The tensor entries of the diff (``status``, ``file_a``, ``file_b``).

    Returns:
        One change per component whose layout changed, sorted by component.
    """
    files_a: dict[str, set[str]] = {}
    files_b: dict[str, set[str]] = {}
    for infos, files in ((infos_a, files_a), (infos_b, files_b)):
        for i in infos.values():
            if i.file is not None:
                files.setdefault(i.component, set()).add(i.file)
    moved: Counter[str] = Counter()
    paired: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    for t in entries:
        comp = component_of(t.file_b if t.file_b is not None else t.file_a)
        if t.status != "unchanged":
            changed[comp] += 1
        if t.file_a is not None and t.file_b is not None and t.status != "added":
            paired[comp] += 1
            if t.file_a != t.file_b:
                moved[comp] += 1
    out = []
    for comp in sorted(set(files_a) & set(files_b)):
        if files_a[comp] != files_b[comp] and moved[comp]:
            out.append(
                LayoutChange(
                    component=comp,
                    files_a=tuple(sorted(files_a[comp])),
                    files_b=tuple(sorted(files_b[comp])),
                    moved=moved[comp],
                    tensors=paired[comp],
                    changed=changed[comp],
                )
            )
    return tuple(out)
