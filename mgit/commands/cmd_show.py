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
    info = repo.commit_info(repo.resolve(ref))
    tree = repo.read_tree(info.tree)
    data = info.to_json()
    data["files"] = {p: {"kind": e.kind, "size": e.size, "tensors": len(e.tensors)} for p, e in tree.files.items()}
    data["logical_bytes"] = tree.logical_bytes

    def render() -> None:
        echo_commit(repo, info)
        if files:
            echo("")
            echo(f"{len(tree.files)} files, {human_bytes(tree.logical_bytes)}")
            for p, e in sorted(tree.files.items()):
                extra = f" ({len(e.tensors)} tensors)" if e.kind == "safetensors" else ""
                echo(f"  {human_bytes(e.size):>10}  {p}{extra}")

    emit(data, render)


COMMANDS = [show_cmd]
