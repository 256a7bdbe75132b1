"""``mgit status``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, emit, open_repo

__all__ = ["COMMANDS"]


@click.command("status")
def status_cmd() -> None:
    """Show staged, modified and untracked files.

    \b
    Examples:
      mgit status
      mgit --json status
    """
    repo = open_repo()
    st = repo.status()

    def render() -> None:
        if st.detached:
            echo(f"HEAD detached at {st.head[:12] if st.head else '?'}")
        else:
            echo(f"On model {st.model}" + ("" if st.head else " (no commits yet)"))
        groups = [
            ("Changes to be committed:", [("new file", st.staged_new), ("modified", st.staged_modified),
                                          ("deleted", st.staged_deleted)], "green"),
            ("Changes not staged for commit:", [("modified", st.modified), ("deleted", st.deleted)], "red"),
            ("Untracked files:", [("", st.untracked)], "red"),
        ]
        for title, items, color in groups:
            if any(paths for _, paths in items):
                echo(title)
                for label, paths in items:
                    for p in paths:
                        text = f"{label + ':':<10} {p}" if label else p
                        echo("  " + click.style(text, fg=color))
        if st.skipped:
            echo("Skipped (not committed):")
            for s in st.skipped:
                echo("  " + click.style(s.path, fg="yellow") + f": {s.reason}")
        if st.clean and not st.untracked:
            echo("nothing to commit, working tree clean"
                 + (f" ({len(st.skipped)} skipped file{'s' if len(st.skipped) != 1 else ''} listed above)"
                    if st.skipped else ""))

    emit(st, render)


COMMANDS = [status_cmd]
