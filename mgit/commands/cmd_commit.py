"""``mgit commit``."""

from __future__ import annotations

import click

from mgit.commands._common import (
    complete_model,
    derivation_options,
    echo,
    emit,
    human_bytes,
    lossy_gate,
    open_repo_streaming,
    parse_meta,
    recipe_arg,
)
from mgit.commands._common import warn as warn_line

__all__ = ["COMMANDS", "render_commit_result", "warn"]


def warn(res) -> None:  # type: ignore[no-untyped-def]
    """Print a commit's warnings (files stored opaquely...) on stderr, with or without --json."""
    for w in res.stats.warnings:
        warn_line(w)


def render_commit_result(res, *, working_tree: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Print what a commit or import did."""
    c = res.commit
    rel = ", ".join(f"{r} of {p[:12]}" for p, r in c.parents) or "root"
    echo(f"[{c.model} {c.short}] {c.message.splitlines()[0] if c.message else ''}")
    s = res.stats
    ratio = s.logical_bytes / s.new_bytes if s.new_bytes else float("inf")
    echo(f" {res.files} files, {human_bytes(s.logical_bytes)}; stored {human_bytes(s.new_bytes)} new "
         f"({'%.2fx' % ratio if s.new_bytes else 'all deduplicated'}); {s.new_chunks}/{s.chunks} chunks new, "
         f"{s.delta_chunks} as deltas; {rel}")
    if c.lossy:
        echo(f" lossy: eps={c.lossy['eps']:g}, measured max error {c.lossy['max_err']:.3g}")
        if working_tree:
            echo(" note: your working files keep their exact bytes, so they now differ from this lossy "
                 "commit ('mgit status' shows them modified; 'mgit checkout --force' gives the stored bytes)")
    if res.check:
        echo(f" check: {res.check}")


@click.command("commit")
@click.option("-m", "--message", required=True, help="Commit message.")
@click.option("--model", shell_complete=complete_model,
              help="Model line to commit to (a new name starts a derived model).")
@derivation_options
@click.option("--allow-empty", is_flag=True, help="Commit even if nothing is staged.")
def commit_cmd(message: str, model: str | None, parents: tuple[str, ...], relation: str | None,
               eps: float | None, check: str | None, check_tests: bool, meta: tuple[str, ...],
               allow_empty: bool, recipe: str | None = None, recipe_seed: int | None = None,
               recipe_ids: tuple[str, ...] = ()) -> None:
    """Record the staged files as a new model version.

    \b
    Examples:
      mgit commit -m "epoch 3" --meta acc=0.91
      mgit commit -m "SST-2" --model bert-sst2 --parent bert-base --relation finetune
      mgit commit -m "int8 copy" --lossy 1e-4 --check-tests
    """
    repo = open_repo_streaming()
    res = repo.commit(
        message, model=model, parent=list(parents) or None, relation=relation, meta=parse_meta(meta),
        eps=eps, check=lossy_gate(repo, check, check_tests), allow_empty=allow_empty,
        recipe=recipe_arg(recipe, recipe_seed, recipe_ids),
    )
    emit(res, lambda: render_commit_result(res, working_tree=True))
    warn(res)


COMMANDS = [commit_cmd]
