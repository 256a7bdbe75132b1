"""``mgit test``: stored tests over the lineage, run on versions, with cached results."""

from __future__ import annotations

import sys
from typing import Any

import click

from mgit.commands._common import complete_model, complete_ref, ctx_obj, echo, emit, open_repo

__all__ = ["COMMANDS"]


def _fmt_num(v: float | None) -> str:
    return "nan" if v is None else f"{v:.6g}"


def _metrics_text(metrics: dict[str, Any], limit: int = 4) -> str:
    items = list(metrics.items())
    text = " ".join(f"{k}={_fmt_num(v)}" for k, v in items[:limit])
    return text + (" ..." if len(items) > limit else "")


def _label(repo: Any, commit: str) -> str:
    return f"{repo.model_of(commit)}@{commit[:12]}"


def result_line(repo: Any, r: Any, *, timing: bool = True) -> str:
    """One line for a result: mark, test, version, outcome, metrics or why it failed (with
    ``timing``: how long it ran, or that it was cached)."""
    mark = click.style(r.mark, fg={"pass": "green", "fail": "red"}.get(r.outcome, "yellow"))
    what = r.outcome if r.outcome != "error" else "untestable"
    tail = _metrics_text(r.metrics) if r.passed else (r.error or "")
    cached = "" if not timing else " (cached)" if r.cached else f" ({r.duration:.1f}s)"
    return f"{mark} {r.test} {_label(repo, r.commit)} {what}{cached}" + (f": {tail}" if tail else "")


@click.group("test")
def test_group() -> None:
    """Stored tests run on model versions, with results cached per version.

    \b
    Examples:
      mgit test add acc --cmd "python eval.py {model_dir} {metrics}" --pass 'accuracy>=0.9' --for bert-sst2
      mgit test run --all -j 2
      mgit test results bert-sst2
    """


@test_group.command("add")
@click.argument("name")
@click.option("--cmd", "cmd", required=True, metavar="CMD",
              help="Command template: {model_dir}, {ref}, {commit}, {metrics} are substituted.")
@click.option("--pass", "passes", multiple=True, metavar="EXPR",
              help="METRIC OP NUMBER that must hold (OP: >= <= > < == !=), e.g. 'accuracy>=0.97'.")
@click.option("--max-drop", "max_drop", multiple=True, metavar="M=V",
              help="METRIC may get at most V (or V%) worse than on the parent version.")
@click.option("--lower-better", "lower_better", multiple=True, metavar="M",
              help="For --max-drop: lower values of METRIC are better (a loss).")
@click.option("--timeout", type=float, metavar="S", help="Seconds before the command is killed (default 3600).")
@click.option("--for", "model", metavar="MODEL", shell_complete=complete_model,
              help="Every version of model line MODEL.")
@click.option("--descendants-of", metavar="REF", shell_complete=complete_ref,
              help="REF and every version derived from it.")
@click.option("--relation", metavar="R", help="Versions whose parent edge has relation R.")
@click.option("--task", metavar="T", help="Versions whose task metadata is T.")
@click.option("--all", "all_", is_flag=True, help="Every version (the default).")
def add_cmd(name: str, cmd: str, passes: tuple[str, ...], max_drop: tuple[str, ...],
            lower_better: tuple[str, ...], timeout: float | None, model: str | None,
            descendants_of: str | None, relation: str | None, task: str | None, all_: bool) -> None:
    """Store test NAME (re-adding a name replaces its spec; old results stay under the old one).

    \b
    Examples:
      mgit test add acc --cmd "python eval.py {model_dir} {metrics}" --pass 'accuracy>=0.9' --for bert-sst2
      mgit test add ppl --cmd "python ppl.py {model_dir} {metrics}" --max-drop ppl=5% --lower-better ppl
    """
    from mgit.lifecycle.testing import add_test

    repo = open_repo()
    spec, old = add_test(
        repo, name, cmd, passes=passes, max_drop=max_drop, lower_better=lower_better,
        timeout=timeout, model=model, descendants_of=descendants_of, relation=relation, task=task,
        all=all_,
    )

    def render() -> None:
        verb = "replaced" if old is not None and old.id != spec.id else ("unchanged" if old else "added")
        echo(f"test {spec.name} {verb} (spec {spec.id[:12]}): {spec.scope}")

    emit({"spec": _spec_json(spec), "replaced": old.id if old is not None and old.id != spec.id else None}, render)


def _spec_json(spec: Any) -> dict[str, Any]:
    d = spec.to_json()
    d["id"] = spec.id
    return d


@test_group.command("list")
def list_cmd() -> None:
    """List the stored tests.

    \b
    Examples:
      mgit test list
      mgit --json test list
    """
    from mgit.lifecycle.testing import load_specs

    repo = open_repo()
    specs = load_specs(repo)

    def render() -> None:
        if not specs:
            echo("no tests (add one with 'mgit test add NAME --cmd CMD')")
        for s in specs.values():
            rules = [str(e) for e in s.passes] + [f"max-drop {r}" for r in s.max_drop]
            echo(f"{click.style(s.name, bold=True)}  {s.id[:12]}  {s.scope}  timeout {s.timeout:g}s")
            echo(f"    cmd: {s.cmd}")
            if rules:
                echo(f"    pass: {', '.join(rules)}")

    emit([_spec_json(s) for s in specs.values()], render)


@test_group.command("rm")
@click.argument("name")
def rm_cmd(name: str) -> None:
    """Remove test NAME (its recorded results stay, under its spec id).

    \b
    Examples:
      mgit test rm acc
    """
    from mgit.lifecycle.testing import remove_test

    spec = remove_test(open_repo(), name)
    emit({"removed": _spec_json(spec)}, lambda: echo(f"removed test {name} (spec {spec.id[:12]})"))


@test_group.command("run")
@click.argument("refs", nargs=-1, metavar="[REF]...", shell_complete=complete_ref)
@click.option("--descendants-of", "descendants_of", multiple=True, metavar="REF",
              shell_complete=complete_ref, help="REF and every version derived from it.")
@click.option("--ancestors-of", "ancestors_of", multiple=True, metavar="REF",
              shell_complete=complete_ref, help="REF and its ancestors.")
@click.option("--all", "all_", is_flag=True, help="Every version.")
@click.option("--test", "tests", multiple=True, metavar="NAME", help="Only this test (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tests run at the same time.")
@click.option("--force", is_flag=True, help="Run again even where a result is recorded.")
def run_cmd(refs: tuple[str, ...], descendants_of: tuple[str, ...], ancestors_of: tuple[str, ...],
            all_: bool, tests: tuple[str, ...], jobs: int, force: bool) -> None:
    """Run the tests that apply to each version (default: HEAD); exit 1 if any did not pass.

    \b
    Examples:
      mgit test run --all -j 2
      mgit test run bert-sst2 --test acc
      mgit test run --descendants-of bert-base --force
    """
    from mgit.lifecycle.runner import run_tests
    from mgit.lifecycle.testing import select_commits

    repo = open_repo()
    commits = select_commits(repo, refs, descendants_of=descendants_of, ancestors_of=ancestors_of, all=all_)
    obj = ctx_obj()

    def on_start(commit: str, spec: Any) -> None:
        if not obj.quiet:
            echo(f"  running {spec.name} on {_label(repo, commit)}", err=True)

    def on_result(r: Any, done: int, total: int) -> None:
        if not obj.json:
            echo(f"[{done}/{total}] {result_line(repo, r)}")
            sys.stdout.flush()

    import signal

    def term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, term)
    except ValueError:  # not the main thread (tests)
        old = None
    try:
        report = run_tests(repo, commits, tests=tests, force=force, jobs=jobs,
                           on_start=on_start, on_result=on_result)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)

    def render() -> None:
        failed = sum(r.outcome == "fail" for r in report.results)
        errors = sum(r.outcome == "error" for r in report.results)
        passed = len(report.results) - failed - errors
        echo(f"{len(report.results)} results: {passed} passed, {failed} failed"
             + (f", {errors} untestable" if errors else "")
             + f" ({report.ran} run, {report.cached} cached)")

    emit(report, render)
    if report.failed:
        from mgit.lifecycle.testing import TestsFailedError

        n = len(report.failed)
        raise TestsFailedError(
            f"{n} of {len(report.results)} result{'s' if len(report.results) != 1 else ''} did not pass",
            hint="see them with 'mgit test results REF'",
        )


@test_group.command("results")
@click.argument("ref", required=False, shell_complete=complete_ref)
@click.option("--test", "tests", multiple=True, metavar="NAME", help="Only this test.")
@click.option("--all", "all_", is_flag=True, help="Every version with a result (default: REF, or HEAD).")
def results_cmd(ref: str | None, tests: tuple[str, ...], all_: bool) -> None:
    """Recorded results of the stored tests on REF (default HEAD), or on every version.

    \b
    Examples:
      mgit test results bert-sst2
      mgit test results --all --test acc
    """
    from mgit.lifecycle.testing import NoSuchTestError, TestNotes, load_specs, results_for

    repo = open_repo()
    specs = load_specs(repo)
    for t in tests:
        if t not in specs:
            raise NoSuchTestError(t)
    if tests:
        specs = {t: specs[t] for t in tests}
    if all_:
        commits = sorted(TestNotes(repo).tested(), key=lambda c: (repo.model_of(c), c))
    else:
        commits = [repo.resolve(ref or "HEAD")]
    res = results_for(repo, commits, specs=specs)
    rows = [r for c in commits for r in res.get(c, [])]

    def render() -> None:
        if not rows:
            echo("no recorded results" + ("" if all_ else f" for {_label(repo, commits[0])}"))
        for r in rows:
            echo(result_line(repo, r, timing=False))
            for d in r.drops:
                if d.status != "ok" and d.parent is not None:
                    echo(f"    max-drop {d.rule}: {d.status}" + (f" ({d.note})" if d.note else ""))
            if not r.passed and r.output:
                for line in r.output.splitlines()[-3:]:
                    echo(f"    | {line}")

    emit([r.to_json() for r in rows], render)


COMMANDS = [test_group]


def marks_for(repo: Any, oids: list[str]) -> dict[str, list[Any]]:
    """Recorded results of the stored tests on each version (for ``log`` and ``show``); the
    test runner is not even imported when the repository has no tests."""
    from mgit.refs.store import TESTS

    if repo.refs.read(TESTS) is None:
        return {}
    from mgit.lifecycle.testing import results_for

    return results_for(repo, oids)


def marks_json(results: list[Any]) -> dict[str, Any]:
    """The ``tests`` key of a version in ``log --json`` / ``show --json``."""
    return {r.test: {"outcome": r.outcome, "passed": r.passed, "failure": r.failure,
                     "metrics": r.metrics, "spec": r.spec_id} for r in results}


def marks_text(results: list[Any]) -> str:
    """``✓acc ✗loss`` (coloured)."""
    return " ".join(
        click.style(f"{r.mark}{r.test}", fg={"pass": "green", "fail": "red"}.get(r.outcome, "yellow"))
        for r in results
    )


# -- test blame (owned by the bisect work: mgit/lifecycle/bisect.py, cmd_bisect.py) -----------


@test_group.command("blame")
@click.argument("test")
@click.argument("ref", default="HEAD", shell_complete=complete_ref)
def blame_cmd(test: str, ref: str) -> None:
    """Which ancestor of REF (default HEAD) first fails TEST: inherited from upstream?

    \b
    Examples:
      mgit test blame sentiment bert-sst2
      mgit test blame acc
    """
    from mgit.commands.cmd_bisect import blame_command

    blame_command(test, ref)
