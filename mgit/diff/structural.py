"""Structural diff of two model versions: module tree, config.json, dataflow graph.

- **Module tree**: every tensor name implies its modules (all prefixes of
  ``encoder.layer.4.attention.self.query.weight``). Modules only in a (or only in b) are
  reported at their top-most path (``encoder.layer.4``, not each of its submodules), with the
  number of tensors and elements under them. Tensors added or removed inside modules both
  sides have, and shape and dtype changes, are reported per tensor. Names that differ by a
  task-head prefix are paired first (:func:`~mgit.diff.names.pair_names`).
- **Config**: added, removed and changed keys of ``config.json``, nested dicts walked with
  dotted paths (``text_config.hidden_size``); lists compare as whole values.
- **Dataflow**: for configs transformers can build, the module-level dataflow graphs
  (:mod:`mgit.diff.dataflow`) and their diff. If a graph cannot be made the reason is in
  ``dataflow_error`` and the rest of the diff is still there.
- **Files**: every file that differs (:mod:`mgit.diff.files`). A file that holds no tensors
  (``tokenizer.json``, a ``pytorch_model.bin`` stored as bytes) cannot be compared
  structurally, so two versions are only ``identical`` when every such file is equal.

Tensors are identified by file and name (:func:`~mgit.diff.names.pair_tensors`); when the
versions have several component folders (``unet``, ``vae``) module paths are prefixed with
theirs (``unet/conv_in``).

The result renders as text (:func:`render_structural_text`), JSON
(:meth:`StructuralDiff.to_json`, schema in :data:`STRUCTURAL_JSON_SCHEMA_DOC`) and a
self-contained HTML page (:func:`mgit.diff.html.structural_html`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mgit.diff.dataflow import (
    DataflowDiff,
    DataflowError,
    DataflowGraph,
    dataflow_from_config,
    diff_dataflow,
)
from mgit.diff.names import (
    DEFAULT_HEAD_PREFIXES,
    apply_prefix_change,
    dominant_prefix_change,
    module_of,
    pair_tensors,
)
from mgit.diff.files import FileDiff, diff_files
from mgit.diff.jsondiff import ConfigChange, diff_configs
from mgit.diff.render import STATUS_MARK, paint
from mgit.diff.source import TensorInfo, TensorSource

__all__ = [
    "ModuleChange",
    "ParamChange",
    "ConfigChange",
    "StructuralDiff",
    "structural_diff",
    "diff_configs",
    "module_paths",
    "render_structural_text",
    "CONFIG_NOISE_KEYS",
    "STRUCTURAL_JSON_SCHEMA_DOC",
]

#: Config keys that do not change the architecture (ignored when deciding whether the two
#: sides need separate traces; still reported as config changes).
CONFIG_NOISE_KEYS: tuple[str, ...] = ("transformers_version", "_name_or_path", "_commit_hash")


@dataclass(frozen=True)
class ModuleChange:
    """A module present on one side only (reported at its top-most path).

    Attributes:
        path: Module path (``encoder.layer.4``).
        status: ``"added"`` (only in b) or ``"removed"`` (only in a).
        tensors: Number of tensors under the module.
        numel: Number of elements under the module.
    """

    path: str
    status: str
    tensors: int
    numel: int

    def to_json(self) -> dict[str, Any]:
        """Return ``{"path", "status", "tensors", "numel"}``."""
        return {
            "path": self.path,
            "status": self.status,
            "tensors": self.tensors,
            "numel": self.numel,
        }


@dataclass(frozen=True)
class ParamChange:
    """A tensor added or removed inside a module both sides have, or reshaped, or re-typed.

    Attributes:
        name: The tensor name (in b, or in a if removed).
        status: ``"added"``, ``"removed"``, ``"shape_changed"`` or ``"dtype_changed"``.
        dtype_a: dtype in a, or ``None``.
        dtype_b: dtype in b, or ``None``.
        shape_a: shape in a, or ``None``.
        shape_b: shape in b, or ``None``.
    """

    name: str
    status: str
    dtype_a: str | None
    dtype_b: str | None
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object (see :data:`STRUCTURAL_JSON_SCHEMA_DOC`)."""
        return {
            "name": self.name,
            "status": self.status,
            "dtype_a": self.dtype_a,
            "dtype_b": self.dtype_b,
            "shape_a": list(self.shape_a) if self.shape_a is not None else None,
            "shape_b": list(self.shape_b) if self.shape_b is not None else None,
        }


@dataclass(frozen=True)
class StructuralDiff:
    """The structural diff of two model versions.

    Attributes:
        a: Label of the first side.
        b: Label of the second side.
        modules_a: Number of modules implied by a's tensor names.
        modules_b: Number of modules implied by b's tensor names.
        modules: Modules only on one side, top-most paths, sorted by path.
        params: Per-tensor structural changes outside those modules, sorted by name.
        renamed: ``(name_a, name_b)`` tensor pairs matched across a task-head prefix.
        config_a: Whether a has a config.
        config_b: Whether b has a config.
        config: Config differences, sorted by path.
        dataflow: The dataflow diff, or ``None`` if it could not be made.
        dataflow_error: Why there is no dataflow diff (``None`` if there is one).
        files: Every file that differs, sorted by path (``None``: the sources have no files).
    """

    a: str
    b: str
    modules_a: int
    modules_b: int
    modules: tuple[ModuleChange, ...]
    params: tuple[ParamChange, ...]
    renamed: tuple[tuple[str, str], ...]
    config_a: bool
    config_b: bool
    config: tuple[ConfigChange, ...]
    dataflow: DataflowDiff | None
    dataflow_error: str | None
    files: tuple[FileDiff, ...] | None = None

    @property
    def opaque_files(self) -> list[FileDiff]:
        """Files that differ and hold no tensors: their structure cannot be compared."""
        return [f for f in self.files or () if f.is_change and not f.is_tensor_file]

    @property
    def modules_removed(self) -> list[str]:
        """Top-most module paths only in a."""
        return [m.path for m in self.modules if m.status == "removed"]

    @property
    def modules_added(self) -> list[str]:
        """Top-most module paths only in b."""
        return [m.path for m in self.modules if m.status == "added"]

    @property
    def identical(self) -> bool:
        """True if nothing structural differs (dataflow counted only when available) and every
        file that holds no tensors is equal."""
        return (
            not self.modules
            and not self.params
            and not self.config
            and not self.opaque_files
            and (self.dataflow is None or self.dataflow.identical)
        )

    def to_json(self) -> dict[str, Any]:
        """Return JSON-ready data in the schema of :data:`STRUCTURAL_JSON_SCHEMA_DOC`."""
        return {
            "schema": 1,
            "a": self.a,
            "b": self.b,
            "summary": {
                "modules_a": self.modules_a,
                "modules_b": self.modules_b,
                "modules_added": len(self.modules_added),
                "modules_removed": len(self.modules_removed),
                "params_changed": len(self.params),
                "renamed": len(self.renamed),
                "config_changes": len(self.config),
                "identical": self.identical,
                "files_differ": len(self.files or ()),
                "files_opaque": len(self.opaque_files),
            },
            "modules": [m.to_json() for m in self.modules],
            "params": [p.to_json() for p in self.params],
            "renamed": [{"name_a": x, "name_b": y} for x, y in self.renamed],
            "config": {
                "present_a": self.config_a,
                "present_b": self.config_b,
                "changes": [c.to_json() for c in self.config],
            },
            "dataflow": self.dataflow.to_json() if self.dataflow is not None else None,
            "dataflow_error": self.dataflow_error,
            "files": [f.to_json() for f in self.files] if self.files is not None else None,
        }

    def to_lines(self, *, color: bool = False, limit: int | None = 50) -> list[str]:
        """Render as text lines (see :func:`render_structural_text`)."""
        return render_structural_text(self, color=color, limit=limit)


def module_paths(names: Sequence[str]) -> set[str]:
    """Return every module path implied by tensor names (all proper prefixes).

    Args:
        names: Tensor names.

    Returns:
        Module paths; top-level tensors imply none.

    Example:
        >>> sorted(module_paths(["a.b.w", "a.c"]))
        ['a', 'a.b']
    """
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return out


def _parent(path: str) -> str | None:
    head, sep, _ = path.rpartition(".")
    return head if sep else None


def _top_most(only: set[str]) -> list[str]:
    return sorted(p for p in only if _parent(p) not in only)


def _under(path: str, infos: Mapping[str, TensorInfo]) -> tuple[int, int]:
    prefix = path + "."
    n = numel = 0
    for name, info in infos.items():
        if name.startswith(prefix):
            n += 1
            numel += info.numel
    return n, numel


def _noise_free(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {k: v for k, v in config.items() if k not in CONFIG_NOISE_KEYS}


def _graph_or_error(
    config: Mapping[str, Any] | None, side: str
) -> tuple[DataflowGraph | None, str | None]:
    if config is None:
        return None, f"{side} has no config.json"
    try:
        return dataflow_from_config(config), None
    except DataflowError as exc:
        return None, f"{side}: {exc}"


def structural_diff(
    a: TensorSource,
    b: TensorSource,
    *,
    dataflow: bool = True,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
) -> StructuralDiff:
    """Compare the structure of two model versions (no tensor data is read).

    Args:
        a: The first version.
        b: The second version.
        dataflow: Build and trace both models from their configs and diff the dataflow
            graphs (needs torch and transformers; a few seconds for small models).
        prefixes: Task-head prefixes across which names pair; ``()`` to disable pairing.

    Returns:
        The diff. Failures to build or trace a model are reported in ``dataflow_error``.
    """
    raw_a, raw_b = a.tensors(), b.tensors()
    disp_a, disp_b = _display_names(raw_a, raw_b)
    infos_a = {disp_a[k]: i for k, i in raw_a.items()}
    infos_b = {disp_b[k]: i for k, i in raw_b.items()}
    pairs = [
        (disp_a[x] if x is not None else None, disp_b[y] if y is not None else None)
        for x, y in pair_tensors(raw_a, raw_b, prefixes=prefixes)
    ]
    renamed = tuple((x, y) for x, y in pairs if x is not None and y is not None and x != y)
    # a's names as b calls them, so both module trees use one naming: paired names map to
    # their partner, unpaired ones follow the prevailing prefix change (so the layers a
    # pruned model lost line up with b's naming).
    change = dominant_prefix_change(pairs, prefixes=prefixes)
    to_b = {n: apply_prefix_change(n, change) for n in infos_a}
    to_b.update(renamed)
    paired_b = {y for x, y in pairs if x is not None and y is not None}
    moved = {to_b[x] for x, y in pairs if x is not None and y is None}
    if len(set(to_b.values())) != len(to_b) or moved & (set(infos_b) - paired_b):
        to_b = {n: n for n in infos_a}  # the prefix change would collide: keep a's names
        to_b.update(renamed)
    infos_a_b = {to_b.get(n, n): info for n, info in infos_a.items()}
    mods_a = module_paths(list(infos_a_b))
    mods_b = module_paths(list(infos_b))
    only_a = mods_a - mods_b
    only_b = mods_b - mods_a
    modules: list[ModuleChange] = []
    for path in _top_most(only_a):
        n, numel = _under(path, infos_a_b)
        modules.append(ModuleChange(path, "removed", n, numel))
    for path in _top_most(only_b):
        n, numel = _under(path, infos_b)
        modules.append(ModuleChange(path, "added", n, numel))
    modules.sort(key=lambda m: (m.path, m.status))

    params: list[ParamChange] = []
    for na, nb in pairs:
        if nb is None:
            assert na is not None
            name = to_b.get(na, na)
            if module_of(name) in only_a:
                continue
            ia = infos_a[na]
            params.append(ParamChange(name, "removed", ia.dtype, None, ia.shape, None))
        elif na is None:
            if module_of(nb) in only_b:
                continue
            ib = infos_b[nb]
            params.append(ParamChange(nb, "added", None, ib.dtype, None, ib.shape))
        else:
            ia, ib = infos_a[na], infos_b[nb]
            if ia.shape != ib.shape:
                params.append(
                    ParamChange(nb, "shape_changed", ia.dtype, ib.dtype, ia.shape, ib.shape)
                )
            elif ia.dtype != ib.dtype:
                params.append(
                    ParamChange(nb, "dtype_changed", ia.dtype, ib.dtype, ia.shape, ib.shape)
                )
    params.sort(key=lambda p: p.name)

    cfg_a, cfg_b = a.config(), b.config()
    config_changes = diff_configs(cfg_a, cfg_b)

    flow: DataflowDiff | None = None
    flow_error: str | None = None
    if not dataflow:
        flow_error = "dataflow diff not requested"
    elif cfg_a is None and cfg_b is None:
        flow_error = "neither side has a config.json"
    else:
        graph_a, err_a = _graph_or_error(cfg_a, "a")
        if _noise_free(cfg_a) == _noise_free(cfg_b) and err_a is None:
            graph_b, err_b = graph_a, None
        else:
            graph_b, err_b = _graph_or_error(cfg_b, "b")
        if graph_a is not None and graph_b is not None:
            flow = diff_dataflow(graph_a, graph_b, prefixes=prefixes)
        else:
            flow_error = "; ".join(e for e in (err_a, err_b) if e)

    files = diff_files(a, b, raw_a, raw_b)
    return StructuralDiff(
        a=a.label,
        b=b.label,
        modules_a=len(mods_a),
        modules_b=len(mods_b),
        modules=tuple(modules),
        params=tuple(params),
        renamed=renamed,
        config_a=cfg_a is not None,
        config_b=cfg_b is not None,
        config=tuple(config_changes),
        dataflow=flow,
        dataflow_error=flow_error,
        files=tuple(f for f in files if f.is_change) if files is not None else None,
    )


def _display_names(
    raw_a: Mapping[str, TensorInfo], raw_b: Mapping[str, TensorInfo]
) -> tuple[dict[str, str], dict[str, str]]:
    """The names the module trees use: the tensor's name, prefixed with its component folder
    (``unet/conv_in.weight``) when the versions have several; a tensor's key where that would
    still be ambiguous (two files of one component holding one name)."""
    comps = {i.component for i in raw_a.values()} | {i.component for i in raw_b.values()}
    multi = len(comps) > 1
    out = []
    for raw in (raw_a, raw_b):
        names = {
            k: (f"{i.component}/{i.name}" if multi and i.component else i.name)
            for k, i in raw.items()
        }
        counts: dict[str, int] = {}
        for n in names.values():
            counts[n] = counts.get(n, 0) + 1
        out.append({k: (n if counts[n] == 1 else k) for k, n in names.items()})
    return out[0], out[1]




def _shape(s: Sequence[int] | None) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]" if s is not None else "-"


def _value(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _limited(items: list[str], limit: int | None, indent: str = "  ") -> list[str]:
    if limit is None or len(items) <= limit:
        return items
    return items[:limit] + [f"{indent}... {len(items) - limit} more"]


def _files_text(sd: StructuralDiff, *, color: bool, limit: int | None) -> list[str]:
    if sd.files is None:
        return []
    opaque = sd.opaque_files
    tensor_files = [f for f in sd.files if f.is_tensor_file]
    lines = [""]
    if not sd.files:
        lines.append("files: no changes")
        return lines
    lines.append(
        f"files: {len(sd.files)} differ ({len(opaque)} not read as tensors, "
        f"{len(tensor_files)} holding tensors)"
    )
    items = []
    for f in opaque:
        mark, style = STATUS_MARK[f.status]
        if f.status == "changed":
            what = (
                f"{f.json_changes_total} keys changed" if f.json_changes_total is not None
                else "not read as tensors: its structure is not compared"
            )  # fmt: skip
        else:
            what = f.status
        items.append("  " + paint(f"{mark} {f.path}", style, color) + f"  ({what})")
    lines.extend(_limited(items, limit))
    return lines


def render_structural_text(
    sd: StructuralDiff, *, color: bool = False, limit: int | None = 50
) -> list[str]:
    """Render a structural diff as lines of text.

    Args:
        sd: The diff.
        color: Emit ANSI colours (red: only in a, green: only in b).
        limit: Show at most this many entries per section (``None``: all).

    Returns:
        The lines, without newlines.
    """
    lines = [paint(f"structural diff {sd.a} -> {sd.b}", "bold", color)]
    lines.append(
        f"  modules: {sd.modules_a} in a, {sd.modules_b} in b: "
        f"{len(sd.modules_removed)} removed, {len(sd.modules_added)} added "
        f"(top-most paths)"
    )
    if sd.renamed:
        x, y = sd.renamed[0]
        lines.append(f"  {len(sd.renamed)} tensors paired across a head prefix (e.g. {x} -> {y})")
    if sd.modules:
        lines.append("")
        lines.append("modules:")
        items = []
        for m in sd.modules:
            mark, style = STATUS_MARK[m.status]
            items.append(
                "  "
                + paint(f"{mark} {m.path}", style, color)
                + f"  ({m.tensors} tensors, {m.numel} elements)"
            )
        lines.extend(_limited(items, limit))
    if sd.params:
        lines.append("")
        lines.append("tensors:")
        items = []
        for p in sd.params:
            mark, style = STATUS_MARK[p.status]
            if p.status == "added":
                body = f"{p.dtype_b} {_shape(p.shape_b)}"
            elif p.status == "removed":
                body = f"{p.dtype_a} {_shape(p.shape_a)}"
            else:
                body = f"{p.dtype_a} {_shape(p.shape_a)} -> {p.dtype_b} {_shape(p.shape_b)}"
            items.append("  " + paint(f"{mark} {p.name}", style, color) + "  " + body)
        lines.extend(_limited(items, limit))
    lines.append("")
    if not sd.config_a and not sd.config_b:
        lines.append("config: neither side has a config.json")
    elif not sd.config:
        lines.append("config: no changes")
    else:
        lines.append(f"config: {len(sd.config)} changes")
        items = []
        for c in sd.config:
            mark, style = STATUS_MARK[c.status]
            if c.status == "changed":
                body = f"{_value(c.a)} -> {_value(c.b)}"
            else:
                body = _value(c.b if c.status == "added" else c.a)
            items.append("  " + paint(f"{mark} {c.path}", style, color) + ": " + body)
        lines.extend(_limited(items, limit))
    lines.extend(_files_text(sd, color=color, limit=limit))
    lines.append("")
    fd = sd.dataflow
    if fd is None:
        lines.append(f"dataflow: unavailable ({sd.dataflow_error})")
        return lines
    ga, gb = fd.graph_a, fd.graph_b
    lines.append(
        f"dataflow ({ga.method}, {ga.model_class} -> {gb.model_class}): "
        f"{len(ga.nodes)} nodes in a, {len(gb.nodes)} in b: {len(fd.nodes_removed)} removed, "
        f"{len(fd.nodes_added)} added; edges: {len(fd.edges_removed)} removed, "
        f"{len(fd.edges_added)} added"
    )
    items = []
    for n in fd.nodes_removed:
        items.append("  " + paint(f"- {n}", "red", color) + f"  ({fd.kinds.get(n)})")
    for n in fd.nodes_added:
        items.append("  " + paint(f"+ {n}", "green", color) + f"  ({fd.kinds.get(n)})")
    for n, (ka, kb) in fd.kind_changes.items():
        items.append("  " + paint(f"~ {n}", "magenta", color) + f"  {ka} -> {kb}")
    for s, t in fd.edges_removed:
        items.append("  " + paint(f"- {s} -> {t}", "red", color))
    for s, t in fd.edges_added:
        items.append("  " + paint(f"+ {s} -> {t}", "green", color))
    lines.extend(_limited(items, limit))
    return lines


STRUCTURAL_JSON_SCHEMA_DOC = """\
### `mgit diff --structural --json` (schema 1)

Top level: `schema` (int, `1`), `a`, `b` (labels), `summary`, `modules`, `params`, `renamed`,
`config`, `dataflow`, `dataflow_error`, `files`.

- `summary`: `modules_a`, `modules_b` (int: modules implied by the tensor names),
  `modules_added`, `modules_removed` (int: top-most paths), `params_changed` (int: entries
  of `params`), `renamed` (int), `config_changes` (int), `identical` (bool: nothing
  structural differs **and** every file that holds no tensors is equal), `files_differ` (int:
  entries of `files`), `files_opaque` (int: of them, files holding no tensors, such as a
  `pytorch_model.bin` stored as bytes, whose structure cannot be compared).
- `files`: every file that differs, as in `mgit --json diff`'s `files[]` (`path`, `status`,
  `component`, `size_a`, `size_b`, `tensors_a`, `tensors_b`, `tensors_changed` (0 here:
  values are not read), `json_changes`, `json_changes_total`, `note`); null when the sides
  have no files. Module paths are prefixed with their component folder (`unet/conv_in`)
  when the versions have several.
- `modules[]`: modules present on one side only, at their top-most path:
  `{"path": "encoder.layer.4", "status": "removed"|"added", "tensors": int, "numel": int}`.
- `params[]`: tensors added or removed inside modules both sides have, and tensors whose
  shape or dtype changed: `{"name", "status": "added"|"removed"|"shape_changed"|
  "dtype_changed", "dtype_a", "dtype_b", "shape_a", "shape_b"}` (null on a missing side).
- `renamed[]`: `{"name_a", "name_b"}` tensors paired across a task-head prefix (`bert.`,
  `roberta.`, `model.`, `transformer.`, ...); all other entries use b's names.
- `config`: `{"present_a": bool, "present_b": bool, "changes": [{"path": "a.b.c",
  "status": "added"|"removed"|"changed", "a": value|null, "b": value|null}]}`; nested dicts
  are walked with dotted paths, lists compare whole.
- `dataflow`: null when unavailable (then `dataflow_error` says why: no config, unknown
  model type, the model could not be built or traced), else `{"method_a", "method_b"
  ("torch.export"|"torch.fx"), "model_class_a", "model_class_b", "nodes": [{"name", "kind",
  "status": "common"|"added"|"removed"}], "edges": [{"source", "target", "status"}],
  "kind_changes": [{"name", "kind_a", "kind_b"}], "renamed": [{"name_a", "name_b"}],
  "counts": {"nodes_a", "nodes_b", "nodes_added", "nodes_removed", "edges_a", "edges_b",
  "edges_added", "edges_removed"}}`. Nodes are module paths (the innermost `torch.nn`
  built-in, parameter-owning or leaf module an operation runs in), `input:<name>` for model
  inputs and `output`; an edge means data flows from one node's output into the other,
  through any number of functions.
"""
