"""Tensor-level model diff: statuses, statistics, grouping, JSON and text rendering."""

from __future__ import annotations

import json
import math
import weakref

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgit.diff import (
    JSON_SCHEMA_DOC,
    STATUSES,
    DictTensorSource,
    TensorInfo,
    TensorSource,
    diff_models,
    render_text,
)
from mgit.diff.names import block_of, module_of, pair_names, strip_head_prefix
from mgit.diff.render import ANSI
from mgit.diff.stats import compute_stats, estimate_rank


def bert_like(
    layers: int = 2,
    *,
    hidden: int = 32,
    inter: int = 64,
    vocab: int = 100,
    seed: int = 0,
    head: bool = True,
    prefix: str = "",
) -> dict[str, np.ndarray]:
    """Tensors named like a BERT model (random values)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": w(vocab, hidden),
        "embeddings.position_embeddings.weight": w(64, hidden),
        "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(hidden, np.float32),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for m in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            t[p + m + ".weight"] = w(hidden, hidden)
            t[p + m + ".bias"] = w(hidden)
        t[p + "attention.output.LayerNorm.weight"] = np.ones(hidden, np.float32)
        t[p + "intermediate.dense.weight"] = w(inter, hidden)
        t[p + "intermediate.dense.bias"] = w(inter)
        t[p + "output.dense.weight"] = w(hidden, inter)
        t[p + "output.LayerNorm.weight"] = np.ones(hidden, np.float32)
    t["pooler.dense.weight"] = w(hidden, hidden)
    t = {prefix + k: v for k, v in t.items()}
    if head:
        t["classifier.weight"] = w(2, hidden)
        t["classifier.bias"] = np.zeros(2, np.float32)
    return t


class RaisingSource(DictTensorSource):
    """A source whose load() fails: proves that nothing was read."""

    def load(self, name: str) -> np.ndarray:
        raise AssertionError(f"load({name!r}) should not have been called")


# --------------------------------------------------------------------------------------
# sources


def test_dict_source_is_a_tensor_source() -> None:
    src = DictTensorSource("a", {"w": np.zeros((2, 3), np.float32)}, config={"x": 1})
    assert isinstance(src, TensorSource)
    info = src.tensors()["w"]
    assert info == TensorInfo("w", "F32", (2, 3), info.content_id)
    assert info.numel == 6
    assert src.config() == {"x": 1}
    same = DictTensorSource("b", {"w": np.zeros((2, 3), np.float32)})
    other_dtype = DictTensorSource("c", {"w": np.zeros((2, 3), np.float64)})
    other_shape = DictTensorSource("d", {"w": np.zeros((3, 2), np.float32)})
    assert same.tensors()["w"].content_id == info.content_id
    assert other_dtype.tensors()["w"].content_id != info.content_id
    assert other_shape.tensors()["w"].content_id != info.content_id
    bf = DictTensorSource("e", {"w": np.zeros(2, ml_dtypes.bfloat16)})
    assert bf.tensors()["w"].dtype == "BF16"


# --------------------------------------------------------------------------------------
# statuses


def test_identical_models_load_nothing() -> None:
    t = bert_like(2)
    d = diff_models(RaisingSource("a", t), RaisingSource("b", dict(t)))
    assert d.summary.identical
    assert d.summary.loaded == 0
    assert {x.status for x in d.tensors} == {"unchanged"}
    assert render_text(d, color=False)[-1].strip() == "models are identical"


def test_unchanged_tensors_with_equal_content_id_are_not_loaded() -> None:
    a = bert_like(2)
    b = dict(a)
    b["classifier.weight"] = a["classifier.weight"] + 1.0

    class OnlyHeadSource(DictTensorSource):
        def load(self, name: str) -> np.ndarray:
            assert name == "classifier.weight", name
            return super().load(name)

    d = diff_models(OnlyHeadSource("a", a), OnlyHeadSource("b", b))
    assert d.summary.loaded == 1
    assert d.get("classifier.weight").status == "changed"


def test_head_only_change_reports_only_the_head() -> None:
    a = bert_like(3)
    b = dict(a)
    rng = np.random.default_rng(7)
    b["classifier.weight"] = rng.standard_normal((2, 32)).astype(np.float32)
    b["classifier.bias"] = np.array([0.5, -0.5], np.float32)
    d = diff_models(DictTensorSource("base", a), DictTensorSource("ft", b))
    changed = {t.name for t in d.changes()}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert d.summary.counts["changed"] == 2
    assert d.summary.counts["unchanged"] == len(a) - 2
    assert d.blocks[0].name == "classifier"
    assert d.blocks[0].changed == 2
    assert all(g.status == "unchanged" for g in d.blocks[1:])
    assert d.modules[0].name == "classifier"
    lines = render_text(d, color=False)
    text = "\n".join(lines)
    assert "~ classifier" in text
    assert "~ weight" in text and "~ bias" in text
    assert "unchanged blocks" in lines[-1]
    assert "encoder.layer.0" in lines[-1]
    # No ANSI without colour.
    assert "\x1b[" not in text


def _lora_model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = {}
    for i in range(3):
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[f"model.layers.{i}.self_attn.{m}.weight"] = (
                rng.standard_normal((64, 48)) * 0.02
            ).astype(np.float32)
        t[f"model.layers.{i}.input_layernorm.weight"] = np.ones(48, np.float32)
    return t


def test_merged_rank4_lora_has_rank_4() -> None:
    a = _lora_model()
    b = dict(a)
    rng = np.random.default_rng(1)
    touched = [
        f"model.layers.{i}.self_attn.{m}.weight" for i in range(3) for m in ("q_proj", "v_proj")
    ]
    for name in touched:
        lora_b = (rng.standard_normal((64, 4)) * 0.05).astype(np.float32)
        lora_a = (rng.standard_normal((4, 48)) * 0.05).astype(np.float32)
        b[name] = (a[name] + lora_b @ lora_a).astype(np.float32)
    d = diff_models(DictTensorSource("base", a), DictTensorSource("merged", b))
    assert {t.name for t in d.changes()} == set(touched)
    for name in touched:
        s = d.get(name).stats
        assert s is not None and s.rank is not None
        assert s.rank.effective == 4, (name, s.rank)
        assert s.rank.energy99 <= 4
        assert not s.rank.lower_bound
        assert s.fraction_changed > 0.9
        assert s.cosine_similarity is not None and 0.9 < s.cosine_similarity <= 1.0
    for name in set(a) - set(touched):
        assert d.get(name).status == "unchanged"
    assert "rank 4" in "\n".join(render_text(d, color=False))


def test_dtype_change_f32_to_bf16() -> None:
    a = bert_like(1)
    b = {k: v.astype(ml_dtypes.bfloat16) for k, v in a.items()}
    d = diff_models(DictTensorSource("f32", a), DictTensorSource("bf16", b))
    assert d.summary.counts["dtype_changed"] == len(a)
    t = d.get("encoder.layer.0.attention.self.query.weight")
    assert (t.dtype_a, t.dtype_b) == ("F32", "BF16")
    assert t.stats is not None
    assert t.stats.relative_change is not None and 0 < t.stats.relative_change < 1e-2
    assert t.stats.rank is not None  # rounding noise is full rank
    ln = d.get("embeddings.LayerNorm.weight")  # ones are exact in bf16
    assert ln.stats is not None and ln.stats.changed == 0
    lines = render_text(d, color=True)
    assert any("F32 -> BF16" in line for line in lines)
    json.dumps(d.to_json(), allow_nan=False)


def test_vocab_extension_is_shape_changed_with_overlap_stats() -> None:
    a = bert_like(1)
    b = dict(a)
    extra = np.random.default_rng(3).standard_normal((8, 32)).astype(np.float32)
    b["embeddings.word_embeddings.weight"] = np.concatenate(
        [a["embeddings.word_embeddings.weight"], extra]
    )
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    t = d.get("embeddings.word_embeddings.weight")
    assert t.status == "shape_changed"
    assert (t.shape_a, t.shape_b) == ((100, 32), (108, 32))
    assert t.stats is not None and t.stats.overlap and t.stats.changed == 0
    assert d.blocks[0].name == "embeddings"
    assert "[100, 32] -> F32 [108, 32]" in "\n".join(render_text(d, color=False))


def test_shape_change_of_different_rank_needs_no_load() -> None:
    a = {"w": np.zeros((4, 4), np.float32), "b": np.zeros(4, np.float32)}
    b = {"w": np.zeros(16, np.float32), "b": np.ones(4, np.float16)}

    class Src(DictTensorSource):
        def load(self, name: str) -> np.ndarray:
            assert name != "w"
            return super().load(name)

    d = diff_models(Src("a", a), Src("b", b))
    assert d.get("w").status == "shape_changed" and d.get("w").stats is None
    assert d.get("b").status == "dtype_changed"
    assert d.get("b").stats is not None and d.get("b").stats.relative_change is None  # |a| = 0
    json.dumps(d.to_json(), allow_nan=False)


def test_added_and_removed_with_colours() -> None:
    a = bert_like(2, head=False)
    b = bert_like(1, head=True)
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    assert {t.name for t in d.by_status("added")} == {"classifier.weight", "classifier.bias"}
    removed = {t.name for t in d.by_status("removed")}
    assert removed == {n for n in a if n.startswith("encoder.layer.1.")}
    blocks = {g.name: g for g in d.blocks}
    assert blocks["encoder.layer.1"].status == "removed"
    assert blocks["classifier"].status == "added"
    lines = render_text(d, color=True)
    red = next(x for x in lines if "encoder.layer.1" in x)
    green = next(x for x in lines if "classifier" in x)
    assert ANSI["red"] in red and ANSI["green"] in green
    plain = render_text(d, color=False)
    assert any(x.startswith("- encoder.layer.1") for x in plain)
    assert any(x.startswith("+ classifier") for x in plain)


def test_nan_and_inf_do_not_crash() -> None:
    a = {
        "w": np.array([[1.0, np.nan, 3.0], [np.inf, 5.0, 6.0]], np.float32),
        "v": np.full(4, np.nan, np.float32),
    }
    b = {
        "w": np.array([[1.0, np.nan, 4.0], [7.0, -np.inf, 6.0]], np.float32),
        "v": np.full(4, np.nan, np.float32) * 0 + np.array([np.nan, 1, 2, 3], np.float32),
    }
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    s = d.get("w").stats
    assert s is not None
    assert s.nonfinite_a == 2 and s.nonfinite_b == 2
    assert s.changed == 3  # 3->4, inf->7, 5->-inf; NaN == NaN
    assert s.max_abs_diff == 1.0
    assert s.rank is not None
    doc = json.dumps(d.to_json(), allow_nan=False)
    assert "NaN" not in doc and "Infinity" not in doc
    render_text(d, color=True)


def test_integer_and_bool_tensors() -> None:
    a = {"ids": np.arange(10, dtype=np.int64).reshape(2, 5), "mask": np.zeros(3, bool)}
    b = {"ids": np.arange(10, dtype=np.int64).reshape(2, 5) * 2, "mask": np.ones(3, bool)}
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    ids = d.get("ids").stats
    assert ids is not None and ids.rank is None and ids.changed == 9
    assert d.get("mask").stats is not None and d.get("mask").stats.changed == 3


def test_zero_tensor_relative_change_is_none() -> None:
    a = {"w": np.zeros((3, 3), np.float32)}
    b = {"w": np.eye(3, dtype=np.float32)}
    s = diff_models(DictTensorSource("a", a), DictTensorSource("b", b)).get("w").stats
    assert s is not None
    assert s.relative_change is None and s.cosine_similarity is None
    assert s.l2_diff == pytest.approx(math.sqrt(3))
    assert s.rank is not None and s.rank.effective == 3


def test_to_json_covers_every_tensor_and_is_stable() -> None:
    a = bert_like(2, head=False)
    b = bert_like(1, head=True, seed=1)
    b["embeddings.LayerNorm.weight"] = a["embeddings.LayerNorm.weight"].astype(np.float16)
    d = diff_models(DictTensorSource("a@1", a), DictTensorSource("b@2", b))
    doc = d.to_json()
    json.dumps(doc, allow_nan=False)
    assert doc["schema"] == 1 and doc["a"] == "a@1" and doc["b"] == "b@2"
    names = [t["name"] for t in doc["tensors"]]
    assert names == sorted(names)
    assert set(names) == set(a) | set(b)
    assert len(names) == len(set(a) | set(b))
    for t in doc["tensors"]:
        # schema 1 only gains keys: the original ones, then file, component and quantization
        assert set(t) == {
            "name",
            "status",
            "renamed_from",
            "dtype_a",
            "dtype_b",
            "shape_a",
            "shape_b",
            "stats",
            "error",
            "file_a",
            "file_b",
            "component",
            "quant_a",
            "quant_b",
        }
        assert t["file_a"] is None and t["file_b"] is None and t["component"] == ""
        assert t["status"] in STATUSES
    s = doc["summary"]
    assert sum(s[k] for k in STATUSES) == len(names)
    assert s["tensors_a"] == len(a) and s["tensors_b"] == len(b)
    changed = next(t for t in doc["tensors"] if t["status"] == "changed")
    assert set(changed["stats"]) >= {
        "l2_diff",
        "relative_change",
        "max_abs_diff",
        "fraction_changed",
        "cosine_similarity",
        "rank",
    }
    for key in ("groups", "blocks"):
        covered = [n for g in doc[key] for n in g["names"]]
        assert sorted(covered) == sorted(names)
    assert doc == d.to_json()
    # arrays in memory have no files: the file section is null, and identical means tensors
    assert doc["files"] is None and doc["layout"] == [] and doc["lora"] is None
    assert [c["name"] for c in doc["components"]] == ["(root)"]
    for word in ("`tensors`", "`groups`", "`blocks`", "`relative_change`", "`effective`",
                 "`files`", "`layout`", "`components`", "`lora`", "`tensors_identical`",
                 "`raw_codes_compared`", "`quant_b`", "`json_changes`"):  # fmt: skip
        assert word in JSON_SCHEMA_DOC


def test_groups_sorted_by_size_of_change() -> None:
    a = bert_like(3)
    b = dict(a)
    b["encoder.layer.1.output.dense.weight"] = a["encoder.layer.1.output.dense.weight"] * 3
    b["encoder.layer.2.output.dense.weight"] = a["encoder.layer.2.output.dense.weight"] * 1.1
    b["encoder.layer.0.output.dense.weight"] = a["encoder.layer.0.output.dense.weight"] * 1.5
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    order = [g.name for g in d.blocks if g.changed]
    assert order == ["encoder.layer.1", "encoder.layer.0", "encoder.layer.2"]
    assert d.blocks[0].max_relative_change == pytest.approx(2.0, rel=1e-6)
    mods = [g.name for g in d.modules if g.changed]
    assert mods[0] == "encoder.layer.1.output.dense"


def test_prefix_pairing() -> None:
    a = bert_like(1, head=False)
    b = bert_like(1, head=True, prefix="bert.")
    d = diff_models(RaisingSource("base", a), RaisingSource("task", b))
    assert d.summary.renamed == len(a)
    t = d.get("bert.encoder.layer.0.attention.self.query.weight")
    assert t.status == "unchanged"
    assert t.renamed_from == "encoder.layer.0.attention.self.query.weight"
    assert t.name_a == t.renamed_from and t.name_b == t.name
    assert d.get("encoder.layer.0.attention.self.query.weight") is t
    assert {x.name for x in d.by_status("added")} == {"classifier.weight", "classifier.bias"}
    assert "paired across a head prefix" in "\n".join(render_text(d, color=False))
    plain = diff_models(
        DictTensorSource("base", a), DictTensorSource("task", b), pair_prefixes=False
    )
    assert plain.summary.counts["removed"] == len(a)
    assert plain.summary.renamed == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_loads_at_most_two_tensors_per_worker(workers: int) -> None:
    alive: list[weakref.ref[np.ndarray]] = []
    peak = [0]

    class Tracking(DictTensorSource):
        def load(self, name: str) -> np.ndarray:
            live = sum(1 for r in alive if r() is not None)
            peak[0] = max(peak[0], live + 1)
            arr = np.array(super().load(name))  # a fresh copy each time
            alive.append(weakref.ref(arr))
            return arr

    a = bert_like(2, seed=0)
    b = bert_like(2, seed=1)
    d = diff_models(Tracking("a", a), Tracking("b", b), workers=workers)
    assert d.summary.loaded > 20
    assert len(alive) == 2 * d.summary.loaded
    assert peak[0] <= 2 * workers


def test_progress_callback() -> None:
    a = bert_like(1)
    seen: list[tuple[str, int, int]] = []
    diff_models(
        DictTensorSource("a", a),
        DictTensorSource("b", a),
        progress=lambda n, i, total: seen.append((n, i, total)),
    )
    assert [i for _, i, _ in seen] == list(range(len(a)))
    assert all(total == len(a) for _, _, total in seen)


def test_render_folds_and_limits() -> None:
    a = bert_like(4)
    b = {k: v * 1.01 if k.startswith("encoder.layer.2") else v for k, v in a.items()}
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    lines = render_text(d, color=False, max_tensors_per_group=2)
    assert any("more changed tensors" in x for x in lines)
    unfolded = render_text(d, color=False, show_unchanged=True)
    assert sum(1 for x in unfolded if x.startswith("= ")) == len(d.blocks) - 1
    by_module = render_text(d, color=False, level="module")
    assert any(x.startswith("~ encoder.layer.2.attention.self.query") for x in by_module)
    with pytest.raises(ValueError):
        render_text(d, color=False, level="tensor")


# --------------------------------------------------------------------------------------
# names


def test_module_and_block_of() -> None:
    assert (
        module_of("encoder.layer.3.attention.self.query.weight")
        == "encoder.layer.3.attention.self.query"
    )
    assert block_of("encoder.layer.3.attention.self.query.weight") == "encoder.layer.3"
    assert block_of("model.layers.12.mlp.up_proj.weight") == "model.layers.12"
    assert block_of("embeddings.word_embeddings.weight") == "embeddings"
    assert block_of("bert.embeddings.LayerNorm.weight") == "bert.embeddings"
    assert block_of("classifier.weight") == "classifier"
    assert block_of("model.norm.weight") == "model.norm"
    assert block_of("h.0.attn.c_attn.weight") == "h.0"
    assert module_of("weight") == "(root)" and block_of("weight") == "(root)"
    assert strip_head_prefix("base_model.model.model.layers.0.w") == "layers.0.w"
    assert strip_head_prefix("model.") == "model."


def test_pair_names() -> None:
    pairs = pair_names(
        ["embeddings.w", "pooler.w", "x"],
        ["bert.embeddings.w", "bert.pooler.w", "x", "classifier.w"],
    )
    assert pairs == [
        ("embeddings.w", "bert.embeddings.w"),
        ("pooler.w", "bert.pooler.w"),
        (None, "classifier.w"),
        ("x", "x"),
    ]
    # Both sides prefixed differently.
    assert pair_names(["roberta.e.w"], ["model.e.w"]) == [("roberta.e.w", "model.e.w")]
    # Ambiguous: two names in b strip to the same key -> no pairing.
    amb = pair_names(["e.w"], ["bert.e.w", "model.e.w"])
    assert ("e.w", None) in amb and (None, "bert.e.w") in amb and (None, "model.e.w") in amb
    # No prefixes: exact only.
    assert pair_names(["e.w"], ["bert.e.w"], prefixes=()) == [(None, "bert.e.w"), ("e.w", None)]


@settings(
    max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "bert.a", "model.a", "c.d", "bert.c.d"]), max_size=6),
        min_size=2,
        max_size=2,
    )
)
def test_pair_names_uses_every_name_once(sides: list[list[str]]) -> None:
    names_a, names_b = sides
    pairs = pair_names(names_a, names_b)
    assert sorted(x for x, _ in pairs if x is not None) == sorted(set(names_a))
    assert sorted(y for _, y in pairs if y is not None) == sorted(set(names_b))


# --------------------------------------------------------------------------------------
# statistics


def test_randomized_rank_matches_exact() -> None:
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    b = a + (rng.standard_normal((300, 6)) @ rng.standard_normal((6, 200))).astype(np.float32)
    exact = estimate_rank(a, b)
    rand = estimate_rank(a, b, exact_max_dim=0, exact_cheap_macs=0)
    assert exact.method == "exact" and rand.method == "randomized"
    assert exact.effective == rand.effective == 6
    assert not rand.lower_bound
    assert rand.singular_values[0] == pytest.approx(exact.singular_values[0], rel=1e-3)


def test_randomized_rank_reports_lower_bound_for_full_rank() -> None:
    rng = np.random.default_rng(6)
    a = np.zeros((200, 150), np.float32)
    b = rng.standard_normal((200, 150)).astype(np.float32)
    est = estimate_rank(
        a, b, exact_max_dim=0, exact_cheap_macs=0, max_sketch=16, exact_fallback_macs=0
    )
    assert est.lower_bound and est.effective == 16 and est.sketch == 16
    full = estimate_rank(a, b)
    assert full.effective > 100 and not full.lower_bound


def test_rank_of_zero_difference_and_wide_matrix() -> None:
    a = np.ones((4, 50), np.float32)
    assert estimate_rank(a, a).effective == 0
    b = a.copy()
    b[:, 3] += 1.0
    assert estimate_rank(a, b).effective == 1
    with pytest.raises(ValueError):
        estimate_rank(a, a.T)


def test_compute_stats_values() -> None:
    a = np.array([3.0, 4.0], np.float32)
    b = np.array([3.0, 5.0], np.float32)
    s = compute_stats(a, b)
    assert s.l2_a == pytest.approx(5.0) and s.l2_diff == pytest.approx(1.0)
    assert s.relative_change == pytest.approx(0.2)
    assert s.max_abs_diff == 1.0 and s.mean_abs_diff == pytest.approx(0.5)
    assert s.fraction_changed == 0.5 and s.changed == 1
    assert s.cosine_similarity == pytest.approx(29 / (5 * math.sqrt(34)))
    assert s.rank is None
    with pytest.raises(ValueError):
        compute_stats(a, np.zeros(3, np.float32))


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [0.0, -0.0, 1.0, -2.5, 1e30, float("nan"), float("inf"), -float("inf"), 3e-39]
        ),
        min_size=6,
        max_size=6,
    ),
    st.lists(
        st.sampled_from([0.0, 1.0, 2.0, float("nan"), float("inf"), -1e30]), min_size=6, max_size=6
    ),
    st.sampled_from(["float32", "bfloat16", "float16", "float8_e4m3fn"]),
)
def test_stats_never_raise_and_json_is_finite(xs: list[float], ys: list[float], dtype: str) -> None:
    dt = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    with np.errstate(over="ignore"):
        a = {"w": np.array(xs, np.float32).reshape(2, 3).astype(dt)}
    b = {"w": np.array(ys, np.float32).reshape(2, 3)}
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    json.dumps(d.to_json(), allow_nan=False)
    render_text(d, color=False)
