"""``mgit bisect``: the version that introduced a failure, in one shot or step by step; and
the rendering of ``mgit test blame`` (wired into the ``test`` group)."""

from __future__ import annotations

import sys
from typing import Any

import click

from mgit.commands._common import complete_ref, ctx_obj, echo, emit, open_repo

__all__ = ["COMMANDS", "blame_command"]

#: The hidden subcommand that ``mgit bisect GOOD... BAD`` runs.
_ONESHOT = "between"
_SUBCOMMANDS_HELP = """\
\b
One shot (exit 0 when found):
  mgit bisect GOOD [GOOD...] BAD (--test NAME | --run CMD) [--first-parent]
              [--skip REF]... [--timeout S]
Step by step, like git (a working tree checks out each version to test):
  mgit bisect start BAD GOOD...      mgit bisect good|bad|skip [REF]
  mgit bisect run (--test NAME | --run CMD)
  mgit bisect log                    mgit bisect reset
"""


def _label(models: dict[str, str], oid: str) -> str:
    model = models.get(oid)
    return f"{oid[:12]} ({model})" if model else oid[:12]


def _subject(repo: Any, oid: str) -> str:
    msg = repo.read_commit(oid).message.strip().splitlines()
    return msg[0] if msg else ""


def _eval_line(repo: Any, ev: Any) -> str:
    colour = {"pass": "green", "fail": "red"}.get(ev.outcome, "yellow")
    word = {"pass": "pass", "fail": "fail", "skip": "skip"}[ev.outcome]
    what = click.style(f"{word:<4}", fg=colour)
    how = []
    if ev.role == "skip":
        how.append("--skip")
    elif ev.role:
        how.append(f"{ev.role.upper()} checked")
    if ev.cached:
        how.append("cached")
    elif ev.seconds is not None:
        how.append(f"{ev.seconds:.1f}s")
    if ev.detail:
        how.append(ev.detail)
    tail = f"  [{', '.join(how)}]" if how else ""
    return f"  {what} {ev.oid[:12]} ({repo.model_of(ev.oid)})" + tail


def _echo_first_bad(
    repo: Any, oid: str, models: dict[str, str], parents: list[tuple[str, str]]
) -> None:
    echo(click.style(f"{_label(models, oid)} is the first bad version", bold=True))
    subject = _subject(repo, oid)
    if subject:
        echo(f"    {subject}")
    if not parents:
        echo("  it fails, and it has no parent: it failed from its first version")
    for p, via in parents:
        why = "tested" if via == p else f"its descendant {_label(models, via)} passes"
        echo(f"  it fails; its parent {_label(models, p)} passes ({why})")


class _BisectGroup(click.Group):
    """``mgit bisect SUBCOMMAND ...``, or ``mgit bisect GOOD... BAD ...`` (the one shot)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if a != "--json"), None)
        if first is not None and first not in self.commands and first not in ctx.help_option_names:
            args = [_ONESHOT, *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """The subcommands, and (for the one shot's first GOOD) the refs."""
        results = super().shell_complete(ctx, incomplete)
        if not incomplete.startswith("-"):
            results += complete_ref(ctx, None, incomplete)
        return results


@click.group("bisect", cls=_BisectGroup, epilog=_SUBCOMMANDS_HELP)
def bisect_group() -> None:
    """Find the version that introduced a failure, between GOOD and BAD versions.

    The versions searched are the ancestors of BAD that are not ancestors of a GOOD, across
    the lineage (a finetune's history runs through its base model's versions; merges
    included), or only along first parents. Cached test results are used first; untestable
    versions are skipped; a history where a version passes after an ancestor failed is
    reported as not bisectable.

    \b
    Examples:
      mgit bisect bert-base~4 bert-sst2 --test acc
      mgit bisect start bert-sst2 bert-base~4
      mgit bisect run --test acc
    """


def _oneshot_options(f: Any) -> Any:
    for opt in reversed([
        click.option("--test", "test", metavar="NAME", help="A stored test (results cached)."),
        click.option("--run", "run", metavar="CMD",
                     help="A command run on an exported copy of each version ({model_dir}, "
                          "{ref}, {commit}, {metrics}); exit 0 = good."),
        click.option("--timeout", type=float, metavar="S",
                     help="With --run: seconds before the command is killed (default 3600)."),
    ]):
        f = opt(f)
    return f


@bisect_group.command(_ONESHOT, hidden=True)
@click.argument("refs", nargs=-1, required=True, metavar="GOOD... BAD", shell_complete=complete_ref)
@_oneshot_options
@click.option("--first-parent", is_flag=True, help="Follow only first parents.")
@click.option("--skip", "skips", multiple=True, metavar="REF", shell_complete=complete_ref,
              help="Never test REF.")
def oneshot_cmd(refs: tuple[str, ...], test: str | None, run: str | None, timeout: float | None,
                first_parent: bool, skips: tuple[str, ...]) -> None:
    """Find the first version between GOOD... and BAD that fails TEST or CMD.

    \b
    Examples:
      mgit bisect bert-base~4 bert-sst2 --test acc
      mgit bisect v1.0 bert-sst2 --run "python eval.py {model_dir}" --first-parent
    """
    from mgit.errors import BisectError, NotBisectableError, UsageError
    from mgit.lifecycle.bisect import bisect

    if len(refs) < 2:
        raise UsageError("bisect needs GOOD and BAD: mgit bisect GOOD [GOOD...] BAD --test NAME")
    if (test is None) == (run is None):
        raise UsageError("give one of --test NAME or --run CMD")
    repo = open_repo()
    obj = ctx_obj()
    if not obj.json:
        shown = run if run is None or len(run) <= 60 else run[:57] + "..."
        what = f"test {test}" if test else f"--run {shown!r}"
        echo(f"bisecting with {what}: GOOD {', '.join(refs[:-1])}, BAD {refs[-1]}"
             + (" (first parents only)" if first_parent else ""))

    def on_eval(ev: Any) -> None:
        if not obj.json:
            echo(_eval_line(repo, ev))
            sys.stdout.flush()

    res = bisect(repo, list(refs[:-1]), refs[-1], test=test, run=run, first_parent=first_parent,
                 skip=list(skips), timeout=timeout, on_eval=on_eval)

    def render() -> None:
        if res.found:
            assert res.first_bad is not None
            _echo_first_bad(repo, res.first_bad, res.models, res.parents)
        elif res.status == "ambiguous":
            echo("only skipped versions are left to test; the first bad version is one of:")
            for p in res.possible:
                echo(f"  {_label(res.models, p)}  {_subject(repo, p)}")
        echo(f"{res.candidates} version(s) searched: {res.evaluated} evaluated, "
             f"{res.cached} cached result(s) used")

    emit(res, render)
    if res.status == "not_bisectable":
        assert res.conflict is not None
        raise NotBisectableError(res.message, failing=res.conflict.failing,
                                 passing=res.conflict.passing)
    if res.status == "ambiguous":
        raise BisectError(res.message, hint="test the skipped versions, or look at them by hand")


# -- step by step ----------------------------------------------------------------------------


def _show_step(repo: Any, step: Any, *, checked_out: bool = False) -> None:
    """Render a step; raise when the history is not monotone."""
    from mgit.errors import NotBisectableError

    def render() -> None:
        if step.status == "testing":
            echo(f"Bisecting: {step.left} version(s) left to test after this "
                 f"(roughly {step.steps} step(s))")
            echo(f"[{step.next}] {repo.model_of(step.next)}: {_subject(repo, step.next)}")
            if checked_out:
                echo(f"HEAD is now at {step.next[:12]}: test it, then 'mgit bisect good' or "
                     "'mgit bisect bad' (or 'skip')")
        elif step.status == "found":
            _echo_first_bad(repo, step.first_bad, step.models, step.parents)
        elif step.status == "ambiguous":
            echo("only skipped versions are left to test; the first bad version is one of:")
            for p in step.possible:
                echo(f"  {_label(step.models, p)}  {_subject(repo, p)}")

    emit(step, render)
    if step.status == "not_bisectable":
        raise NotBisectableError(step.message, failing=step.conflict.failing,
                                 passing=step.conflict.passing)


def _checkout_next(repo: Any, step: Any) -> bool:
    """In a working tree, check out the version to test (like git); whether it did."""
    if step.status == "testing" and not repo.bare:
        repo.checkout(step.next)
        return True
    return False


@bisect_group.command("start")
@click.argument("bad", shell_complete=complete_ref)
@click.argument("goods", nargs=-1, required=True, metavar="GOOD...", shell_complete=complete_ref)
@click.option("--first-parent", is_flag=True, help="Follow only first parents.")
def start_cmd(bad: str, goods: tuple[str, ...], first_parent: bool) -> None:
    """Start bisecting between BAD and GOOD...; prints (and checks out) the version to test.

    \b
    Examples:
      mgit bisect start bert-sst2 bert-base~4
      mgit bisect start --first-parent bert-sst2 v1.0
    """
    from mgit.lifecycle.bisect import plan_start, save_session

    repo = open_repo()
    session, step = plan_start(repo, bad, list(goods), first_parent=first_parent)
    checked_out = _checkout_next(repo, step)
    save_session(repo, session)
    _show_step(repo, step, checked_out=checked_out)


def _mark(kind: str, ref: str | None) -> None:
    from mgit.lifecycle.bisect import plan_mark, save_session

    repo = open_repo()
    session, step = plan_mark(repo, kind, ref)
    checked_out = _checkout_next(repo, step)
    save_session(repo, session)
    _show_step(repo, step, checked_out=checked_out)


@bisect_group.command("good")
@click.argument("ref", required=False, shell_complete=complete_ref)
def good_cmd(ref: str | None) -> None:
    """Mark REF (default: HEAD, or in a bare repository the version to test) as passing.

    \b
    Examples:
      mgit bisect good
      mgit bisect good bert-sst2~3
    """
    _mark("good", ref)


@bisect_group.command("bad")
@click.argument("ref", required=False, shell_complete=complete_ref)
def bad_cmd(ref: str | None) -> None:
    """Mark REF (default: HEAD, or in a bare repository the version to test) as failing.

    \b
    Examples:
      mgit bisect bad
      mgit bisect bad bert-sst2~1
    """
    _mark("bad", ref)


@bisect_group.command("skip")
@click.argument("ref", required=False, shell_complete=complete_ref)
def skip_cmd(ref: str | None) -> None:
    """Mark REF (default: HEAD, or the version to test) as untestable.

    \b
    Examples:
      mgit bisect skip
      mgit bisect skip bert-sst2~2
    """
    _mark("skip", ref)


@bisect_group.command("run")
@_oneshot_options
def run_cmd(test: str | None, run: str | None, timeout: float | None) -> None:
    """Test the versions the bisect in progress asks for until it ends.

    \b
    Examples:
      mgit bisect run --test acc
      mgit bisect run --run "python eval.py {model_dir}" --timeout 600
    """
    from mgit.errors import BisectError, UsageError
    from mgit.lifecycle.bisect import (
        Evaluation,
        current_step,
        load_session,
        plan_mark,
        predicates,
        save_session,
    )

    if (test is None) == (run is None):
        raise UsageError("give one of --test NAME or --run CMD")
    repo = open_repo()
    load_session(repo)
    predicate, _ = predicates(repo, test, run, timeout)
    obj = ctx_obj()
    step = current_step(repo)
    while step.status == "testing":
        import time

        t0 = time.monotonic()
        outcome, detail = predicate(step.next)
        if not obj.json:
            echo(_eval_line(repo, Evaluation(step.next, outcome, detail=detail,
                                             seconds=round(time.monotonic() - t0, 3))))
            sys.stdout.flush()
        kind = {"pass": "good", "fail": "bad", "skip": "skip"}[outcome]
        session, step = plan_mark(repo, kind, step.next)
        save_session(repo, session)
    _show_step(repo, step)
    if step.status == "ambiguous":
        raise BisectError(step.message, hint="test the skipped versions, or look at them by hand")


@bisect_group.command("log")
def log_cmd() -> None:
    """Show what the bisect in progress was given and every mark.

    \b
    Examples:
      mgit bisect log
      mgit --json bisect log
    """
    from mgit.lifecycle.bisect import current_step, load_session

    repo = open_repo()
    s = load_session(repo)
    step = current_step(repo, s)

    def line(kind: str, oid: str) -> str:
        return f"# {kind}: [{oid}] {repo.model_of(oid)}: {_subject(repo, oid)}"

    def render() -> None:
        echo(line("bad", s.bad))
        for g in s.goods:
            echo(line("good", g))
        fp = " --first-parent" if s.first_parent else ""
        echo(f"mgit bisect start{fp} {s.bad} {' '.join(s.goods)}")
        for m in s.marks:
            echo(line(m["mark"], m["oid"]))
            echo(f"mgit bisect {m['mark']} {m['oid']}")
        if step.status != "testing":
            echo(f"# {step.message}")

    emit({**s.to_json(), "step": step.to_json()}, render)


@bisect_group.command("reset")
def reset_cmd() -> None:
    """End the bisect in progress and return HEAD to where it was before it started.

    \b
    Examples:
      mgit bisect reset
    """
    from mgit.lifecycle.bisect import end_session, load_session

    repo = open_repo()
    s = load_session(repo)
    back_to = None
    if not repo.bare and s.head_oid is not None:
        at_start = (repo.head_model == s.head_model) and (
            s.head_model is not None or repo.head() == s.head_oid)
        if not at_start:
            known = s.head_model is not None and s.head_model in repo.model_heads()
            target = s.head_model if known else s.head_oid
            repo.checkout(target)
        back_to = s.head_model or s.head_oid
    end_session(repo)

    def render() -> None:
        echo("bisect ended" + (f"; HEAD is back at {back_to}" if back_to else ""))

    emit({"reset": True, "head": back_to}, render)


COMMANDS = [bisect_group]


# -- mgit test blame (a subcommand of the ``test`` group, rendered here) ----------------------


def blame_command(test: str, ref: str) -> None:
    """``mgit test blame TEST REF``: run and render :func:`mgit.lifecycle.bisect.blame`
    (exit 0 with the answer, pass or fail; 1 when REF itself could not be tested)."""
    from mgit.errors import MgitError
    from mgit.lifecycle.bisect import blame

    repo = open_repo()
    obj = ctx_obj()

    def on_eval(ev: Any) -> None:
        if not obj.json:
            echo(_eval_line(repo, ev))
            sys.stdout.flush()

    res = blame(repo, test, ref, on_eval=on_eval)

    def render() -> None:
        echo(click.style(res.message, bold=True))
        for o in res.origins:
            where = "its own model line" if o.own_line else f"upstream model {o.model}"
            extra = ""
            if o.untested_parents:
                extra = "; parent(s) could not be tested: " + ", ".join(
                    f"{p[:12]} ({repo.model_of(p)})" for p in o.untested_parents)
            echo(f"  introduced by {o.oid[:12]} ({o.model}), {where}: "
                 f"{_subject(repo, o.oid)}{extra}")

    emit(res, render)
    if res.outcome == "skip":
        raise MgitError(f"{ref} could not be tested with {test}",
                        hint="its model could not be exported; see 'mgit test results REF'")
