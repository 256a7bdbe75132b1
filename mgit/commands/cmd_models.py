"""``mgit models``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, emit, fmt_time, human_bytes, open_repo

__all__ = ["COMMANDS"]


@click.command("models")
def models_cmd() -> None:
    """Every model line with its latest version and the model it derives from."""
    repo = open_repo()
    models = repo.models()

    def render() -> None:
        if not models:
            echo("no models yet")
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(box=None, pad_edge=False)
        for col in ("", "model", "latest", "versions", "derived from", "relation", "size", "date", "message"):
            t.add_column(col)
        for m in models:
            t.add_row("*" if m.current else "", m.name, m.head[:12], str(m.versions), m.derived_from or "-",
                      m.relation or "-", human_bytes(m.logical_bytes), fmt_time(m.time),
                      m.message.splitlines()[0] if m.message else "")
        Console(width=200, soft_wrap=True).print(t)

    emit([m.to_json() for m in models], render)


COMMANDS = [models_cmd]
