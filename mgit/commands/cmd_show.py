"""``mgit show``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, echo_commit, emit, human_bytes, open_repo

__all__ = ["COMMANDS"]


@click.command("show")
@click.argument("ref", default="HEAD")
@click.option("--files/--no-files", default=True, help="List the files.")
def show_cmd(ref: str, files: bool) -> None:
    """Show a model version: lineage, metadata, files."""
    repo = open_repo()
    res = repo.show(ref)

    def render() -> None:
        echo_commit(res.commit)
        if files:
            echo("")
            echo(f"{len(res.files)} files, {human_bytes(res.logical_bytes)}")
            for f in res.files:
                extra = f" ({f.tensors} tensors)" if f.kind == "safetensors" else ""
                echo(f"  {human_bytes(f.size):>10}  {f.path}{extra}")

    emit(res, render)


COMMANDS = [show_cmd]
