"""``mgit branch`` and ``mgit tag``."""

from __future__ import annotations

import click

from mgit.commands._common import complete_model, complete_ref, complete_tag, echo, emit, open_repo

__all__ = ["COMMANDS"]


@click.command("branch")
@click.argument("name", required=False, shell_complete=complete_model)
@click.argument("ref", required=False, shell_complete=complete_ref)
@click.option("-d", "--delete", is_flag=True, help="Delete model line NAME (its ref only).")
def branch_cmd(name: str | None, ref: str | None, delete: bool) -> None:
    """List model lines, or start model line NAME at REF (default HEAD).

    \b
    Examples:
      mgit branch bert-exp bert-base
      mgit branch
      mgit branch -d bert-exp
    """
    repo = open_repo()
    if name is None:
        heads = repo.model_heads()
        cur = repo.head_model
        emit({"models": heads, "current": cur},
             lambda: [echo(f"{'*' if n == cur else ' '} {n:<30} {o[:12]}") for n, o in heads.items()])
        return
    if delete:
        oid = repo.delete_branch(name)
        emit({"deleted": name, "oid": oid}, lambda: echo(f"Deleted model line {name} (was {oid[:12]})"))
        return
    oid = repo.create_branch(name, ref)
    emit({"created": name, "oid": oid}, lambda: echo(f"Created model line {name} at {oid[:12]}"))


@click.command("tag")
@click.argument("name", required=False, shell_complete=complete_tag)
@click.argument("ref", required=False, shell_complete=complete_ref)
@click.option("-d", "--delete", is_flag=True, help="Delete tag NAME.")
@click.option("-f", "--force", is_flag=True, help="Move an existing tag.")
def tag_cmd(name: str | None, ref: str | None, delete: bool, force: bool) -> None:
    """List tags, or tag REF (default HEAD) as NAME.

    \b
    Examples:
      mgit tag v1.0 bert-sst2
      mgit tag -f v1.0 bert-sst2~1
      mgit tag -d v1.0
    """
    repo = open_repo()
    if name is None:
        tags = repo.tags()
        emit({"tags": tags}, lambda: [echo(f"{n:<30} {o[:12]}") for n, o in tags.items()])
        return
    if delete:
        oid = repo.delete_tag(name)
        emit({"deleted": name, "oid": oid}, lambda: echo(f"Deleted tag {name} (was {oid[:12]})"))
        return
    oid = repo.create_tag(name, ref, force=force)
    emit({"tag": name, "oid": oid}, lambda: echo(f"Tagged {oid[:12]} as {name}"))


COMMANDS = [branch_cmd, tag_cmd]
