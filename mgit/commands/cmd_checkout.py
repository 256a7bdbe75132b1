"""``mgit checkout``."""

from __future__ import annotations

import click

from mgit.commands._common import complete_ref, echo, emit, open_repo_streaming

__all__ = ["COMMANDS"]


@click.command("checkout")
@click.argument("ref", shell_complete=complete_ref)
@click.option("-f", "--force", is_flag=True, help="Discard uncommitted changes.")
def checkout_cmd(ref: str, force: bool) -> None:
    """Make the working tree the files of REF.

    \b
    Examples:
      mgit checkout bert-base
      mgit checkout v1.0
      mgit checkout --force bert-sst2~1
    """
    repo = open_repo_streaming()
    res = repo.checkout(ref, force=force)

    def render() -> None:
        where = f"model {res.model}" if res.model else f"detached HEAD at {res.commit[:12]}"
        echo(f"Switched to {where}: {len(res.written)} file(s) written, {len(res.removed)} removed")

    emit(res, render)


COMMANDS = [checkout_cmd]
