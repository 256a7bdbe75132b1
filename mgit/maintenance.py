"""Maintenance: ``stats`` (stored vs logical bytes), ``fsck`` (typed problems), ``gc`` and
the leftovers of killed processes (``fsck --repair``, which needs a remote, is
:mod:`mgit.remote.repair`).

Functions take a :class:`mgit.core.RepoCore`.

Leftovers of killed processes: a lock file whose holder no longer runs is broken by the next
command that wants it (:mod:`mgit._lockfile`); a temp file whose writer no longer runs
(``<name>.<pid>.<hex>.tmp``) is reported by ``fsck`` and removed by ``gc``, which first puts
back any that holds a whole, verified object that is missing (what a gc killed between moving
an object aside and putting it back leaves).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgit._lockfile import break_if_stale, process_alive, read_holder
from mgit.core import RepoCore
from mgit.errors import (
    CorruptRefError,
    InvalidRefNameError,
    LockHeldError,
    MgitError,
    StaleLockWarning,
)
from mgit.lineage import graph as dag
from mgit.objects.ids import is_oid
from mgit.objects.store import MARK_SLACK
from mgit.reach import all_commits, commit_objects, parents_first, reachable_objects

__all__ = [
    "StatsResult", "FsckProblem", "FsckResult", "GcResult", "stats", "fsck", "gc",
    "TEMP_GRACE", "leftovers",
]


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
#: What ``fsck`` also reports that is no damage (the result stays ``ok``): leftovers of killed
#: processes, which the next command (a lock) or ``gc`` (a temp file) cleans up, and a lineage
#: index that disagrees with the objects (a cache: the next query rebuilds it).
FSCK_NOTICES = ("stale_lock", "held_lock", "orphaned_temp", "lineage_index")

#: A temp file whose writer cannot be checked (another host, a foreign name) is removed by
#: ``gc`` only when older than this many seconds (or than ``--prune``, when larger).
TEMP_GRACE = 3600.0


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
        """The findings as the lines ``mgit fsck`` prints (damage and notices)."""
        return [f.message for f in self.findings]

    @property
    def damage(self) -> list[FsckProblem]:
        """The findings that are damage (not leftovers of killed processes)."""
        return [f for f in self.findings if f.kind in FSCK_KINDS]

    @property
    def ok(self) -> bool:
        """No damage found (stale locks and orphaned temp files are notices)."""
        return not self.damage

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"objects_checked": self.objects_checked, "reachable": self.reachable,
                "dangling": self.dangling, "problems": self.problems, "ok": self.ok,
                "findings": [{"kind": f.kind, "subject": f.subject, "message": f.message}
                             for f in self.findings]}


@dataclass(frozen=True)
class GcResult:
    """What ``gc`` removed."""

    removed: int
    freed_bytes: int
    kept: int
    dry_run: bool
    #: Temp files of killed writers removed (or that would be, with ``dry_run``).
    temp_removed: int = 0
    #: Of those, temp files that held a whole missing object and were put back in place.
    salvaged: int = 0
    #: Materialized folders (``.mgit/cache``) of versions nothing reaches any more, removed.
    cache_folders_removed: int = 0
    cache_freed_bytes: int = 0
    #: Loose ref files moved into ``packed-refs``.
    refs_packed: int = 0
    #: Lock files whose holder provably no longer runs, removed (or that would be).
    stale_locks_removed: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "kept": self.kept,
                "dry_run": self.dry_run, "temp_removed": self.temp_removed,
                "salvaged": self.salvaged, "cache_folders_removed": self.cache_folders_removed,
                "cache_freed_bytes": self.cache_freed_bytes, "refs_packed": self.refs_packed,
                "stale_locks_removed": self.stale_locks_removed}


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
    try:
        tips = core.ref_tips()
    except (CorruptRefError, InvalidRefNameError):  # a damaged HEAD: reported above
        tips = list(core.refs.iter_refs("refs/").values())
    needed = _walk(core, [oid for oid in tips if oid in core.store], found)
    if full:
        for oid in sorted(core.store.iter_oids()):
            checked += 1
            try:
                core.store.get(oid)
            except MgitError as exc:
                found.append(FsckProblem("bad_object", oid, str(exc)))
    dangling = len(set(core.store.iter_oids()) - needed) if full else 0
    found += _leftover_findings(core)
    from mgit.lineage_index import FILE_NAME as LINEAGE_INDEX
    from mgit.lineage_index import verify as verify_lineage_index

    bad_index = verify_lineage_index(core)
    if bad_index:  # a cache that disagrees with the objects: dropped, the next query rebuilds it
        (core.mgit_dir / LINEAGE_INDEX).unlink(missing_ok=True)
    found += [FsckProblem("lineage_index", p.subject, p.message + " (index removed: rebuilt on the next query)")
              for p in bad_index]
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


def _temp_writer(path: Path) -> int | None:
    """The pid in a temp name ``<name>.<pid>.<hex>.tmp``, or None."""
    parts = path.name.rsplit(".", 3)
    if len(parts) == 4 and parts[3] == "tmp" and parts[1].isdigit():
        return int(parts[1])
    return None


def _writer_gone(path: Path) -> bool | None:
    """Whether the process that made a temp file is provably gone (None: cannot tell)."""
    pid = _temp_writer(path)
    if pid is None:
        return None
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def leftovers(core: RepoCore) -> Iterator[tuple[str, Path]]:
    """Lock and temp files in the repository folder: ``("lock" | "temp", path)``."""
    top = core.mgit_dir
    for name in sorted(os.listdir(top)):
        if name.endswith(".lock"):
            yield "lock", top / name
        elif name.endswith(".tmp"):
            yield "temp", top / name
    for sub in ("refs", "logs", "writers"):
        for dirpath, _dirs, files in os.walk(top / sub):
            for fn in sorted(files):
                if fn.endswith(".lock"):
                    yield "lock", Path(dirpath) / fn
                elif fn.endswith(".tmp"):
                    yield "temp", Path(dirpath) / fn
    for path in core.store.loose.iter_temp_files():
        yield "temp", path


def _leftover_findings(core: RepoCore) -> list[FsckProblem]:
    out: list[FsckProblem] = []
    for what, path in leftovers(core):
        rel = path.relative_to(core.mgit_dir).as_posix()
        if what == "lock":
            holder, ino = read_holder(path)
            if ino is None:
                continue  # released meanwhile
            alive = None if holder is None else process_alive(holder)
            if alive is True:
                continue  # held by a running mgit: no finding
            if alive is False:
                out.append(FsckProblem("stale_lock", rel, f"{rel}: stale lock (held by {holder}, which "
                                       "no longer runs; the next command that needs it removes it)"))
            else:
                who = f"held by {holder}" if holder is not None else "no holder recorded"
                out.append(FsckProblem("held_lock", rel, f"{rel}: lock file ({who}); if no mgit is "
                                       "running, remove it"))
        elif _writer_gone(path) is not False:
            out.append(FsckProblem("orphaned_temp", rel, f"{rel}: temp file left by a killed "
                                   "process ('mgit gc' removes it)"))
    return out


def _clean_stale_locks(core: RepoCore, *, dry_run: bool) -> int:
    """Remove the lock files whose holder provably no longer runs (a process killed while it
    held the lock of a ref nothing updates again would leave it for ever); a live holder's,
    or one that cannot be checked (another host), are left alone."""
    removed = 0
    for what, path in list(leftovers(core)):
        if what != "lock":
            continue
        holder, ino = read_holder(path)
        if holder is None or ino is None or process_alive(holder) is not False:
            continue
        if dry_run:
            removed += 1
            continue
        with warnings.catch_warnings():  # counted in the result instead of one warning each
            warnings.simplefilter("ignore", StaleLockWarning)
            if break_if_stale(path) is not None:
                removed += 1
    return removed


def _clean_temps(core: RepoCore, *, min_age: float, dry_run: bool) -> tuple[int, int]:
    """Remove temp files whose writer is gone (or older than ``min_age`` when that cannot be
    told); an object temp file holding a whole, verified object that is missing is put back
    in place instead. Returns ``(removed, salvaged)``."""
    now = time.time()
    removed = salvaged = 0
    objects = core.store.loose.root
    for what, path in list(leftovers(core)):
        if what != "temp":
            continue
        gone = _writer_gone(path)
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if gone is False or (gone is None and age < min_age):
            continue
        removed += 1
        if dry_run:
            continue
        if path.parent.parent == objects:
            oid = path.parent.name + path.name.split(".", 1)[0]
            if is_oid(oid) and oid not in core.store:
                try:
                    core.store.decode_raw(oid, path.read_bytes())
                    os.replace(path, core.store.path_for(oid))
                    salvaged += 1
                    continue
                except (MgitError, OSError):
                    pass
        try:
            path.unlink()
        except OSError:
            pass
    return removed, salvaged


def gc(core: RepoCore, *, prune_age: float = 3600.0, dry_run: bool = False) -> GcResult:
    """Delete objects no ref reaches that are older than ``prune_age`` seconds, and temp files
    left by killed processes.

    Safe against concurrent writers whatever ``prune_age`` is (``--prune 0`` included): an
    object whose mtime is not older than the oldest live writer mark is kept (writers mark
    themselves before they write or reuse an object, and reusing one refreshes its mtime;
    see :class:`mgit.objects.store.DiskStore`); the marks are read before the refs, so a
    writer that finished first has its ref seen; and each object is moved aside before it is
    deleted and put back if a writer refreshed it meanwhile. Runs under ``.mgit/gc.lock``
    (a lock left by a killed gc is broken automatically).

    Raises:
        LockHeldError: another gc runs.
    """
    from mgit._lockfile import LockFile

    with LockFile(core.mgit_dir / "gc"):  # .mgit/gc.lock, fails at once when held by a live gc
        # Leftovers first: a whole object a killed gc had moved aside goes back before the walk.
        temps, salvaged = _clean_temps(core, min_age=max(prune_age, TEMP_GRACE), dry_run=dry_run)
        locks = _clean_stale_locks(core, dry_run=dry_run)
        start = time.time()
        threshold = min(start - prune_age, start - MARK_SLACK)
        for mark in core.store.writer_marks():  # before the refs are read: see the docstring
            if mark.alive is False:
                if not dry_run:
                    try:
                        mark.path.unlink()
                    except OSError:
                        pass
                continue
            if mark.holder is not None:
                since = mark.holder.time
            else:  # a mark being written, or unreadable: its file's time
                try:
                    since = mark.path.stat().st_mtime
                except OSError:
                    continue
            threshold = min(threshold, since - MARK_SLACK)
        keep = reachable_objects(core)  # delta bases are in commit_objects: a kept delta keeps its chain

        def young(st: os.stat_result) -> bool:
            return st.st_mtime >= threshold

        removed, freed = 0, 0
        for oid in list(core.store.iter_oids()):
            if oid in keep:
                continue
            try:
                st = core.store.path_for(oid).stat()
            except FileNotFoundError:
                continue
            if young(st):
                continue
            if dry_run:
                removed += 1
                freed += st.st_size
                continue
            n = core.store.loose.remove(oid, keep=young)
            if n:
                removed += 1
                freed += n
        from mgit.cache import clean_cache

        cache = clean_cache(core, keep=keep, min_age=prune_age, dry_run=dry_run)
        packed = 0
        if not dry_run:  # one packed-refs file instead of a file per ref (see RefStore.pack)
            try:
                packed = core.refs.pack()
            except LockHeldError:
                pass  # another process rewrites packed-refs: the refs stay loose this time
        return GcResult(removed=removed, freed_bytes=freed, kept=len(keep), dry_run=dry_run,
                        temp_removed=temps, salvaged=salvaged, cache_folders_removed=cache.folders_removed,
                        cache_freed_bytes=cache.freed_bytes, refs_packed=packed,
                        stale_locks_removed=locks)
