"""The diff reports every file, and tensors by (file, name), on folders built the way real tools
build them: ``save_pretrained`` of tiny transformers models (one file, or sharded),
``torch.save`` checkpoints, a diffusers-style pipeline folder, a Trainer output folder.

Each test here is a wrong answer the diff used to give: "models are identical" when only
non-safetensors files changed, two tensors of one name in two files collapsing into one.
"""

from __future__ import annotations

import json
import shutil
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
from safetensors.numpy import load_file, save_file  # noqa: E402

CHUNK = 65536


# ----------------------------------------------------------------------------------------------
# folders, as the tools write them


def save_bert(path: Path, seed: int = 0, **kw: Any) -> Path:
    tiny_bert_model(seed).save_pretrained(path, **kw)
    return path


def torch_save_bert(path: Path, seed: int) -> Path:
    """A pre-safetensors folder: ``config.json`` and ``torch.save(state_dict)``."""
    model = tiny_bert_model(seed)
    path.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    return path


def diffusers_folder(path: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """A diffusers pipeline layout: ``model_index.json`` and one folder per component, each
    with its ``config.json`` and ``diffusion_pytorch_model.safetensors``; ``unet`` and ``vae``
    both hold ``conv_in.weight`` and ``conv_in.bias``."""
    rng = np.random.default_rng(seed)

    def f(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    comps = {
        "unet": {"conv_in.weight": f(8, 4, 3, 3), "conv_in.bias": f(8), "time_embedding.linear_1.weight": f(16, 8)},
        "vae": {"conv_in.weight": f(8, 3, 3, 3), "conv_in.bias": f(8), "decoder.conv_out.weight": f(3, 8, 3, 3)},
    }
    path.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}  # fmt: skip
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    for name, tensors in comps.items():
        (path / name).mkdir(exist_ok=True)
        (path / name / "config.json").write_text(json.dumps({"_class_name": name, "in_channels": 4}))
        save_file(tensors, str(path / name / "diffusion_pytorch_model.safetensors"))
    return comps


def repo_with(tmp_path: Path, *folders: Path) -> tuple[Repository, list[str]]:
    """A repository holding each folder as the next version of model ``m``."""
    repo = Repository.init(tmp_path / "repo", model="m", chunk_size=CHUNK)
    oids = []
    for i, folder in enumerate(folders):
        oids.append(repo.import_folder(folder, model="m", message=f"v{i + 1}").commit.oid)
    return repo, oids


def run_json(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Any:
    code, out, err = run_main(capsys, root, "--json", *args)
    assert code == 0, (out, err)
    return json.loads(out)


def run_text(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    code, out, err = run_main(capsys, root, *args)
    assert code == 0, (out, err)
    return out


# ----------------------------------------------------------------------------------------------
# every file is reported


def test_config_only_edit_is_not_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = save_bert(tmp_path / "v1")
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    cfg = json.loads((v2 / "config.json").read_text())
    assert cfg["hidden_dropout_prob"] == 0.1
    cfg["hidden_dropout_prob"] = 0.2
    cfg["label2id"] = {"neg": 0, "pos": 1}
    (v2 / "config.json").write_text(json.dumps(cfg, indent=2))
    repo, _ = repo_with(tmp_path, v1, v2)

    d = repo.diff("m~1", "m")
    assert not d.summary.identical  # said "models are identical" before
    assert d.summary.tensors_identical and d.summary.loaded == 0
    f = d.file("config.json")
    assert f.status == "changed" and f.json_changes_total == 2
    assert [(c.path, c.status, c.a, c.b) for c in f.json_changes or ()] == [
        ("hidden_dropout_prob", "changed", 0.1, 0.2),
        ("label2id", "added", None, {"neg": 0, "pos": 1}),
    ]
    assert d.file("model.safetensors").status == "unchanged"

    doc = run_json(capsys, repo.root, "diff", "m~1", "m")
    s = doc["summary"]
    assert s["identical"] is False and s["tensors_identical"] is True
    assert (s["files_a"], s["files_b"], s["files_changed"], s["files_unchanged"]) == (2, 2, 1, 1)
    files = {x["path"]: x for x in doc["files"]}
    assert files["config.json"]["json_changes"][0] == {
        "path": "hidden_dropout_prob", "status": "changed", "a": 0.1, "b": 0.2,
    }  # fmt: skip
    assert files["model.safetensors"]["tensors_a"] == files["model.safetensors"]["tensors_b"] == len(
        doc["tensors"]
    )
    out = run_text(capsys, repo.root, "diff", "m~1", "m")
    assert "models are identical" not in out
    assert "tensors are identical; files differ" in out
    assert "~ config.json" in out and "hidden_dropout_prob: 0.1 -> 0.2" in out
    # and the same edit in a working tree
    wt = tmp_path / "wt"
    shutil.copytree(v1, wt)
    wrepo = Repository.init(wt, model="m", chunk_size=CHUNK)
    wrepo.add([wt])
    wrepo.commit("v1")
    assert run_json(capsys, wt, "diff", "HEAD")["summary"]["identical"] is True
    (wt / "config.json").write_text(json.dumps(cfg, indent=2))
    doc = run_json(capsys, wt, "diff", "HEAD")
    assert doc["summary"]["identical"] is False and doc["summary"]["files_changed"] == 1
    assert doc["summary"]["loaded"] == 0


def test_two_different_bin_checkpoints_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = torch_save_bert(tmp_path / "v1", seed=0)
    v2 = torch_save_bert(tmp_path / "v2", seed=1)
    repo, _ = repo_with(tmp_path, v1, v2)
    d = repo.diff("m~1", "m")
    assert not d.summary.identical
    f = d.file("pytorch_model.bin")
    assert f.status == "changed" and f.size_a == (v1 / "pytorch_model.bin").stat().st_size
    assert d.file("config.json").status == "unchanged"
    out = run_text(capsys, repo.root, "diff", "m~1", "m")
    assert "models are identical" not in out
    if not f.is_tensor_file:  # stored as bytes: the file itself is the change shown
        assert "~ pytorch_model.bin" in out and "compared as bytes" in out
    else:  # read as tensors: the changed tensors are shown, each from that file
        assert f.tensors_changed > 0 and all(t.file_b == "pytorch_model.bin" for t in d.changes())
    # the structural diff no longer calls them identical: the .bin file is reported, and while
    # it is not read as tensors its structure cannot have been compared
    sd = repo.structural_diff("m~1", "m", dataflow=False)
    assert [x.path for x in sd.files or ()] == ["pytorch_model.bin"]
    if not sd.files[0].is_tensor_file:  # type: ignore[index]
        assert not sd.identical
        doc = run_json(capsys, repo.root, "diff", "--structural", "--no-dataflow", "m~1", "m")
        assert doc["summary"]["identical"] is False and doc["summary"]["files_opaque"] == 1
        text = run_text(capsys, repo.root, "diff", "--structural", "--no-dataflow", "m~1", "m")
        assert "pytorch_model.bin" in text and "not read as tensors" in text
    # the same checkpoint twice is identical
    v3 = tmp_path / "v3"
    shutil.copytree(v2, v3)
    repo.import_folder(v3, model="m", message="v3")
    assert repo.diff("m~1", "m").summary.identical


def _shards(path: Path, want: int) -> int:
    """``save_pretrained`` with a shard size that gives ``want`` shards (else the nearest)."""
    best = 0
    for kb in (28, 27, 26, 29, 25, 24, 30, 32):
        shutil.rmtree(path, ignore_errors=True)
        save_bert(path, max_shard_size=f"{kb}KB")
        best = len(list(path.glob("model-*.safetensors")))
        if best == want:
            break
    return best


def test_resharded_model_reports_layout_not_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = _shards(tmp_path / "sharded", 4)
    assert n > 1
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    single = save_bert(tmp_path / "single")
    repo, _ = repo_with(tmp_path, tmp_path / "sharded", single)
    d = repo.diff("m~1", "m")
    assert not d.summary.identical  # said "models are identical" before
    assert d.summary.tensors_identical and d.summary.loaded == 0
    assert d.summary.file_counts == {"removed": n + 1, "added": 1, "changed": 0, "unchanged": 1}
    assert [x.description for x in d.layout] == [f"re-sharded: {n} files -> 1, tensors unchanged"]
    assert d.layout[0].moved == len(d.tensors) and d.summary.resharded == 1
    t = d.tensors[0]
    assert t.file_a is not None and t.file_a.startswith("model-") and t.file_b == "model.safetensors"
    out = run_text(capsys, repo.root, "diff", "m~1", "m")
    assert f"re-sharded: {n} files -> 1, tensors unchanged" in out
    assert "- model.safetensors.index.json" in out
    doc = run_json(capsys, repo.root, "diff", "m~1", "m")
    assert doc["layout"][0]["files_b"] == ["model.safetensors"] and doc["summary"]["resharded"] == 1
    # back the other way, from the folders themselves
    d2 = diff_models(
        FolderTensorSource(single, chunk_size=CHUNK, label="single"),
        FolderTensorSource(tmp_path / "sharded", chunk_size=CHUNK, label="sharded"),
    )
    assert d2.summary.tensors_identical and not d2.summary.identical
    assert [x.description for x in d2.layout] == [f"re-sharded: 1 file -> {n}, tensors unchanged"]
    # re-sharding that also changed a tensor says so
    model = tiny_bert_model(0)
    with torch.no_grad():
        model.pooler.dense.weight.mul_(2.0)
    model.save_pretrained(tmp_path / "single2")
    d3 = diff_models(
        FolderTensorSource(tmp_path / "sharded", chunk_size=CHUNK, label="a"),
        FolderTensorSource(tmp_path / "single2", chunk_size=CHUNK, label="b"),
    )
    assert [t.name for t in d3.changes()] == ["pooler.dense.weight"]
    assert d3.layout[0].description == f"re-sharded: {n} files -> 1, 1 tensors changed"
    index = d3.file("model.safetensors.index.json")
    assert index.status == "removed"


def test_shard_index_weight_map_is_summarised(tmp_path: Path) -> None:
    wm_a = {f"w{i}": "model-00001-of-00002.safetensors" for i in range(30)}
    wm_b = dict(wm_a, w0="model-00002-of-00002.safetensors", w1="model-00002-of-00002.safetensors")
    del wm_b["w2"]
    a = DictTensorSource("a", {}, files={"model.safetensors.index.json": json.dumps(
        {"metadata": {"total_size": 10}, "weight_map": wm_a}).encode()})  # fmt: skip
    b = DictTensorSource("b", {}, files={"model.safetensors.index.json": json.dumps(
        {"metadata": {"total_size": 12}, "weight_map": wm_b}).encode()})  # fmt: skip
    f = diff_models(a, b).file("model.safetensors.index.json")
    assert [c.path for c in f.json_changes or ()] == ["metadata.total_size"]
    assert f.note == "weight_map: 1 file -> 2, 2 tensors in another file, 1 removed"


def test_json_changes_are_capped_and_bad_json_noted() -> None:
    from mgit.diff.files import JSON_CHANGES_SHOWN

    big_a = {f"k{i:03d}": i for i in range(50)}
    big_b = {f"k{i:03d}": i + 1 for i in range(50)}
    a = DictTensorSource("a", {}, files={"big.json": json.dumps(big_a).encode(), "x.json": b"{", "t.txt": b"1"})
    b = DictTensorSource("b", {}, files={"big.json": json.dumps(big_b).encode(), "x.json": b"{}", "t.txt": b"1"})
    d = diff_models(a, b)
    f = d.file("big.json")
    assert f.json_changes_total == 50 and len(f.json_changes or ()) == JSON_CHANGES_SHOWN
    assert d.file("x.json").note == "a: not valid JSON" and d.file("x.json").json_changes is None
    assert d.file("t.txt").status == "unchanged"
    assert not d.summary.identical and d.summary.tensors_identical
    text = "\n".join(render_text(d, color=False))
    assert f"... {50 - JSON_CHANGES_SHOWN} more keys changed" in text
    same = diff_models(a, DictTensorSource("c", {}, files={"big.json": json.dumps(big_a).encode(),
                                                            "x.json": b"{", "t.txt": b"1"}))  # fmt: skip
    assert same.summary.identical


# ----------------------------------------------------------------------------------------------
# tensor identity is (file, name)


def test_diffusers_components_do_not_hide_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comps = diffusers_folder(tmp_path / "v1")
    shutil.copytree(tmp_path / "v1", tmp_path / "v2")
    vae = dict(comps["vae"])
    vae["conv_in.weight"] = vae["conv_in.weight"] * 1.5
    save_file(vae, str(tmp_path / "v2" / "vae" / "diffusion_pytorch_model.safetensors"))
    repo, _ = repo_with(tmp_path, tmp_path / "v1", tmp_path / "v2")
    for d in (
        repo.diff("m~1", "m"),
        diff_models(
            FolderTensorSource(tmp_path / "v1", chunk_size=CHUNK, label="v1"),
            FolderTensorSource(tmp_path / "v2", chunk_size=CHUNK, label="v2"),
        ),
    ):
        assert len(d.tensors) == 6 and d.summary.tensors_a == d.summary.tensors_b == 6
        [t] = d.changes()
        assert t.bare_name == "conv_in.weight" and t.component == "vae"
        assert t.file_a == t.file_b == "vae/diffusion_pytorch_model.safetensors"
        assert t.name == "vae/diffusion_pytorch_model.safetensors:conv_in.weight"
        assert t.stats is not None and t.stats.relative_change == pytest.approx(0.5, rel=1e-5)
        assert d.get("conv_in.weight", file="unet/diffusion_pytorch_model.safetensors").status == "unchanged"
        assert d.get("time_embedding.linear_1.weight").component == "unet"
        assert [(c.name, c.status, c.tensors) for c in d.components] == [
            ("unet", "unchanged", 3), ("vae", "changed", 3),
        ]  # fmt: skip
        assert {g.name for g in d.blocks} >= {"unet/conv_in", "vae/conv_in", "vae/decoder"}
    doc = run_json(capsys, repo.root, "diff", "m~1", "m")
    assert [c["name"] for c in doc["components"]] == ["unet", "vae"]
    changed = [t for t in doc["tensors"] if t["status"] != "unchanged"]
    assert [(t["component"], t["file_b"]) for t in changed] == [
        ("vae", "vae/diffusion_pytorch_model.safetensors")
    ]
    out = run_text(capsys, repo.root, "diff", "m~1", "m")
    assert "component unet: 3 tensors, unchanged" in out
    assert "component vae: 1/3 tensors changed" in out
    vae_part = out[out.index("component vae") :]
    assert "~ conv_in" in vae_part and "~ weight" in vae_part
    # the working tree side identifies tensors the same way
    wt = tmp_path / "wt"
    shutil.copytree(tmp_path / "v1", wt)
    wrepo = Repository.init(wt, model="m", chunk_size=CHUNK)
    wrepo.add([wt])
    wrepo.commit("v1")
    save_file(vae, str(wt / "vae" / "diffusion_pytorch_model.safetensors"))
    doc = run_json(capsys, wt, "diff", "HEAD")
    assert len(doc["tensors"]) == 6
    assert [t["name"] for t in doc["tensors"] if t["status"] != "unchanged"] == [
        "vae/diffusion_pytorch_model.safetensors:conv_in.weight"
    ]
    assert [f["path"] for f in doc["files"] if f["status"] != "unchanged"] == [
        "vae/diffusion_pytorch_model.safetensors"
    ]
    # the structural diff keeps the components apart too
    sd = wrepo.structural_diff("HEAD", dataflow=False)
    assert sd.identical and sd.modules_a == sd.modules_b


def test_trainer_checkpoint_folder_keeps_both_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def trainer_folder(path: Path, final_seed: int) -> None:
        save_bert(path, seed=final_seed)
        save_bert(path / "checkpoint-30", seed=7)
        (path / "checkpoint-30" / "trainer_state.json").write_text(json.dumps({"global_step": 30}))
        torch.save({"step": 30}, path / "checkpoint-30" / "optimizer.pt")

    trainer_folder(tmp_path / "run1", final_seed=1)
    trainer_folder(tmp_path / "run2", final_seed=2)
    n = len(load_file(str(tmp_path / "run1" / "model.safetensors")))
    repo, _ = repo_with(tmp_path, tmp_path / "run1", tmp_path / "run2")
    d = repo.diff("m~1", "m")
    assert len(d.tensors) == 2 * n and d.summary.tensors_a == d.summary.tensors_b == 2 * n
    assert d.summary.counts["added"] == d.summary.counts["removed"] == 0
    assert {t.component for t in d.changes()} == {""}  # only the final model changed
    assert all(t.file_b == "model.safetensors" for t in d.changes())
    comps = {c.component: c for c in d.components}
    assert comps["checkpoint-30"].status == "unchanged" and comps["checkpoint-30"].tensors == n
    assert comps[""].name == "(root)" and comps[""].changed == len(d.changes())
    files = repo.read_tree(repo.read_commit(repo.resolve("m")).tree).files
    assert "checkpoint-30/optimizer.pt" not in files  # training state is left out by default
    out = run_text(capsys, repo.root, "diff", "m~1", "m")
    assert "component checkpoint-30: " + f"{n} tensors, unchanged" in out
    assert "component (root): " in out
    # a single model against the Trainer folder: the root model pairs, the checkpoint is added
    single = save_bert(tmp_path / "single", seed=1)
    d2 = diff_models(
        FolderTensorSource(single, chunk_size=CHUNK, label="single"),
        FolderTensorSource(tmp_path / "run1", chunk_size=CHUNK, label="run1"),
    )
    assert d2.summary.counts["unchanged"] == n and d2.summary.counts["added"] == n
    assert {t.component for t in d2.by_status("added")} == {"checkpoint-30"}
    assert not any(t.renamed_from for t in d2.tensors)


def test_pair_tensors_file_then_component_then_name() -> None:
    from mgit.diff.names import pair_tensors
    from mgit.diff.source import TensorInfo

    def infos(*items: tuple[str, str, str]) -> dict[str, TensorInfo]:
        return {key: TensorInfo(name, "F32", (1,), None, path) for key, path, name in items}

    a = infos(
        ("unet/a.safetensors:w", "unet/a.safetensors", "w"),
        ("vae/a.safetensors:w", "vae/a.safetensors", "w"),
        ("x", "unet/a.safetensors", "x"),
        ("bert.e", "m.safetensors", "bert.e"),
    )
    b = infos(
        ("unet/b.safetensors:w", "unet/b.safetensors", "w"),  # renamed file, same component
        ("vae/a.safetensors:w", "vae/a.safetensors", "w"),
        ("x", "unet/b.safetensors", "x"),
        ("e", "m.safetensors", "e"),  # head prefix
    )
    assert pair_tensors(a, b) == [
        ("bert.e", "e"),
        ("unet/a.safetensors:w", "unet/b.safetensors:w"),
        ("vae/a.safetensors:w", "vae/a.safetensors:w"),
        ("x", "x"),
    ]


def test_single_file_text_is_unchanged_for_arrays_in_memory() -> None:
    """Sources without files (arrays in memory) report exactly what they used to."""
    a = {"encoder.layer.0.w": np.ones((4, 4), np.float32), "bert.pooler.w": np.ones(3, np.float32)}
    b = {"encoder.layer.0.w": np.full((4, 4), 2, np.float32), "pooler.w": np.ones(3, np.float32)}
    d = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    assert render_text(d, color=False) == [
        "diff a -> b",
        "  2 tensors in a, 2 in b: 0 added, 0 removed, 1 changed, 0 dtype changed, "
        "0 shape changed, 1 unchanged",
        "  1 tensors paired across a head prefix (e.g. bert.pooler.w -> pooler.w)",
        "",
        "~ encoder.layer.0  1/1 tensors changed  L2 4  max rel 1",
        "    ~ w  F32 [4, 4]  L2 4  rel 1  max|d| 1  100% changed  cos 1.000000  rank 1",
        "",
        "= 1 unchanged block (1 tensor): pooler",
    ]


def test_readme_documents_the_json_schema() -> None:
    """README's "Model diff" section carries the schema the code documents, word for word."""
    from mgit.diff import JSON_SCHEMA_DOC

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Model diff") : readme.index("## Lineage views")]
    assert JSON_SCHEMA_DOC.strip() in section


def test_working_tree_bin_checkpoint_has_the_stored_tensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where a ``pytorch_model.bin`` is stored as tensors, the working tree reads the same ones:
    an untouched checkpoint is identical to its commit, a changed one shows its tensors."""
    wt = torch_save_bert(tmp_path / "wt", seed=0)
    repo = Repository.init(wt, model="m", chunk_size=CHUNK)
    repo.add([wt])
    repo.commit("v1")
    d = repo.diff("HEAD")
    assert d.summary.identical and d.summary.counts["removed"] == 0
    model = tiny_bert_model(0)
    with torch.no_grad():
        model.pooler.dense.weight.mul_(3.0)
    torch.save(model.state_dict(), wt / "pytorch_model.bin")
    d = repo.diff("HEAD")
    assert not d.summary.identical and d.file("pytorch_model.bin").status == "changed"
    if d.file("pytorch_model.bin").tensors_a:  # stored as tensors
        assert [t.name for t in d.changes()] == ["pooler.dense.weight"]
        assert d.changes()[0].stats.relative_change == pytest.approx(2.0, rel=1e-6)  # type: ignore[union-attr]
