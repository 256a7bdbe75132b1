"""End-to-end through the command line: init, add, commit x3, log, show, models, stats, branch,
tag, checkout, import, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    finetune_head,
    make_tensor,
    model_tensors,
    run_cli,
    run_main,
    sha256_tree,
    write_model_folder,
)


def ok(path: Path, *args: str) -> Any:
    res = run_cli(path, *args)
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res


def okj(path: Path, *args: str) -> Any:
    return json.loads(ok(path, "--json", *args).stdout)


def test_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "bert"
    tensors = model_tensors("F32", vocab=300)
    write_model_folder(root, tensors)
    files_v1 = sha256_tree(root)

    res = ok(root, "init", "--model", "bert")
    assert "bert" in res.stdout
    assert (root / ".mgit" / "config").is_file()
    assert "Untracked" in ok(root, "status").stdout

    # -- commit 1: the base
    res = ok(root, "add", ".")
    assert "staged" in res.stdout and "model.safetensors" in res.stdout
    assert okj(root, "status")["staged"]["new"] == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    res = ok(root, "commit", "-m", "base model")
    assert res.stdout.startswith("[bert ")
    v1 = okj(root, "log")[0]["oid"]

    # -- commit 2: a new version of the same model
    v2_tensors = dict(tensors)
    v2_tensors["pooler.weight"] = make_tensor("F32", tensors["pooler.weight"].shape, 1234)
    write_model_folder(root, v2_tensors)
    st = okj(root, "status")
    assert st["modified"] == ["model.safetensors"] and st["clean"] is False
    ok(root, "add", "model.safetensors")
    ok(root, "commit", "-m", "v2: new pooler")
    files_v2 = sha256_tree(root)
    assert "nothing to commit" in ok(root, "status").stdout

    # -- commit 3: a derived model, its own line
    write_model_folder(root, finetune_head(v2_tensors))
    ok(root, "add", str(root))  # absolute path works too
    res = ok(
        root,
        "commit",
        "-m",
        "finetuned on sst2",
        "--model",
        "bert-sst2",
        "--parent",
        "bert",
        "--relation",
        "finetune",
        "--meta",
        "task=sst2",
        "--meta",
        "acc=0.91",
    )
    assert res.stdout.startswith("[bert-sst2 ")
    files_ft = sha256_tree(root)

    # -- log, text and JSON
    log = okj(root, "log")
    assert [c["model"] for c in log] == ["bert-sst2", "bert", "bert"]
    ft, v2 = log[0]["oid"], log[1]["oid"]
    assert log[0]["parents"] == [{"oid": v2, "relation": "finetune"}]
    assert log[0]["meta"] == {"task": "sst2", "acc": "0.91"}
    assert log[1]["parents"] == [{"oid": v1, "relation": "version"}]
    assert log[2]["oid"] == v1 and log[2]["parents"] == []
    assert log[0]["message"] == "finetuned on sst2"
    text = ok(root, "log").stdout
    for oid in (ft, v2, v1):
        assert f"commit {oid}" in text
    assert "finetune" in text and "bert-sst2" in text and "finetuned on sst2" in text
    assert [c["oid"] for c in okj(root, "log", "bert")] == [v2, v1]
    assert [c["oid"] for c in okj(root, "log", "-n", "1")] == [ft]

    graph = ok(root, "log", "--graph", "--all").stdout
    for oid in (ft, v2, v1):
        assert oid[:7] in graph
    assert "*" in graph
    oneline = ok(root, "log", "--oneline").stdout.strip().splitlines()
    assert len(oneline) == 3

    # -- show
    show = ok(root, "show", "bert-sst2").stdout
    assert f"commit {ft}" in show and "task = sst2" in show and "model.safetensors" in show
    sj = okj(root, "show", "HEAD~1")
    assert sj["oid"] == v2 and "model.safetensors" in sj["files"]
    assert sj["files"]["model.safetensors"]["kind"] == "safetensors"

    # -- models and stats
    models = {m["name"]: m for m in okj(root, "models")}
    assert set(models) == {"bert", "bert-sst2"}
    assert models["bert"]["versions"] == 2 and models["bert"]["head"] == v2
    assert models["bert-sst2"]["derived_from"] == f"bert@{v2[:12]}"
    assert models["bert-sst2"]["relation"] == "finetune" and models["bert-sst2"]["current"] is True
    assert "bert-sst2" in ok(root, "models").stdout
    stats = okj(root, "stats")
    assert set(stats["models"]) == {"bert", "bert-sst2"}
    total = stats["total"]
    assert total["logical_bytes"] == sum(m["logical_bytes"] for m in stats["models"].values())
    assert stats["models"]["bert-sst2"]["stored_bytes"] < stats["models"]["bert"]["stored_bytes"]
    assert "total" in ok(root, "stats").stdout

    # -- branch and tag
    ok(root, "branch", "exp", "bert~1")
    branches = okj(root, "branch")
    assert branches["models"]["exp"] == v1 and branches["current"] == "bert-sst2"
    ok(root, "tag", "first", "bert~1")
    ok(root, "tag", "ft-release")
    tags = okj(root, "tag")["tags"]
    assert tags == {"first": v1, "ft-release": ft}
    assert "first" in ok(root, "tag").stdout

    # -- checkout
    res = ok(root, "checkout", "bert")
    assert sha256_tree(root) == files_v2
    assert okj(root, "status")["model"] == "bert"
    ok(root, "checkout", "first")
    assert sha256_tree(root) == files_v1
    st = okj(root, "status")
    assert st["detached"] is True and st["head"] == v1
    ok(root, "checkout", "exp")
    assert sha256_tree(root) == files_v1 and okj(root, "status")["model"] == "exp"
    ok(root, "checkout", "bert-sst2")
    assert sha256_tree(root) == files_ft

    # -- import a folder from elsewhere as a derived model
    other = tmp_path / "distilled"
    write_model_folder(other, model_tensors("F32", seed=5, vocab=300, layers=1))
    ok(
        root,
        "import",
        str(other),
        "--model",
        "bert-tiny",
        "-m",
        "distilled",
        "--parent",
        "bert",
        "--relation",
        "distill",
    )
    tiny = okj(root, "show", "bert-tiny")
    assert tiny["parents"] == [{"oid": v2, "relation": "distill"}]
    assert sha256_tree(root) == files_ft  # import does not touch the working tree

    # -- export, byte-identical
    for ref, want in (
        ("bert-sst2", files_ft),
        ("bert~1", files_v1),
        (v2[:10], files_v2),
        ("bert-tiny", sha256_tree(other)),
    ):
        out = tmp_path / f"out-{ref.replace('~', '_')}"
        ok(root, "export", ref, str(out))
        assert sha256_tree(out) == want, ref
    # relative DIR is relative to -C
    ok(root, "export", "bert", "exported")
    assert sha256_tree(root / "exported") == files_v2


def test_init_path_argument_and_json(tmp_path: Path) -> None:
    data = okj(tmp_path, "init", "sub/model")
    assert data["model"] == "model" and data["bare"] is False
    assert (tmp_path / "sub" / "model" / ".mgit" / "config").is_file()


def test_commit_json_result(tmp_path: Path) -> None:
    write_model_folder(tmp_path, model_tensors("F16"))
    ok(tmp_path, "init")
    ok(tmp_path, "add", ".")
    data = okj(tmp_path, "commit", "-m", "x")
    assert data["files"] == 3 and data["new_chunks"] == data["chunks"] > 0
    assert data["commit"]["parents"] == [] and data["logical_bytes"] > 0


def test_help_and_version(tmp_path: Path) -> None:
    res = run_cli(tmp_path, "--help")
    assert res.exit_code == 0
    for cmd in (
        "init",
        "add",
        "commit",
        "import",
        "status",
        "log",
        "show",
        "checkout",
        "export",
        "models",
        "stats",
        "branch",
        "tag",
    ):
        assert cmd in res.stdout
    assert run_cli(tmp_path, "--version").exit_code == 0


def test_main_returns_zero_on_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, tmp_path, "init")
    assert code == 0 and "Initialized" in out and err == ""
