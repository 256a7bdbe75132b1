"""File-system primitives: the Linux calls (C module mgit._syscalls, or ctypes without it) and
process-unique temp names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mgit import _fs

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux system calls")


@pytest.fixture(params=["native", "ctypes"])
def calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with mgit._syscalls, and again with the ctypes fallback."""
    if request.param == "native":
        if _fs._native() is None:
            pytest.skip("mgit._syscalls is not built")
    else:
        monkeypatch.setattr(_fs, "_native", lambda: None)
    return str(request.param)


@linux
def test_start_writeback_is_only_a_hint(calls: str, tmp_path: Path) -> None:
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.write(b"y" * 100_000)
        f.flush()
        _fs.start_writeback(f.fileno())
    r, w = os.pipe()
    try:
        _fs.start_writeback(r)  # sync_file_range fails on a pipe: ignored
    finally:
        os.close(r)
        os.close(w)
    assert path.read_bytes() == b"y" * 100_000


@linux
def test_mallopt_answers_whether_it_applied(calls: str) -> None:
    m_trim_threshold = -1
    assert _fs.mallopt(m_trim_threshold, 128 << 20) is True


def test_temp_names_are_unique_and_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "obj"
    names = {_fs.temp_name(target) for _ in range(1000)}
    assert len(names) == 1000
    for n in names:
        assert n.parent == tmp_path and n.name.startswith(f"obj.{os.getpid()}.")
        assert n.name.endswith(".tmp")
