"""``mgit stats``."""

from __future__ import annotations

import click

from mgit.commands._common import complete_ref, echo, emit, human_bytes, open_repo

__all__ = ["COMMANDS"]


@click.command("stats")
@click.argument("ref", required=False, shell_complete=complete_ref)
def stats_cmd(ref: str | None) -> None:
    """Logical bytes, stored bytes and their ratio, per model and in total.

    \b
    Examples:
      mgit --json stats
      mgit stats bert-sst2
    """
    repo = open_repo()
    res = repo.stats(ref)

    def render() -> None:
        echo(f"{'model':<32} {'versions':>8} {'logical':>12} {'stored':>12} {'ratio':>8}")
        rows = list(res.models.items()) + [("total", res.total)]
        for name, m in rows:
            ratio = m["logical_bytes"] / m["stored_bytes"] if m["stored_bytes"] else float("inf")
            echo(f"{name:<32} {m.get('versions', ''):>8} {human_bytes(m['logical_bytes']):>12} "
                 f"{human_bytes(m['stored_bytes']):>12} {ratio:>7.2f}x")

    emit({"models": {k: {"logical_bytes": v["logical_bytes"], "stored_bytes": v["stored_bytes"]}
                     for k, v in res.models.items()}, "total": res.total}, render)


COMMANDS = [stats_cmd]
