"""``mgit log``."""

from __future__ import annotations

import click

from mgit.commands._common import echo, echo_commit, emit, open_repo

__all__ = ["COMMANDS"]


@click.command("log")
@click.argument("ref", required=False)
@click.option("--graph", is_flag=True, help="Draw the lineage graph beside the commits.")
@click.option("--all", "all_", is_flag=True, help="Every model line, not just REF's history.")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0), help="Show at most N commits.")
@click.option("--oneline", is_flag=True, help="One line per commit.")
def log_cmd(ref: str | None, graph: bool, all_: bool, limit: int | None, oneline: bool) -> None:
    """Show model versions and how they derive from each other, newest first."""
    repo = open_repo()
    commits = repo.log(ref, all=all_, limit=limit)
    heads: dict[str, list[str]] = {}
    for name, oid in repo.model_heads().items():
        heads.setdefault(oid, []).append(name)
    tags: dict[str, list[str]] = {}
    for name, oid in repo.tags().items():
        tags.setdefault(oid, []).append(name)
    from mgit.commands.cmd_test import marks_for, marks_json, marks_text

    marks = marks_for(repo, [c.oid for c in commits])

    def render() -> None:
        if oneline and not graph:
            for c in commits:
                deco = heads.get(c.oid, []) + [f"tag: {t}" for t in tags.get(c.oid, [])]
                rel = [f"{r} of {pm}@{p[:7]}" for (p, r), pm in zip(c.parents, c.parent_models)
                       if r != "version" or pm != c.model]
                echo(" ".join(x for x in (
                    click.style(c.short, fg="yellow"), f"({', '.join(deco)})" if deco else "", c.model,
                    f"[{'; '.join(rel)}]" if rel else "", c.message.splitlines()[0] if c.message else "",
                    marks_text(marks.get(c.oid, [])),
                ) if x))
            return
        if graph:
            from mgit.lineage.render import LogEntry, graph_log

            entries = [
                LogEntry(oid=c.oid, short=c.short, parents=tuple(c.parents), model=c.model,
                         message=" ".join(x for x in (c.message.splitlines()[0] if c.message else "",
                                                      marks_text(marks.get(c.oid, []))) if x),
                         tags=tuple(tags.get(c.oid, [])),
                         heads=tuple(heads.get(c.oid, [])), time=c.time, author=c.author)
                for c in commits
            ]
            models = {c.oid: c.model for c in commits}
            for c in commits:
                for (p, _), pm in zip(c.parents, c.parent_models):
                    models.setdefault(p, pm)
            lines = graph_log(entries, models=models)
            for line in lines:
                echo(line)
            return
        for c in commits:
            echo_commit(c, decorations=heads.get(c.oid, []) + [f"tag: {t}" for t in tags.get(c.oid, [])])
            if c.oid in marks:
                echo("")
                echo(f"    Tests: {marks_text(marks[c.oid])}")
            echo("")

    emit([{**c.to_json(), "tests": marks_json(marks.get(c.oid, []))} for c in commits], render)


COMMANDS = [log_cmd]
