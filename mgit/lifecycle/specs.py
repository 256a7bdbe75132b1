"""Test specs, pass expressions, regression rules and the judgement of a run (pure).

A :class:`TestSpec` is a value: its id is the content id of its canonical JSON (name,
command template, pass expressions, regression rules with their direction, timeout, scope),
so re-adding a test with any change gives a new id and the results of the old one stay under
the old id. A run is recorded as *facts* (exit code, signal, timeout, metrics, output; see
:func:`mgit.lifecycle.testing.run_command`); whether it passed is decided here, by
:func:`judge`, from the facts, the spec and the facts of the parent version's run (for
``--max-drop``). Nothing here reads the store, and nothing read from the notes is trusted:
:meth:`TestSpec.from_json` validates everything.

Expressions are ``METRIC OP NUMBER`` with OP one of ``>= <= > < == !=`` (no eval):
``accuracy>=0.97``, ``eval.loss<2.1``. Regression rules: ``--max-drop accuracy=0.5`` (the
metric may fall by at most 0.5 below the parent's value; higher is better),
``--max-drop loss=0.1 --lower-better loss`` (may rise by at most 0.1), ``--max-drop
accuracy=2%`` (by at most 2% of the parent's value).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mgit.errors import UsageError
from mgit.objects.ids import hash_object, is_oid
from mgit.objects.model import RELATIONS, canonical_json

__all__ = [
    "SPEC_FORMAT",
    "DEFAULT_TIMEOUT",
    "SCOPES",
    "Check",
    "DropCheck",
    "DropRule",
    "Expr",
    "Scope",
    "TestResult",
    "TestSpec",
    "check_test_name",
    "judge",
]

SPEC_FORMAT = 1
#: Seconds a test command may run when ``--timeout`` is not given.
DEFAULT_TIMEOUT = 3600.0
#: Scope kinds: every version / of model line M / REF and what derives from it / versions
#: with a parent edge of relation R / versions whose ``task`` metadata is T.
SCOPES = ("all", "model", "descendants", "relation", "task")
OPS = (">=", "<=", "==", "!=", ">", "<")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}$")
_METRIC = r"[A-Za-z_][A-Za-z0-9_.:/-]{0,199}"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_EXPR = re.compile(rf"^\s*({_METRIC})\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")
_DROP = re.compile(rf"^\s*({_METRIC})\s*=\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*(%?)\s*$")


def check_test_name(name: str) -> str:
    """A test name: letters, digits, ``._+-``, at most 100 characters, not starting with ``.``/``-``.

    Raises:
        UsageError: anything else.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(
            f"bad test name {name!r}",
            hint="use letters, digits and ._+- (at most 100, not starting with . or -)",
        )
    return name


def _num(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(text)
    return v


def _fmt(v: float) -> str:
    """A number as written in an expression (``0.97``, ``2``, ``1e-05``)."""
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


@dataclass(frozen=True)
class Expr:
    """``metric op value``."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Expr:
        """Parse ``accuracy>=0.97``.

        Raises:
            UsageError: not ``METRIC OP NUMBER``.
        """
        m = _EXPR.match(text) if isinstance(text, str) else None
        if m is None:
            raise UsageError(
                f"bad --pass expression {text!r}",
                hint="write METRIC OP NUMBER with OP one of >= <= > < == != (e.g. 'accuracy>=0.97')",
            )
        try:
            return cls(m.group(1), m.group(2), _num(m.group(3)))
        except ValueError:
            raise UsageError(f"bad number in --pass expression {text!r}") from None

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{_fmt(self.value)}"

    def holds(self, x: float) -> bool:
        """Whether ``x OP value``."""
        return {
            ">=": x >= self.value, "<=": x <= self.value, ">": x > self.value,
            "<": x < self.value, "==": x == self.value, "!=": x != self.value,
        }[self.op]


@dataclass(frozen=True)
class DropRule:
    """How much worse than the parent's value a metric may get."""

    metric: str
    limit: float
    relative: bool = False  # limit is a percentage of the parent's value
    lower_better: bool = False

    @classmethod
    def parse(cls, text: str, *, lower_better: bool = False) -> DropRule:
        """Parse ``accuracy=0.5`` or ``accuracy=2%``.

        Raises:
            UsageError: not ``METRIC=NUMBER[%]`` with a number >= 0.
        """
        m = _DROP.match(text) if isinstance(text, str) else None
        if m is None:
            raise UsageError(
                f"bad --max-drop rule {text!r}",
                hint="write METRIC=AMOUNT or METRIC=PERCENT% (e.g. 'accuracy=0.5'); "
                "add --lower-better METRIC for a metric such as a loss",
            )
        value_text = text.split("=", 1)[1].strip().rstrip("%").strip()
        return cls(m.group(1), _num(value_text), relative=bool(m.group(3)), lower_better=lower_better)

    def __str__(self) -> str:
        amount = f"{_fmt(self.limit)}%" if self.relative else _fmt(self.limit)
        return f"{self.metric}={amount}" + (" (lower is better)" if self.lower_better else "")

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "metric": self.metric, "limit": self.limit, "relative": self.relative,
            "better": "lower" if self.lower_better else "higher",
        }


@dataclass(frozen=True)
class Scope:
    """Which versions a test applies to: ``kind`` in :data:`SCOPES`, ``value`` its argument
    (a model name, a commit id, a relation, a task; None for ``all``)."""

    kind: str = "all"
    value: str | None = None

    def __str__(self) -> str:
        return {
            "all": "every version",
            "model": f"versions of {self.value}",
            "descendants": f"{(self.value or '')[:12]} and what derives from it",
            "relation": f"versions made by {self.value}",
            "task": f"versions with task {self.value}",
        }[self.kind]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class TestSpec:
    """A stored test."""

    __test__ = False  # not a pytest class

    name: str
    cmd: str
    passes: tuple[Expr, ...] = ()
    max_drop: tuple[DropRule, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    scope: Scope = field(default_factory=Scope)

    def to_json(self) -> dict[str, Any]:
        """JSON value (what the spec id is the content id of)."""
        return {
            "format": SPEC_FORMAT,
            "name": self.name,
            "cmd": self.cmd,
            "pass": [str(e) for e in self.passes],
            "max_drop": [r.to_json() for r in self.max_drop],
            "timeout": self.timeout,
            "scope": self.scope.to_json(),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON."""
        return canonical_json(self.to_json())

    @property
    def id(self) -> str:
        """The content id of the canonical JSON (the id of the notes blob holding it)."""
        return hash_object("chunk", self.to_bytes())

    @property
    def needs_metrics(self) -> bool:
        """Whether passing depends on metrics."""
        return bool(self.passes or self.max_drop)

    @classmethod
    def from_json(cls, v: Any) -> TestSpec:
        """Validate and build (specs come from notes, perhaps from a remote).

        Raises:
            ValueError: malformed.
        """
        if not isinstance(v, dict) or v.get("format") != SPEC_FORMAT:
            raise ValueError("not a test spec of format 1")
        name, cmd, timeout = v.get("name"), v.get("cmd"), v.get("timeout")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("bad test name")
        if not isinstance(cmd, str) or not cmd.strip():
            raise ValueError("bad command")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < 1e9:
            raise ValueError("bad timeout")
        passes_v, drops_v, scope_v = v.get("pass"), v.get("max_drop"), v.get("scope")
        if not isinstance(passes_v, list) or not isinstance(drops_v, list) or not isinstance(scope_v, dict):
            raise ValueError("bad pass, max_drop or scope")
        try:
            passes = tuple(Expr.parse(e) for e in passes_v)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        drops = []
        for d in drops_v:
            if not isinstance(d, dict) or not isinstance(d.get("metric"), str) or not re.fullmatch(_METRIC, d["metric"]):
                raise ValueError("bad max_drop rule")
            limit, rel, better = d.get("limit"), d.get("relative"), d.get("better")
            if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not (0 <= limit < 1e300):
                raise ValueError("bad max_drop limit")
            if not isinstance(rel, bool) or better not in ("higher", "lower"):
                raise ValueError("bad max_drop rule")
            drops.append(DropRule(d["metric"], float(limit), rel, better == "lower"))
        kind, value = scope_v.get("kind"), scope_v.get("value")
        if kind not in SCOPES or (kind == "all") != (value is None) or not (value is None or isinstance(value, str)):
            raise ValueError("bad scope")
        if kind == "descendants" and not is_oid(value):
            raise ValueError("bad scope commit")
        if kind == "relation" and value not in RELATIONS:
            raise ValueError("bad scope relation")
        return cls(name, cmd, passes, tuple(drops), float(timeout), Scope(kind, value))

    @classmethod
    def from_bytes(cls, data: bytes) -> TestSpec:
        """Parse and validate.

        Raises:
            ValueError: malformed.
        """
        try:
            v = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ValueError("not JSON") from None
        return cls.from_json(v)


# -- judging a run (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A ``--pass`` expression on a run: its value and whether it holds (None: the metric is
    missing or not a finite number)."""

    expr: str
    value: float | None
    ok: bool

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"expr": self.expr, "value": self.value, "ok": self.ok}


@dataclass(frozen=True)
class DropCheck:
    """A ``--max-drop`` rule against the parent's run. ``status``: ``ok``, ``fail`` or
    ``n/a`` (no parent the test applies to, no parent result, or the parent lacks the metric)."""

    rule: str
    parent: str | None
    parent_value: float | None
    value: float | None
    worse_by: float | None
    status: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "rule": self.rule, "parent": self.parent, "parent_value": self.parent_value,
            "value": self.value, "worse_by": self.worse_by, "status": self.status, "note": self.note,
        }


@dataclass(frozen=True)
class TestResult:
    """A test's result on one version.

    ``outcome`` is ``pass``, ``fail`` or ``error``; ``error`` means the version could not be
    tested (its model could not be exported): ``passed`` is False and ``skipped`` True, and
    bisect should skip it rather than count it as bad. ``failure`` names why a run did not
    pass: ``timeout``, ``signal``, ``exit``, ``no-metrics``, ``bad-metrics``,
    ``unknown-metric``, ``check``, ``regression`` (a ``--max-drop`` rule), ``export``.
    """

    __test__ = False  # not a pytest class

    commit: str
    test: str
    spec_id: str
    outcome: str
    failure: str | None
    error: str | None
    metrics: dict[str, float | None]
    exit_code: int | None
    signal: str | None
    duration: float
    host: str
    time: int
    output: str
    stderr: str
    checks: tuple[Check, ...] = ()
    drops: tuple[DropCheck, ...] = ()
    parent: str | None = None
    cached: bool = False

    @property
    def passed(self) -> bool:
        """Whether the version passed the test."""
        return self.outcome == "pass"

    @property
    def skipped(self) -> bool:
        """Whether the version could not be tested (neither good nor bad)."""
        return self.outcome == "error"

    @property
    def mark(self) -> str:
        """``✓``, ``✗`` or ``?`` (untestable)."""
        return {"pass": "✓", "fail": "✗"}.get(self.outcome, "?")

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "commit": self.commit, "test": self.test, "spec": self.spec_id, "outcome": self.outcome,
            "passed": self.passed, "failure": self.failure, "error": self.error,
            "metrics": self.metrics, "exit_code": self.exit_code, "signal": self.signal,
            "duration": self.duration, "host": self.host, "time": self.time,
            "checks": [c.to_json() for c in self.checks], "max_drop": [d.to_json() for d in self.drops],
            "parent": self.parent, "cached": self.cached, "output": self.output, "stderr": self.stderr,
        }


def _metric(metrics: dict[str, Any] | None, name: str) -> float | None:
    v = (metrics or {}).get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _drop_check(rule: DropRule, value: float | None, parent: str | None, prec: dict[str, Any] | None) -> DropCheck:
    text = str(rule)
    if parent is None:
        return DropCheck(text, None, None, value, None, "n/a", "no parent version the test applies to")
    if prec is None:
        return DropCheck(text, parent, None, value, None, "n/a", "no result for the parent")
    pv = _metric(prec.get("metrics"), rule.metric)
    if pv is None:
        return DropCheck(text, parent, None, value, None, "n/a", f"the parent's run reported no {rule.metric}")
    if value is None:
        return DropCheck(text, parent, pv, None, None, "fail", f"this run reported no {rule.metric}")
    worse = (value - pv) if rule.lower_better else (pv - value)
    limit = abs(pv) * rule.limit / 100.0 if rule.relative else rule.limit
    ok = worse <= limit + 1e-12 * max(1.0, abs(pv))
    return DropCheck(text, parent, pv, value, worse, "ok" if ok else "fail")


def judge(
    spec: TestSpec,
    commit: str,
    rec: dict[str, Any],
    *,
    parent: str | None = None,
    parent_rec: dict[str, Any] | None = None,
    cached: bool = False,
) -> TestResult:
    """Decide a run: its recorded facts ``rec`` against ``spec`` (and, for ``--max-drop``, the
    facts of the run on ``parent``, the first parent version the test applies to).

    Facts (the keys of ``rec``): ``exit_code``, ``signal``, ``timed_out``, ``export_error``,
    ``metrics`` (None when the command reported none), ``metrics_error``, ``duration``,
    ``host``, ``time``, ``output``, ``stderr``.
    """
    metrics_raw = rec.get("metrics")
    metrics = metrics_raw if isinstance(metrics_raw, dict) else None
    failure: str | None = None
    errors: list[str] = []

    def fail(kind: str, why: str) -> None:
        nonlocal failure
        if failure is None:
            failure = kind
        errors.append(why)

    exit_code = rec.get("exit_code")
    export_error = rec.get("export_error")
    if export_error:
        fail("export", f"cannot export the model: {export_error}")
    elif rec.get("timed_out"):
        fail("timeout", f"timed out after {_fmt(spec.timeout)}s (the command's process group was killed)")
    elif rec.get("signal"):
        fail("signal", f"the command was killed by {rec['signal']}")
    elif exit_code != 0:
        fail("exit", f"the command exited with code {exit_code}")
    checks: list[Check] = []
    drops: list[DropCheck] = []
    if not export_error:
        if spec.needs_metrics and metrics is None:
            why = rec.get("metrics_error") or "the command reported no metrics"
            fail("bad-metrics" if rec.get("metrics_source") == "file" else "no-metrics", why)
        known = ", ".join(sorted(metrics or {})) or "none"
        for e in spec.passes:
            v = _metric(metrics, e.metric)
            ok = v is not None and e.holds(v)
            checks.append(Check(str(e), v, ok))
            if metrics is None or ok:
                continue
            if e.metric not in metrics:
                fail("unknown-metric", f"unknown metric {e.metric!r} in {e} (the command reported: {known})")
            elif v is None:
                fail("check", f"{e} does not hold: {e.metric} is not a finite number ({metrics[e.metric]!r})")
            else:
                fail("check", f"{e} does not hold ({e.metric}={_fmt(v)})")
        for r in spec.max_drop:
            d = _drop_check(r, _metric(metrics, r.metric), parent, parent_rec)
            drops.append(d)
            if d.status != "fail" or metrics is None:
                continue
            if r.metric not in metrics:
                fail("unknown-metric", f"unknown metric {r.metric!r} in --max-drop {r} (the command reported: {known})")
            else:
                assert d.worse_by is not None and d.parent is not None
                word = "rose" if r.lower_better else "fell"
                fail("regression", f"{r.metric} {word} by {_fmt(round(d.worse_by, 12))} from the parent "
                     f"{d.parent[:12]} ({_fmt(d.parent_value or 0.0)} -> {_fmt(d.value or 0.0)}), more than --max-drop {r}")
    outcome = "error" if export_error else ("pass" if failure is None else "fail")
    clean = {k: _metric(metrics, k) for k in sorted(metrics or {})}
    return TestResult(
        commit=commit, test=spec.name, spec_id=spec.id, outcome=outcome, failure=failure,
        error="; ".join(errors) or None, metrics=clean,
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        signal=rec.get("signal") if isinstance(rec.get("signal"), str) else None,
        duration=float(rec.get("duration") or 0.0), host=str(rec.get("host") or ""),
        time=int(rec.get("time") or 0), output=str(rec.get("output") or ""),
        stderr=str(rec.get("stderr") or ""), checks=tuple(checks), drops=tuple(drops),
        parent=parent, cached=cached,
    )
