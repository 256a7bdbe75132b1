"""``mgit rebase`` end to end through ``mgit.cli.main``: output, one-line errors, exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from helpers import model_tensors, run_main, write_model_folder


def _setup(tmp_path: Path, capsys: Any) -> Path:
    root = tmp_path / "repo"
    v1 = model_tensors("F32", seed=1)
    write_model_folder(tmp_path / "v1", v1)
    ft = dict(v1, **{"encoder.layer.0.attention.weight": np.nan_to_num(v1["encoder.layer.0.attention.weight"]) + np.float32(0.5)})
    write_model_folder(tmp_path / "ft", ft)
    v2 = dict(v1, **{"encoder.layer.0.attention.weight": np.nan_to_num(v1["encoder.layer.0.attention.weight"]) * np.float32(2)})
    write_model_folder(tmp_path / "v2", v2)
    for args in (
        ["init", str(root), "--model", "base"],
        ["-C", str(root), "import", str(tmp_path / "v1"), "--model", "base", "-m", "v1"],
        ["-C", str(root), "import", str(tmp_path / "ft"), "--model", "ft", "-m", "ft", "--parent", "base",
         "--recipe", f"{sys.executable} -c pass {{parent_dir}} {{out_dir}}"],
        ["-C", str(root), "import", str(tmp_path / "v2"), "--model", "base", "-m", "v2"],
    ):
        code, out, err = run_main(capsys, None, *args)
        assert code == 0, err
    return root


def test_rebase_cli_dry_run_then_rebase(tmp_path: Path, capsys: Any) -> None:
    root = _setup(tmp_path, capsys)
    code, out, _ = run_main(capsys, root, "rebase", "ft", "--onto", "base", "--dry-run")
    assert code == 0
    assert "1 replayed" in out and "dry run: nothing written" in out
    code, out, _ = run_main(capsys, root, "--json", "log", "ft", "-n", "1")
    assert "rebased_onto" not in out  # the dry run wrote nothing
    code, out, _ = run_main(capsys, root, "rebase", "ft", "--onto", "base")
    assert code == 0 and "rebased ft:" in out
    code, out, _ = run_main(capsys, root, "--json", "log", "ft", "-n", "1")
    assert "rebased_onto" in out
    code, out, _ = run_main(capsys, root, "--json", "rebase", "ft", "--onto", "base")
    assert code == 0 and json.loads(out)["status"] == "up-to-date"


def test_rebase_cli_errors(tmp_path: Path, capsys: Any) -> None:
    root = _setup(tmp_path, capsys)
    code, out, err = run_main(capsys, root, "rebase", "--onto", "base")
    assert code == 2 and err.startswith("mgit: error: give MODEL or --descendants-of OLD")
    code, out, err = run_main(capsys, root, "rebase", "ft", "--onto", "base", "--ours", "--theirs")
    assert code == 2 and "not both" in err
    code, out, err = run_main(capsys, root, "rebase", "base", "--onto", "base~1")
    assert code == 1 and err.splitlines()[0].startswith("mgit: error: base is on NEWBASE's model line")
    code, out, err = run_main(capsys, root, "test", "add", "never", "--cmd", f"{sys.executable} -c 'raise SystemExit(1)'",
                              "--for", "ft")
    assert code == 0, err
    tip = run_main(capsys, root, "--json", "log", "ft", "-n", "1")[1]
    code, out, err = run_main(capsys, root, "rebase", "ft", "--onto", "base")
    assert code == 1 and "tests failed on the rebased ft: never; ft was not moved" in err
    assert run_main(capsys, root, "--json", "log", "ft", "-n", "1")[1] == tip
    code, out, err = run_main(capsys, root, "rebase", "--descendants-of", "base~1", "--onto", "base")
    assert code == 1 and "failed" in out and "1 model(s) not rebased: ft" in err
    code, out, err = run_main(capsys, root, "rebase", "--descendants-of", "base~1", "--onto", "base", "--no-tests")
    assert code == 0 and "rebased" in out
