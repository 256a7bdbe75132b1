"""The one tensor-name pairing rule (``mgit.formats.names``): a table of cases, and storage
(delta bases), diff and the one-name helper giving the same pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write_model_folder
from hypothesis import given
from hypothesis import strategies as st

from mgit.formats.names import HEAD_PREFIXES, pair, pair_names, strip_head_prefix
from mgit.objects.model import FileEntry, TensorManifest, Tree

#: (child names, parent names) -> {child name: parent name}
CASES: list[tuple[str, list[str], list[str], dict[str, str]]] = [
    ("equal names", ["a.w", "b.w"], ["b.w", "a.w"], {"a.w": "a.w", "b.w": "b.w"}),
    ("no names", [], ["a.w"], {}),
    (
        "bert. added (task head on a base model)",
        ["bert.embeddings.w", "bert.pooler.w", "classifier.w"],
        ["embeddings.w", "pooler.w"],
        {"bert.embeddings.w": "embeddings.w", "bert.pooler.w": "pooler.w"},
    ),
    (
        "bert. removed",
        ["embeddings.w"],
        ["bert.embeddings.w", "classifier.w"],
        {"embeddings.w": "bert.embeddings.w"},
    ),
    (
        "roberta. added",
        ["roberta.encoder.layer.0.w"],
        ["encoder.layer.0.w"],
        {"roberta.encoder.layer.0.w": "encoder.layer.0.w"},
    ),
    (
        "roberta. removed",
        ["encoder.layer.0.w"],
        ["roberta.encoder.layer.0.w"],
        {"encoder.layer.0.w": "roberta.encoder.layer.0.w"},
    ),
    (
        "model. added (LlamaForCausalLM on LlamaModel)",
        ["model.layers.0.w", "lm_head.weight"],
        ["layers.0.w"],
        {"model.layers.0.w": "layers.0.w"},
    ),
    (
        "model. removed",
        ["layers.0.w"],
        ["model.layers.0.w", "lm_head.weight"],
        {"layers.0.w": "model.layers.0.w"},
    ),
    (
        "transformer. added (GPT2LMHeadModel on GPT2Model)",
        ["transformer.h.0.attn.w", "lm_head.weight"],
        ["h.0.attn.w"],
        {"transformer.h.0.attn.w": "h.0.attn.w"},
    ),
    (
        "transformer. removed",
        ["h.0.attn.w"],
        ["transformer.h.0.attn.w"],
        {"h.0.attn.w": "transformer.h.0.attn.w"},
    ),
    (
        "module. (DataParallel)",
        ["module.encoder.w"],
        ["encoder.w"],
        {"module.encoder.w": "encoder.w"},
    ),
    (
        "peft adapter on a causal LM",
        [
            "base_model.model.model.layers.0.q.weight",
            "base_model.model.model.layers.0.q.lora_A.weight",
        ],
        ["model.layers.0.q.weight"],
        {"base_model.model.model.layers.0.q.weight": "model.layers.0.q.weight"},
    ),
    (
        "peft merged back",
        ["model.layers.0.w"],
        ["base_model.model.model.layers.0.w"],
        {"model.layers.0.w": "base_model.model.model.layers.0.w"},
    ),
    (
        "peft on a bare base model: two prefixes",
        ["base_model.model.model.layers.0.w"],
        ["layers.0.w"],
        {"base_model.model.model.layers.0.w": "layers.0.w"},
    ),
    (
        "peft on peft",
        ["base_model.model.model.x"],
        ["base_model.model.model.x"],
        {"base_model.model.model.x": "base_model.model.model.x"},
    ),
    ("one head for another", ["roberta.e.w"], ["model.e.w"], {"roberta.e.w": "model.e.w"}),
    (
        "prefixed and plain names mixed in one model",
        ["bert.e.w", "pooler.w", "classifier.w"],
        ["e.w", "bert.pooler.w", "classifier.w"],
        {"bert.e.w": "e.w", "pooler.w": "bert.pooler.w", "classifier.w": "classifier.w"},
    ),
    ("ambiguous parent: no pair", ["e.w"], ["bert.e.w", "model.e.w"], {}),
    ("ambiguous child: the equal name only", ["x", "bert.x"], ["x"], {"x": "x"}),
    ("equal names first", ["bert.x", "x"], ["x", "bert.x"], {"x": "x", "bert.x": "bert.x"}),
    ("not a head prefix", ["encoder.e.w"], ["e.w"], {}),
    ("a prefix inside a name is not stripped", ["enc.bert.w"], ["enc.w"], {}),
    ("a bare prefix is a name", ["model."], ["bert.model."], {"model.": "bert.model."}),
]


_TABLE = pytest.mark.parametrize(
    ("child", "parent", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)


@_TABLE
def test_pairing_table(child: list[str], parent: list[str], want: dict[str, str]) -> None:
    assert pair(child, parent) == want
    # the diff's form: the same pairs, every name exactly once
    pairs = pair_names(child, parent)
    assert {a: b for a, b in pairs if a is not None and b is not None} == want
    assert sorted(a for a, _ in pairs if a is not None) == sorted(set(child))
    assert sorted(b for _, b in pairs if b is not None) == sorted(set(parent))
    # a mapping's keys will do for the parent
    assert pair(child, dict.fromkeys(parent)) == want


def test_no_prefixes_pairs_equal_names_only() -> None:
    assert pair(["bert.e.w", "x"], ["e.w", "x"], prefixes=()) == {"x": "x"}
    assert pair_names(["e.w"], ["bert.e.w"], prefixes=()) == [(None, "bert.e.w"), ("e.w", None)]


def test_strip_head_prefix() -> None:
    assert strip_head_prefix("base_model.model.model.layers.0.w") == "layers.0.w"
    assert strip_head_prefix("module.bert.e.w") == "e.w"
    assert strip_head_prefix("model.") == "model."
    assert strip_head_prefix("bert.model.") == "model."
    assert strip_head_prefix("encoder.bert.w") == "encoder.bert.w"


def test_head_prefixes_are_prefix_free() -> None:
    """No prefix starts another, so stripping ``p + n`` removes ``p`` first (the docstring's
    argument that every pair the old storage rule made is still made)."""
    for p in HEAD_PREFIXES:
        assert p.endswith(".")
        assert not [q for q in HEAD_PREFIXES if q != p and q.startswith(p)]
    for p in ("bert.", "roberta.", "model.", "transformer.", "base_model.model.", "module."):
        assert p in HEAD_PREFIXES


# ----------------------------------------------------------------------------------------------
# storage and diff give the same pairs


def _tree(names: list[str]) -> Tree:
    oid = "0" * 64
    tensors = tuple((n, TensorManifest("F32", (16384,), 65536, (oid,))) for n in names)
    entry = FileEntry(kind="safetensors", size=1, xxh="0" * 32, header=oid, tensors=tensors)
    return Tree({"model.safetensors": entry})


@_TABLE
def test_storage_and_diff_give_the_same_pairs(
    child: list[str], parent: list[str], want: dict[str, str]
) -> None:
    from mgit.diff.names import pair_names as diff_pair_names
    from mgit.pairing import ParentIndex, pair_name

    diff = {a: b for a, b in diff_pair_names(child, parent) if a is not None and b is not None}
    index = ParentIndex(None, _tree(parent), child)  # type: ignore[arg-type]
    storage = {c: index.parent_name(c) for c in child if index.parent_name(c) is not None}
    assert storage == diff == want
    for c in child:
        m = index.find(c, "F32", 65536)
        assert (m is not None) == (c in want)
        if m is not None:
            assert m is index.manifests[want[c]]
    # ingest pairs a file on its own when the whole model's names were not given
    view = ParentIndex(None, _tree(parent)).with_children(child)  # type: ignore[arg-type]
    assert view.pairs == want
    # one name alone (the helper parent guessing calls) pairs as in the table whenever the
    # other child names take nothing from it
    for c in child:
        if c in want and (want[c] == c or want[c] not in child):
            assert pair_name(c, dict.fromkeys(parent)) == want[c]


def test_the_diff_uses_the_one_rule() -> None:
    from mgit.diff import names

    assert names.pair_names is pair_names
    assert names.strip_head_prefix is strip_head_prefix
    assert names.DEFAULT_HEAD_PREFIXES is HEAD_PREFIXES


# ----------------------------------------------------------------------------------------------
# the old storage rule: every pair it made that the new rule does not is an ambiguous one


def _old_storage_pair_name(name: str, names: set[str]) -> str | None:
    """How storage paired one name before the rules were unified (mgit 2a03ace ingest.py)."""
    if name in names:
        return name
    for p in HEAD_PREFIXES:
        if name.startswith(p) and name[len(p) :] in names:
            return name[len(p) :]
        if p + name in names:
            return p + name
    return None


_VOCAB = ["e.w", "bert.e.w", "model.e.w", "base_model.model.e.w", "base_model.model.model.e.w",
          "roberta.e.w", "x", "bert.x", "module.x", "transformer.h.0", "h.0", "model.h.0"]


@given(st.lists(st.sampled_from(_VOCAB), max_size=6), st.lists(st.sampled_from(_VOCAB), max_size=6))
def test_the_old_storage_pairs_are_kept_unless_ambiguous(
    child: list[str], parent: list[str]
) -> None:
    new = pair(child, parent)
    parents = set(parent)
    old = {c: p for c in child if (p := _old_storage_pair_name(c, parents)) is not None}
    exact = set(child) & parents
    left_c = [c for c in dict.fromkeys(child) if c not in exact]
    left_p = [p for p in dict.fromkeys(parent) if p not in exact]
    for c, p in old.items():
        key = strip_head_prefix(c)
        assert key == strip_head_prefix(p)  # every old pair has equal keys
        if c == p:
            assert new[c] == p
            continue
        one_each = (
            sum(strip_head_prefix(n) == key for n in left_c) == 1
            and sum(strip_head_prefix(n) == key for n in left_p) == 1
        )
        assert (new.get(c) == p) == (one_each and p not in exact), (c, p)
    # and the new rule is one to one
    assert len(set(new.values())) == len(new)


# ----------------------------------------------------------------------------------------------
# end to end: what storage pairs becomes a delta base


def _chunk_bases(repo: Any, model: str) -> dict[str, list[str | None]]:
    return {
        n: [repo.store.header(c).base for c in m.chunks]
        for n, m in repo.tensors(model).items()
        if not m.packed
    }


@pytest.mark.parametrize(
    ("parent_prefix", "child_prefix"),
    [
        ("", "bert."),
        ("bert.", ""),
        ("model.", "base_model.model.model."),
        ("", "base_model.model.model."),  # two prefixes: paired since the rules were unified
        ("roberta.", "model."),  # one head for another: likewise
    ],
)
def test_a_prefixed_finetune_is_stored_as_deltas(repo: Any, tmp_path: Path, parent_prefix: str,
                                                 child_prefix: str) -> None:
    rng = np.random.default_rng(3)
    base = {
        f"{parent_prefix}encoder.layer.{i}.w": rng.standard_normal((128, 256)).astype(np.float32)
        for i in range(2)
    }
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="b")
    child = {child_prefix + n[len(parent_prefix):]: (a + np.float32(1e-3)).astype(np.float32)
             for n, a in base.items()}
    write_model_folder(tmp_path / "ft", child)
    repo.import_folder(tmp_path / "ft", model="ft", parent="base", message="f")
    parent_chunks = repo.tensors("base")
    for name, bases in _chunk_bases(repo, "ft").items():
        pname = parent_prefix + name[len(child_prefix):]
        assert bases == list(parent_chunks[pname].chunks), name
    assert pair(child, base) == {c: parent_prefix + c[len(child_prefix):] for c in child}


def test_tensor_names_of_a_commit(tmp_path: Path) -> None:
    """``ParentIndex.for_files`` pairs the whole model: kept entries and files to ingest."""
    from mgit.pairing import ParentIndex, tensor_names

    folder = write_model_folder(tmp_path / "m", {"bert.a.w": np.zeros(4, np.float32),
                                                 "bert.b.w": np.ones(4, np.float32)}, sharded=2)
    (folder / "broken.safetensors").write_bytes(b"\x01")
    kept = _tree(["bert.c.w"]).files["model.safetensors"]
    files: dict[str, Any] = {p.name: p for p in folder.iterdir()}
    files["kept.safetensors"] = kept
    # sorted paths: broken (skipped), config.json, kept, model-00001, model-00002, ...
    assert tensor_names(files) == ["bert.c.w", "bert.a.w", "bert.b.w"]
    parent = _tree(["a.w", "b.w", "c.w", "d.w"])
    index = ParentIndex.for_files(None, parent, files)  # type: ignore[arg-type]
    assert index.pairs == {"bert.a.w": "a.w", "bert.b.w": "b.w", "bert.c.w": "c.w"}
    assert ParentIndex.for_files(None, None, files).pairs is None  # type: ignore[arg-type]
