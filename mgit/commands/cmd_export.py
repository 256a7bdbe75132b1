"""``mgit export``."""

from __future__ import annotations

import click

from mgit.commands._common import (
    complete_ref,
    echo,
    emit,
    human_bytes,
    open_repo_streaming,
    progress_bar,
    user_path,
)

__all__ = ["COMMANDS"]


@click.command("export")
@click.argument("ref", shell_complete=complete_ref)
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("-f", "--force", is_flag=True, help="Overwrite files already in DIRECTORY.")
@click.option("--merge-adapter", is_flag=True,
              help="REF is a LoRA adapter: write its base model with the adapter merged in.")
@click.option("--base", metavar="REF", shell_complete=complete_ref,
              help="With --merge-adapter: the base model (default: the adapter's parent).")
@click.option("--include", "include", multiple=True, metavar="GLOB",
              help="Only the files matching GLOB (path, file name or a folder above it); repeatable.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="Leave out the files matching GLOB; repeatable.")
def export_cmd(ref: str, directory: str, force: bool, merge_adapter: bool,
               base: str | None, include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Write REF's files into DIRECTORY, byte-identical to what was committed.

    \b
    Examples:
      mgit export bert-sst2 /tmp/sst2
      mgit export bert-sst2 /tmp/cfg --include '*.json'
      mgit export run-7 /tmp/weights --exclude 'checkpoint-*'
      mgit export bert-lora /tmp/merged --merge-adapter
    """
    repo = open_repo_streaming()
    out = user_path(directory)
    if base is not None and not merge_adapter:
        raise click.UsageError("--base goes with --merge-adapter")
    if merge_adapter and (include or exclude):
        raise click.UsageError("--include/--exclude do not go with --merge-adapter")
    if merge_adapter:
        res = repo.export_merged(ref, out, base=base, force=force)
        emit(res, lambda: echo(f"Exported {ref} merged into its base ({res.commit[:12]}): "
                               f"{len(res.files)} files, {human_bytes(res.bytes)} "
                               f"to {res.directory}"))
        return
    oid = repo.resolve(ref)
    total = repo.commit_tree(oid).logical_bytes if not (include or exclude) else None
    with progress_bar(f"export {ref}", total) as prog:
        res = repo.export(ref if include or exclude else oid, out, force=force, progress=prog, include=include or None,
                          exclude=exclude or None)
    emit(res, lambda: echo(f"Exported {ref} ({res.commit[:12]}): {len(res.files)} files, "
                           f"{human_bytes(res.bytes)} to {res.directory}"))


COMMANDS = [export_cmd]
