"""The command-line process keeps freed chunk buffers for reuse (glibc mallopt); the library
never changes its host's allocator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")

LIBRARY = """
import mgit.repo, mgit._alloc as a
assert a._done is False  # importing or using the library tunes nothing
print(a.tune_allocator(), a.tune_allocator())
"""

CLI = """
import sys, mgit._alloc as a
from mgit.cli import main
rc = main(sys.argv[1:])
print("TUNED" if a._done else "PLAIN", rc)
"""


def py(code: str, *args: str, cwd: Path | None = None, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "MGIT_NO_MALLOC_TUNING"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code, *args], env=full, cwd=cwd,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_tuning_applies_once_and_can_be_turned_off() -> None:
    assert py(LIBRARY) == "True True"
    assert py(LIBRARY, MGIT_NO_MALLOC_TUNING="1") == "False False"


def test_only_streaming_commands_tune(tmp_path: Path) -> None:
    assert py(CLI, "init", str(tmp_path / "r"), cwd=tmp_path) == "PLAIN 0"
    assert py(CLI, "status", cwd=tmp_path / "r") == "PLAIN 0"
    src = tmp_path / "model"
    src.mkdir()
    (src / "notes.txt").write_text("x")
    assert py(CLI, "import", str(src), "--model", "m", "-m", "x", cwd=tmp_path / "r") == "TUNED 0"
    assert py(CLI, "export", "m", str(tmp_path / "out"), cwd=tmp_path / "r") == "TUNED 0"
