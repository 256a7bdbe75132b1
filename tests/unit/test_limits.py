"""The one table of input limits (mgit.limits), the non-blocking file opener, escaped text
output and the ambiguous-ref warning (issue #16)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from helpers import make_model_folder, raw_safetensors, run_main

from mgit._fs import check_not_in_mgit_dir, open_regular, read_regular
from mgit.commands._common import clean
from mgit.errors import (
    AmbiguousRefWarning,
    CorruptObjectError,
    InvalidModelFileError,
    UnreadableFileError,
    UnsafePathError,
)
from mgit.formats.safetensors import parse_header
from mgit.limits import MAX_DIMS
from mgit.objects.model import FileEntry
from mgit.repo import Repository


def _header(shape: list[int], name: str = "w") -> bytes:
    return raw_safetensors(
        {name: {"dtype": "F32", "shape": shape, "data_offsets": [0, 4]}}, b"\0" * 4
    )


def _entry(shape: list[int], name: str = "w") -> dict[str, object]:
    m = {"dtype": "F32", "shape": shape, "chunk_size": 65536, "chunks": ["ab" * 32]}
    return {
        "kind": "safetensors",
        "size": 12,
        "xxh": "0" * 32,
        "header": "cd" * 32,
        "tensors": [[name, m]],
    }


@pytest.mark.parametrize("dims", [MAX_DIMS, MAX_DIMS + 1, 71])
def test_parser_and_tree_validation_agree_on_dimensions(dims: int) -> None:
    data = _header([1] * dims)
    if dims <= MAX_DIMS:
        parse_header("m", data, len(data))
        FileEntry.from_json(_entry([1] * dims))
    else:
        with pytest.raises(InvalidModelFileError, match=f"{dims} dimensions"):
            parse_header("m", data, len(data))
        with pytest.raises(CorruptObjectError):
            FileEntry.from_json(_entry([1] * dims))


def test_a_lone_surrogate_is_refused_on_both_sides() -> None:
    data = raw_safetensors(
        '{"w\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4
    )
    with pytest.raises(InvalidModelFileError, match="not valid UTF-8"):
        parse_header("m", data, len(data))
    with pytest.raises(CorruptObjectError, match="not valid UTF-8"):
        FileEntry.from_json(_entry([1], name="w\ud800"))


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFileError, match="FIFO"):
        open_regular(fifo)  # a plain open() would wait for a writer forever
    with pytest.raises(UnreadableFileError, match="folder"):
        read_regular(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "none")
    (tmp_path / "f").write_bytes(b"abc")
    assert read_regular(tmp_path / "f") == b"abc"


def test_targets_inside_a_repository_folder_are_refused(tmp_path: Path) -> None:
    Repository.init(tmp_path / "r", model="m")
    for bad in (
        tmp_path / "r" / ".mgit",
        tmp_path / "r" / ".mgit" / "refs" / "heads",
        tmp_path / "r" / ".mgit" / "new",
    ):
        with pytest.raises(UnsafePathError, match="refused"):
            check_not_in_mgit_dir(bad, action="export")
    check_not_in_mgit_dir(tmp_path / "r", action="export")  # the working tree itself is fine
    check_not_in_mgit_dir(tmp_path / "elsewhere", action="export")


def test_clean_escapes_what_could_forge_a_line() -> None:
    assert clean("a\nb\rc\x1b[2Jd\x00e\u202ef\ud800") == "a\\nb\\rc\\x1b[2Jd\\x00e\\u202ef\\ud800"
    assert clean("tab\there \x1b[33mcolour\x1b[0m") == "tab\there \x1b[33mcolour\x1b[0m"
    assert clean("\x1b[8mhidden") == "\\x1b[8mhidden"


def test_show_log_and_status_escape_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "r"
    make_model_folder(root, seed=1)
    repo = Repository.init(root, model="m", chunk_size=65536)
    repo.add([root])
    repo.commit("base\r\x1b[1Afake line", meta={"k\nCommit: forged": "v\x1b[2J"})
    (root / "new\nmodified:   config.json").write_text("x")
    for args in (["show", "m"], ["log"], ["status"]):
        code, out, err = run_main(capsys, root, *args)
        assert code == 0, err
        assert "\r" not in out and "\x1b" not in out, (args, out)
        assert "\nCommit: forged" not in out and "\nmodified:   config.json" not in out, (args, out)
    code, out, _ = run_main(capsys, root, "show", "m")
    assert "k\\nCommit: forged = v\\x1b[2J" in out


def test_a_name_that_is_also_a_commit_prefix_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "r"
    make_model_folder(root, seed=1)
    repo = Repository.init(root, model="m", chunk_size=65536)
    repo.add([root])
    oid = repo.commit("base").commit.oid
    make_model_folder(tmp_path / "other", seed=2)
    with pytest.warns(AmbiguousRefWarning, match="hides a commit id"):
        repo.import_folder(tmp_path / "other", model=oid[:6], message="x")
    with pytest.warns(AmbiguousRefWarning, match="prefix of commit"):
        assert repo.resolve(oid[:6]) != oid  # the name wins, as in git
    code, _out, err = run_main(capsys, root, "show", oid[:6])
    assert code == 0 and err.count("mgit: warning:") == 1 and oid[:12] in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repo.resolve(oid[:7]) == oid  # longer than the name: no ambiguity, no warning
