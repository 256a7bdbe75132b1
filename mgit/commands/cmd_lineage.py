"""``mgit lineage`` and ``mgit find``."""

from __future__ import annotations

from typing import Any

import click

from mgit.commands._common import (
    complete_ref,
    echo,
    echo_lines,
    emit,
    fmt_time,
    open_repo,
    user_path,
)
from mgit.objects.model import RELATIONS

__all__ = ["COMMANDS"]


@click.command("lineage")
@click.argument("ref", required=False, shell_complete=complete_ref)
@click.option("--ancestors", "direction", flag_value="ancestors", help="Only REF and what it derives from.")
@click.option("--descendants", "direction", flag_value="descendants", help="Only REF and what derives from it.")
@click.option("--html", "html_file", metavar="FILE", help="Write a self-contained interactive HTML view.")
@click.option("--dot", "dot_file", metavar="FILE", help="Write a Graphviz DOT file.")
@click.option("--color-by", "color_by", metavar="TEST",
              help="Colour the versions by their recorded result of test TEST (pass/fail/none).")
@click.option("--collapse/--expand", "collapse", default=None,
              help="HTML: open with each model line collapsed to one node, or with every version "
                   "shown [default: collapsed above 300 versions].")
def lineage_cmd(ref: str | None, direction: str | None, html_file: str | None, dot_file: str | None,
                color_by: str | None, collapse: bool | None) -> None:
    """The lineage graph: models as nodes, derivations and versions as edges.

    Prints every model line with its versions, or with --html / --dot writes that view to
    FILE and prints only where.

    \b
    Examples:
      mgit lineage --html lineage.html
      mgit lineage bert-sst2 --ancestors
      mgit lineage --dot lineage.dot --color-by acc
    """
    from mgit._alloc import paused_gc

    with paused_gc():  # one record per version, and no cycle among them
        _lineage(ref, direction, html_file, dot_file, color_by, collapse)


def _lineage(ref: str | None, direction: str | None, html_file: str | None, dot_file: str | None,
             color_by: str | None, collapse: bool | None) -> None:
    from mgit._fs import write_text_file
    from mgit.lineage._records import _as_test
    from mgit.lineage.render import to_dot, to_html

    repo = open_repo()
    if direction and not ref:
        ref = "HEAD"
    data = repo.lineage_data(ref, direction=direction)  # records, no graph: fast at 100,000
    nodes, edges = data["nodes"], data["edges"]
    if color_by is not None:
        from mgit.lifecycle.testing import NoSuchTestError, load_specs, results_for

        specs = load_specs(repo)
        if color_by not in specs:
            raise NoSuchTestError(color_by)
        results = results_for(repo, [n["id"] for n in nodes], specs={color_by: specs[color_by]})
        for n in nodes:
            rs = results.get(n["id"])
            if rs:
                r = rs[0]
                n["test"] = _as_test({"name": r.test, "outcome": r.outcome, "metrics": r.metrics,
                                      "error": r.error or ""})
    if html_file:
        write_text_file(user_path(html_file), to_html(data, title=f"mgit lineage: {repo.root.name}",
                                                       color_by=color_by, collapse=collapse))
    if dot_file:
        write_text_file(user_path(dot_file), to_dot(data))

    def render() -> None:
        written = [f"wrote {what} view: {user_path(f)}"
                   for f, what in ((html_file, "HTML"), (dot_file, "DOT")) if f]
        if written:  # the view went to the file: no listing of every version besides
            echo_lines(written)
            return
        by_id = {n["id"]: n for n in nodes}
        parents: dict[str, list[str]] = {}
        for e in edges:  # sorted by (child, parent index): each child's parents in order
            p = by_id[e["source"]]
            parents.setdefault(e["target"], []).append(f"{e['relation']} of {p['model']}@{p['id'][:12]}")
        by_model: dict[str, list[dict[str, Any]]] = {}
        for n in nodes:  # oldest first (time, then id)
            by_model.setdefault(n["model"], []).append(n)
        lines = []
        for model in sorted(by_model):
            versions = by_model[model]
            lines.append(click.style(model, bold=True)
                         + f"  ({len(versions)} version{'s' if len(versions) != 1 else ''})")
            for n in versions:
                mark = ""
                if color_by is not None:
                    t = n.get("test")
                    mark = {"pass": "✓ ", "fail": "✗ ", "error": "? "}.get(t["outcome"], "") if t else "- "
                lines.append(f"  {mark}{n['short']}  {fmt_time(n['time'])}  "
                             f"{', '.join(parents.get(n['id'], ())) or 'root'}  "
                             f"{n['message'].splitlines()[0] if n['message'] else ''}")
        echo_lines(lines)

    emit(data, render)


@click.command("find")
@click.option("--task", help="meta task equals TASK.")
@click.option("--relation", type=click.Choice(RELATIONS), help="Derived from a parent with this relation.")
@click.option("--meta", multiple=True, metavar="KEY<op>VALUE",
              help="Metadata that must match: KEY=VALUE (text), or a comparison KEY>=V, KEY<=V, "
                   "KEY>V, KEY<V, KEY==V, KEY!=V (numeric where both sides are numbers). Repeatable.")
@click.option("--derived-from", metavar="REF", shell_complete=complete_ref, help="Derived (transitively) from REF.")
@click.option("--all-versions", is_flag=True, help="Search every version, not only the latest ones.")
@click.option("--failing", metavar="TEST", help="Whose recorded result of test TEST is a failure.")
@click.option("--sort", "sort_key", metavar="KEY",
              help="Order by metadata KEY (numerically when every value is a number), smallest first; "
                   "versions without it last.")
@click.option("--reverse", is_flag=True, help="With --sort: largest first.")
def find_cmd(task: str | None, relation: str | None, meta: tuple[str, ...], derived_from: str | None,
             all_versions: bool, failing: str | None, sort_key: str | None, reverse: bool) -> None:
    """Find models by task, relation, metadata, or ancestry.

    \b
    Examples:
      mgit find --derived-from bert-base --task sst2
      mgit find --meta 'accuracy>=0.9' --sort accuracy --reverse
      mgit find --all-versions --meta 'loss<0.5' --relation finetune
      mgit find --failing sentiment
    """
    if reverse and not sort_key:
        raise click.UsageError("--reverse goes with --sort KEY")
    repo = open_repo()
    found = repo.find(task=task, relation=relation, derived_from=derived_from,
                      all_versions=all_versions, where=list(meta), sort=sort_key, reverse=reverse)
    if failing is not None:
        from mgit.lifecycle.testing import failing as failing_versions

        bad = failing_versions(repo, failing)
        found = [c for c in found if c.oid in bad]

    def render() -> None:
        if not found:
            echo("no model matches")
        for c in found:
            meta_s = " ".join(f"{k}={v}" for k, v in sorted(c.meta.items()))
            echo(f"{c.model:<30} {c.short}  {fmt_time(c.time)}  {meta_s}")

    emit([c.to_json() for c in found], render)


COMMANDS = [lineage_cmd, find_cmd]
