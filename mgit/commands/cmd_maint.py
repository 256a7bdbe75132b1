"""``mgit fsck`` and ``mgit gc``."""

from __future__ import annotations

import click

from mgit.commands._common import complete_remote, echo, emit, human_bytes, open_repo
from mgit.errors import FsckFailedError, UsageError

__all__ = ["COMMANDS"]


@click.command("fsck")
@click.argument("remote", required=False, shell_complete=complete_remote)
@click.option("--connectivity-only", is_flag=True, help="Check presence only, do not decode objects.")
@click.option("--repair", is_flag=True,
              help="Fetch missing or damaged objects from REMOTE (default: origin), verify and replace them.")
def fsck_cmd(remote: str | None, connectivity_only: bool, repair: bool) -> None:
    """Verify every object and that every ref's history is complete.

    Also lists stale locks and temp files left by killed processes (not damage: the next
    command breaks such a lock, 'mgit gc' removes the temp files).

    \b
    Examples:
      mgit fsck --repair origin
      mgit fsck
      mgit fsck --connectivity-only
    """
    repo = open_repo()
    if remote is not None and not repair:
        raise UsageError("a REMOTE is only taken with --repair", hint="mgit fsck --repair [REMOTE]")
    if repair:
        from mgit.remote.repair import repair as do_repair

        fixed = do_repair(repo, remote)
        res = fixed.after

        def render_repair() -> None:
            for oid in fixed.repaired:
                echo(f"repaired {oid} from {fixed.remote}")
            for oid, why in sorted(fixed.failed.items()):
                echo(f"could not repair {oid}: {why}")
            for p in res.problems:
                echo(p)
            echo(f"{len(fixed.repaired)} objects repaired; {res.objects_checked} objects verified: "
                 + ("ok" if res.ok else f"{len(res.damage)} problem(s)"))

        emit(fixed, render_repair)
        if not res.ok:
            raise FsckFailedError(len(res.damage))
        return
    res = repo.fsck(full=not connectivity_only)

    def render() -> None:
        for p in res.problems:
            echo(p)
        echo(f"{res.objects_checked} objects verified, {res.reachable} reachable, {res.dangling} dangling: "
             + ("ok" if res.ok else f"{len(res.damage)} problem(s)"))

    emit(res, render)
    if not res.ok:
        raise FsckFailedError(len(res.damage))


@click.command("gc")
@click.option("--prune", "prune_age", type=float, default=3600.0, show_default=True,
              help="Only delete unreachable objects older than this many seconds.")
@click.option("-n", "--dry-run", is_flag=True, help="Report what would be deleted.")
def gc_cmd(prune_age: float, dry_run: bool) -> None:
    """Delete objects that no model version needs, and pack the refs.

    \b
    Examples:
      mgit gc
      mgit gc --dry-run
      mgit gc --prune 0
    """
    repo = open_repo()
    res = repo.gc(prune_age=prune_age, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"

    def render() -> None:
        echo(f"{verb} {res.removed} objects ({human_bytes(res.freed_bytes)}); kept {res.kept}")
        if res.temp_removed:
            salvaged = f" ({res.salvaged} put back as whole objects)" if res.salvaged else ""
            echo(f"{verb} {res.temp_removed} temp files left by killed processes{salvaged}")
        if res.cache_folders_removed:
            echo(f"{verb} {res.cache_folders_removed} cached folders of unreachable versions "
                 f"({human_bytes(res.cache_freed_bytes)})")
        if res.stale_locks_removed:
            echo(f"{verb} {res.stale_locks_removed} stale lock files of killed processes")
        if res.refs_packed:
            echo(f"packed {res.refs_packed} refs into packed-refs")

    emit(res, render)


COMMANDS = [fsck_cmd, gc_cmd]
