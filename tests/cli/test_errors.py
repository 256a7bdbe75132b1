"""Every error path: a non-zero exit code, one ``mgit: error: ...`` line (and maybe a ``hint:``
line) on stderr, no traceback; ``MGIT_DEBUG=1`` shows the traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import make_tensor, model_tensors, raw_safetensors, run_main, write_model_folder

from mgit.repo import Repository

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A repository (model 'bert') with one commit of a small model."""
    root = tmp_path / "bert"
    write_model_folder(root, model_tensors("F32", vocab=300))
    repo = Repository.init(root, model="bert", chunk_size=65536)
    repo.add([root])
    repo.commit("base")
    return root


def assert_one_line_error(
    code: int, out: str, err: str, *, exit_code: int | None = None, says: str | None = None
) -> None:
    assert code != 0
    if exit_code is not None:
        assert code == exit_code, (code, err)
    lines = err.rstrip("\n").splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("mgit: error: "), err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), err
    assert "Traceback" not in err and "Traceback" not in out
    if says is not None:
        assert says in lines[0], err


def flip_chunk(root: Path, oid: str) -> None:
    p = root / ".mgit" / "objects" / oid[:2] / oid[2:]
    os.chmod(p, 0o644)
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    p.write_bytes(bytes(data))


Setup = Callable[[Path], list[str]]


def _not_a_repo(root: Path) -> list[str]:
    return ["-C", str(root.parent / "empty"), "status"]


def _lock_held(root: Path) -> list[str]:
    (root / ".mgit" / "index.lock").write_text("")
    (root / "x.txt").write_text("x")
    return ["add", "x.txt"]


def _corrupt_export(root: Path) -> list[str]:
    repo = Repository.open(root)
    oid = repo.tensors("bert")["pooler.weight"].chunks[0]
    flip_chunk(root, oid)
    return ["export", "bert", str(root.parent / "out")]


def _missing_object(root: Path) -> list[str]:
    repo = Repository.open(root)
    oid = repo.tensors("bert")["pooler.weight"].chunks[0]
    (root / ".mgit" / "objects" / oid[:2] / oid[2:]).unlink()
    return ["export", "bert", str(root.parent / "out")]


def _bad_format(root: Path) -> list[str]:
    cfg = json.loads((root / ".mgit" / "config").read_text())
    cfg["format_version"] = 99
    (root / ".mgit" / "config").write_text(json.dumps(cfg))
    return ["log"]


def _dirty_checkout(root: Path) -> list[str]:
    Repository.open(root).create_tag("t")
    (root / "config.json").write_text('{"edited": "locally, and longer"}')
    (root / "README.md").write_text("x")
    repo = Repository.open(root)
    repo.add([root / "README.md"])
    repo.commit("v2")
    (root / "config.json").write_text('{"edited": "again, and even longer"}')
    return ["checkout", "t"]


def _bad_safetensors(root: Path) -> list[str]:
    src = root.parent / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(raw_safetensors(b"{not json}"))
    return ["import", str(src), "--model", "m", "-m", "x"]


def _export_non_empty(root: Path) -> list[str]:
    out = root.parent / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    return ["export", "bert", str(out)]


def _symlink_out(root: Path) -> list[str]:
    (root.parent / "secret").write_text("s")
    os.symlink(root.parent / "secret", root / "leak")
    return ["add", "."]


def _staged_changed(root: Path) -> list[str]:
    (root / "new.txt").write_text("one")
    Repository.open(root).add([root / "new.txt"])
    (root / "new.txt").write_text("three")
    return ["commit", "-m", "x"]


def _ambiguous(root: Path) -> list[str]:
    from mgit.objects.ids import hash_object
    from mgit.objects.model import Commit, Tree

    repo = Repository.open(root)
    tree = repo.store.put("tree", Tree({}).to_bytes())
    seen: dict[str, bytes] = {}
    for i in range(200000):
        data = Commit(tree=tree, parents=(), model="x", author="a", time=i, message="m").to_bytes()
        oid = hash_object("commit", data)
        if oid[:4] in seen:
            repo.store.put("commit", seen[oid[:4]])
            repo.store.put("commit", data)
            return ["show", oid[:4]]
        seen[oid[:4]] = data
    raise AssertionError("no collision found")


def _existing_tag(root: Path) -> list[str]:
    Repository.open(root).create_tag("t1")
    return ["tag", "t1"]


ERRORS: dict[str, tuple[Setup, int | None, str | None]] = {
    # name: (setup returning the argv after "-C ROOT", expected exit code, text in the message)
    "not a repository": (_not_a_repo, 10, "not an mgit repository"),
    "unknown ref": (lambda r: ["show", "nope"], 1, "nope"),
    "unknown ref in log": (lambda r: ["log", "bert~5"], 1, "bert~5"),
    "ambiguous prefix": (_ambiguous, 1, "ambiguous"),
    "nothing to commit": (lambda r: ["commit", "-m", "x"], 1, "nothing to commit"),
    "staged file changed": (_staged_changed, 2, "new.txt"),
    "invalid model name": (lambda r: ["branch", "a..b"], 2, "a..b"),
    "invalid tag name": (lambda r: ["tag", "--", "-x"], 2, "-x"),
    "HEAD as a model name": (
        lambda r: ["commit", "-m", "x", "--model", "HEAD", "--allow-empty"],
        2,
        "HEAD",
    ),
    "existing tag": (_existing_tag, 2, "t1"),
    "lock held": (_lock_held, 11, "lock"),
    "corrupt object on export": (_corrupt_export, 12, "corrupt object"),
    "missing object on export": (_missing_object, 12, "not found"),
    "unsupported format": (_bad_format, None, "format version"),
    "repository exists": (lambda r: ["init"], 1, "exists"),
    "dirty checkout": (_dirty_checkout, 1, "config.json"),
    "invalid safetensors": (_bad_safetensors, 1, "invalid model file"),
    "export into non-empty": (_export_non_empty, 2, "config.json"),
    "symlink pointing outside": (_symlink_out, None, "unsafe path"),
    "add missing path": (lambda r: ["add", "nope.txt"], 2, "nope.txt"),
    "add outside the folder": (lambda r: ["add", str(r.parent)], None, "unsafe path"),
    "bad --meta": (
        lambda r: ["commit", "-m", "x", "--meta", "novalue", "--allow-empty"],
        2,
        "novalue",
    ),
    "bad --lossy": (lambda r: ["commit", "-m", "x", "--lossy", "-1", "--allow-empty"], 2, "lossy"),
    "check without lossy": (
        lambda r: ["commit", "-m", "x", "--check", "true", "--allow-empty"],
        2,
        "--check",
    ),
    "import missing folder": (
        lambda r: ["import", str(r.parent / "nope"), "--model", "m", "-m", "x"],
        2,
        None,
    ),
    "delete checked-out line": (lambda r: ["branch", "-d", "bert"], 2, "bert"),
    "delete unknown tag": (lambda r: ["tag", "-d", "nope"], 1, "nope"),
    "load unknown tensor ref": (lambda r: ["export", "nope", str(r.parent / "o")], 1, "nope"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_error_is_one_line(committed: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    (committed.parent / "empty").mkdir(exist_ok=True)
    setup, exit_code, says = ERRORS[case]
    argv = setup(committed)
    if argv[:1] == ["-C"]:
        code, out, err = run_main(capsys, None, *argv)
    else:
        code, out, err = run_main(capsys, committed, *argv)
    assert_one_line_error(code, out, err, exit_code=exit_code, says=says)


def test_corrupt_object_error_names_the_object(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repository.open(committed)
    oid = repo.tensors("bert")["pooler.weight"].chunks[0]
    flip_chunk(committed, oid)
    out_dir = committed.parent / "out"
    code, _out, err = run_main(capsys, committed, "export", "bert", str(out_dir))
    assert code == 12
    assert oid in err.splitlines()[0]
    assert not (out_dir / "model.safetensors").exists()


def test_usage_errors_exit_2_without_traceback(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["commit"],
        ["no-such-command"],
        ["commit", "-m", "x", "--relation", "cousin"],
        ["log", "-n", "x"],
    ):
        code, _out, err = run_main(capsys, committed, *argv)
        assert code == 2, argv
        assert "Traceback" not in err and err.strip(), argv
    code, _out, err = run_main(capsys, None, "-C", str(committed / "no-such-dir"), "status")
    assert code == 2 and "Traceback" not in err


def test_non_utf8_message_does_not_crash(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A message that is not valid Unicode (bytes from a non-UTF-8 terminal arrive as lone
    # surrogates): committed, or refused with one line, never a traceback.
    code, out, err = run_main(capsys, committed, "commit", "-m", "caf\udce9", "--allow-empty")
    assert "Traceback" not in err
    if code != 0:
        assert_one_line_error(code, out, err)


def test_non_utf8_file_name_does_not_crash(
    committed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A file whose name is not valid UTF-8 (made on a Latin-1 system): committed, or refused
    # with one line, never a traceback.
    with open(os.fsencode(committed) + b"/caf\xe9.txt", "wb") as f:
        f.write(b"latin-1 name")
    code, out, err = run_main(capsys, committed, "add", ".")
    assert "Traceback" not in err
    if code == 0:
        code, out, err = run_main(capsys, committed, "commit", "-m", "x")
    assert "Traceback" not in err
    if code != 0:
        assert_one_line_error(code, out, err)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import sys; from mgit.cli import main; sys.exit(main(sys.argv[1:]))"
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def test_debug_shows_traceback(tmp_path: Path) -> None:
    p = _run(["-C", str(tmp_path), "status"], {"MGIT_DEBUG": "1"})
    assert p.returncode != 0
    assert "Traceback" in p.stderr and "NotARepositoryError" in p.stderr


def test_without_debug_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MGIT_DEBUG"}
    code = "import sys; from mgit.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run(
        [sys.executable, "-c", code, "-C", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        env=dict(env, PYTHONPATH=str(ROOT)),
        timeout=120,
        check=False,
    )
    assert p.returncode == 10
    assert p.stderr.splitlines()[0].startswith("mgit: error: not an mgit repository")
    assert "Traceback" not in p.stderr


def test_errors_are_one_line_for_a_tensor_file_at_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "model.safetensors").write_bytes(
        raw_safetensors(
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            make_tensor("F32", (2,), 0).tobytes(),
        )
    )
    Repository.init(root, chunk_size=65536)
    assert run_main(capsys, root, "add", ".")[0] == 0
    code, out, err = run_main(capsys, root, "commit", "-m", "x")
    assert_one_line_error(code, out, err, says="model.safetensors")
