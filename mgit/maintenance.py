"""Maintenance: ``stats`` (stored vs logical bytes), ``fsck`` (typed problems) and ``gc``.

Functions take a :class:`mgit.core.RepoCore`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mgit.core import RepoCore
from mgit.errors import MgitError
from mgit.lineage import graph as dag
from mgit.reach import all_commits, commit_objects, parents_first, reachable_objects

__all__ = ["StatsResult", "FsckProblem", "FsckResult", "GcResult", "stats", "fsck", "gc"]


@dataclass(frozen=True)
class StatsResult:
    """Logical and stored bytes per model and in total."""

    models: dict[str, dict[str, int]]
    total: dict[str, int]
    commits: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON value: ``{"models": {NAME: {"logical_bytes", "stored_bytes"}}, "total": {...}}``."""
        return {"models": self.models, "total": self.total, "commits": self.commits}


#: The kinds of damage ``fsck`` reports.
FSCK_KINDS = ("damaged_ref", "dangling_ref", "missing_object", "bad_object")


@dataclass(frozen=True)
class FsckProblem:
    """One thing ``fsck`` found wrong.

    Attributes:
        kind: one of :data:`FSCK_KINDS`.
        subject: the ref name or object id concerned.
        message: the line ``mgit fsck`` prints.
    """

    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FsckResult:
    """What ``fsck`` found."""

    objects_checked: int
    reachable: int
    dangling: int
    findings: list[FsckProblem]

    @property
    def problems(self) -> list[str]:
        """The findings as the lines ``mgit fsck`` prints."""
        return [f.message for f in self.findings]

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"objects_checked": self.objects_checked, "reachable": self.reachable,
                "dangling": self.dangling, "problems": self.problems, "ok": self.ok}


@dataclass(frozen=True)
class GcResult:
    """What ``gc`` removed."""

    removed: int
    freed_bytes: int
    kept: int
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "kept": self.kept,
                "dry_run": self.dry_run}


def stats(core: RepoCore, ref: str | None = None) -> StatsResult:
    """Logical bytes (the files' sizes) and stored bytes (what the store holds) per model.

    Each object's stored bytes count once, for the first commit (parents first) that needs
    it, so a derived model is charged only for what it added (its deltas).
    """
    commits = dag.ancestors([core.resolve(ref)], core.parents_of) if ref is not None else all_commits(core)
    seen: set[str] = set()
    models: dict[str, dict[str, int]] = {}
    per_commit = []
    for c in parents_first(core, commits):
        objs = commit_objects(core, c) - seen
        seen |= objs
        stored = sum(core.store.stored_size(o) for o in objs)
        cm = core.read_commit(c)
        logical = core.read_tree(cm.tree).logical_bytes
        m = models.setdefault(cm.model, {"logical_bytes": 0, "stored_bytes": 0, "versions": 0})
        m["logical_bytes"] += logical
        m["stored_bytes"] += stored
        m["versions"] += 1
        per_commit.append({"oid": c, "model": cm.model, "logical_bytes": logical, "stored_bytes": stored})
    total = {
        "logical_bytes": sum(m["logical_bytes"] for m in models.values()),
        "stored_bytes": sum(m["stored_bytes"] for m in models.values()),
    }
    return StatsResult(models, total, per_commit)


def fsck(core: RepoCore, *, full: bool = True) -> FsckResult:
    """Check the repository: every ref points at a commit, every object a commit needs is
    present, and (``full``) every stored object decodes to content with its id.

    Never raises for damage it finds: it reports it.
    """
    found: list[FsckProblem] = []
    checked = 0
    for name in core.refs.damaged_refs():
        found.append(FsckProblem("damaged_ref", name, f"{name}: damaged ref (does not hold an object id)"))
    for name, oid in core.refs.iter_refs("refs/").items():
        if oid not in core.store:
            found.append(FsckProblem("dangling_ref", name, f"{name}: points at missing commit {oid}"))
    needed = _walk(core, [oid for oid in core.ref_tips() if oid in core.store], found)
    if full:
        for oid in sorted(core.store.iter_oids()):
            checked += 1
            try:
                core.store.get(oid)
            except MgitError as exc:
                found.append(FsckProblem("bad_object", oid, str(exc)))
    dangling = len(set(core.store.iter_oids()) - needed) if full else 0
    return FsckResult(objects_checked=checked, reachable=len(needed), dangling=dangling, findings=found)


def _walk(core: RepoCore, tips: list[str], found: list[FsckProblem]) -> set[str]:
    """Every object the commits reachable from ``tips`` need, going on past damage: a commit,
    tree or delta base that is missing or unreadable is added to ``found`` and the walk goes on
    with the rest (one damaged commit does not hide what else is missing)."""
    needed: set[str] = set()
    seen: set[str] = set()
    stack = list(tips)

    def report(oid: str, exc: MgitError) -> None:
        if oid not in core.store:
            found.append(FsckProblem("missing_object", oid, f"missing object {oid}"))
        elif not any(f.subject == oid for f in found):
            found.append(FsckProblem("bad_object", oid, str(exc)))

    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        needed.add(c)
        try:
            commit = core.read_commit(c)
        except MgitError as exc:
            report(c, exc)
            continue
        stack.extend(p.oid for p in commit.parents)
        needed.add(commit.tree)
        try:
            files = core.read_tree(commit.tree).files.values()
        except MgitError as exc:
            report(commit.tree, exc)
            continue
        todo = [ch for entry in files for ch in entry.chunk_ids() if ch not in needed]
        while todo:
            ch = todo.pop()
            if ch in needed:
                continue
            needed.add(ch)
            try:
                base = core.store.header(ch).base
            except MgitError as exc:
                report(ch, exc)
                continue
            if base is not None and base not in needed:
                todo.append(base)
    return needed


def gc(core: RepoCore, *, prune_age: float = 3600.0, dry_run: bool = False) -> GcResult:
    """Delete objects no ref reaches that are older than ``prune_age`` seconds.

    The age guard protects objects a concurrent commit has written but not yet referenced.
    Runs under ``.mgit/gc.lock``.

    Raises:
        LockHeldError: another gc runs.
    """
    from mgit._lockfile import LockFile

    with LockFile(core.mgit_dir / "gc"):  # .mgit/gc.lock, fails at once when held
        keep = reachable_objects(core)  # delta bases are in commit_objects: a kept delta keeps its chain
        now = time.time()
        removed, freed = 0, 0
        for oid in list(core.store.iter_oids()):
            if oid in keep:
                continue
            try:
                st = core.store.path_for(oid).stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime < prune_age:
                continue
            removed += 1
            freed += st.st_size
            if not dry_run:
                core.store.loose.remove(oid)
        return GcResult(removed=removed, freed_bytes=freed, kept=len(keep), dry_run=dry_run)
