"""``mgit add``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, emit, open_repo, user_path

__all__ = ["COMMANDS"]


@click.command("add")
@click.argument("paths", nargs=-1, required=True)
@click.option("-L", "--follow-symlinks", is_flag=True,
              help="Follow every symlink, also those pointing outside the model folder (stored by content).")
@click.option("--skip-unreadable", is_flag=True,
              help="Leave out (and list) entries that cannot be read as regular files (unreadable, "
                   "FIFOs, sockets, dangling or looping links, linked folders) instead of failing.")
def add_cmd(paths: tuple[str, ...], follow_symlinks: bool, skip_unreadable: bool) -> None:
    """Stage files (or folders) of the working tree for the next commit.

    \b
    Examples:
      mgit add .
      mgit add config.json model.safetensors
      mgit add --skip-unreadable .
    """
    repo = open_repo()
    res = repo.add([user_path(p) for p in paths], follow_symlinks=follow_symlinks,
                   skip_unreadable=skip_unreadable)

    def render() -> None:
        for p in res.staged:
            echo(f"staged   {p}")
        for p in res.removed:
            echo(f"removed  {p}")
        for s in res.skipped:
            echo(f"skipped  {s.path}: {s.reason}")
        if not res.staged and not res.removed:
            echo("nothing changed")

    emit(res, render)


COMMANDS = [add_cmd]
