"""``mgit restore`` and ``mgit rm``."""

from __future__ import annotations

import click

from mgit.commands._common import complete_ref, echo, emit, open_repo, user_path

__all__ = ["COMMANDS"]


@click.command("restore")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--staged", is_flag=True, help="Unstage PATH: forget what add or rm staged (the file is kept)."
)
@click.option(
    "--source",
    metavar="REF",
    shell_complete=complete_ref,
    default=None,
    help="Restore the working files from REF (default: HEAD, the checked-out version).",
)
def restore_cmd(paths: tuple[str, ...], staged: bool, source: str | None) -> None:
    """Discard changes to PATH: unstage them (--staged), or rewrite the working files.

    Without --staged, each PATH (a file or a folder) is rewritten from the checked-out
    version (or --source REF), byte-identical to what was committed; a path with a staged
    change is refused until it is unstaged.

    \b
    Examples:
      mgit restore --staged model.safetensors
      mgit restore config.json
      mgit restore --source bert-base~1 tokenizer.json
    """
    repo = open_repo()
    res = repo.restore([user_path(p) for p in paths], staged=staged, source=source)

    def render() -> None:
        for p in res.unstaged:
            echo(f"unstaged  {p}")
        for p in res.restored:
            echo(f"restored  {p}")

    emit(res, render)


@click.command("rm")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--cached", is_flag=True, help="Only stage the deletion: keep the working file (untracked)."
)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Delete files with changes that are not committed or staged.",
)
def rm_cmd(paths: tuple[str, ...], cached: bool, force: bool) -> None:
    """Stage the deletion of tracked files and delete them from the working tree.

    \b
    Examples:
      mgit rm --cached optimizer.pt
      mgit rm runs
      mgit rm -f checkpoint-500
    """
    repo = open_repo()
    res = repo.rm([user_path(p) for p in paths], cached=cached, force=force)

    def render() -> None:
        deleted = set(res.deleted)
        for p in res.removed:
            echo(f"rm  {p}" + ("" if p in deleted else " (file kept)" if cached else ""))

    emit(res, render)


COMMANDS = [restore_cmd, rm_cmd]
