"""``mgit models``."""

from __future__ import annotations

import click

from mgit.commands._common import ctx_obj, echo, echo_lines, emit, fmt_time, human_bytes, open_repo

__all__ = ["COMMANDS"]


@click.command("models")
def models_cmd() -> None:
    """Every model line with its latest version and the model it derives from.

    \b
    Examples:
      mgit models
      mgit --json models
    """
    repo = open_repo()
    models = repo.models()

    def render() -> None:
        if not models:
            echo("no models yet")
            return
        rows = [("", "model", "latest", "versions", "derived from", "relation", "size", "date", "message")]
        for m in models:
            rows.append(("*" if m.current else "", m.name, m.head[:12], str(m.versions), m.derived_from or "-",
                         m.relation or "-", human_bytes(m.logical_bytes), fmt_time(m.time),
                         m.message.splitlines()[0] if m.message else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        echo_lines("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    emit([m.to_json() for m in models] if ctx_obj().json else None, render)


COMMANDS = [models_cmd]
