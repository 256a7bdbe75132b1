"""Merging a stored LoRA adapter into its base (``load_state_dict(merged=True)``, ``mgit export
--merge-adapter``, ``mgit.transformers.from_pretrained`` of an adapter version), checked against
peft's own ``merge_and_unload`` on a real tiny BERT adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import run_main, tiny_bert_model

from mgit.errors import AdapterMergeError
from mgit.repo import Repository

CHUNK = 65536


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny BERT base and a peft LoRA of it (r=4, alpha=8, query/value, nonzero B; the
    pooler trained in full as ``modules_to_save``), and peft's merge of the two."""
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("lora")
    base = tiny_bert_model(0)
    base.save_pretrained(tmp / "base")
    cfg = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "value"],
        init_lora_weights=False,
        modules_to_save=["pooler.dense"],
    )
    torch.manual_seed(1)
    model = peft.get_peft_model(tiny_bert_model(0), cfg)
    with torch.no_grad():
        model.base_model.model.pooler.dense.modules_to_save["default"].weight.add_(0.5)
    model.save_pretrained(tmp / "lora")
    merged = {k: v.clone() for k, v in model.merge_and_unload().state_dict().items()}
    return {"base": tmp / "base", "lora": tmp / "lora", "merged": merged}


@pytest.fixture
def stored(saved: dict[str, Any], tmp_path: Path) -> Repository:
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    repo.import_folder(saved["base"], model="bert", message="base")
    res = repo.import_folder(saved["lora"], model="bert-lora", message="lora", parent="bert")
    assert res.commit.parents[0][1] == "adapter"
    return repo


def _close(a: Any, b: Any) -> bool:
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and torch.allclose(a, b, rtol=1e-6, atol=1e-6)


def test_merged_state_dict_matches_peft(saved: dict[str, Any], stored: Repository) -> None:
    import torch

    sd = stored.load_state_dict("bert-lora", merged=True, torch=True)
    ref = saved["merged"]
    assert sorted(sd) == sorted(ref)
    for k, v in ref.items():
        assert _close(sd[k], v), k
    base = stored.load_state_dict("bert", torch=True)
    changed = sorted(k for k in sd if not torch.equal(sd[k], base[k]))
    assert changed == sorted(
        [
            f"encoder.layer.{i}.attention.self.{m}.weight"
            for i in range(2)
            for m in ("query", "value")
        ]
        + ["pooler.dense.weight"]
    )
    arrays = stored.load_state_dict("bert-lora", merged=True)  # numpy
    assert all(arrays[k].tobytes() == sd[k].numpy().tobytes() for k in sd)


def test_next_adapter_version_finds_the_base_through_its_line(
    saved: dict[str, Any], stored: Repository, tmp_path: Path
) -> None:
    second = tmp_path / "lora2"
    shutil.copytree(saved["lora"], second)
    stored.import_folder(second, model="bert-lora", message="again")  # parents: the line's tip only
    assert [r for _, r in stored.log("bert-lora")[0].parents] == ["version"]
    sd = stored.load_state_dict("bert-lora", merged=True, torch=True)
    assert all(_close(sd[k], saved["merged"][k]) for k in sd)


def test_export_merge_adapter_cli(
    saved: dict[str, Any], stored: Repository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import transformers

    out = tmp_path / "merged"
    code, stdout, _ = run_main(
        capsys, stored.root, "export", "bert-lora", str(out), "--merge-adapter"
    )
    assert code == 0 and "merged" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    model = transformers.BertModel.from_pretrained(out)
    for k, v in model.state_dict().items():
        assert _close(v, saved["merged"][k]), k
    # Nothing of the base was rewritten but the weights: config.json is the base's.
    assert (out / "config.json").read_bytes() == (saved["base"] / "config.json").read_bytes()
    code, _, err = run_main(capsys, stored.root, "export", "bert-lora", str(out), "--merge-adapter")
    assert code != 0 and "overwrite" in err and err.count("\n") <= 2


def test_from_pretrained_of_an_adapter_version_is_the_merged_model(
    saved: dict[str, Any], stored: Repository
) -> None:
    from mgit.transformers import from_pretrained

    model = from_pretrained("bert-lora", repo=stored)
    assert type(model).__name__ == "BertModel"
    for k, v in model.state_dict().items():
        assert _close(v, saved["merged"][k]), k


def test_refusals(
    saved: dict[str, Any], stored: Repository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AdapterMergeError, match="not a LoRA adapter"):
        stored.load_state_dict("bert", merged=True)
    # An adapter imported with no parent: no base to merge into, unless one is named.
    stored.import_folder(saved["lora"], model="orphan", message="no parent", relation="finetune")
    assert stored.log("orphan")[0].parents == []
    with pytest.raises(AdapterMergeError, match="no base model"):
        stored.load_state_dict("orphan", merged=True)
    sd = stored.load_state_dict("orphan", merged=True, base="bert", torch=True)
    assert all(_close(sd[k], saved["merged"][k]) for k in sd)
    dora = tmp_path / "dora"
    shutil.copytree(saved["lora"], dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    cfg["use_dora"] = True
    (dora / "adapter_config.json").write_text(json.dumps(cfg))
    stored.import_folder(dora, model="dora", message="dora", parent="bert")
    out = tmp_path / "never"
    code, _, err = run_main(capsys, stored.root, "export", "dora", str(out), "--merge-adapter")
    assert code == 1 and "DoRA" in err and not out.exists()
    code, _, err = run_main(capsys, stored.root, "export", "bert", str(out), "--base", "bert")
    assert code == 2 and not out.exists()
