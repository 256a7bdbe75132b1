"""Module-level dataflow graphs of models, and their diff.

A model built from its ``config.json`` (on the ``meta`` device, so no weights are allocated)
is traced, and the trace is collapsed to a graph whose nodes are modules and whose edges are
data flowing from one module's output to another module's input. Operations that belong to
no node module (functions, tensor methods, the glue code of container modules such as
``BertSelfAttention``'s matmul/softmax) are collapsed through, so their inputs connect
directly to their consumers.

A *node module* is the innermost module an operation runs in, when that module is a
``torch.nn`` built-in (``Linear``, ``LayerNorm``, ``Embedding``, ``Dropout``, activations),
has no child modules, or owns parameters directly (custom norms such as ``LlamaRMSNorm``).
Inputs of the model are nodes ``input:<name>``; the outputs meet in a node ``output``.

Tracing uses ``torch.export`` (non-strict), which handles transformers 5 models (they no
longer ship ``transformers.utils.fx``); ``torch.fx.symbolic_trace`` is the fallback, with its
``call_module`` targets as nodes. Anything that fails raises :class:`DataflowError` with the
reason, which callers report instead of crashing.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mgit.diff.names import (
    DEFAULT_HEAD_PREFIXES,
    apply_prefix_change,
    dominant_prefix_change,
    pair_names,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "DataflowError",
    "DataflowGraph",
    "DataflowDiff",
    "OUTPUT_NODE",
    "INPUT_PREFIX",
    "build_model_from_config",
    "module_dataflow",
    "dataflow_from_config",
    "diff_dataflow",
]

#: Name of the node where the model's outputs meet.
OUTPUT_NODE = "output"
#: Prefix of the nodes for the model's inputs (``input:input_ids``).
INPUT_PREFIX = "input:"

_SEQ_LEN = 8
# An untrusted config.json could ask for a model that takes forever to build and trace.
_MAX_LAYERS = 512
_LAYER_KEYS = (
    "num_hidden_layers",
    "n_layer",
    "num_layers",
    "encoder_layers",
    "decoder_layers",
    "num_decoder_layers",
)
_CALL_SUFFIX = re.compile(r"@\d+$")


class DataflowError(Exception):
    """A model could not be built from its config or traced.

    The structural diff catches it and reports ``str(error)`` as its ``dataflow_error``.
    """


@dataclass(frozen=True)
class DataflowGraph:
    """A module-level dataflow graph.

    Attributes:
        nodes: Node name (a module path, ``input:<name>`` or ``output``) to its kind (the
            module's class name, ``input`` or ``output``), in order of first use in the trace.
        edges: Distinct ``(source, target)`` pairs, in order of first use.
        method: ``"torch.export"`` or ``"torch.fx"``.
        model_class: Class name of the traced model.
    """

    nodes: dict[str, str]
    edges: tuple[tuple[str, str], ...]
    method: str
    model_class: str

    def to_json(self) -> dict[str, Any]:
        """Return ``{"nodes": [{"name", "kind"}], "edges": [[src, dst]], "method", ...}``."""
        return {
            "method": self.method,
            "model_class": self.model_class,
            "nodes": [{"name": n, "kind": k} for n, k in self.nodes.items()],
            "edges": [[s, t] for s, t in self.edges],
        }


@dataclass(frozen=True)
class DataflowDiff:
    """The difference of two dataflow graphs.

    Node names of a that pair with names of b across a task-head prefix (see
    :func:`~mgit.diff.names.pair_names`) are renamed to b's names first.

    Attributes:
        nodes: Every node of either graph to ``"common"``, ``"added"`` (only in b) or
            ``"removed"`` (only in a): a's nodes in trace order, then b's new ones.
        kinds: Node to kind (b's kind where the node is in b).
        kind_changes: Nodes in both graphs whose kind differs: node -> (kind_a, kind_b).
        edges: Every edge of either graph to its status, like ``nodes``.
        renamed: Node name in a -> name in b, for nodes paired across a prefix. Nodes of a
            without a partner are shown with the prevailing prefix change applied
            (``encoder.layer.2.x`` of a base model as ``bert.encoder.layer.2.x``).
        graph_a: The first graph.
        graph_b: The second graph.
    """

    nodes: dict[str, str]
    kinds: dict[str, str]
    kind_changes: dict[str, tuple[str, str]]
    edges: dict[tuple[str, str], str]
    renamed: dict[str, str]
    graph_a: DataflowGraph
    graph_b: DataflowGraph

    def _select(self, table: Mapping[Any, str], status: str) -> list[Any]:
        return [k for k, v in table.items() if v == status]

    @property
    def nodes_added(self) -> list[str]:
        """Nodes only in b."""
        return self._select(self.nodes, "added")

    @property
    def nodes_removed(self) -> list[str]:
        """Nodes only in a."""
        return self._select(self.nodes, "removed")

    @property
    def edges_added(self) -> list[tuple[str, str]]:
        """Edges only in b."""
        return self._select(self.edges, "added")

    @property
    def edges_removed(self) -> list[tuple[str, str]]:
        """Edges only in a."""
        return self._select(self.edges, "removed")

    @property
    def identical(self) -> bool:
        """True if the graphs have the same nodes, kinds and edges."""
        return (
            all(v == "common" for v in self.nodes.values())
            and all(v == "common" for v in self.edges.values())
            and not self.kind_changes
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (see ``STRUCTURAL_JSON_SCHEMA_DOC``)."""
        return {
            "method_a": self.graph_a.method,
            "method_b": self.graph_b.method,
            "model_class_a": self.graph_a.model_class,
            "model_class_b": self.graph_b.model_class,
            "nodes": [
                {"name": n, "kind": self.kinds.get(n), "status": s} for n, s in self.nodes.items()
            ],
            "edges": [{"source": e[0], "target": e[1], "status": s} for e, s in self.edges.items()],
            "kind_changes": [
                {"name": n, "kind_a": ka, "kind_b": kb} for n, (ka, kb) in self.kind_changes.items()
            ],
            "renamed": [{"name_a": x, "name_b": y} for x, y in self.renamed.items()],
            "counts": {
                "nodes_a": len(self.graph_a.nodes),
                "nodes_b": len(self.graph_b.nodes),
                "nodes_added": len(self.nodes_added),
                "nodes_removed": len(self.nodes_removed),
                "edges_a": len(self.graph_a.edges),
                "edges_b": len(self.graph_b.edges),
                "edges_added": len(self.edges_added),
                "edges_removed": len(self.edges_removed),
            },
        }


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_model_from_config(config: Mapping[str, Any]) -> torch.nn.Module:
    """Build a transformers model from a ``config.json`` dict on the ``meta`` device.

    The class is the first entry of ``architectures`` if transformers has it, else
    ``AutoModel`` for the ``model_type``. No remote code is run and no weights are allocated.

    Args:
        config: The parsed ``config.json``; needs ``model_type``.

    Returns:
        The model, in eval mode, with eager attention where the class supports it.

    Raises:
        DataflowError: transformers is missing, the config has no usable ``model_type``, or
            the model cannot be built.
    """
    try:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataflowError(f"needs torch and transformers: {_short_error(exc)}") from exc

    cfg = dict(config)
    model_type = cfg.pop("model_type", None)
    if not isinstance(model_type, str) or not model_type:
        raise DataflowError("config.json has no model_type")
    cfg.pop("auto_map", None)  # never follow remote code
    for key in _LAYER_KEYS:
        n = cfg.get(key)
        if isinstance(n, int) and n > _MAX_LAYERS:
            raise DataflowError(f"config has {key}={n}; tracing is limited to {_MAX_LAYERS}")
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                hf_config = AutoConfig.for_model(model_type, **cfg)
            except Exception as exc:  # noqa: BLE001 - any config error is reported, not raised
                raise DataflowError(f"cannot read config: {_short_error(exc)}") from exc
            cls: Any = None
            archs = cfg.get("architectures") or []
            if isinstance(archs, list) and archs and isinstance(archs[0], str):
                candidate = getattr(transformers, archs[0], None)
                if isinstance(candidate, type) and issubclass(
                    candidate, transformers.PreTrainedModel
                ):
                    cls = candidate
            try:
                with torch.device("meta"):
                    if cls is not None:
                        model = _construct(cls._from_config, hf_config)
                    else:
                        model = _construct(AutoModel.from_config, hf_config)
            except DataflowError:
                raise
            except Exception as exc:  # noqa: BLE001 - third-party model code can raise anything
                raise DataflowError(f"cannot build model: {_short_error(exc)}") from exc
    finally:
        transformers.logging.set_verbosity(level)
    model.eval()
    return cast("torch.nn.Module", model)


def _construct(factory: Any, hf_config: Any) -> Any:
    try:
        return factory(hf_config, attn_implementation="eager")
    except (TypeError, ValueError):
        return factory(hf_config)


def _example_inputs(model: Any) -> dict[str, Any]:
    import torch

    config = getattr(model, "config", None)
    main = getattr(model, "main_input_name", "input_ids")
    kwargs: dict[str, Any] = {}
    if main == "input_ids":
        kwargs["input_ids"] = torch.zeros((1, _SEQ_LEN), dtype=torch.long, device="meta")
    elif main == "pixel_values":
        vision = getattr(config, "vision_config", None) or config
        size = getattr(vision, "image_size", 224)
        if isinstance(size, (list, tuple)):
            h, w = int(size[0]), int(size[-1])
        elif isinstance(size, dict):
            h, w = int(size.get("height", 224)), int(size.get("width", 224))
        else:
            h = w = int(size)
        channels = int(getattr(vision, "num_channels", 3))
        kwargs["pixel_values"] = torch.zeros((1, channels, h, w), device="meta")
    elif main == "input_values":
        kwargs["input_values"] = torch.zeros((1, 16000), device="meta")
    elif main == "input_features":
        bins = int(getattr(config, "num_mel_bins", 80))
        kwargs["input_features"] = torch.zeros((1, bins, 3000), device="meta")
    else:
        raise DataflowError(f"do not know how to make an example input {main!r}")
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        kwargs["decoder_input_ids"] = torch.zeros((1, _SEQ_LEN), dtype=torch.long, device="meta")
    if "use_cache" in params:
        kwargs["use_cache"] = False
    return kwargs


def _is_node_module(module: Any) -> bool:
    cls = type(module)
    if cls.__module__.startswith("torch.nn"):
        return True
    if not any(True for _ in module.children()):
        return True
    return any(p is not None for p in module._parameters.values())


class _Collapser:
    """Builds the module graph from a traced op graph (see the module docstring)."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}
        self.edges: dict[tuple[str, str], None] = {}
        self.reach: dict[Any, frozenset[str]] = {}

    def source(self, fx_node: Any, name: str | None, kind: str = "input") -> None:
        if name is None:
            self.reach[fx_node] = frozenset()
        else:
            self.nodes.setdefault(name, kind)
            self.reach[fx_node] = frozenset((name,))

    def op(self, fx_node: Any, owner: str | None, kind: str | None) -> None:
        incoming: set[str] = set()
        for arg in fx_node.all_input_nodes:
            incoming |= self.reach.get(arg, frozenset())
        if owner is None:
            self.reach[fx_node] = frozenset(incoming)
            return
        self.nodes.setdefault(owner, kind or "Module")
        for src in sorted(incoming):
            if src != owner:
                self.edges.setdefault((src, owner), None)
        self.reach[fx_node] = frozenset((owner,))

    def output(self, fx_node: Any) -> None:
        incoming: set[str] = set()
        for arg in fx_node.all_input_nodes:
            incoming |= self.reach.get(arg, frozenset())
        self.nodes.setdefault(OUTPUT_NODE, "output")
        for src in sorted(incoming):
            self.edges.setdefault((src, OUTPUT_NODE), None)

    def graph(self, method: str, model_class: str) -> DataflowGraph:
        return DataflowGraph(
            nodes=dict(self.nodes),
            edges=tuple(self.edges),
            method=method,
            model_class=model_class,
        )


def _graph_from_export(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DataflowGraph:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, args, kwargs, strict=False)
    modules = dict(model.named_modules())
    user_inputs = set(ep.graph_signature.user_inputs)
    node_cache: dict[str, str | None] = {}

    def owner_of(fx_node: Any) -> str | None:
        stack = fx_node.meta.get("nn_module_stack") or {}
        if not stack:
            return None
        fqn = _CALL_SUFFIX.sub("", str(list(stack.values())[-1][0]))
        if fqn not in node_cache:
            mod = modules.get(fqn)
            node_cache[fqn] = fqn if (fqn and mod is not None and _is_node_module(mod)) else None
        return node_cache[fqn]

    col = _Collapser()
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            col.source(n, INPUT_PREFIX + n.name if n.name in user_inputs else None)
        elif n.op == "output":
            col.output(n)
        elif n.op in ("call_function", "call_method", "call_module"):
            owner = owner_of(n)
            kind = type(modules[owner]).__name__ if owner is not None else None
            col.op(n, owner, kind)
        else:
            col.source(n, None)
    return col.graph("torch.export", type(model).__name__)


def _graph_from_fx(model: Any) -> DataflowGraph:
    import torch.fx

    traced = torch.fx.symbolic_trace(model)
    modules = dict(model.named_modules())
    col = _Collapser()
    for n in traced.graph.nodes:
        if n.op == "placeholder":
            col.source(n, INPUT_PREFIX + str(n.target))
        elif n.op == "output":
            col.output(n)
        elif n.op == "call_module":
            target = str(n.target)
            col.op(n, target, type(modules[target]).__name__ if target in modules else None)
        elif n.op in ("call_function", "call_method"):
            col.op(n, None, None)
        else:
            col.source(n, None)
    return col.graph("torch.fx", type(model).__name__)


def module_dataflow(
    model: torch.nn.Module,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> DataflowGraph:
    """Trace a module and return its module-level dataflow graph.

    Tries ``torch.export`` with the given example inputs, then ``torch.fx.symbolic_trace``.

    Args:
        model: The module (on any device; ``meta`` avoids computing anything).
        args: Positional example inputs.
        kwargs: Keyword example inputs.

    Returns:
        The graph.

    Raises:
        DataflowError: Neither tracer could trace the module; the message gives both reasons.
    """
    errors: list[str] = []
    try:
        return _graph_from_export(model, args, dict(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - tracing third-party code can raise anything
        errors.append(f"torch.export: {_short_error(exc)}")
    try:
        return _graph_from_fx(model)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"torch.fx: {_short_error(exc)}")
    raise DataflowError("cannot trace model (" + "; ".join(errors) + ")")


def dataflow_from_config(config: Mapping[str, Any]) -> DataflowGraph:
    """Build the model of a ``config.json`` on the meta device and trace its dataflow.

    Args:
        config: The parsed ``config.json`` (needs ``model_type``).

    Returns:
        The module-level dataflow graph.

    Raises:
        DataflowError: The model cannot be built or traced.
    """
    model = build_model_from_config(config)
    kwargs = _example_inputs(model)
    return module_dataflow(model, (), kwargs)


def _ordered_union(first: Iterable[str], second: Sequence[str]) -> list[str]:
    seen = dict.fromkeys(first)
    for n in second:
        seen.setdefault(n, None)
    return list(seen)


def diff_dataflow(
    a: DataflowGraph,
    b: DataflowGraph,
    *,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
) -> DataflowDiff:
    """Compare two dataflow graphs.

    Args:
        a: The first graph.
        b: The second graph.
        prefixes: Task-head prefixes across which node names of a and b pair (so a base model
            and its task model line up); ``()`` to compare names as they are.

    Returns:
        The diff.
    """

    def special(n: str) -> bool:
        return n == OUTPUT_NODE or n.startswith(INPUT_PREFIX)

    pairs = pair_names(
        [n for n in a.nodes if not special(n)],
        [n for n in b.nodes if not special(n)],
        prefixes=prefixes,
    )
    renamed: dict[str, str] = {}
    for na, nb in pairs:
        if na is not None and nb is not None and na != nb:
            renamed[na] = nb
    # Unpaired nodes of a follow the prevailing prefix change, unless that would collide.
    change = dominant_prefix_change(pairs, prefixes=prefixes)
    mapping = {
        n: n if special(n) else renamed.get(n, apply_prefix_change(n, change)) for n in a.nodes
    }
    if len(set(mapping.values())) != len(mapping) or any(
        mapping[x] in b.nodes for x, y in pairs if x is not None and y is None
    ):
        mapping = {n: renamed.get(n, n) for n in a.nodes}

    def ren(n: str) -> str:
        return mapping[n]

    nodes_a = {ren(n): k for n, k in a.nodes.items()}
    edges_a = [(ren(s), ren(t)) for s, t in a.edges]
    set_edges_a = set(edges_a)
    set_edges_b = set(b.edges)
    order = _ordered_union(nodes_a, list(b.nodes))
    nodes: dict[str, str] = {}
    kinds: dict[str, str] = {}
    kind_changes: dict[str, tuple[str, str]] = {}
    for n in order:
        in_a, in_b = n in nodes_a, n in b.nodes
        nodes[n] = "common" if in_a and in_b else ("removed" if in_a else "added")
        kinds[n] = b.nodes[n] if in_b else nodes_a[n]
        if in_a and in_b and nodes_a[n] != b.nodes[n]:
            kind_changes[n] = (nodes_a[n], b.nodes[n])
    edges: dict[tuple[str, str], str] = {}
    for e in list(dict.fromkeys(edges_a)) + [e for e in b.edges if e not in set_edges_a]:
        in_a, in_b = e in set_edges_a, e in set_edges_b
        edges[e] = "common" if in_a and in_b else ("removed" if in_a else "added")
    return DataflowDiff(
        nodes=nodes,
        kinds=kinds,
        kind_changes=kind_changes,
        edges=edges,
        renamed=renamed,
        graph_a=a,
        graph_b=b,
    )
