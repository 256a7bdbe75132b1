"""``diff BASE ADAPTER`` on a real PEFT LoRA adapter: the effective delta per target module.

The adapters are made by peft itself (``get_peft_model(...).save_pretrained``) on a tiny
``BertModel``, with ``init_lora_weights=False`` so the delta is not zero; the expected deltas are
peft's own ``merge_and_unload()`` minus the base weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_main, tiny_bert_model

from mgit.diff import DictTensorSource, diff_models, render_text
from mgit.repo import Repository
from mgit.sources import FolderTensorSource

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

CHUNK = 65536
TARGETS = [f"encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")]


WEIGHTS: dict[str, np.ndarray] = {}


def base_and_adapter(tmp: Path, **lora_kw: Any) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Save a base model and a peft LoRA adapter of it; return the true delta of each weight
    (and keep the base weights in ``WEIGHTS``)."""
    model = tiny_bert_model()
    model.save_pretrained(tmp / "base")
    before = {k: v.detach().double().numpy().copy() for k, v in model.state_dict().items()}
    kw: dict[str, Any] = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    kw.update(lora_kw)
    pm = peft.get_peft_model(model, peft.LoraConfig(init_lora_weights=False, **kw))
    pm.save_pretrained(tmp / "adapter")
    merged = {k: v.detach().double().numpy() for k, v in pm.merge_and_unload().state_dict().items()}
    deltas = {k: merged[k] - before[k] for k in before if not np.array_equal(merged[k], before[k])}
    WEIGHTS.clear()
    WEIGHTS.update(before)
    return tmp / "base", tmp / "adapter", deltas


def check(d: Any, deltas: dict[str, np.ndarray], ranks: dict[str, int]) -> None:
    assert d.lora is not None and d.lora.adapter_side == "b"
    assert [m.module for m in d.lora.modules] == sorted(ranks)  # exactly the target modules
    assert sorted(deltas) == sorted(m + ".weight" for m in ranks)
    for m in d.lora.modules:
        true = deltas[m.module + ".weight"]
        assert m.base_tensor == m.module + ".weight" and m.error is None
        assert m.r == ranks[m.module] and m.shape == true.shape
        assert m.stats is not None and m.stats.rank is not None
        assert m.stats.rank.effective == ranks[m.module]
        assert m.stats.l2_diff == pytest.approx(float(np.linalg.norm(true)), rel=1e-5)
        w = WEIGHTS[m.module + ".weight"]
        assert m.stats.relative_change == pytest.approx(
            float(np.linalg.norm(true) / np.linalg.norm(w)), rel=1e-5
        )
    assert d.summary.lora_modules == len(ranks) and not d.summary.identical


def test_peft_lora_adapter_against_its_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, adapter, deltas = base_and_adapter(tmp_path)
    d = diff_models(
        FolderTensorSource(base, chunk_size=CHUNK, label="base"),
        FolderTensorSource(adapter, chunk_size=CHUNK, label="adapter"),
    )
    check(d, deltas, dict.fromkeys(TARGETS, 4))
    assert d.lora is not None and d.lora.config.r == 4 and d.lora.config.lora_alpha == 8
    assert all(m.scale == 2.0 for m in d.lora.modules) and d.lora.other_tensors == ()
    text = "\n".join(render_text(d, color=False))
    assert "LoRA adapter in b (adapter_config.json): r=4, lora_alpha=8" in text
    assert text.count("rank 4 (r=4)") == 4

    # through the repository: the base, then the adapter derived from it
    repo = Repository.init(tmp_path / "repo", model="base", chunk_size=CHUNK)
    repo.import_folder(base, model="base", message="base")
    repo.import_folder(adapter, model="adapter", message="lora", parent="base")
    d = repo.diff("base", "adapter")
    check(d, deltas, dict.fromkeys(TARGETS, 4))
    code, out, err = run_main(capsys, repo.root, "--json", "diff", "base", "adapter")
    assert code == 0, err
    doc = json.loads(out)
    assert [(m["module"], m["r"], m["rank"]) for m in doc["lora"]["modules"]] == [(t, 4, 4) for t in TARGETS]
    assert doc["lora"]["config"]["target_modules"] and doc["summary"]["lora_modules"] == 4
    code, out, _ = run_main(capsys, repo.root, "diff", "base", "adapter")
    assert code == 0 and out.count("rank 4 (r=4)") == 4
    assert "encoder.layer.0.attention.self.query" in out


def test_rank_and_alpha_patterns(tmp_path: Path) -> None:
    base, adapter, deltas = base_and_adapter(
        tmp_path, rank_pattern={"value": 2}, alpha_pattern={"value": 16}
    )
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["rank_pattern"] == {"value": 2}
    d = diff_models(
        FolderTensorSource(base, chunk_size=CHUNK, label="base"),
        FolderTensorSource(adapter, chunk_size=CHUNK, label="adapter"),
    )
    ranks = {t: (2 if t.endswith("value") else 4) for t in TARGETS}
    check(d, deltas, ranks)
    assert d.lora is not None
    assert {m.module: m.scale for m in d.lora.modules} == {
        t: (8.0 if t.endswith("value") else 2.0) for t in TARGETS
    }


def test_rslora_scales_by_sqrt_r(tmp_path: Path) -> None:
    base, adapter, deltas = base_and_adapter(tmp_path, use_rslora=True)
    d = diff_models(
        FolderTensorSource(base, chunk_size=CHUNK, label="base"),
        FolderTensorSource(adapter, chunk_size=CHUNK, label="adapter"),
    )
    check(d, deltas, dict.fromkeys(TARGETS, 4))
    assert d.lora is not None and all(m.scale == pytest.approx(8 / 2.0) for m in d.lora.modules)


def test_adapter_pairs_with_a_task_head_base_and_reverses(tmp_path: Path) -> None:
    base, adapter, deltas = base_and_adapter(tmp_path)
    from safetensors.numpy import load_file

    # the base as a task model stores it (BertForSequenceClassification: "bert." prefix)
    sd = {"bert." + k: v for k, v in load_file(str(base / "model.safetensors")).items()}
    files = {"adapter_config.json": (adapter / "adapter_config.json").read_bytes()}
    ad = load_file(str(adapter / "adapter_model.safetensors"))
    d = diff_models(DictTensorSource("task", sd), DictTensorSource("adapter", ad, files=files))
    assert d.lora is not None
    assert [m.base_tensor for m in d.lora.modules] == ["bert." + t + ".weight" for t in TARGETS]
    assert [m.stats.rank.effective for m in d.lora.modules if m.stats and m.stats.rank] == [4] * 4
    # the adapter as "a": the same deltas, taken away
    back = diff_models(DictTensorSource("adapter", ad, files=files), DictTensorSource("task", sd))
    assert back.lora is not None and back.lora.adapter_side == "a"
    for m in back.lora.modules:
        true = deltas[m.module + ".weight"]
        assert m.stats is not None and m.stats.l2_diff == pytest.approx(float(np.linalg.norm(true)), rel=1e-5)
    # an adapter without a base weight to pair with still has its delta norm and rank
    alone = diff_models(DictTensorSource("empty", {}), DictTensorSource("adapter", ad, files=files))
    assert alone.lora is not None
    m = alone.lora.modules[0]
    assert m.base_tensor is None and m.error == "no base weight pairs with this module"
    assert m.stats is not None and m.stats.relative_change is None and m.stats.rank is not None
    assert m.stats.rank.effective == 4
