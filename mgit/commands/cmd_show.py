"""``mgit show``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, echo_commit, emit, human_bytes, open_repo

__all__ = ["COMMANDS"]


@click.command("show")
@click.argument("ref", default="HEAD")
@click.option("--files/--no-files", default=True, help="List the files.")
@click.option("--recipe", is_flag=True, help="Print a merge's recipe as mergekit YAML (mgit merge --config reads it).")
def show_cmd(ref: str, files: bool, recipe: bool) -> None:
    """Show a model version: lineage, metadata, files."""
    repo = open_repo()
    if recipe:
        _show_recipe(repo, ref)
        return
    res = repo.show(ref)
    from mgit.commands.cmd_test import marks_for, marks_json, result_line

    marks = marks_for(repo, [res.commit.oid]).get(res.commit.oid, [])

    def render() -> None:
        echo_commit(res.commit)
        if marks:
            echo("")
            echo("Tests:")
            for r in marks:
                echo("  " + result_line(repo, r, timing=False))
        if files:
            echo("")
            echo(f"{len(res.files)} files, {human_bytes(res.logical_bytes)}")
            for f in res.files:
                extra = f" ({f.tensors} tensors)" if f.kind == "safetensors" else ""
                echo(f"  {human_bytes(f.size):>10}  {f.path}{extra}")

    emit({**res.to_json(), "tests": marks_json(marks)}, render)


def _show_recipe(repo: object, ref: str) -> None:
    """``show --recipe``: the merge recipe of REF as YAML (``--json``: the recipe object)."""
    from mgit.errors import UsageError
    from mgit.lifecycle.merge import METHODS, recipe_yaml

    oid = repo.resolve(ref)  # type: ignore[attr-defined]
    rec = repo.read_commit(oid).recipe  # type: ignore[attr-defined]
    if not isinstance(rec, dict) or rec.get("method") not in METHODS:
        raise UsageError(f"{ref} has no merge recipe", hint="only versions made by 'mgit merge' have one")
    emit(rec, lambda: click.echo(recipe_yaml(rec), nl=False))


COMMANDS = [show_cmd]
