"""``mgit rebase --descendants-of OLD --onto NEW``: rebase every model derived from OLD.

The plan: every model line (other than OLD's) whose latest version derives from OLD. Each
line's *upstream* is the model line of the first parent outside the line met on its
first-parent chain (where it was derived from). Lines are rebased in topological order of
upstreams: a line whose upstream is OLD's line goes onto NEW (OLDBASE: its newest ancestor on
OLD's line); a line whose upstream was rebased goes onto its upstream's new version (OLDBASE:
its newest ancestor on the upstream's line). Each rebase is gated by the stored tests.

A failure (a refusal, a conflict, a gate, a recipe) stops that line's subtree; the others go
on. Resumable: a line whose target is already among its ancestors (a finished rebase, which
carries ``rebased_onto`` metadata, or a model already derived from NEW) is ``up-to-date`` and
its current version is what its children go onto; since a line moves only after its commit
is durable and gated, a killed cascade rerun does only what is missing.

Executors: ``local`` (threads, ``jobs`` at a time: the lines of one topological level are
independent) and ``ray`` (optional; imported only when asked: each job opens the repository
by path in a Ray task, and reads and writes through it, never pickled tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mgit.core import RepoCore
from mgit.errors import MgitError, UsageError

__all__ = ["CascadeStep", "CascadeResult", "cascade", "plan_cascade"]


@dataclass
class CascadeStep:
    """One model line of the cascade: ``status`` ``planned``, ``rebased``, ``up-to-date``,
    ``failed`` (``error`` says why), ``skipped`` (its upstream failed), ``dry-run``."""

    model: str
    upstream: str
    status: str = "planned"
    onto: str | None = None
    commit: str | None = None
    error: str | None = None
    failed_tests: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"model": self.model, "upstream": self.upstream, "status": self.status, "onto": self.onto,
                "commit": self.commit, "error": self.error, "failed_tests": list(self.failed_tests)}


@dataclass
class CascadeResult:
    """Every line of the cascade, in the order they were planned."""

    old: str
    new: str
    steps: list[CascadeStep]

    @property
    def ok(self) -> bool:
        """No line failed or was skipped."""
        return all(s.status not in ("failed", "skipped") for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"old": self.old, "new": self.new, "ok": self.ok, "steps": [s.to_json() for s in self.steps]}


def _upstream(core: RepoCore, tip: str) -> str | None:
    """The model line a line was derived from: the first parent off the line on its
    first-parent chain (the second parent of a rebased version counts: it is the new base)."""
    line = core.read_commit(tip).model
    cur: str | None = tip
    while cur is not None:
        c = core.read_commit(cur)
        for p in c.parents:
            if core.model_of(p.oid) != line:
                return core.model_of(p.oid)
        cur = c.parents[0].oid if c.parents else None
    return None


def plan_cascade(core: RepoCore, old: str, only: Sequence[str] = (), skip: Sequence[str] = ()) -> list[CascadeStep]:
    """The lines to rebase, topologically ordered (upstreams first)."""
    from mgit.lifecycle.rebase import ancestors

    old_line = core.read_commit(old).model
    heads = core.model_heads()
    derived: dict[str, str] = {}
    for line, tip in sorted(heads.items()):
        if line == old_line or line in skip or (only and line not in only):
            continue
        if old in ancestors(core, tip):
            up = _upstream(core, tip)
            if up is not None:
                derived[line] = up
    order: list[str] = []
    placed = {old_line}
    pending = dict(derived)
    while pending:
        ready = sorted(m for m, up in pending.items() if up in placed or up not in derived)
        if not ready:  # a cycle cannot happen in a DAG; be safe
            ready = sorted(pending)
        for m in ready:
            order.append(m)
            placed.add(m)
            del pending[m]
    return [CascadeStep(m, derived[m]) for m in order]


def _levels(steps: list[CascadeStep], old_line: str) -> list[list[CascadeStep]]:
    depth: dict[str, int] = {old_line: -1}
    by = {s.model: s for s in steps}
    out: list[list[CascadeStep]] = []
    for s in steps:
        d = depth.get(s.upstream, -1) + 1 if s.upstream in by or s.upstream == old_line else 0
        depth[s.model] = d
        while len(out) <= d:
            out.append([])
        out[d].append(s)
    return out


def _job(core: RepoCore, model: str, onto: str, from_: str, kw: dict[str, Any]) -> dict[str, Any]:
    """One rebase; its outcome as plain values (what a Ray task sends back)."""
    from mgit.lifecycle.rebase import rebase

    try:
        r = rebase(core, model, onto=onto, from_=from_, **kw)
    except MgitError as exc:
        return {"status": "failed", "error": str(exc)}
    if r.status == "gate-failed":
        return {"status": "failed", "error": "tests failed: " + ", ".join(r.failed_tests),
                "failed_tests": r.failed_tests}
    return {"status": r.status, "commit": r.commit.oid if r.commit else None}


def _ray_job(path: str, model: str, onto: str, from_: str, kw: dict[str, Any]) -> dict[str, Any]:
    from mgit.core import RepoCore as _Core

    return _job(_Core.open(path), model, onto, from_, kw)


def cascade(
    core: RepoCore,
    old_ref: str,
    *,
    onto: str,
    strategy: str = "replay",
    jobs: int = 1,
    executor: str = "local",
    dry_run: bool = False,
    tests: bool = True,
    ours: bool = False,
    theirs: bool = False,
    force: bool = False,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    on_step: Callable[[CascadeStep], None] | None = None,
) -> CascadeResult:
    """Rebase every model derived from OLD onto NEW (see the module docstring).

    Raises:
        UsageError: an unknown executor, ``ray`` not installed, ``jobs`` < 1.
    """
    from mgit.lifecycle.rebase import ancestors, find_oldbase

    if executor not in ("local", "ray"):
        raise UsageError(f"unknown executor {executor!r}", hint="local or ray")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    ray: Any = None
    if executor == "ray" and not dry_run:
        try:
            import ray  # type: ignore[import-not-found,no-redef]
        except ImportError:
            raise UsageError("--executor ray needs the 'ray' package, which is not installed",
                             hint="pip install 'ray[default]', or use --executor local") from None
        if not ray.is_initialized():
            ray.init(num_cpus=jobs, include_dashboard=False)
    old = core.resolve(old_ref)
    new = core.resolve(onto)
    old_line = core.read_commit(old).model
    steps = plan_cascade(core, old, only, skip)
    kw = {"strategy": strategy, "tests": tests, "ours": ours, "theirs": theirs, "force": force,
          "dry_run": dry_run}
    # where each line now is (after its rebase), by model line
    target: dict[str, str] = {old_line: new}
    failed: set[str] = set()
    for level in _levels(steps, old_line):
        todo: list[tuple[CascadeStep, str, str]] = []
        for s in level:
            if s.upstream in failed:
                s.status, s.error = "skipped", f"upstream {s.upstream} was not rebased"
                failed.add(s.model)
                continue
            tip = core.model_heads().get(s.model)
            up_target = target.get(s.upstream)
            if tip is None or up_target is None:
                s.status, s.error = "skipped", f"upstream {s.upstream} is not part of this cascade"
                failed.add(s.model)
                continue
            s.onto = up_target
            if up_target in ancestors(core, tip):
                s.status, s.commit = "up-to-date", tip
                target[s.model] = tip
                continue
            if dry_run and s.upstream != old_line:
                s.status = "dry-run"  # planned against its upstream's rebased version
                target[s.model] = tip
                continue
            from_ = find_oldbase(core, tip, s.upstream)
            if from_ is None:
                s.status, s.error = "failed", f"{s.model} derives from no version of {s.upstream}"
                failed.add(s.model)
                continue
            todo.append((s, up_target, from_))
        if ray is not None:
            futures = [ray.remote(_ray_job).remote(str(core.root), s.model, onto_, from_, kw)
                       for s, onto_, from_ in todo]
            outs = ray.get(futures)
        elif jobs > 1 and len(todo) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as ex:
                outs = list(ex.map(lambda t: _job(core, t[0].model, t[1], t[2], kw), todo))
        else:
            outs = [_job(core, s.model, onto_, from_, kw) for s, onto_, from_ in todo]
        for (s, _, _), out in zip(todo, outs):
            s.status = out["status"]
            s.error = out.get("error")
            s.failed_tests = list(out.get("failed_tests") or [])
            s.commit = out.get("commit")
            if s.status == "failed":
                failed.add(s.model)
            elif s.status == "dry-run":
                target[s.model] = core.model_heads()[s.model]  # children plan against the old tip
            else:
                target[s.model] = s.commit or core.model_heads()[s.model]
        for s in level:
            if on_step is not None:
                on_step(s)
    return CascadeResult(old, new, steps)
