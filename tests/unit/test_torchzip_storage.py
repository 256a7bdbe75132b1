"""PyTorch zip checkpoints (``pytorch_model.bin``) stored as tensors: deltas against the parent,
byte-identical export, state dicts with tied weights and views, and what stays opaque."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_main, write_safetensors

from mgit.errors import CorruptObjectError
from mgit.objects.model import FileEntry

torch = pytest.importorskip("torch")


def _bert_state(seed: int = 0) -> dict[str, Any]:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=600, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)
    return BertForMaskedLM(cfg).state_dict()  # decoder.weight is tied to the word embeddings


def _finetuned(sd: dict[str, Any], scale: float = 1e-3, seed: int = 1) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        out[k] = v + torch.randn(v.shape, generator=g) * scale if v.is_floating_point() else v.clone()
    # keep the tie as torch.save would see it in a model
    out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    return out


def _save(folder: Path, sd: Any, name: str = "pytorch_model.bin", **kw: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    torch.save(sd, folder / name, **kw)
    return folder / name


def _entry(repo: Any, ref: str, path: str = "pytorch_model.bin") -> FileEntry:
    return repo.read_tree(repo.read_commit(repo.resolve(ref)).tree).files[path]


def _same_file(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def test_checkpoint_is_stored_as_tensors_and_exports_byte_identical(repo: Any, tmp_path: Path) -> None:
    src = _save(tmp_path / "m", _bert_state())
    res = repo.import_folder(tmp_path / "m", model="base", message="bin")
    assert res.stats.warnings == []
    e = _entry(repo, "base")
    assert e.kind == "torchzip"
    names = [n for n, _ in e.tensors]
    assert "bert.embeddings.word_embeddings.weight" in names
    assert "cls.predictions.decoder.weight" not in names  # tied: a view of the embeddings' storage
    assert [v.name for v in e.views if v.name == "cls.predictions.decoder.weight"]
    assert sum(x for x in e.layout if x >= 0) + sum(m.nbytes for _, m in e.tensors) == e.size
    repo.export("base", tmp_path / "out")
    assert _same_file(tmp_path / "out" / "pytorch_model.bin", src)
    assert repo.fsck().ok


def test_state_dict_of_a_checkpoint_matches_torch_load(repo: Any, tmp_path: Path) -> None:
    x = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    sd = {"w": x, "wt": x.t(), "rows": x[2:5], "b16": torch.randn(5, 3).to(torch.bfloat16),
          "i": torch.arange(7), "flag": torch.tensor([True, False]), "scalar": torch.tensor(3.5),
          "empty": torch.zeros(0, 4)}
    src = _save(tmp_path / "m", sd)
    repo.import_folder(tmp_path / "m", model="m", message="views")
    ref = torch.load(src, weights_only=True)
    got_t = repo.load_state_dict("m", torch=True)
    got_np = repo.load_state_dict("m")
    assert set(got_t) == set(ref)
    for k, v in ref.items():
        assert got_t[k].dtype == v.dtype and torch.equal(got_t[k], v), k
        if v.dtype != torch.bfloat16:
            assert np.array_equal(got_np[k], v.numpy()), k
    assert torch.equal(repo.load_tensor("m", "w", torch=True), x)
    repo.export("m", tmp_path / "out")
    assert _same_file(tmp_path / "out" / "pytorch_model.bin", src)


@np.errstate(all="ignore")
def test_finetune_checkpoint_is_stored_as_deltas_against_its_parent(repo: Any, tmp_path: Path) -> None:
    base = _bert_state()
    _save(tmp_path / "a", base)
    b = _save(tmp_path / "b", _finetuned(base))
    repo.import_folder(tmp_path / "a", model="base", message="a")
    res = repo.import_folder(tmp_path / "b", model="ft", parent="base", message="b")
    assert res.stats.delta_chunks > 0
    # the same finetune stored as an opaque file costs about its size; as tensors, deltas
    assert res.stats.new_bytes < 0.8 * b.stat().st_size
    repo.export("ft", tmp_path / "out")
    assert _same_file(tmp_path / "out" / "pytorch_model.bin", b)


def test_a_bin_of_the_same_weights_as_a_safetensors_parent_costs_almost_nothing(repo: Any, tmp_path: Path) -> None:
    sd = {k: v.clone() for k, v in _bert_state().items()}  # no ties: the same tensors both ways
    write_safetensors(tmp_path / "st" / "model.safetensors", {k: v.numpy() for k, v in sd.items()})
    b = _save(tmp_path / "bin", sd)
    repo.import_folder(tmp_path / "st", model="st", message="safetensors")
    res = repo.import_folder(tmp_path / "bin", model="bin", parent="st", message="same weights as .bin")
    assert res.stats.new_bytes < 0.05 * b.stat().st_size  # every storage's chunks are already stored
    repo.export("bin", tmp_path / "out")
    assert _same_file(tmp_path / "out" / "pytorch_model.bin", b)


def test_legacy_pickle_checkpoint_stays_opaque_with_a_warning(repo: Any, tmp_path: Path, capsys: Any) -> None:
    src = _save(tmp_path / "m", {"w": torch.ones(3)}, _use_new_zipfile_serialization=False)
    code, _, err = run_main(capsys, repo.root, "import", str(tmp_path / "m"), "--model", "old", "-m", "x")
    assert code == 0
    assert "mgit: warning: pytorch_model.bin: stored as an opaque file (a legacy" in err
    assert _entry(repo, "old").kind == "blob"
    repo.export("old", tmp_path / "out")
    assert _same_file(tmp_path / "out" / "pytorch_model.bin", src)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_never_executed(repo: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "m" / "pytorch_model.bin"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        z.writestr("pytorch_model/data.pkl", pickle.dumps({"w": _Evil(str(marker))}, protocol=2))
        z.writestr("pytorch_model/version", "3\n")
    res = repo.import_folder(tmp_path / "m", model="evil", message="x")
    assert not marker.exists()
    assert any("stored as an opaque file" in w for w in res.stats.warnings)
    assert _entry(repo, "evil").kind == "blob"
    repo.diff("evil", "evil")
    repo.export("evil", tmp_path / "out")
    assert not marker.exists()
    assert _same_file(tmp_path / "out" / "pytorch_model.bin", src)


def test_training_args_style_pickle_stays_opaque(repo: Any, tmp_path: Path) -> None:
    from argparse import Namespace  # like transformers' TrainingArguments: not tensors

    _save(tmp_path / "m", Namespace(lr=1e-3), name="training_args.bin")
    _save(tmp_path / "m", {"w": torch.ones(4)})
    (tmp_path / "m" / ".mgitignore").write_text("!training_args.bin\n")  # left out by default: taken back
    res = repo.import_folder(tmp_path / "m", model="t", message="x")
    tree = repo.read_tree(repo.read_commit(res.commit.oid).tree)
    assert tree.files["training_args.bin"].kind == "blob"
    assert tree.files["pytorch_model.bin"].kind == "torchzip"
    assert [w for w in res.stats.warnings if w.startswith("training_args.bin")]


def _json_entry(e: FileEntry) -> dict[str, Any]:
    return json.loads(json.dumps(e.to_json()))


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["layout"].append(5),                       # sizes no longer add up
        lambda d: d["layout"].reverse(),                        # storages out of order
        lambda d: d["layout"].remove(-1),                       # a storage missing
        lambda d: d["views"].append(["x", 99, 0, [1], [1]]),    # view of a missing storage
        lambda d: d["views"].append(["x", 0, 10**9, [2], [1]]),  # view outside its storage
        lambda d: d["views"].append(["x", 0, 0, [2, 2], [1]]),  # stride of the wrong rank
    ],
)
def test_a_damaged_checkpoint_entry_is_refused(repo: Any, tmp_path: Path, damage: Any) -> None:
    _save(tmp_path / "m", {"w": torch.ones(6), "v": torch.zeros(3)})
    repo.import_folder(tmp_path / "m", model="m", message="x")
    d = _json_entry(_entry(repo, "m"))
    assert FileEntry.from_json(d) == _entry(repo, "m")
    damage(d)
    with pytest.raises(CorruptObjectError):
        FileEntry.from_json(d)
