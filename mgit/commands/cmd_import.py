"""``mgit import``."""

from __future__ import annotations

import click

from mgit.commands._common import (
    derivation_options,
    echo,
    emit,
    open_repo_streaming,
    parse_meta,
    progress_bar,
    user_path,
)
from mgit.commands.cmd_commit import render_commit_result

__all__ = ["COMMANDS"]


@click.command("import")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--model", required=True, help="Model line: the folder becomes its next version.")
@click.option("-m", "--message", required=True, help="Commit message.")
@derivation_options
@click.option("--guess-parent", is_flag=True, help="Without --parent: derive from the closest stored model.")
def import_cmd(directory: str, model: str, message: str, parents: tuple[str, ...], relation: str | None,
               eps: float | None, check: str | None, meta: tuple[str, ...], guess_parent: bool) -> None:
    """Commit the model folder DIRECTORY as a version of model MODEL."""
    from mgit.worktree.scan import folder_bytes

    repo = open_repo_streaming()
    src = user_path(directory)
    total = folder_bytes(src)
    with progress_bar(f"import {model}", total) as prog:
        res = repo.import_folder(
            src, model=model, message=message, parent=list(parents) or None, relation=relation,
            meta=parse_meta(meta), eps=eps, check=check, guess_parent=guess_parent, progress=prog,
        )

    def render() -> None:
        if guess_parent:
            for c in res.candidates:
                echo(f"candidate {c.model}@{c.oid[:12]}: score {c.score:.3f} "
                     f"(identical {c.identical_fraction:.1%}, {c.seconds * 1000:.0f} ms)")
            if not res.candidates or not res.commit.parents:
                echo("no stored model is close enough: imported as a root")
        render_commit_result(res)

    emit(res, render)


COMMANDS = [import_cmd]
