"""The command line on Hugging Face folders: ``status``/``add`` in a hub cache snapshot,
``import --hf-cache ORG/NAME[@REV]``, ``-L/--follow-symlinks``, PEFT adapters, and the one-line
errors of bad inputs (nothing written)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import list_objects, model_tensors, run_main, safetensors_bytes

from mgit.repo import Repository

CHUNK = 65536

FT_CARD = """---
license: mit
base_model: org/base
datasets: [glue]
tags:
- text-classification
---
# ft
"""


def build_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str | None = None) -> Path:
    """The layout ``huggingface_hub`` writes (see tests/unit/test_hf_cache.py); returns the snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = commit or hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for rel, data in files.items():
        if rel.endswith(".safetensors"):
            h = hashlib.sha256(data).hexdigest()
        else:
            h = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / h).write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / h, link.parent))
    (repo / "refs" / "main").write_text(commit)
    return snap


def files_of(seed: int, card: str | None = None) -> dict[str, bytes]:
    out = {
        "config.json": b'{"model_type": "bert"}\n',
        "model.safetensors": safetensors_bytes(model_tensors(seed=seed)),
        "tokenizer/vocab.txt": b"a\nb\n",
    }
    if card:
        out["README.md"] = card.encode()
    return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "hub"
    c.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    return c


def ok(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    code, out, err = run_main(capsys, root, *args)
    assert code == 0, (args, out, err)
    return out


def js(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Any:
    return json.loads(ok(capsys, root, "--json", *args))


def test_status_and_add_in_a_snapshot(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = build_hub_cache(cache, "org/base", files_of(0))
    (snap / "partial.bin").symlink_to("../../blobs/missing")  # an interrupted download
    ok(capsys, snap, "init", "--model", "base")
    out = ok(capsys, snap, "status")
    assert "working tree clean" not in out
    assert "Untracked files:" in out and "model.safetensors" in out and "tokenizer/vocab.txt" in out
    assert "Skipped" in out and "partial.bin: dangling symlink: ../../blobs/missing does not exist" in out
    st = js(capsys, snap, "status")
    assert st["untracked"] == ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    assert [s["path"] for s in st["skipped"]] == ["partial.bin"]
    assert st["skipped"][0]["reason"].startswith("dangling symlink")
    # an entry that cannot be added is an error naming it, unless --skip-unreadable (issue #16)
    code, out, err = run_main(capsys, snap, "add", ".")
    assert code != 0 and "partial.bin: dangling symlink" in err and "--skip-unreadable" in err
    out = ok(capsys, snap, "add", "--skip-unreadable", ".")
    assert "staged   model.safetensors" in out and "skipped  partial.bin: dangling symlink" in out
    st = js(capsys, snap, "status")
    assert st["staged"]["new"] == ["config.json", "model.safetensors", "tokenizer/vocab.txt"]
    assert st["untracked"] == []
    ok(capsys, snap, "commit", "-m", "base")
    out = ok(capsys, snap, "status")
    assert "nothing to commit, working tree clean (1 skipped file listed above)" in out
    # the blobs are untouched, and export writes regular files
    out_dir = snap.parent.parent.parent / "export"
    ok(capsys, snap, "export", "base", str(out_dir))
    for rel, data in files_of(0).items():
        assert (out_dir / rel).read_bytes() == data and not (out_dir / rel).is_symlink()


def test_import_hf_cache(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_snap = build_hub_cache(cache, "org/base", files_of(0))
    ft_snap = build_hub_cache(cache, "org/ft", files_of(1, FT_CARD))
    root = tmp_path / "repo"
    Repository.init(root, model="main", chunk_size=CHUNK)
    res = js(capsys, root, "import", "--hf-cache", "org/base")
    assert res["commit"]["model"] == "base" and res["commit"]["parents"] == []
    assert res["commit"]["meta"] == {"hf_repo": "org/base", "hf_revision": base_snap.name}
    assert res["skipped"] == []
    out = ok(capsys, root, "import", "--hf-cache", f"org/ft@{ft_snap.name[:8]}", "--model", "ft-model",
             "-m", "the finetune")
    assert "[ft-model" in out and f"finetune of {res['commit']['oid'][:12]}" in out
    show = js(capsys, root, "show", "ft-model")
    assert show["meta"] == {
        "hf_repo": "org/ft", "hf_revision": ft_snap.name, "license": "mit", "base_model": "org/base",
        "datasets": "glue", "tags": "text-classification",
    }
    assert show["parents"] == [{"oid": res["commit"]["oid"], "relation": "finetune"}]
    # --parent wins over the card's base_model
    r = js(capsys, root, "import", "--hf-cache", "org/ft", "--model", "ft2", "--parent", "ft-model")
    assert [p["relation"] for p in r["commit"]["parents"]] == ["finetune"]
    assert r["commit"]["parents"][0]["oid"] != res["commit"]["oid"]


def test_import_follow_symlinks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    Repository.init(root, model="main", chunk_size=CHUNK)
    src = tmp_path / "src"
    src.mkdir()
    weights = tmp_path / "elsewhere.safetensors"
    weights.write_bytes(safetensors_bytes(model_tensors(seed=3)))
    (src / "model.safetensors").symlink_to(weights)
    (src / "broken").symlink_to(tmp_path / "nowhere")
    before = list_objects(root / ".mgit")
    code, out, err = run_main(capsys, root, "import", str(src), "--model", "m", "-m", "m")
    assert code == 1 and err.startswith("mgit: error: unsafe path model.safetensors: symlink points outside")
    assert "-L" in err and list_objects(root / ".mgit") == before
    code, out, err = run_main(capsys, root, "import", "-L", str(src), "--model", "m", "-m", "m")
    assert code != 0 and "cannot read broken: dangling symlink" in err
    out = ok(capsys, root, "import", "-L", "--skip-unreadable", str(src), "--model", "m", "-m", "m")
    assert "skipped broken: dangling symlink" in out
    ok(capsys, root, "export", "m", str(tmp_path / "out"))
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights.read_bytes()
    assert not (tmp_path / "out" / "model.safetensors").is_symlink()


def test_add_follow_symlinks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wt = tmp_path / "wt"
    Repository.init(wt, model="m", chunk_size=CHUNK)
    ext = tmp_path / "ext.bin"
    ext.write_bytes(b"0123")
    (wt / "w.bin").symlink_to(ext)
    out = ok(capsys, wt, "status")
    assert "w.bin" in out and "symlink points outside the model folder" in out
    code, _, err = run_main(capsys, wt, "add", "w.bin")
    assert code == 1 and "outside the model folder" in err and "hint: -L/--follow-symlinks follows it" in err
    assert "staged   w.bin" in ok(capsys, wt, "add", "--follow-symlinks", "w.bin")
    ok(capsys, wt, "commit", "-m", "linked")
    st = js(capsys, wt, "status")
    assert st["clean"] and st["skipped"] == [] and st["untracked"] == []


def test_peft_adapter_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    base = transformers.BertModel(cfg)
    base.save_pretrained(tmp_path / "base")
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["query", "value"]))
    lora.save_pretrained(tmp_path / "lora")
    root = tmp_path / "repo"
    Repository.init(root, model="main", chunk_size=CHUNK)
    b = js(capsys, root, "import", str(tmp_path / "base"), "--model", "bert-tiny", "-m", "base")
    out = ok(capsys, root, "import", str(tmp_path / "lora"), "--model", "lora", "-m", "lora", "--guess-parent")
    assert "candidate bert-tiny@" in out and "4 of 4 adapter target modules fit" in out
    show = js(capsys, root, "show", "lora")
    assert show["parents"][0]["oid"] == b["commit"]["oid"] and show["parents"][0]["relation"] == "adapter"
    assert show["meta"]["adapter_type"] == "LORA" and show["meta"]["r"] == "4"
    cfg_path = tmp_path / "lora" / "adapter_config.json"
    acfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**acfg, "base_model_name_or_path": "x/bert-tiny"}))
    r = js(capsys, root, "import", str(tmp_path / "lora"), "--model", "lora-named", "-m", "lora")
    assert r["commit"]["parents"] == [{"oid": b["commit"]["oid"], "relation": "adapter"}]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["import", "--hf-cache", "org/nope"], 2, "mgit: error: org/nope is not in the Hugging Face cache"),
        (["import", "--hf-cache", "org/base@v2"], 2,
         "mgit: error: revision v2 of org/base is not in the Hugging Face cache"),
        (["import", "--hf-cache", "org/base@deadbeef"], 2,
         "mgit: error: revision deadbeef of org/base is not in"),
        (["import", "--hf-cache", "not a repo"], 2, "mgit: error: not a Hugging Face repository id"),
        (["import", "SRC", "--hf-cache", "org/base", "--model", "x", "-m", "x"], 2,
         "mgit: error: give either DIRECTORY or --hf-cache"),
        (["import", "SRC", "-m", "x"], 2, "mgit: error: importing a folder needs --model NAME and -m MSG"),
        (["import", "ADAPTER", "--model", "x", "-m", "x"], 1,
         "mgit: error: invalid model file adapter_config.json: not valid JSON"),
    ],
)
def test_bad_inputs(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    build_hub_cache(cache, "org/base", files_of(0))
    root = tmp_path / "repo"
    Repository.init(root, model="main", chunk_size=CHUNK)
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(safetensors_bytes(model_tensors(seed=0)))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 4,')
    (adapter / "adapter_model.safetensors").write_bytes(safetensors_bytes(model_tensors(seed=1)))
    args = [str(src) if a == "SRC" else str(adapter) if a == "ADAPTER" else a for a in args]
    before = list_objects(root / ".mgit")
    got, out, err = run_main(capsys, root, *args)
    assert got == code, (out, err)
    first = err.splitlines()[0]
    assert first.startswith(message), err
    assert out == "" and list_objects(root / ".mgit") == before
    assert Repository.open(root).model_heads() == {}
