"""``mgit import``."""

from __future__ import annotations

import click

from mgit.commands._common import (
    complete_model,
    derivation_options,
    echo,
    emit,
    lossy_gate,
    open_repo_streaming,
    parse_meta,
    progress_bar,
    recipe_arg,
    user_path,
)
from mgit.commands.cmd_commit import render_commit_result, warn

__all__ = ["COMMANDS"]


@click.command("import")
@click.argument("directory", type=click.Path(file_okay=False), required=False)
@click.option("--hf-cache", "hf_cache", metavar="ORG/NAME[@REV]",
              help="Instead of DIRECTORY: that snapshot of the local Hugging Face cache (REV: a commit "
                   "hash, a prefix of one, or a ref such as main; default main).")
@click.option("--model", shell_complete=complete_model,
              help="Model line: the folder becomes its next version (--hf-cache: default NAME).")
@click.option("-m", "--message", help="Commit message (--hf-cache: default ORG/NAME@REVISION).")
@derivation_options
@click.option("--guess-parent", is_flag=True,
              help="Without --parent: derive from the closest stored model (an adapter: the model its "
                   "LoRA factors fit).")
@click.option("-L", "--follow-symlinks", is_flag=True,
              help="Follow every symlink, also those pointing outside the folder "
                   "(files are stored by content).")
@click.option("--skip-unreadable", is_flag=True,
              help="Leave out (and list) entries that cannot be read as regular files (unreadable, "
                   "FIFOs, sockets, dangling or looping links, linked folders) instead of failing.")
def import_cmd(directory: str | None, hf_cache: str | None, model: str | None, message: str | None,
               parents: tuple[str, ...], relation: str | None, eps: float | None, check: str | None,
               check_tests: bool,
               meta: tuple[str, ...], guess_parent: bool, follow_symlinks: bool,
               recipe: str | None = None, recipe_seed: int | None = None, recipe_ids: tuple[str, ...] = (),
               skip_unreadable: bool = False) -> None:
    """Commit the model folder DIRECTORY as a version of model MODEL.

    With --hf-cache ORG/NAME[@REV] instead of DIRECTORY: that snapshot of the local Hugging Face
    cache, in place.

    \b
    Examples:
      mgit import --hf-cache org/bert-sst2
      mgit import ~/runs/sst2 --model bert-sst2 --parent bert-base --relation finetune -m "SST-2"
      mgit import ~/runs/lora --model bert-lora -m "LoRA r=8" --guess-parent
    """
    from mgit.errors import MgitError, UsageError
    from mgit.worktree.scan import folder_bytes

    if (directory is None) == (hf_cache is None):
        raise UsageError("give either DIRECTORY or --hf-cache ORG/NAME[@REV]")
    if directory is not None and (model is None or message is None):
        raise UsageError("importing a folder needs --model NAME and -m MSG")
    repo = open_repo_streaming()
    src = user_path(directory) if directory is not None else None
    total = 0
    if src is not None:
        total = folder_bytes(src, follow_symlinks=follow_symlinks)
    else:
        from mgit.hf import find_snapshot

        try:
            total = folder_bytes(find_snapshot(hf_cache or "").path, follow_symlinks=follow_symlinks)
        except MgitError:
            total = 0  # import_folder reports it
    with progress_bar(f"import {model or hf_cache}", total or None) as prog:
        res = repo.import_folder(
            src, model=model, message=message, parent=list(parents) or None, relation=relation,
            meta=parse_meta(meta), eps=eps, check=lossy_gate(repo, check, check_tests),
            guess_parent=guess_parent, progress=prog,
            follow_symlinks=follow_symlinks, hf_cache=hf_cache,
            recipe=recipe_arg(recipe, recipe_seed, recipe_ids),
            skip_unreadable=skip_unreadable,
        )

    def render() -> None:
        for s in res.skipped:
            echo(f"skipped {s.path}: {s.reason}")
        if guess_parent:
            for c in res.candidates:
                if hasattr(c, "fitting"):
                    echo(f"candidate {c.model}@{c.oid[:12]}: {c.fitting} of {c.modules} adapter target "
                         f"modules fit ({c.seconds * 1000:.0f} ms)")
                else:
                    echo(f"candidate {c.model}@{c.oid[:12]}: score {c.score:.3f} "
                         f"(identical {c.identical_fraction:.1%}, {c.seconds * 1000:.0f} ms)")
            if not res.commit.parents:
                echo("no stored model is close enough: imported as a root")
        render_commit_result(res)

    emit(res, render)
    warn(res)


COMMANDS = [import_cmd]
