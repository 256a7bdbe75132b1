"""``mgit rebase --descendants-of OLD --onto NEW``: rebase every model derived from OLD.

The plan: every model line (other than OLD's) whose latest version derives from OLD. A line's
*upstreams* are the model lines of the parents outside the line met first on its first-parent
chain (where it was derived from). Lines are moved in topological order of upstreams:

- a line with one upstream is rebased (:func:`mgit.lifecycle.rebase.rebase`): onto NEW when
  its upstream is OLD's line (OLDBASE: its newest ancestor on OLD's line), onto its upstream's
  new version when that line was moved by this cascade;
- a line whose latest version is an ``mgit merge`` of several upstreams is re-merged
  (:mod:`mgit.lifecycle.rebase_merge`): the recipe is redone on the inputs' new versions.

Each result is gated by the stored tests; ``fallback="recipe"`` retrains a model whose replay
was refused or failed its gate. A failure (a refusal, a conflict, a gate, a recipe) stops that
line's subtree; the others go on. Every verdict is recorded
(:mod:`mgit.lifecycle.rebase_attempts`, shown by ``mgit rebase --status``) with the plan.

Resumable: a line whose target is already among its ancestors (a finished rebase, which
carries ``rebased_onto`` metadata, or a model already derived from NEW) is ``up-to-date`` and
its current version is what its children go onto; since a line moves only after its commit
is durable and gated, a killed cascade rerun does only what is missing, and a job whose
version was written but failed its gate is only gated again.

Executors: ``local`` (threads, ``jobs`` at a time: the lines of one topological level are
independent) and ``ray`` (optional; imported only when asked: each job opens the repository
by path in a Ray task, and reads and writes through it, never pickled tensors; its outcome
comes back as plain values). Results do not depend on the executor: replay and merges are
deterministic, so the same cascade gives the same trees either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mgit.core import RepoCore
from mgit.errors import MgitError, UsageError

__all__ = ["CascadeResult", "CascadeStep", "cascade", "plan_cascade"]


@dataclass
class CascadeStep:
    """One model line of the cascade: ``status`` ``planned``, ``rebased``, ``up-to-date``,
    ``failed`` (``error`` says why), ``skipped`` (an upstream failed), ``dry-run``.

    ``kind`` is ``rebase`` (the line was derived from one upstream: its derivation is replayed
    or its recipe re-run) or ``merge`` (its latest version is an ``mgit merge`` of several
    upstreams: the merge is redone from its recipe on their new versions). ``strategy`` is
    the one that produced the result (``recipe`` after a fallback, which ``fell_back`` explains).
    """

    model: str
    upstream: str
    status: str = "planned"
    onto: str | None = None
    commit: str | None = None
    error: str | None = None
    failed_tests: list[str] = field(default_factory=list)
    kind: str = "rebase"
    upstreams: list[str] = field(default_factory=list)
    strategy: str | None = None
    fell_back: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"model": self.model, "upstream": self.upstream, "upstreams": list(self.upstreams),
                "kind": self.kind, "status": self.status, "onto": self.onto, "commit": self.commit,
                "strategy": self.strategy, "fell_back": self.fell_back, "error": self.error,
                "failed_tests": list(self.failed_tests)}


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


def _derivation(core: RepoCore, tip: str) -> tuple[str, list[str]] | None:
    """Where a line was derived: the first commit on its first-parent chain with parents off
    the line, and those parents' model lines (a rebased version's second parent counts: it
    is the new base)."""
    line = core.read_commit(tip).model
    cur: str | None = tip
    while cur is not None:
        c = core.read_commit(cur)
        ups: list[str] = []
        for p in c.parents:
            m = core.model_of(p.oid)
            if m != line and m not in ups:
                ups.append(m)
        if ups:
            return cur, ups
        cur = c.parents[0].oid if c.parents else None
    return None


def _is_merge(core: RepoCore, oid: str) -> bool:
    from mgit.lifecycle.rebase_merge import merge_recipe

    return merge_recipe(core, oid) is not None


def plan_cascade(core: RepoCore, old: str, only: Sequence[str] = (), skip: Sequence[str] = ()) -> list[CascadeStep]:
    """The lines to rebase, topologically ordered (upstreams first)."""
    from mgit.lifecycle.rebase import ancestors

    old_line = core.read_commit(old).model
    heads = core.model_heads()
    steps: dict[str, CascadeStep] = {}
    for line, tip in sorted(heads.items()):
        if line == old_line or line in skip or (only and line not in only):
            continue
        if old not in ancestors(core, tip):
            continue
        found = _derivation(core, tip)
        if found is None:
            continue
        at, ups = found
        merge = len(ups) > 1 and at == tip and _is_merge(core, at)
        steps[line] = CascadeStep(line, ups[0], kind="merge" if merge else "rebase",
                                  upstreams=ups if merge else ups[:1])
    order: list[str] = []
    placed = {old_line}
    pending = dict(steps)
    while pending:
        ready = sorted(m for m, st in pending.items() if all(u in placed or u not in steps for u in st.upstreams))
        if not ready:  # a cycle cannot happen in a DAG; be safe
            ready = sorted(pending)
        for m in ready:
            order.append(m)
            placed.add(m)
            del pending[m]
    return [steps[m] for m in order]


def _levels(steps: list[CascadeStep]) -> list[list[CascadeStep]]:
    """Steps grouped so that every step's upstreams are in earlier groups."""
    depth: dict[str, int] = {}
    out: list[list[CascadeStep]] = []
    for s in steps:  # already topologically ordered
        d = 1 + max((depth[u] for u in s.upstreams if u in depth), default=-1)
        depth[s.model] = d
        while len(out) <= d:
            out.append([])
        out[d].append(s)
    return out


def _outcome(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": r.status, "commit": r.commit.oid if r.commit else None,
                           "strategy": r.strategy, "fell_back": r.fell_back}
    if r.status == "gate-failed":
        out.update(status="failed", error="tests failed: " + ", ".join(r.failed_tests),
                   failed_tests=list(r.failed_tests))
    return out


def _job(core: RepoCore, job: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
    """One rebase or re-merge; its outcome as plain values (what a Ray task sends back)."""
    from mgit.lifecycle.rebase import rebase
    from mgit.lifecycle.rebase_merge import remerge

    try:
        if job["kind"] == "merge":
            r = remerge(core, job["model"], job["inputs"], job.get("base"), tests=kw["tests"],
                        dry_run=kw["dry_run"])
        else:
            r = rebase(core, job["model"], onto=job["onto"], from_=job["from"], **kw)
    except MgitError as exc:
        return {"status": "failed", "error": str(exc)}
    except OSError as exc:  # a disk error stops this line, not the cascade (it is reported)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return _outcome(r)


def _ray_job(path: str, job: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
    from mgit.core import RepoCore as _Core

    return _job(_Core.open(path), job, kw)


def _start_ray(jobs: int) -> Any:
    try:
        import ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise UsageError("--executor ray needs the 'ray' package, which is not installed",
                         hint="pip install 'mgit[ray]', or use --executor local") from None
    if not ray.is_initialized():
        ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    return ray


def cascade(
    core: RepoCore,
    old_ref: str,
    *,
    onto: str,
    strategy: str = "replay",
    fallback: str | None = None,
    jobs: int = 1,
    executor: str = "local",
    dry_run: bool = False,
    tests: bool = True,
    ours: bool = False,
    theirs: bool = False,
    force: bool = False,
    timeout: float = 3600.0,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    on_step: Callable[[CascadeStep], None] | None = None,
) -> CascadeResult:
    """Rebase every model derived from OLD onto NEW (see the module docstring).

    Raises:
        UsageError: an unknown executor, ``ray`` not installed, ``jobs`` < 1.
    """
    import time

    from mgit.lifecycle import rebase_attempts as att
    from mgit.lifecycle.rebase import ancestors, find_oldbase
    from mgit.lifecycle.rebase_merge import map_inputs

    if executor not in ("local", "ray"):
        raise UsageError(f"unknown executor {executor!r}", hint="local or ray")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    ray = _start_ray(jobs) if executor == "ray" and not dry_run else None
    old = core.resolve(old_ref)
    new = core.resolve(onto)
    old_line = core.read_commit(old).model
    steps = plan_cascade(core, old, only, skip)
    by = {s.model: s for s in steps}
    kw = {"strategy": strategy, "fallback": fallback, "tests": tests, "ours": ours, "theirs": theirs,
          "force": force, "dry_run": dry_run, "timeout": timeout}
    if not dry_run:
        att.record_cascade(core, {"old": old, "new": new, "strategy": strategy, "fallback": fallback,
                                  "started": time.time(), "models": [s.model for s in steps]})
    # where each line now is (after its rebase), by model line
    target: dict[str, str] = {old_line: new}
    failed: set[str] = set()
    for level in _levels(steps):
        todo: list[tuple[CascadeStep, dict[str, Any]]] = []
        for s in level:
            bad = [u for u in s.upstreams if u in failed]
            if bad:
                s.status, s.error = "skipped", f"upstream {bad[0]} was not rebased"
                failed.add(s.model)
                continue
            tip = core.model_heads().get(s.model)
            if tip is None:
                s.status, s.error = "skipped", f"{s.model} no longer exists"
                failed.add(s.model)
                continue
            if s.kind == "merge":
                inputs, base, changed = map_inputs(core, tip, target)
                s.onto = inputs[0]
                if dry_run and any(by[u].status == "dry-run" for u in s.upstreams if u in by):
                    s.status = "dry-run"  # its inputs would move first
                    target[s.model] = tip
                    continue
                if not changed:
                    s.status, s.commit = "up-to-date", tip
                    target[s.model] = tip
                    continue
                job: dict[str, Any] = {"kind": "merge", "model": s.model, "inputs": inputs, "base": base}
            else:
                up_target = target.get(s.upstream)
                if up_target is None:
                    s.status, s.error = "skipped", f"upstream {s.upstream} is not part of this cascade"
                    failed.add(s.model)
                    continue
                s.onto = up_target
                if dry_run and s.upstream in by and by[s.upstream].status == "dry-run":
                    s.status = "dry-run"  # would go onto its upstream's rebased version
                    target[s.model] = tip
                    continue
                if up_target in ancestors(core, tip):
                    s.status, s.commit = "up-to-date", tip
                    target[s.model] = tip
                    continue
                from_ = find_oldbase(core, tip, s.upstream)
                if from_ is None:
                    s.status, s.error = "failed", f"{s.model} derives from no version of {s.upstream}"
                    failed.add(s.model)
                    continue
                job = {"kind": "rebase", "model": s.model, "onto": up_target, "from": from_}
            if dry_run and s.kind == "merge":
                s.status = "dry-run"
                target[s.model] = tip
                continue
            todo.append((s, job))
        if ray is not None and todo:
            remote = ray.remote(_ray_job)
            outs = ray.get([remote.remote(str(core.root), job, kw) for _, job in todo])
        elif jobs > 1 and len(todo) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as ex:
                outs = list(ex.map(lambda t: _job(core, t[1], kw), todo))
        else:
            outs = [_job(core, job, kw) for _, job in todo]
        for (s, _), out in zip(todo, outs):
            s.status = out["status"]
            s.error = out.get("error")
            s.failed_tests = list(out.get("failed_tests") or [])
            s.commit = out.get("commit")
            s.strategy = out.get("strategy")
            s.fell_back = out.get("fell_back")
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
