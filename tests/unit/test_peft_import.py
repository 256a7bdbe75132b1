"""PEFT adapters as model folders: a real LoRA saved by ``peft`` (``save_pretrained`` of
``get_peft_model(BertModel(tiny config), LoraConfig(r=4, target_modules=["query", "value"]))``)
is imported as an ``adapter`` of its base, found by ``base_model_name_or_path`` or, with
``guess_parent``, by matching the LoRA factors' shapes to the stored weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import list_objects

from mgit import hf
from mgit.errors import InvalidModelFileError
from mgit.repo import Repository

CHUNK = 65536


def _bert(hidden: int, seed: int) -> Any:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=32,
    )
    torch.manual_seed(seed)
    return transformers.BertModel(cfg)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``base`` (hidden 32), ``wide`` (hidden 24: the LoRA does not fit it) and ``lora``: a
    real peft LoRA of ``base`` whose config names no base model."""
    peft = pytest.importorskip("peft")
    tmp = tmp_path_factory.mktemp("peft")
    base = _bert(32, 0)
    base.save_pretrained(tmp / "base")
    _bert(24, 1).save_pretrained(tmp / "wide")
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    model.save_pretrained(tmp / "lora")
    return {"base": tmp / "base", "wide": tmp / "wide", "lora": tmp / "lora"}


def adapter_copy(folders: dict[str, Path], dest: Path, **config: Any) -> Path:
    """A copy of the saved LoRA with ``adapter_config.json`` fields replaced."""
    shutil.copytree(folders["lora"], dest)
    p = dest / "adapter_config.json"
    cfg = json.loads(p.read_text())
    cfg.update(config)
    p.write_text(json.dumps(cfg))
    return dest


@pytest.fixture
def stored(folders: dict[str, Path], tmp_path: Path) -> tuple[Repository, dict[str, str]]:
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    oids = {
        "wide": repo.import_folder(folders["wide"], model="bert-wide", message="wide").commit.oid,
        "base": repo.import_folder(folders["base"], model="bert-tiny", message="base",
                                   meta={"hf_repo": "org/bert-tiny"}).commit.oid,
    }
    return repo, oids


def test_saved_lora_layout(folders: dict[str, Path]) -> None:
    cfg = hf.read_adapter_config(folders["lora"])
    assert cfg is not None and cfg.peft_type == "LORA" and cfg.r == 4
    assert cfg.meta() == {
        "adapter_type": "LORA", "r": "4", "lora_alpha": "8", "target_modules": "query,value",
    }
    shapes = hf.lora_shapes(folders["lora"])
    assert sorted(shapes) == [
        f"encoder.layer.{i}.attention.self.{m}.weight" for i in range(2) for m in ("query", "value")
    ]
    assert set(shapes.values()) == {((4, 32), (32, 4))}
    assert hf.read_adapter_config(folders["base"]) is None


@pytest.mark.parametrize(
    "base_ref", ["org/bert-tiny", "bert-tiny", "/home/me/models/bert-tiny", "someone/bert-tiny"],
)
def test_parent_from_base_model_name_or_path(
    folders: dict[str, Path], stored: tuple[Repository, dict[str, str]], tmp_path: Path, base_ref: str
) -> None:
    repo, oids = stored
    src = adapter_copy(folders, tmp_path / "ad", base_model_name_or_path=base_ref)
    res = repo.import_folder(src, model="lora", message="lora")
    c = res.commit
    assert c.parents == [(oids["base"], "adapter")]
    assert c.meta == {"adapter_type": "LORA", "r": "4", "lora_alpha": "8", "target_modules": "query,value"}


def test_unknown_base_is_a_root_and_explicit_parent_is_adapter(
    folders: dict[str, Path], stored: tuple[Repository, dict[str, str]], tmp_path: Path
) -> None:
    repo, oids = stored
    src = adapter_copy(folders, tmp_path / "ad", base_model_name_or_path="org/not-here")
    assert repo.import_folder(src, model="lora", message="lora").commit.parents == []
    res = repo.import_folder(src, model="lora2", message="lora", parent="bert-wide")
    assert res.commit.parents == [(oids["wide"], "adapter")]
    res = repo.import_folder(src, model="lora3", message="lora", parent="bert-tiny", relation="other")
    assert res.commit.parents == [(oids["base"], "other")]
    # a next version of the adapter's own line stays a version; the base is found again
    src2 = adapter_copy(folders, tmp_path / "ad2", base_model_name_or_path="org/bert-tiny")
    v2 = repo.import_folder(src2, model="lora", message="v2").commit
    assert v2.parents[0][1] == "version" and (oids["base"], "adapter") in v2.parents


def test_guess_parent_by_shapes(
    folders: dict[str, Path], stored: tuple[Repository, dict[str, str]], tmp_path: Path
) -> None:
    repo, oids = stored
    # a finetune of the base (same shapes): the base itself (a root) is preferred
    ft = tmp_path / "ft"
    shutil.copytree(folders["base"], ft)
    (ft / "config.json").write_text((ft / "config.json").read_text().replace("}", ', "x": 1}', 1))
    repo.import_folder(ft, model="bert-ft", message="ft", parent="bert-tiny")
    src = folders["lora"]  # base_model_name_or_path is None
    assert repo.import_folder(src, model="plain", message="no guess").commit.parents == []
    res = repo.import_folder(src, model="guessed", message="guess", guess_parent=True)
    assert res.commit.parents == [(oids["base"], "adapter")]
    top = res.candidates[0]
    assert (top.oid, top.model, top.fitting, top.modules, top.score) == (oids["base"], "bert-tiny", 4, 4, 1.0)
    assert oids["wide"] not in [c.oid for c in res.candidates]  # hidden 24: nothing fits
    assert res.to_json()["guessed_parents"][0]["fitting"] == 4


def test_guess_parent_nothing_fits(folders: dict[str, Path], tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo", model="main", chunk_size=CHUNK)
    repo.import_folder(folders["wide"], model="bert-wide", message="wide")
    res = repo.import_folder(folders["lora"], model="lora", message="lora", guess_parent=True)
    assert res.commit.parents == [] and res.candidates == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"r": "four"}', "r must be a positive integer"),
        ('{"r": 4, "target_modules": [1]}', "target_modules must be a string or a list of strings"),
        ('{"base_model_name_or_path": 3}', "base_model_name_or_path must be a string"),
    ],
)
def test_malformed_adapter_config_writes_nothing(
    folders: dict[str, Path], stored: tuple[Repository, dict[str, str]], tmp_path: Path,
    content: str, match: str,
) -> None:
    repo, _ = stored
    src = adapter_copy(folders, tmp_path / "ad")
    (src / "adapter_config.json").write_text(content)
    before = list_objects(repo.mgit_dir)
    heads = repo.model_heads()
    with pytest.raises(InvalidModelFileError, match=match):
        repo.import_folder(src, model="lora", message="lora")
    assert list_objects(repo.mgit_dir) == before and repo.model_heads() == heads


def test_adapter_fit_shapes() -> None:
    lora = {"a.q.weight": ((4, 8), (16, 4)), "a.v.weight": ((4, 8), (16, 4))}
    assert hf.adapter_fit(lora, {"a.q.weight": (16, 8), "a.v.weight": (16, 8)}) == 2
    assert hf.adapter_fit(lora, {"bert.a.q.weight": (16, 8), "a.v.weight": (8, 16)}) == 1
    assert hf.adapter_fit(lora, {"a.v.weight": (8, 16)}, fan_in_fan_out=True) == 1  # Conv1D layout
    assert hf.adapter_fit({"c.weight": ((4, 3, 3, 3), (8, 4, 1, 1))}, {"c.weight": (8, 3, 3, 3)}) == 1
    assert hf.adapter_fit({"c.weight": ((4, 3), (8, 5))}, {"c.weight": (8, 3)}) == 0  # r mismatch
    assert hf.base_key("base_model.model.x.q.lora_B.weight") == "x.q.weight"
    assert hf.base_key("x.q.lora_A.weight") == "x.q.weight"
    assert hf.base_key("x.q.weight") is None
    lines = {"a": {"hf_repo": "org/z"}, "z": {}, "org--z": {}}
    assert hf.match_model_lines("org/z", lines) == ["a", "org--z", "z"]
    assert hf.match_model_lines("", lines) == []
