"""``--lossy EPS --check-tests``: the stored tests that apply gate a lossy version."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import model_tensors, run_main, write_model_folder

PY = sys.executable


@pytest.fixture
def root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    r = tmp_path / "repo"
    assert run_main(capsys, None, "init", str(r), "--model", "base")[0] == 0
    base = model_tensors("F32", seed=1, hidden=64, vocab=256)
    write_model_folder(tmp_path / "base", base)
    assert run_main(capsys, r, "import", str(tmp_path / "base"), "--model", "base", "-m", "b")[0] == 0
    rng = np.random.default_rng(0)
    with np.errstate(all="ignore"):
        ft = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-2).astype(np.float32)
              for k, v in base.items()}
    write_model_folder(tmp_path / "ft", ft)
    return r


def _import_lossy(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, dict, str]:
    code, out, err = run_main(capsys, root, "--json", "import", str(root.parent / "ft"), "--model", "ft",
                              "--parent", "base", "-m", "ft", "--lossy", "1e-3", *extra)
    return code, (json.loads(out) if code == 0 else {}), err


@pytest.mark.parametrize(
    ("exit_code", "want_check", "lossy"), [(0, "passed", True), (1, "failed: stored losslessly", False)]
)
def test_stored_tests_gate_a_lossy_import(root: Path, capsys: pytest.CaptureFixture[str], exit_code: int,
                                          want_check: str, lossy: bool) -> None:
    cmd = f"{PY} -c \"import sys, os; assert os.path.isdir(sys.argv[1]); sys.exit({exit_code})\" {{model_dir}}"
    assert run_main(capsys, root, "test", "add", "gate", "--cmd", cmd, "--all")[0] == 0
    code, res, err = _import_lossy(capsys, root, "--check-tests")
    assert code == 0, err
    assert res["check"] == want_check
    assert (res["commit"]["lossy"] is not None) is lossy


def test_check_and_check_tests_together_is_a_usage_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, root, "--json", "import", str(root.parent / "ft"), "--model", "ft",
                            "--parent", "base", "-m", "ft", "--lossy", "1e-3", "--check-tests", "--check", "true")
    assert code == 2 and "not both" in json.loads(out)["error"]["message"]  # --json: the error as JSON
    assert run_main(capsys, root, "show", "ft")[0] != 0  # nothing written
