"""``mgit log``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from mgit.commands._common import complete_ref, echo, echo_commit, emit, open_repo

__all__ = ["COMMANDS"]


@click.command("log")
@click.argument("ref", required=False, shell_complete=complete_ref)
@click.option("--graph", is_flag=True, help="Draw the lineage graph beside the commits.")
@click.option("--all", "all_", is_flag=True, help="Every model line, not just REF's history.")
@click.option(
    "-n", "--max-count", "limit", type=click.IntRange(min=0), help="Show at most N commits."
)
@click.option("--oneline", is_flag=True, help="One line per commit.")
def log_cmd(ref: str | None, graph: bool, all_: bool, limit: int | None, oneline: bool) -> None:
    """Show model versions and how they derive from each other, newest first.

    \b
    Examples:
      mgit log --graph --all
      mgit log bert-sst2 -n 5 --oneline
      mgit --json log
    """
    from mgit.commands._common import ctx_obj
    from mgit.history import log_view

    repo = open_repo()
    view = log_view(repo, ref, all=all_)
    order = list(view.oids if limit is None else view.oids[:limit])
    heads: dict[str, list[str]] = {}
    for name, oid in view.model_heads.items():
        heads.setdefault(oid, []).append(name)
    tags: dict[str, list[str]] = {}
    for name, oid in view.tags.items():
        tags.setdefault(oid, []).append(name)
    from mgit.commands.cmd_test import marks_for, marks_json, marks_text

    marks = marks_for(repo, order)
    streamed = graph and limit is None and not ctx_obj().json
    # The graph of a whole history is drawn as it is read (``log --graph --all | head`` stops
    # early); everything else reads its (bounded or complete) list of commits first.
    commits = [] if streamed else [view.info(o) for o in order]

    def render() -> None:
        if oneline and not graph:
            for c in commits:
                deco = heads.get(c.oid, []) + [f"tag: {t}" for t in tags.get(c.oid, [])]
                rel = [
                    f"{r} of {pm}@{p[:7]}"
                    for (p, r), pm in zip(c.parents, c.parent_models)
                    if r != "version" or pm != c.model
                ]
                echo(
                    " ".join(
                        x
                        for x in (
                            click.style(c.short, fg="yellow"),
                            f"({', '.join(deco)})" if deco else "",
                            c.model,
                            f"[{'; '.join(rel)}]" if rel else "",
                            c.message.splitlines()[0] if c.message else "",
                            marks_text(marks.get(c.oid, [])),
                        )
                        if x
                    )
                )
            return
        if graph:
            from mgit.lineage.render import LogEntry, graph_log, iter_graph_log

            def entry(c: Any) -> LogEntry:
                return LogEntry(
                    oid=c.oid,
                    short=c.short,
                    parents=tuple(c.parents),
                    model=c.model,
                    message=" ".join(
                        x
                        for x in (
                            c.message.splitlines()[0] if c.message else "",
                            marks_text(marks.get(c.oid, [])),
                        )
                        if x
                    ),
                    tags=tuple(tags.get(c.oid, [])),
                    heads=tuple(heads.get(c.oid, [])),
                    time=c.time,
                    author=c.author,
                )

            if streamed:

                def entries() -> Iterator[LogEntry]:
                    for o in order:
                        yield entry(view.info(o))

                for line in iter_graph_log(entries(), members=view.members, model_of=view.model_of):
                    echo(line)
                return
            models = {c.oid: c.model for c in commits}
            for c in commits:
                for (p, _), pm in zip(c.parents, c.parent_models):
                    models.setdefault(p, pm)
            for line in graph_log([entry(c) for c in commits], models=models):
                echo(line)
            return
        for c in commits:
            echo_commit(
                c, decorations=heads.get(c.oid, []) + [f"tag: {t}" for t in tags.get(c.oid, [])]
            )
            if c.oid in marks:
                echo("")
                echo(f"    Tests: {marks_text(marks[c.oid])}")
            echo("")

    emit([{**c.to_json(), "tests": marks_json(marks.get(c.oid, []))} for c in commits], render)


COMMANDS = [log_cmd]
