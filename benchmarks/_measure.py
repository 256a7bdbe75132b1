"""Small helpers shared by ``bench_rebase.py`` and ``bench_merge.py``.

- :func:`run_measured`: run one command in a fresh process; wall time and that process's peak RSS
  (GNU time's ``%M`` when ``/usr/bin/time`` exists, else ``ru_maxrss`` from ``wait4``).
- :func:`tree_bytes`: bytes of every regular file under a folder (e.g. ``.mgit/objects``).
- :func:`markdown_table`: rows of cells as a GitHub markdown table.
- :func:`compare_safetensors`: how two safetensors files differ, tensor by tensor.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Measured", "compare_safetensors", "markdown_table", "run_measured", "tree_bytes"]

GNU_TIME = Path("/usr/bin/time")


@dataclass(frozen=True)
class Measured:
    """One finished command: wall seconds, peak RSS in bytes, exit status and its output."""

    seconds: float
    peak_rss: int
    returncode: int
    output: str


def run_measured(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> Measured:
    """Run ``cmd`` as its own process and measure it.

    Peak RSS is that of the process (GNU time's ``%M``): with ``wait4`` alone a forked child
    would also count the parent's pages from before the exec.

    Args:
        cmd: The command.
        cwd: Its working folder.
        env: Its environment (default: ours).
        check: Raise ``RuntimeError`` (with the output) when it exits non-zero.

    Returns:
        The measurement; ``output`` holds stdout and stderr together.
    """
    with (
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss,
        tempfile.TemporaryFile("w+b") as out,
    ):
        full = (
            [str(GNU_TIME), "-q", "-f", "%M", "-o", rss.name, *cmd]
            if GNU_TIME.exists()
            else list(cmd)
        )
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            full, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
        lines = rss.read().strip().splitlines()
        peak_kb = int(lines[-1]) if lines and lines[-1].isdigit() else usage.ru_maxrss
    if check and code != 0:
        raise RuntimeError(f"exit {code}: {' '.join(map(str, cmd))}\n{text[-4000:]}")
    return Measured(seconds=seconds, peak_rss=peak_kb * 1024, returncode=code, output=text)


def tree_bytes(path: Path) -> int:
    """Bytes of every regular file under ``path`` (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None
) -> str:
    """A GitHub markdown table; ``align`` holds ``l`` or ``r`` per column (default: ``l``)."""
    align = list(align or ["l"] * len(header))
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def compare_safetensors(a: Path, b: Path, *, prefix_b: str = "") -> dict[str, Any]:
    """Compare the float tensors of two safetensors files, paired by name.

    Args:
        a: First file.
        b: Second file.
        prefix_b: Prepended to ``a``'s names to find them in ``b`` (e.g. ``"bert."``).

    Returns:
        ``{"paired", "identical", "max_abs_diff", "missing"}``: tensors found in both, how many
        are bit-identical, the largest absolute difference, and ``a``'s names absent from ``b``.
    """
    import numpy as np
    from safetensors.numpy import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    paired = identical = 0
    worst = 0.0
    missing = []
    for name, x in ta.items():
        y = tb.get(prefix_b + name)
        if y is None:
            missing.append(name)
            continue
        paired += 1
        if x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes():
            identical += 1
            continue
        if x.shape == y.shape and np.issubdtype(x.dtype, np.floating):
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))))
        else:
            worst = float("inf")
    return {"paired": paired, "identical": identical, "max_abs_diff": worst, "missing": missing}
