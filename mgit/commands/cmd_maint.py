"""``mgit fsck`` and ``mgit gc``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, emit, human_bytes, open_repo
from mgit.errors import FsckFailedError

__all__ = ["COMMANDS"]


@click.command("fsck")
@click.option("--connectivity-only", is_flag=True, help="Check presence only, do not decode objects.")
def fsck_cmd(connectivity_only: bool) -> None:
    """Verify every object and that every ref's history is complete."""
    repo = open_repo()
    res = repo.fsck(full=not connectivity_only)

    def render() -> None:
        for p in res.problems:
            echo(p)
        echo(f"{res.objects_checked} objects verified, {res.reachable} reachable, {res.dangling} dangling: "
             + ("ok" if res.ok else f"{len(res.problems)} problem(s)"))

    emit(res, render)
    if not res.ok:
        raise FsckFailedError(len(res.problems))


@click.command("gc")
@click.option("--prune", "prune_age", type=float, default=3600.0, show_default=True,
              help="Only delete unreachable objects older than this many seconds.")
@click.option("-n", "--dry-run", is_flag=True, help="Report what would be deleted.")
def gc_cmd(prune_age: float, dry_run: bool) -> None:
    """Delete objects that no model version needs."""
    repo = open_repo()
    res = repo.gc(prune_age=prune_age, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    emit(res, lambda: echo(f"{verb} {res.removed} objects ({human_bytes(res.freed_bytes)}); kept {res.kept}"))


COMMANDS = [fsck_cmd, gc_cmd]
