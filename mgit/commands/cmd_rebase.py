"""``mgit rebase``."""

from __future__ import annotations

from typing import Any

import click

from mgit.commands._common import complete_model, complete_ref, echo, emit, open_repo_streaming

__all__ = ["COMMANDS"]


def _short(repo: Any, oid: str | None) -> str:
    return f"{repo.model_of(oid)}@{oid[:12]}" if oid else "-"


def _render_plan(repo: Any, plan: Any) -> None:
    echo(f"rebase {plan.model} ({plan.model_commit[:12]}): {plan.strategy}, "
         f"from {_short(repo, plan.oldbase)} onto {_short(repo, plan.newbase)} ({plan.relation})")
    counts = plan.counts()
    if plan.strategy == "replay":
        echo("  tensors: " + ", ".join(f"{counts.get(k, 0)} {label}" for k, label in (
            ("replay", "replayed"), ("newbase", "taken from NEWBASE"), ("model", "MODEL's (NEWBASE unchanged)"),
            ("kept", "kept (added by MODEL)"), ("added", "added by NEWBASE"), ("removed", "removed"))))
        for t in plan.tensors:
            if t.action in ("replay", "kept", "added", "removed"):
                echo(f"    {t.action:8} {t.file}:{t.name}" + (f"  ({t.why})" if t.why else ""))
        for f in plan.files:
            if f.take != "newbase":
                echo(f"  file {f.path}: {f.take}" + (f" -> {f.result}" if f.result else ""))
        for c in plan.conflicts:
            echo(f"  conflict: {c}")


@click.command("rebase")
@click.argument("model", required=False, shell_complete=complete_model)
@click.option("--onto", "onto", metavar="NEWBASE", shell_complete=complete_ref,
              help="The new base version.")
@click.option("--from", "from_", metavar="OLDBASE", shell_complete=complete_ref,
              help="The version MODEL was derived from (default: its ancestor on NEWBASE's line).")
@click.option("--descendants-of", "descendants_of", metavar="OLD", shell_complete=complete_ref,
              help="Instead of MODEL: every model derived from OLD, in topological order.")
@click.option("--strategy", type=click.Choice(["replay", "recipe"]), default="replay", show_default=True,
              help="replay: NEWBASE + (MODEL - OLDBASE), no training; recipe: re-run the recorded --recipe.")
@click.option("--fallback", type=click.Choice(["recipe"]), default=None,
              help="When replay is refused or fails its tests, retrain by the recorded recipe instead.")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option("--status", "show_status", is_flag=True,
              help="Show the last cascade and the latest rebase attempt of each model; write nothing.")
@click.option("--ours", is_flag=True, help="A file changed by both sides: MODEL's.")
@click.option("--theirs", is_flag=True, help="A file changed by both sides: NEWBASE's.")
@click.option("--force", is_flag=True, help="Rebase even though the tokenizer files changed.")
@click.option("--recipe-timeout", "timeout", type=click.FloatRange(min=0, min_open=True), default=3600.0,
              show_default=True, metavar="SECONDS", help="Kill a recipe (and its children) running longer.")
@click.option("--no-tests", is_flag=True, help="Do not gate the result with the stored tests.")
@click.option("-j", "--jobs", type=int, default=1, show_default=True, help="Cascade: rebases at a time.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Cascade: local threads, or Ray tasks (needs ray).")
@click.option("--only", multiple=True, metavar="MODEL", shell_complete=complete_model,
              help="Cascade: only these model lines.")
@click.option("--skip", multiple=True, metavar="MODEL", shell_complete=complete_model,
              help="Cascade: leave these model lines out.")
def rebase_cmd(model: str | None, onto: str | None, from_: str | None, descendants_of: str | None,
               strategy: str, fallback: str | None, dry_run: bool, show_status: bool, ours: bool, theirs: bool,
               force: bool, timeout: float, no_tests: bool, jobs: int, executor: str, only: tuple[str, ...],
               skip: tuple[str, ...]) -> None:
    """Re-apply MODEL's derivation on a new base version (retrain-free, or by its recipe).

    The result is the next version of MODEL's line, with MODEL's previous version and NEWBASE as
    parents; it is kept only when the stored tests that apply to it pass.

    \b
    Examples:
      mgit rebase bert-sst2 --onto bert-base
      mgit rebase bert-sst2 --onto bert-base --from bert-base~1 --dry-run
      mgit rebase --descendants-of bert-base~1 --onto bert-base -j 4
    """
    from mgit.errors import UsageError
    from mgit.lifecycle.rebase import RebaseError

    if show_status:
        if model is not None or descendants_of is not None or onto is not None:
            raise UsageError("--status takes no MODEL, --onto or --descendants-of")
        _status(open_repo_streaming())
        return
    if (model is None) == (descendants_of is None):
        raise UsageError("give MODEL or --descendants-of OLD")
    if onto is None:
        raise UsageError("give --onto NEWBASE: the version to rebase onto")
    repo = open_repo_streaming()
    if descendants_of is not None:
        res = repo.rebase_cascade(descendants_of, onto=onto, strategy=strategy, fallback=fallback, jobs=jobs,
                                  executor=executor, dry_run=dry_run, tests=not no_tests, ours=ours,
                                  theirs=theirs, force=force, timeout=timeout, only=only, skip=skip)

        def render_cascade() -> None:
            echo(f"cascade from {_short(repo, res.old)} onto {_short(repo, res.new)}: {len(res.steps)} model(s)")
            for s in res.steps:
                tail = f" -> {s.commit[:12]}" if s.commit and s.status == "rebased" else ""
                how = f" by {s.strategy}" if s.strategy and s.status == "rebased" else ""
                if s.fell_back:
                    how += f" (replay did not do: {s.fell_back})"
                why = f": {s.error}" if s.error else ""
                echo(f"  {s.status:10} {s.model} ({s.kind} of {', '.join(s.upstreams)}){tail}{how}{why}")

        emit(res, render_cascade)
        if not res.ok:
            bad = [s.model for s in res.steps if s.status in ("failed", "skipped")]
            raise RebaseError(f"{len(bad)} model(s) not rebased: {', '.join(bad)}")
        return
    assert model is not None
    r = repo.rebase(model, onto=onto, from_=from_, strategy=strategy, fallback=fallback, dry_run=dry_run, ours=ours,
                    theirs=theirs, force=force, tests=not no_tests, timeout=timeout)

    def render() -> None:
        _render_plan(repo, r.plan)
        if r.fell_back:
            echo(f"replay did not do ({r.fell_back}): retrained by the recorded recipe")
        if r.status == "rebased" and r.commit is not None:
            echo(f"rebased {r.plan.model}: {r.commit.oid[:12]} ({r.seconds:.2f}s)")
        elif r.status == "up-to-date":
            echo(f"{r.plan.model} is already based on {_short(repo, r.plan.newbase)}")
        elif r.status == "dry-run":
            echo("dry run: nothing written")

    emit(r, render)
    if r.status == "gate-failed":
        raise RebaseError(f"tests failed on the rebased {r.plan.model}: {', '.join(r.failed_tests)}; "
                          f"{r.plan.model} was not moved (the version is kept as refs/rebase/{r.plan.model})",
                          hint="'mgit test results' shows why; --no-tests skips the gate")


def _status(repo: Any) -> None:
    import time

    st = repo.rebase_status()

    def render() -> None:
        if st.cascade is None and not st.attempts:
            echo("no rebase attempts recorded")
            return
        latest = {a.model: a for a in reversed(st.attempts)}
        if st.cascade is not None:
            c = st.cascade
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.get("started", 0)))
            echo(f"last cascade ({started}): {_short(repo, c.get('old'))} -> {_short(repo, c.get('new'))}, "
                 f"{c.get('strategy')}" + (f", fallback {c['fallback']}" if c.get("fallback") else ""))
            for m in c.get("models", []):
                a = latest.get(m)
                state = a.status if a is not None and a.at >= c.get("started", 0) else "pending"
                echo(f"  {state:11} {m}" + (f": {a.error}" if state != "pending" and a and a.error else ""))
        if st.attempts:
            echo("latest attempt per model:")
            for a in st.attempts:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.at))
                commit = f" -> {a.commit[:12]}" if a.commit else ""
                echo(f"  {a.status:11} {a.model} ({a.strategy}, onto {_short(repo, a.onto)}, {when}){commit}"
                     + (f": {a.error}" if a.error else ""))

    emit(st, render)


COMMANDS = [rebase_cmd]
