"""Structural diff: module tree, config.json, dataflow graphs, HTML page."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import numpy as np
import pytest

from mgit.diff import (
    STRUCTURAL_JSON_SCHEMA_DOC,
    DataflowError,
    DictTensorSource,
    diff_models,
    structural_diff,
    structural_html,
)
from mgit.diff.dataflow import DataflowGraph, diff_dataflow, module_dataflow
from mgit.diff.layout import layered_layout
from mgit.diff.structural import diff_configs, module_paths, render_structural_text


def bert_like(
    layers: int = 2, *, hidden: int = 32, inter: int = 64, vocab: int = 100, prefix: str = ""
) -> dict[str, np.ndarray]:
    """Tensors named like a BERT model (zeros: structure is all that matters here)."""
    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": np.zeros((vocab, hidden), np.float32),
        "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for m in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "output.dense",
        ):
            t[p + m + ".weight"] = np.zeros((hidden, hidden), np.float32)
            t[p + m + ".bias"] = np.zeros(hidden, np.float32)
        t[p + "intermediate.dense.weight"] = np.zeros((inter, hidden), np.float32)
    t["pooler.dense.weight"] = np.zeros((hidden, hidden), np.float32)
    return {prefix + k: v for k, v in t.items()}


def tiny_bert_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 100,
        "max_position_embeddings": 64,
        "transformers_version": "5.0.0",
    }
    cfg.update(overrides)
    return cfg


# --------------------------------------------------------------------------------------
# module tree and config (no torch)


def test_pruned_layers_show_as_removed_modules() -> None:
    a = DictTensorSource("full", bert_like(6), tiny_bert_config(num_hidden_layers=6))
    b = DictTensorSource("pruned", bert_like(4), tiny_bert_config(num_hidden_layers=4))
    sd = structural_diff(a, b, dataflow=False)
    assert sd.modules_removed == ["encoder.layer.4", "encoder.layer.5"]
    assert sd.modules_added == []
    removed = {m.path: m for m in sd.modules}
    assert removed["encoder.layer.4"].tensors == 11
    assert removed["encoder.layer.4"].numel == 5 * (32 * 32 + 32) + 64 * 32
    assert sd.params == ()
    assert [(c.path, c.status, c.a, c.b) for c in sd.config] == [
        ("num_hidden_layers", "changed", 6, 4)
    ]
    assert sd.dataflow is None and sd.dataflow_error
    text = "\n".join(render_structural_text(sd))
    assert "- encoder.layer.4" in text and "- encoder.layer.5" in text
    assert "num_hidden_layers: 6 -> 4" in text
    colored = "\n".join(sd.to_lines(color=True))
    assert "\x1b[31m- encoder.layer.4" in colored


def test_vocab_extension_shows_shape_change() -> None:
    a = DictTensorSource("a", bert_like(1, vocab=30522, hidden=8))
    b = DictTensorSource("b", bert_like(1, vocab=30600, hidden=8))
    sd = structural_diff(a, b)
    assert sd.modules == ()
    assert [(p.name, p.status, p.shape_a, p.shape_b) for p in sd.params] == [
        ("embeddings.word_embeddings.weight", "shape_changed", (30522, 8), (30600, 8))
    ]
    assert "[30522, 8] -> F32 [30600, 8]" in "\n".join(sd.to_lines())
    assert sd.dataflow_error == "neither side has a config.json"


def test_params_added_inside_common_modules_and_dtype_changes() -> None:
    ta = bert_like(1)
    tb = dict(ta)
    del tb["encoder.layer.0.output.dense.bias"]
    tb["encoder.layer.0.intermediate.dense.bias"] = np.zeros(64, np.float32)
    tb["pooler.dense.weight"] = ta["pooler.dense.weight"].astype(np.float16)
    sd = structural_diff(DictTensorSource("a", ta), DictTensorSource("b", tb), dataflow=False)
    assert [(p.name, p.status) for p in sd.params] == [
        ("encoder.layer.0.intermediate.dense.bias", "added"),
        ("encoder.layer.0.output.dense.bias", "removed"),
        ("pooler.dense.weight", "dtype_changed"),
    ]


def test_reprefixed_names_pair_in_module_tree() -> None:
    a = DictTensorSource("base", bert_like(2))
    tb = bert_like(2, prefix="bert.")
    tb["classifier.weight"] = np.zeros((2, 32), np.float32)
    sd = structural_diff(a, DictTensorSource("task", tb), dataflow=False)
    assert sd.modules_added == ["classifier"]
    assert sd.modules_removed == []
    assert len(sd.renamed) == len(bert_like(2))
    assert ("embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.weight") in sd.renamed
    unpaired = structural_diff(a, DictTensorSource("task", tb), dataflow=False, prefixes=())
    assert "bert" in unpaired.modules_added and "embeddings" in unpaired.modules_removed


def test_diff_configs_nested() -> None:
    a = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": True, "gone": None}
    b = {"a": 1, "b": {"c": 3, "d": [1, 2, 3], "new": "x"}, "e": 1, "f": 0.5}
    got = [(c.path, c.status) for c in diff_configs(a, b)]
    assert got == [
        ("b.c", "changed"),
        ("b.d", "changed"),
        ("b.new", "added"),
        ("e", "changed"),
        ("f", "added"),
        ("gone", "removed"),
    ]
    assert diff_configs(None, None) == []
    assert [c.status for c in diff_configs(None, {"x": 1})] == ["added"]
    assert diff_configs({"x": float("nan")}, {"x": float("nan")}) == []


def test_module_paths() -> None:
    assert module_paths(["a.b.c", "a.d", "w"]) == {"a", "a.b"}


def test_structural_json_schema() -> None:
    a = DictTensorSource("a<1>", bert_like(2), tiny_bert_config())
    b = DictTensorSource("b", bert_like(1), {"model_type": "no-such-model"})
    sd = structural_diff(a, b, dataflow=False)
    doc = sd.to_json()
    json.dumps(doc, allow_nan=False)
    assert set(doc) == {
        "schema",
        "a",
        "b",
        "summary",
        "modules",
        "params",
        "renamed",
        "config",
        "dataflow",
        "dataflow_error",
        "files",  # added to schema 1: the files that differ (null: arrays in memory have none)
    }
    assert doc["files"] is None
    assert doc["summary"]["files_differ"] == 0 and doc["summary"]["files_opaque"] == 0
    assert doc["summary"]["modules_removed"] == 1
    assert doc["modules"] == [
        {
            "path": "encoder.layer.1",
            "status": "removed",
            "tensors": 11,
            "numel": 11 * 0 + 5 * (32 * 32 + 32) + 64 * 32,
        }
    ]
    assert doc["config"]["present_a"] and doc["config"]["present_b"]
    for key in ("`modules[]`", "`params[]`", "`config`", "`dataflow`", "`dataflow_error`", "`files`"):
        assert key in STRUCTURAL_JSON_SCHEMA_DOC


def test_unbuildable_config_reports_dataflow_error() -> None:
    a = DictTensorSource("a", bert_like(1), {"model_type": "no-such-model"})
    b = DictTensorSource("b", bert_like(1), {"hidden_size": 3})
    sd = structural_diff(a, b)
    assert sd.dataflow is None
    assert sd.dataflow_error is not None
    assert "a:" in sd.dataflow_error and "b:" in sd.dataflow_error
    assert "model_type" in sd.dataflow_error
    assert "dataflow: unavailable" in "\n".join(sd.to_lines())
    page = structural_html(sd)
    assert "Dataflow graph unavailable" in page


# --------------------------------------------------------------------------------------
# layout and HTML (no torch)


def _toy_flow(a_edges: list[tuple[str, str]], b_edges: list[tuple[str, str]]) -> Any:
    def graph(edges: list[tuple[str, str]]) -> DataflowGraph:
        nodes = {n: "Linear" for e in edges for n in e}
        return DataflowGraph(nodes, tuple(edges), "torch.export", "Toy")

    return diff_dataflow(graph(a_edges), graph(b_edges))


def test_layered_layout_puts_edges_downwards() -> None:
    nodes = ["in", "q", "k", "v", "attn", "ln", "out"]
    edges = [
        ("in", "q"),
        ("in", "k"),
        ("in", "v"),
        ("q", "attn"),
        ("k", "attn"),
        ("v", "attn"),
        ("attn", "ln"),
        ("in", "ln"),
        ("ln", "out"),
        ("out", "out"),
    ]
    place = layered_layout(nodes, edges)
    for u, v in edges:
        if u != v:
            assert place[u][0] < place[v][0]
    assert {place[n][0] for n in ("q", "k", "v")} == {1}
    assert sorted(place[n][1] for n in ("q", "k", "v")) == [0, 1, 2]
    # A cycle does not hang or crash.
    cyc = layered_layout(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])
    assert cyc["a"][0] == 0 and cyc["b"][0] < cyc["c"][0]


def test_html_is_self_contained_escaped_and_coloured() -> None:
    fd = _toy_flow(
        [("input:x", "l1"), ("l1", "<b>evil</b>"), ("<b>evil</b>", "output")],
        [("input:x", "l1"), ("l1", "l2"), ("l2", "output")],
    )
    assert fd.nodes_removed == ["<b>evil</b>"] and fd.nodes_added == ["l2"]
    a = DictTensorSource(
        "<script>alert(1)</script>", bert_like(2), {"model_type": "x", "k": "</td><script>"}
    )
    b = DictTensorSource("b&co", bert_like(1), {"model_type": "x", "k": 2})
    sd = structural_diff(a, b, dataflow=False)
    sd = type(sd)(**{**sd.__dict__, "dataflow": fd, "dataflow_error": None})
    page = structural_html(sd)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "</td><script>" not in page
    assert "b&amp;co" in page
    # Colours: red removed, green added, grey common.
    assert 'class="node removed"' in page and "#d1242f" in page
    assert 'class="node added"' in page and "#1a7f37" in page
    assert 'class="node common"' in page and "#8c959f" in page
    assert 'class="edge removed"' in page and 'class="edge added"' in page
    # No network: no external scripts, styles or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and "@import" not in page
    assert page.count("<script>") == 1


# --------------------------------------------------------------------------------------
# dataflow (torch + transformers)


@pytest.mark.slow
def test_dataflow_diff_of_two_tiny_berts() -> None:
    start = time.monotonic()
    a = DictTensorSource("l2", bert_like(2), tiny_bert_config(num_hidden_layers=2))
    b = DictTensorSource("l1", bert_like(1), tiny_bert_config(num_hidden_layers=1))
    sd = structural_diff(a, b)
    assert sd.dataflow_error is None, sd.dataflow_error
    fd = sd.dataflow
    assert fd is not None
    assert fd.graph_a.method == "torch.export" and fd.graph_a.model_class == "BertModel"
    removed = set(fd.nodes_removed)
    assert "encoder.layer.1.attention.self.query" in removed
    assert "encoder.layer.1.output.LayerNorm" in removed
    assert all(n.startswith("encoder.layer.1.") for n in removed)
    assert fd.nodes_added == []
    assert (
        "encoder.layer.0.output.LayerNorm",
        "encoder.layer.1.attention.self.query",
    ) in fd.edges_removed
    assert (
        "encoder.layer.1.attention.self.query",
        "encoder.layer.1.attention.output.dense",
    ) in fd.edges_removed
    assert ("encoder.layer.0.output.LayerNorm", "pooler.dense") in fd.edges_added
    # The common part is wired as in BERT.
    common = {e for e, s in fd.edges.items() if s == "common"}
    assert ("input:input_ids", "embeddings.word_embeddings") in common
    assert (
        "encoder.layer.0.attention.self.value",
        "encoder.layer.0.attention.output.dense",
    ) in common
    assert ("pooler.activation", "output") in common
    assert fd.kinds["encoder.layer.0.attention.self.query"] == "Linear"
    # Text, JSON and HTML outputs.
    text = "\n".join(sd.to_lines(limit=None))
    assert "- encoder.layer.1.attention.self.query" in text
    assert "+ encoder.layer.0.output.LayerNorm -> pooler.dense" in text
    doc = sd.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["dataflow"]["counts"]["nodes_removed"] == len(removed)
    statuses = {n["name"]: n["status"] for n in doc["dataflow"]["nodes"]}
    assert statuses["encoder.layer.1.output.dense"] == "removed"
    page = structural_html(sd)
    assert 'data-name="encoder.layer.1.attention.self.query"' in page
    assert time.monotonic() - start < 20


@pytest.mark.slow
def test_dataflow_same_config_traces_once_and_is_identical() -> None:
    cfg = tiny_bert_config(num_hidden_layers=1)
    a = DictTensorSource("a", bert_like(1), cfg)
    b = DictTensorSource("b", bert_like(1), dict(cfg, transformers_version="5.9.9"))
    sd = structural_diff(a, b)
    assert sd.dataflow is not None and sd.dataflow.identical
    assert sd.dataflow.graph_a is sd.dataflow.graph_b
    assert [c.path for c in sd.config] == ["transformers_version"]


@pytest.mark.slow
def test_base_model_vs_task_model_with_real_weights() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=64,
        num_labels=3,
    )
    task = transformers.BertForSequenceClassification(cfg).eval()
    base = task.bert

    def numpy_state(model: Any) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    base_t, task_t = numpy_state(base), numpy_state(task)
    cfg_base = dict(cfg.to_dict(), architectures=["BertModel"])
    cfg_task = dict(cfg.to_dict(), architectures=["BertForSequenceClassification"])
    # Head-only finetune: only the classifier changes.
    tuned = dict(task_t)
    tuned["classifier.weight"] = tuned["classifier.weight"] + 0.1
    d = diff_models(DictTensorSource("task", task_t), DictTensorSource("tuned", tuned))
    assert {t.name for t in d.changes()} == {"classifier.weight"}
    # Base vs task model: names pair across "bert.", only the head is new.
    d2 = diff_models(DictTensorSource("base", base_t), DictTensorSource("task", task_t))
    assert d2.summary.renamed == len(base_t)
    assert {t.name for t in d2.changes()} == {"classifier.weight", "classifier.bias"}
    sd = structural_diff(
        DictTensorSource("base", base_t, cfg_base), DictTensorSource("task", task_t, cfg_task)
    )
    assert sd.modules_added == ["classifier"]
    assert sd.dataflow is not None, sd.dataflow_error
    assert set(sd.dataflow.nodes_added) == {"dropout", "classifier"}
    assert sd.dataflow.nodes_removed == []
    assert ("bert.pooler.activation", "output") in sd.dataflow.edges_removed
    assert ("classifier", "output") in sd.dataflow.edges_added


def test_module_dataflow_of_plain_module_and_failure() -> None:
    torch = pytest.importorskip("torch")

    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(4, 4)
            self.act = torch.nn.ReLU()
            self.out = torch.nn.Linear(4, 2)

        def forward(self, x: Any) -> Any:
            return self.out(self.act(self.inp(x)) + x)

    g = module_dataflow(Shared(), (torch.zeros(1, 4),))
    assert list(g.nodes) == ["input:x", "inp", "act", "out", "output"]
    assert set(g.edges) == {
        ("input:x", "inp"),
        ("inp", "act"),
        ("act", "out"),
        ("input:x", "out"),
        ("out", "output"),
    }

    class DataDependent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x: Any) -> Any:
            if self.lin(x).sum() > 0:
                return x
            return -x

    with pytest.raises(DataflowError) as info:
        module_dataflow(DataDependent().to("meta"), (torch.zeros(1, 4, device="meta"),))
    assert "torch.export" in str(info.value) and "torch.fx" in str(info.value)
