"""The command line of remotes: ``mgit remote``, ``push``, ``fetch``, ``pull``, ``clone``."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from mgit.commands.cmd_remote import RichTransferProgress
from mgit.remote.open import open_transport
from mgit.repo import Repository
from tests.helpers import run_main, sha256_tree, write_model_folder
from tests.remote.conftest import RemoteSpec, Source, perturbed


def test_remote_add_list_remove(source: Source, tmp_path: Path, capsys: Any) -> None:
    code, out, err = run_main(capsys, source.path, "remote", "add", "origin", "../shared")
    assert code == 0, err
    assert str(tmp_path / "shared") in out  # a relative path is stored absolute
    code, out, _ = run_main(capsys, source.path, "remote", "add", "s3", "s3://bucket/team/models")
    assert code == 0
    code, out, _ = run_main(capsys, source.path, "--json", "remote", "list")
    assert json.loads(out) == [
        {"name": "origin", "url": str(tmp_path / "shared")},
        {"name": "s3", "url": "s3://bucket/team/models"},
    ]
    code, out, _ = run_main(capsys, source.path, "remote")
    assert out.splitlines() == [f"origin\t{tmp_path / 'shared'}", "s3\ts3://bucket/team/models"]
    code, _, err = run_main(capsys, source.path, "remote", "add", "origin", "/elsewhere")
    assert code == 2 and "already exists" in err
    code, _, err = run_main(capsys, source.path, "remote", "add", "bad/name", "/x")
    assert code == 2
    code, _, err = run_main(capsys, source.path, "remote", "add", "web", "https://example.com/m")
    assert code == 1 and "unsupported remote URL" in err and "hint:" in err
    code, _, _ = run_main(capsys, source.path, "remote", "remove", "s3")
    assert code == 0
    code, _, err = run_main(capsys, source.path, "remote", "remove", "s3")
    assert code == 2 and "no such remote" in err


def test_push_clone_pull_through_the_cli(
    source: Source, remote: RemoteSpec, tmp_path: Path, capsys: Any
) -> None:
    assert run_main(capsys, source.path, "remote", "add", "origin", remote.url)[0] == 0
    code, out, err = run_main(capsys, source.path, "push")
    assert code == 0, err
    assert f"To {remote.url}" in out and "bert: new" in out and "sent " in out
    # A model name in the remote's place means "this model, to the default remote".
    code, out, err = run_main(capsys, source.path, "--json", "push", "bert-ft")
    assert code == 0, err
    data = json.loads(out)
    assert [u["ref"] for u in data["updates"]] == ["refs/heads/bert-ft"]
    assert data["bytes_sent"] > 0

    code, out, err = run_main(capsys, tmp_path, "clone", remote.url, "copy", "--model", "bert")
    assert code == 0, err
    assert "checked out bert" in out
    assert sha256_tree(tmp_path / "copy") == sha256_tree(source.base_dir)

    write_model_folder(source.path, perturbed(source.base_tensors, 21))
    source.repo.add([str(source.path)])
    v2 = source.repo.commit("v2").commit.oid
    assert run_main(capsys, source.path, "push", "origin", "bert")[0] == 0
    code, out, err = run_main(capsys, tmp_path / "copy", "pull")
    assert code == 0, err
    assert "fast-forward" in out and "files written" in out
    assert Repository.open(tmp_path / "copy").head() == v2
    code, out, _ = run_main(capsys, tmp_path / "copy", "--json", "fetch")  # bert-ft is new here
    assert code == 0 and json.loads(out)["heads"] == {"bert": v2, "bert-ft": source.ft}
    code, out, _ = run_main(capsys, tmp_path / "copy", "--json", "fetch")
    assert code == 0 and json.loads(out)["objects_received"] == 0
    code, out, _ = run_main(capsys, tmp_path / "copy", "pull")
    assert code == 0 and "already up to date" in out


def test_rejected_push_exits_non_zero_with_a_hint(
    source: Source, tmp_path: Path, capsys: Any
) -> None:
    url = str(tmp_path / "shared")
    assert run_main(capsys, source.path, "push", url, "bert")[0] == 0
    assert run_main(capsys, tmp_path, "clone", url, "other")[0] == 0
    other = Repository.open(tmp_path / "other")
    other.import_folder(
        write_model_folder(tmp_path / "a", perturbed(source.base_tensors, 1)),
        model="bert",
        message="theirs",
    )
    assert run_main(capsys, tmp_path / "other", "push")[0] == 0
    source.repo.import_folder(
        write_model_folder(tmp_path / "b", perturbed(source.base_tensors, 2)),
        model="bert",
        message="ours",
    )
    code, _out, err = run_main(capsys, source.path, "push", url, "bert")
    assert code == 1
    assert err.splitlines()[0] == "mgit: error: push rejected: bert (non-fast-forward)"
    assert err.splitlines()[1].startswith("hint: the remote has versions you do not: run 'mgit pull'")
    code, out, err = run_main(capsys, source.path, "push", "--force", url, "bert")
    assert code == 0 and "(forced)" in out


def test_unreachable_s3_endpoint_is_one_line(
    source: Source, capsys: Any, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MGIT_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    code, _out, err = run_main(capsys, source.path, "push", "s3://bucket/models", "bert")
    assert code == 1
    lines = err.splitlines()
    assert (
        lines[0]
        == f"mgit: error: cannot connect to S3 at http://127.0.0.1:{port} for s3://bucket/models"
    )
    assert lines[1].startswith("hint: ") and len(lines) == 2


def test_clone_of_a_missing_store_and_into_a_busy_folder(tmp_path: Path, capsys: Any) -> None:
    code, _, err = run_main(capsys, tmp_path, "clone", str(tmp_path / "nothing"), "x")
    assert code == 1 and "no mgit store" in err
    assert not (tmp_path / "x").exists()


def test_progress_bar_draws_bytes_and_objects() -> None:
    bar = RichTransferProgress()
    bar.begin("pushing", objects=3, total_bytes=300)
    for _ in range(3):
        bar.advance(objects=1, nbytes=100)
    task = bar._progress.tasks[0]
    assert task.completed == 300 and task.total == 300
    assert task.fields["objs"] == "3/3 objects"
    assert "B/s" in task.fields["rate"]
    bar.end()
    bar.advance(objects=1)  # after end: ignored
    bar.begin("fetching", objects=2, total_bytes=None)
    bar.advance(objects=2, nbytes=10)
    assert bar._progress.tasks[0].completed == 10
    assert bar._progress.tasks[0].fields["objs"] == "2/2 objects"
    bar.end()


def test_s3_remote_config_is_created_by_push(source: Source, s3_bucket: str, capsys: Any) -> None:
    url = f"s3://{s3_bucket}/models"
    code, _out, err = run_main(capsys, source.path, "push", url, "bert")
    assert code == 0, err
    assert open_transport(url).read_config() == {
        "format_version": 2,
        "hash": "blake3",
        "bare": True,
    }
