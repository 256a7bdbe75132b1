"""``mgit init``."""

from __future__ import annotations

from pathlib import Path

import click

from mgit.commands._common import ctx_obj, echo, emit

__all__ = ["COMMANDS"]


@click.command("init")
@click.argument("path", required=False, type=click.Path(file_okay=False))
@click.option("--model", help="Name of the first model line (default: the folder's name).")
@click.option("--bare", is_flag=True, help="A store without working tree (for a remote).")
def init_cmd(path: str | None, model: str | None, bare: bool) -> None:
    """Create a repository in PATH (default: the current folder).

    \b
    Examples:
      mgit init bert-base
      mgit init --model bert-base
      mgit init --bare /mnt/shared/models
    """
    from mgit.repo import Repository

    target = Path(path) if path else ctx_obj().cwd
    if not target.is_absolute():
        target = ctx_obj().cwd / target
    repo = Repository.init(target, model=model, bare=bare)
    data = {"path": str(repo.mgit_dir), "model": repo.head_model, "bare": bare}
    emit(data, lambda: echo(f"Initialized empty mgit repository in {repo.mgit_dir} (model: {repo.head_model})"))


COMMANDS = [init_cmd]
