"""``rebase --strategy recipe``: re-run the recorded recipe on NEWBASE and import its output.

A recipe is recorded by ``mgit commit/import --recipe CMD``: ``{"cmd": CMD, "seed": 0}`` in
the commit's ``recipe`` field. CMD is a template: ``{parent_dir}`` (the exported parent, here
NEWBASE), ``{out_dir}`` (an empty folder the command writes the model into) and ``{seed}`` are
replaced by shell-quoted values (also in the environment: ``MGIT_PARENT_DIR``,
``MGIT_OUT_DIR``, ``MGIT_SEED``). It runs in the current folder, in its own process group,
killed whole at the timeout. A failure, a timeout or an empty output folder is an error and
nothing is written.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mgit.core import CommitInfo, RepoCore
from mgit.objects.model import FileEntry, ParentLink

__all__ = ["expand", "run_recipe"]


def expand(cmd: str, *, parent_dir: str, out_dir: str, seed: str) -> str:
    """CMD with its placeholders replaced by shell-quoted values."""
    return (cmd.replace("{parent_dir}", shlex.quote(parent_dir))
            .replace("{out_dir}", shlex.quote(out_dir)).replace("{seed}", shlex.quote(seed)))


def run_recipe(core: RepoCore, plan: Any, rec: dict[str, Any], *, message: str,
               meta: dict[str, str], recipe: dict[str, Any], parents: list[ParentLink],
               timeout: float) -> CommitInfo:
    """Export NEWBASE, run the recipe, commit its output (the line does not move).

    Raises:
        RebaseError: the recipe failed, timed out or wrote nothing.
    """
    from mgit.lifecycle.arith import write_version
    from mgit.lifecycle.rebase_write import RebaseError
    from mgit.tensors import export
    from mgit.worktree.scan import scan

    seed = str(rec.get("seed", 0))
    with tempfile.TemporaryDirectory(prefix="mgit-rebase-") as tmp:
        parent_dir = Path(tmp) / "parent"
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        export(core, plan.newbase, parent_dir)
        cmd = expand(rec["cmd"], parent_dir=str(parent_dir), out_dir=str(out_dir), seed=seed)
        env = dict(os.environ, MGIT_PARENT_DIR=str(parent_dir), MGIT_OUT_DIR=str(out_dir), MGIT_SEED=seed)
        proc = subprocess.Popen(cmd, shell=True, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RebaseError(f"the recipe of {plan.model} timed out after {timeout:g}s") from None
        if proc.returncode != 0:
            tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] if out else []
            raise RebaseError(f"the recipe of {plan.model} failed (exit {proc.returncode})"
                              + (f": {tail[0]}" if tail else ""))
        found = scan(out_dir, strict=True)
        if not found:
            raise RebaseError(f"the recipe of {plan.model} wrote no files into {{out_dir}}")
        # the output replaces NEWBASE's tree whole: every NEWBASE file it lacks is removed
        files: dict[str, FileEntry | Path | None] = {p: None for p in core.commit_tree(plan.newbase).files}
        files.update(found)
        info = write_version(core, model=plan.model, message=message, parents=parents, base_ref=plan.newbase,
                             tensors=lambda *_: None, meta=meta, recipe=recipe,
                             files_override=files,  # type: ignore[arg-type]  # paths are ingested
                             update_ref=False)
    return info
