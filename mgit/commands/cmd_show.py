"""``mgit show``."""

from __future__ import annotations

import sys

import click

from mgit.commands._common import (
    complete_ref,
    ctx_obj,
    echo,
    echo_commit,
    emit,
    human_bytes,
    open_repo,
)
from mgit.errors import UsageError

__all__ = ["COMMANDS"]


@click.command("show")
@click.argument("ref", default="HEAD", shell_complete=complete_ref)
@click.option("--files/--no-files", default=True, help="List the files.")
@click.option("--recipe", is_flag=True, help="Print a merge's recipe as mergekit YAML (mgit merge --config reads it).")
def show_cmd(ref: str, files: bool, recipe: bool) -> None:
    """Show a model version: lineage, metadata, files.

    REF:PATH prints the bytes of file PATH of version REF to stdout, unchanged (binary safe;
    with --json: what the version records about the file instead: kind, size, checksum).

    \b
    Examples:
      mgit show bert-sst2~1
      mgit show bert-sst2:config.json
      mgit show v1.0:tokenizer.json > tokenizer.json
      mgit --json show bert-sst2:model.safetensors
      mgit show --recipe soup
    """
    repo = open_repo()
    if ":" in ref:
        rev, _, path = ref.partition(":")
        if not rev or not path:
            raise UsageError(f"bad REF:PATH {ref!r}", hint="give both, e.g. 'mgit show HEAD:config.json'")
        if recipe:
            raise UsageError("--recipe takes a REF, not REF:PATH")
        _show_file(repo, rev, path)
        return
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


def _show_file(repo: object, ref: str, path: str) -> None:
    """``show REF:PATH``: the file's bytes on stdout, or (``--json``) its record."""
    if ctx_obj().json:
        emit(repo.file_info(ref, path), lambda: None)  # type: ignore[attr-defined]
        return
    data = repo.read_file(ref, path)  # type: ignore[attr-defined]
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _show_recipe(repo: object, ref: str) -> None:
    """``show --recipe``: the merge recipe of REF as YAML (``--json``: the recipe object)."""
    from mgit.lifecycle.merge import METHODS, recipe_yaml

    oid = repo.resolve(ref)  # type: ignore[attr-defined]
    rec = repo.read_commit(oid).recipe  # type: ignore[attr-defined]
    if not isinstance(rec, dict) or rec.get("method") not in METHODS:
        raise UsageError(f"{ref} has no merge recipe", hint="only versions made by 'mgit merge' have one")
    emit(rec, lambda: click.echo(recipe_yaml(rec), nl=False))


COMMANDS = [show_cmd]
