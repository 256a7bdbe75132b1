"""``mgit export``."""

from __future__ import annotations

import click

from mgit.commands._common import (
    echo,
    emit,
    human_bytes,
    open_repo_streaming,
    progress_bar,
    user_path,
)

__all__ = ["COMMANDS"]


@click.command("export")
@click.argument("ref")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("-f", "--force", is_flag=True, help="Overwrite files already in DIRECTORY.")
@click.option("--merge-adapter", is_flag=True,
              help="REF is a LoRA adapter: write its base model with the adapter merged in.")
@click.option("--base", metavar="REF",
              help="With --merge-adapter: the base model (default: the adapter's parent).")
def export_cmd(ref: str, directory: str, force: bool, merge_adapter: bool,
               base: str | None) -> None:
    """Write REF's files into DIRECTORY, byte-identical to what was committed."""
    repo = open_repo_streaming()
    out = user_path(directory)
    if base is not None and not merge_adapter:
        raise click.UsageError("--base goes with --merge-adapter")
    if merge_adapter:
        res = repo.export_merged(ref, out, base=base, force=force)
        emit(res, lambda: echo(f"Exported {ref} merged into its base ({res.commit[:12]}): "
                               f"{len(res.files)} files, {human_bytes(res.bytes)} "
                               f"to {res.directory}"))
        return
    oid = repo.resolve(ref)
    total = repo.commit_tree(oid).logical_bytes
    with progress_bar(f"export {ref}", total) as prog:
        res = repo.export(oid, out, force=force, progress=prog)
    emit(res, lambda: echo(f"Exported {ref} ({res.commit[:12]}): {len(res.files)} files, "
                           f"{human_bytes(res.bytes)} to {res.directory}"))


COMMANDS = [export_cmd]
