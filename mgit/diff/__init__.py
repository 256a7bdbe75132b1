"""Model diff: which tensors changed between two model versions, and by how much.

Also how the structure (module tree, config, dataflow graph) differs.

The engine is pure library code: each side is a :class:`TensorSource` (the repository
provides one per commit; :class:`DictTensorSource` holds arrays in memory).

- :func:`diff_models` -> :class:`ModelDiff` (``to_json()``, schema :data:`JSON_SCHEMA_DOC`);
  :func:`render_text` renders it.
- :func:`structural_diff` -> :class:`StructuralDiff` (``to_json()``, ``to_lines()``, schema
  :data:`STRUCTURAL_JSON_SCHEMA_DOC`); :func:`structural_html` renders a page.
- :func:`pair_names` pairs tensor names across task-head prefixes; :func:`pair_tensors` pairs
  the tensors of two sources by file and name first.
- :mod:`mgit.diff.files` compares every file; :mod:`mgit.diff.quant` dequantizes quantized
  weights before they are compared; :mod:`mgit.diff.lora` measures a PEFT LoRA adapter.

torch and transformers are imported only by the dataflow part, when it runs.
"""

from __future__ import annotations

from mgit.diff.dataflow import (
    DataflowDiff,
    DataflowError,
    DataflowGraph,
    dataflow_from_config,
    diff_dataflow,
    module_dataflow,
)
from mgit.diff.files import FileDiff, LayoutChange
from mgit.diff.html import structural_html
from mgit.diff.lora import LoraDiff, LoraModule
from mgit.diff.model_diff import (
    JSON_SCHEMA_DOC,
    STATUSES,
    DiffSummary,
    GroupSummary,
    ModelDiff,
    TensorDiff,
    diff_models,
)
from mgit.diff.names import block_of, module_of, pair_names, pair_tensors
from mgit.diff.quant import DequantSource, QuantInfo
from mgit.diff.render import render_text
from mgit.diff.source import DictTensorSource, FileInfo, TensorInfo, TensorSource
from mgit.diff.stats import RankEstimate, TensorStats
from mgit.diff.structural import (
    STRUCTURAL_JSON_SCHEMA_DOC,
    ConfigChange,
    ModuleChange,
    ParamChange,
    StructuralDiff,
    render_structural_text,
    structural_diff,
)

__all__ = [
    "TensorInfo",
    "FileInfo",
    "FileDiff",
    "LayoutChange",
    "LoraDiff",
    "LoraModule",
    "QuantInfo",
    "DequantSource",
    "pair_tensors",
    "TensorSource",
    "DictTensorSource",
    "TensorStats",
    "RankEstimate",
    "TensorDiff",
    "GroupSummary",
    "DiffSummary",
    "ModelDiff",
    "STATUSES",
    "diff_models",
    "render_text",
    "JSON_SCHEMA_DOC",
    "pair_names",
    "module_of",
    "block_of",
    "StructuralDiff",
    "ModuleChange",
    "ParamChange",
    "ConfigChange",
    "structural_diff",
    "render_structural_text",
    "structural_html",
    "STRUCTURAL_JSON_SCHEMA_DOC",
    "DataflowGraph",
    "DataflowDiff",
    "DataflowError",
    "dataflow_from_config",
    "module_dataflow",
    "diff_dataflow",
]
