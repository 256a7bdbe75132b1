"""What each rebase job did: for resuming a cascade and for ``mgit rebase --status``.

A *job* is one model rebased onto one new base, keyed by (model commit, new base commit,
strategy, recipe) (:func:`job_key`). Every job that gets as far as a verdict leaves an
:class:`Attempt` in ``.mgit/rebase/attempts.json``: ``rebased`` (the line moved),
``gate-failed`` (the new version was written but its tests failed, so the line did not move),
``failed`` (refused or the recipe failed: nothing written), ``up-to-date``. The file is
rewritten whole and atomically under its lock, so a killed command leaves it as it was or
with the attempt fully recorded, never half.

A gate-failed version is kept reachable by ``refs/rebase/<model>`` (gc keeps it; ``mgit show``,
``mgit test run`` and ``mgit diff`` can look at it; push and fetch do not carry it); the ref
goes away when the line moves. A rerun of the same job (same key) whose version is still
there re-runs only the gate on it: the arithmetic or the recipe is not redone.

The last cascade's plan is recorded too (``cascade``: OLD, NEW, the model lines in order), so
``--status`` after a killed cascade shows which lines are done and which are still pending.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mgit._lockfile import LockFile, env_timeout
from mgit.core import RepoCore
from mgit.lifecycle.rebase_write import RebaseError
from mgit.refs.store import REBASE

__all__ = [
    "ATTEMPT_REFS",
    "Attempt",
    "RebaseStatus",
    "drop_version",
    "job_key",
    "keep_version",
    "land",
    "load",
    "record",
    "record_cascade",
    "status",
]

#: ``refs/rebase/<model>``: the version of a gate-failed attempt, kept for inspection.
ATTEMPT_REFS = REBASE
_FILE = ("rebase", "attempts.json")


def job_key(model_commit: str, onto: str, strategy: str, recipe: dict[str, Any] | None) -> str:
    """The identity of a job: the same inputs give the same result, so they are one job."""
    rec = None if strategy == "replay" or recipe is None else [recipe.get("cmd"), recipe.get("seed")]
    raw = json.dumps([model_commit, onto, strategy, rec], sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:24]


@dataclass
class Attempt:
    """One job's verdict. ``commit`` is the version written (for ``rebased`` and
    ``gate-failed``); ``tip`` the line's tip the version was written against."""

    key: str
    model: str
    model_commit: str
    onto: str
    base: str
    strategy: str
    status: str
    commit: str | None = None
    tip: str | None = None
    error: str | None = None
    failed_tests: list[str] = field(default_factory=list)
    at: float = 0.0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return asdict(self)


@dataclass
class RebaseStatus:
    """``mgit rebase --status``: the last cascade (if any) and the latest attempt per model."""

    cascade: dict[str, Any] | None
    attempts: list[Attempt]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"cascade": self.cascade, "attempts": [a.to_json() for a in self.attempts]}


def _path(core: RepoCore) -> Any:
    return core.mgit_dir.joinpath(*_FILE)


def _read(core: RepoCore) -> dict[str, Any]:
    p = _path(core)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return {"attempts": {}, "cascade": None}
    try:
        v = json.loads(raw)
        why = None if isinstance(v, dict) and isinstance(v.get("attempts"), dict) else "not an object with 'attempts'"
    except ValueError as exc:
        why = str(exc)
    if why is not None:
        raise RebaseError(f"the rebase attempts file {p} is damaged ({why})",
                          hint="delete it: only the record of past attempts is lost")
    return v


def load(core: RepoCore) -> dict[str, Attempt]:
    """Every recorded attempt, by job key."""
    out: dict[str, Attempt] = {}
    for k, v in _read(core)["attempts"].items():
        try:
            out[k] = Attempt(**v)
        except TypeError:
            continue  # written by a newer mgit: not ours to interpret
    return out


def _change(core: RepoCore, edit: Any) -> None:
    p = _path(core)
    p.parent.mkdir(exist_ok=True)
    with LockFile(p, timeout=env_timeout()) as lk:
        state = _read(core)
        edit(state)
        lk.write(json.dumps(state, indent=1, sort_keys=True).encode() + b"\n")
        lk.commit()


def record(core: RepoCore, attempt: Attempt) -> None:
    """Record (or replace) the attempt of ``attempt.key``."""
    attempt.at = attempt.at or time.time()

    def edit(state: dict[str, Any]) -> None:
        state["attempts"][attempt.key] = attempt.to_json()

    _change(core, edit)


def record_cascade(core: RepoCore, plan: dict[str, Any] | None) -> None:
    """Record the plan of the cascade starting now (``None`` clears it)."""

    def edit(state: dict[str, Any]) -> None:
        state["cascade"] = plan

    _change(core, edit)


def keep_version(core: RepoCore, model: str, oid: str) -> None:
    """Point ``refs/rebase/<model>`` at a gate-failed version so gc keeps it."""
    ref = ATTEMPT_REFS + model
    core.refs.update_many([(ref, core.refs.read(ref), oid)], message="rebase: gate failed; version kept")


def drop_version(core: RepoCore, model: str) -> None:
    """Remove ``refs/rebase/<model>`` (the line moved)."""
    ref = ATTEMPT_REFS + model
    cur = core.refs.read(ref)
    if cur is not None:
        core.refs.delete_if_equals(ref, cur, message="rebase: line moved")


def land(core: RepoCore, model: str, tip: str, oid: str, attempt: Callable[..., Attempt], *,
         tests: bool = True, on_test: Callable[[Any], None] | None = None) -> list[str]:
    """The end of every rebase job: gate the written version ``oid`` of ``model`` with the
    stored tests that apply to it. Passed (or ``tests`` False): move the line from ``tip``
    (compare-and-swap) and let go of ``refs/rebase/<model>``. Failed: keep the version as
    ``refs/rebase/<model>``. The attempt is recorded either way (``attempt(status, **fields)``
    builds it). Returns the tests that failed (empty: the line moved)."""
    from mgit.lifecycle.testing import gate
    from mgit.refs.store import HEADS

    failed: list[str] = []

    def seen(r: Any) -> None:
        if not r.passed:
            failed.append(r.test)
        if on_test is not None:
            on_test(r)

    if tests and not gate(core, on_result=seen)(oid):
        failed = failed or ["?"]
        keep_version(core, model, oid)
        record(core, attempt("gate-failed", commit=oid, failed_tests=failed,
                             error="tests failed: " + ", ".join(failed)))
        return failed
    core.refs.update_many([(HEADS + model, tip, oid)], message=f"rebase: {core.read_commit(oid).message}")
    drop_version(core, model)
    record(core, attempt("rebased", commit=oid))
    return []


def status(core: RepoCore) -> RebaseStatus:
    """The last cascade's plan and the latest attempt of each model line, newest first."""
    state = _read(core)
    latest: dict[str, Attempt] = {}
    for a in load(core).values():
        if a.model not in latest or a.at > latest[a.model].at:
            latest[a.model] = a
    cascade = state.get("cascade") if isinstance(state.get("cascade"), dict) else None
    return RebaseStatus(cascade, sorted(latest.values(), key=lambda a: -a.at))
