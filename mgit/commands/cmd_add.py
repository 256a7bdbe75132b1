"""``mgit add``."""

from __future__ import annotations

import os

import click

from mgit.commands._common import ctx_obj, echo, emit, open_repo

__all__ = ["COMMANDS"]


@click.command("add")
@click.argument("paths", nargs=-1, required=True)
def add_cmd(paths: tuple[str, ...]) -> None:
    """Stage files (or folders) of the working tree for the next commit."""
    repo = open_repo()
    cwd = ctx_obj().cwd
    res = repo.add([p if os.path.isabs(p) else str(cwd / p) for p in paths])

    def render() -> None:
        for p in res.staged:
            echo(f"staged   {p}")
        for p in res.removed:
            echo(f"removed  {p}")
        if not res.staged and not res.removed:
            echo("nothing changed")

    emit(res, render)


COMMANDS = [add_cmd]
