"""``mgit add``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, emit, open_repo, user_path

__all__ = ["COMMANDS"]


@click.command("add")
@click.argument("paths", nargs=-1, required=True)
def add_cmd(paths: tuple[str, ...]) -> None:
    """Stage files (or folders) of the working tree for the next commit."""
    repo = open_repo()
    res = repo.add([user_path(p) for p in paths])

    def render() -> None:
        for p in res.staged:
            echo(f"staged   {p}")
        for p in res.removed:
            echo(f"removed  {p}")
        if not res.staged and not res.removed:
            echo("nothing changed")

    emit(res, render)


COMMANDS = [add_cmd]
