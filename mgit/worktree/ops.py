"""Working-tree operations: add, status, checkout (next to the index they keep).

Each function takes a :class:`mgit.core.RepoCore` with a working tree and returns a result
value; ``Repository.add/status/checkout`` delegate here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgit._fs import check_not_in_mgit_dir, check_relpath, file_kind, safe_join
from mgit.core import RepoCore
from mgit.errors import (
    DirtyWorkingTreeError,
    InvalidRefNameError,
    UnreadableEntryError,
    UnsafePathError,
    UsageError,
)
from mgit.materialize import write_file
from mgit.objects.model import Tree
from mgit.refs.store import HEADS
from mgit.worktree.index import Index, Snapshot, index_lock, snapshot
from mgit.worktree.scan import Skipped, hub_blobs, scan

__all__ = [
    "AddResult",
    "CheckoutResult",
    "RestoreResult",
    "RmResult",
    "StatusResult",
    "add",
    "checkout",
    "relpath",
    "restore",
    "rm",
    "status",
]


@dataclass(frozen=True)
class AddResult:
    """Paths staged by ``add``."""

    staged: list[str]
    removed: list[str]
    unchanged: int
    skipped: list[Skipped] = field(default_factory=list)  # files under the paths left out, and why

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "staged": self.staged, "removed": self.removed, "unchanged": self.unchanged,
            "skipped": [s.to_json() for s in self.skipped],
        }


@dataclass(frozen=True)
class CheckoutResult:
    """What ``checkout`` did."""

    commit: str
    model: str | None
    detached: bool
    written: list[str]
    removed: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "commit": self.commit, "model": self.model, "detached": self.detached,
            "written": self.written, "removed": self.removed,
        }


@dataclass(frozen=True)
class StatusResult:
    """What ``mgit status`` reports. Paths are relative POSIX paths, sorted."""

    model: str | None
    head: str | None
    detached: bool
    staged_new: list[str]
    staged_modified: list[str]
    staged_deleted: list[str]
    modified: list[str]
    deleted: list[str]
    untracked: list[str]
    skipped: list[Skipped] = field(default_factory=list)  # files neither tracked nor listed, and why

    @property
    def clean(self) -> bool:
        """No staged or unstaged change to tracked files."""
        return not (
            self.staged_new or self.staged_modified or self.staged_deleted or self.modified or self.deleted
        )

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "model": self.model,
            "head": self.head,
            "detached": self.detached,
            "staged": {
                "new": self.staged_new,
                "modified": self.staged_modified,
                "deleted": self.staged_deleted,
            },
            "modified": self.modified,
            "deleted": self.deleted,
            "untracked": self.untracked,
            "skipped": [s.to_json() for s in self.skipped],
            "clean": self.clean,
        }


def add(
    core: RepoCore, paths: Iterable[str | os.PathLike[str]], *, follow_symlinks: bool = False,
    skip_unreadable: bool = False,
) -> AddResult:
    """Stage files (or every file under folders) for the next commit.

    Files identical to HEAD's are not staged; tracked files missing under a given folder
    are staged for removal. Symlinks are followed when they resolve inside the model folder or,
    in a Hugging Face hub cache snapshot, into that cache repository's ``blobs/``; any symlink
    (linked folders too) with ``follow_symlinks``. An entry that cannot be added (unreadable,
    not a regular file, a dangling or looping symlink, a symlinked folder) is an error, unless
    ``skip_unreadable``: then it is left out and listed in ``skipped`` (see
    :mod:`mgit.worktree.scan`).

    Raises:
        UsageError: a path that matches no file, or a single path that cannot be added.
        UnreadableEntryError: an entry that cannot be added (without ``skip_unreadable``).
        UnsafePathError: a path outside the model folder or a symlink pointing outside it.
    """
    core.need_worktree()
    head_tree = core.head_tree()
    staged: list[str] = []
    removed: list[str] = []
    skipped: list[Skipped] = []
    unchanged = 0
    blobs = hub_blobs(core.root)
    with index_lock(core.mgit_dir):
        index = Index.load(core.mgit_dir)
        for p in paths:
            rel = relpath(core.root, p)
            full = core.root / rel if rel else core.root
            if not follow_symlinks:
                _check_no_symlinked_folder(core.root, rel, blobs)
            why: list[Skipped] = []
            if rel and full.is_file() and not full.is_symlink():
                found = {rel: full}
            elif rel and full.is_symlink() and not full.is_dir():
                res = scan(core.root, under=_parent(rel), skipped=why,
                           follow_symlinks=lambda r: follow_symlinks and r == rel)
                found = {rel: res[rel]} if rel in res else {}
                why = [w for w in why if w.path == rel]
            elif full.is_dir():
                found = scan(core.root, under=rel, strict=True, follow_symlinks=follow_symlinks,
                             skipped=why, skip_unreadable=skip_unreadable,
                             tracked=set(head_tree.files) | set(index.staged))
            else:
                found = {}
                kind = _special_kind(full)
                if rel and kind is not None:  # a FIFO, a socket, a device named on its own
                    if not skip_unreadable:
                        raise UnreadableEntryError(rel, f"not a regular file ({kind})")
                    why = [Skipped(rel, f"not a regular file ({kind})")]
            skipped.extend(why)
            tracked = {
                t for t in set(head_tree.files) | set(index.staged)
                if not rel or t == rel or t.startswith(rel + "/")
            }
            if not found and not tracked:
                if len(why) == 1 and why[0].path == rel:
                    if skip_unreadable:
                        continue
                    raise UsageError(f"cannot add {rel}: {why[0].reason}")
                raise UsageError(f"path did not match any file: {p}")
            for frel, fpath in found.items():
                snap = snapshot(fpath)
                index.cache[frel] = snap
                entry = head_tree.files.get(frel)
                if entry is not None and entry.xxh == snap.xxh:
                    if index.staged.pop(frel, "absent") == "absent":
                        unchanged += 1
                    continue
                index.staged[frel] = snap
                staged.append(frel)
            for t in sorted(tracked - set(found)):
                if t in head_tree.files:
                    index.staged[t] = None
                    removed.append(t)
                else:
                    index.staged.pop(t, None)
        index.save(core.mgit_dir)
    return AddResult(sorted(staged), sorted(removed), unchanged, sorted(skipped, key=lambda k: k.path))


def status(core: RepoCore) -> StatusResult:
    """Staged, modified, deleted and untracked files.

    Checksums learnt on the way are saved to the index's stat cache when the index lock can be
    had (the cache is an optimisation: when another process holds the index, it is skipped).
    """
    from mgit.errors import MgitError

    core.need_worktree()
    index = Index.load(core.mgit_dir)
    cache_before = dict(index.cache)
    result, expected = _status(core, index)
    if index.cache != cache_before:
        try:
            with index_lock(core.mgit_dir):
                fresh = Index.load(core.mgit_dir)
                fresh.cache.update({k: v for k, v in index.cache.items() if k in expected})
                fresh.save(core.mgit_dir)
        except MgitError:
            pass  # the cache is an optimisation; another process holds the index
    return result


def _status(core: RepoCore, index: Index) -> tuple[StatusResult, dict[str, str]]:
    """The status against ``index`` (whose stat cache learns the checksums read); also returns
    the expected checksum of every tracked path. Takes no lock and writes nothing."""
    head_tree = core.head_tree()
    s_new, s_mod, s_del, mod, dele = [], [], [], [], []
    for rel, snap in index.staged.items():
        if snap is None:
            s_del.append(rel)
        elif rel in head_tree.files:
            s_mod.append(rel)
        else:
            s_new.append(rel)
    expected: dict[str, str] = {r: e.xxh for r, e in head_tree.files.items()}
    for rel, snap in index.staged.items():
        if snap is None:
            expected.pop(rel, None)
        else:
            expected[rel] = snap.xxh
    # Tracked files that are symlinks were added through them (-L, or a hub cache snapshot):
    # keep following them, and the linked folders that hold tracked files.
    tracked_dirs = {rel.rsplit("/", i)[0] for rel in expected for i in range(1, rel.count("/") + 1)}
    skipped: list[Skipped] = []
    work = scan(core.root, follow_symlinks=lambda r: r in expected or r in tracked_dirs, skipped=skipped,
                tracked=expected)
    for rel, xxh in expected.items():
        path = work.get(rel)
        if path is None:
            dele.append(rel)
        elif index.current_xxh(rel, path) != xxh:
            mod.append(rel)
    # A file whose deletion is staged but that is still there (rm --cached) is untracked too.
    untracked = sorted(r for r in work if r not in expected)
    result = StatusResult(
        model=core.head_model, head=core.head(), detached=core.refs.head_target() is None,
        staged_new=sorted(s_new), staged_modified=sorted(s_mod), staged_deleted=sorted(s_del),
        modified=sorted(mod), deleted=sorted(dele), untracked=untracked,
        skipped=sorted(skipped, key=lambda k: k.path),
    )
    return result, expected


def checkout(core: RepoCore, ref: str, *, force: bool = False) -> CheckoutResult:
    """Make the working tree the files of REF; HEAD follows (a model name keeps HEAD on that
    model line, anything else detaches it).

    Untracked files are kept; files that would be overwritten or removed with uncommitted
    changes make it refuse, unless ``force``.

    Raises:
        DirtyWorkingTreeError: uncommitted changes (or untracked files in the way).
        RefNotFoundError: unknown REF.
    """
    core.need_worktree()
    # The working tree's files never land in a repository folder (a worktree nested in a .mgit).
    check_not_in_mgit_dir(core.root, action="checkout")
    oid = core.resolve(ref)
    try:
        target_model = ref if core.refs.read(HEADS + ref) is not None else None
    except InvalidRefNameError:
        target_model = None  # HEAD~1, an id, a tag: detach
    if ref.strip() in ("HEAD", "@"):
        target_model = core.head_model
    new_tree = core.commit_tree(oid)
    old_tree = core.head_tree()
    with index_lock(core.mgit_dir):
        # The index is read once, under the lock this checkout holds: the status check and
        # the writes below share it, and its stat cache is saved with the result.
        index = Index.load(core.mgit_dir)
        st, _ = _status(core, index)
        if not force:
            dirty = st.staged_new + st.staged_modified + st.staged_deleted + st.modified + st.deleted
            dirty += [u for u in st.untracked if u in new_tree.files]
            if dirty:
                raise DirtyWorkingTreeError(sorted(set(dirty)))
        plan = _checkout_plan(core.root, new_tree, index)
        written, removed = [], []
        with core.pool() as pool:
            for rel, entry in plan:
                path = core.root / rel
                write_file(core.store, entry, core.root, rel, pool=pool, workers=core.workers)
                index.cache[rel] = Snapshot.of(path.stat(), entry.xxh)
                written.append(rel)
        for rel in sorted(set(old_tree.files) - set(new_tree.files)):
            if _delete_working_file(core.root, rel):
                removed.append(rel)
            index.cache.pop(rel, None)
        index.staged = {}
        index.save(core.mgit_dir)
        if target_model is not None:
            core.refs.set_head(ref=HEADS + target_model, message=f"checkout {ref}")
        else:
            core.refs.set_head(oid=oid, message=f"checkout {ref}")
    return CheckoutResult(oid, target_model, target_model is None, written, removed)


@dataclass(frozen=True)
class RestoreResult:
    """What ``restore`` did: paths unstaged (``--staged``), or working files rewritten."""

    unstaged: list[str]
    restored: list[str]
    source: str | None  # the commit the files were restored from (None: --staged)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"unstaged": self.unstaged, "restored": self.restored, "source": self.source}


@dataclass(frozen=True)
class RmResult:
    """What ``rm`` did: deletions staged, and which of those files were deleted."""

    removed: list[str]
    deleted: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"removed": self.removed, "deleted": self.deleted}


def _under(paths: Iterable[str], rel: str) -> list[str]:
    """The paths that are ``rel`` or lie under the folder ``rel`` (all for ``""``)."""
    return sorted(t for t in paths if not rel or t == rel or t.startswith(rel + "/"))


def restore(
    core: RepoCore, paths: Iterable[str | os.PathLike[str]], *, staged: bool = False,
    source: str | None = None,
) -> RestoreResult:
    """Undo changes to ``paths`` (files or folders), like ``git restore``.

    With ``staged``: unstage them (the index forgets what ``add``/``rm`` staged; the working
    files are not touched). Else: rewrite the working files from ``source`` (default HEAD),
    byte-identical to what was committed; a path with a staged change is refused (unstage it
    first), so that nothing staged is silently lost. Every path is checked before anything
    changes.

    Raises:
        UsageError: a path that matches nothing staged (``staged``) or no file of ``source``;
            a path with a staged change; ``staged`` with ``source``.
        UnsafePathError: a path outside the model folder.
        PathNotFoundError: ``source`` has no such file.
    """
    from mgit.errors import PathNotFoundError

    core.need_worktree()
    if staged and source is not None:
        raise UsageError("--staged unstages; --source restores working files: give one")
    rels = [relpath(core.root, p) for p in paths]
    if not rels:
        raise UsageError("give the paths to restore")
    with index_lock(core.mgit_dir):
        index = Index.load(core.mgit_dir)
        if staged:
            chosen: list[str] = []
            for rel, p in zip(rels, paths):
                hit = _under(index.staged, rel)
                if not hit:
                    raise UsageError(f"nothing staged under {p}")
                chosen += hit
            for rel in chosen:
                index.staged.pop(rel, None)
            index.save(core.mgit_dir)
            return RestoreResult(sorted(set(chosen)), [], None)
        oid = core.resolve(source or "HEAD")
        tree = core.commit_tree(oid)
        todo: list[str] = []
        for rel, p in zip(rels, paths):
            hit = _under(tree.files, rel)
            if not hit:
                raise PathNotFoundError(source or "HEAD", str(p), sorted(tree.files))
            todo += hit
        todo = sorted(set(todo))
        busy = [rel for rel in todo if rel in index.staged]
        if busy:
            raise UsageError(
                f"{busy[0]} has a staged change" + (f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""),
                hint=f"'mgit restore --staged {busy[0]}' unstages it first",
            )
        for rel in todo:  # checked before anything is written, like checkout
            path = safe_join(core.root, rel)
            if path.is_dir():
                raise DirtyWorkingTreeError([rel], action="restore (a folder is in the way)")
        with core.pool() as pool:
            for rel in todo:
                entry = tree.files[rel]
                path = core.root / rel
                if path.is_file() and not path.is_symlink() and index.current_xxh(rel, path) == entry.xxh:
                    continue  # already these bytes
                write_file(core.store, entry, core.root, rel, pool=pool, workers=core.workers)
                index.cache[rel] = Snapshot.of(path.stat(), entry.xxh)
        index.save(core.mgit_dir)
    return RestoreResult([], todo, oid)


def rm(
    core: RepoCore, paths: Iterable[str | os.PathLike[str]], *, cached: bool = False,
    force: bool = False,
) -> RmResult:
    """Stage the deletion of tracked files (or every tracked file under folders) and delete
    them from the working tree, like ``git rm``; ``cached`` keeps the working files (they
    become untracked). A file added but never committed is unstaged instead.

    A working file whose bytes differ from what is committed and staged would lose those
    changes: it is refused unless ``force`` (or ``cached``). Every path is checked before
    anything changes.

    Raises:
        UsageError: a path that matches no tracked file.
        DirtyWorkingTreeError: a file with changes that are neither committed nor staged.
        UnsafePathError: a path outside the model folder.
    """
    core.need_worktree()
    rels = [relpath(core.root, p) for p in paths]
    if not rels:
        raise UsageError("give the paths to remove")
    head_tree = core.head_tree()
    with index_lock(core.mgit_dir):
        index = Index.load(core.mgit_dir)
        tracked = {t for t in head_tree.files if index.staged.get(t, "keep") is not None}
        tracked |= {t for t, snap in index.staged.items() if snap is not None}
        todo: list[str] = []
        for rel, p in zip(rels, paths):
            hit = _under(tracked, rel)
            if not hit:
                raise UsageError(f"path did not match any tracked file: {p}")
            todo += hit
        todo = sorted(set(todo))
        if not cached and not force:
            dirty = []
            for rel in todo:
                path = core.root / rel
                if not path.is_file():
                    continue
                snap = index.staged.get(rel)
                want = {snap.xxh} if snap is not None else set()
                if rel in head_tree.files:
                    want.add(head_tree.files[rel].xxh)
                if index.current_xxh(rel, path) not in want:
                    dirty.append(rel)
            if dirty:
                err = DirtyWorkingTreeError(dirty, action="rm")
                err.hint = "commit or add the changes, pass --cached to keep the file, or --force"
                raise err
        deleted = []
        for rel in todo:
            if rel in head_tree.files:
                index.staged[rel] = None
            else:
                index.staged.pop(rel, None)
            if cached:
                continue
            if _delete_working_file(core.root, rel):
                deleted.append(rel)
            index.cache.pop(rel, None)
        index.save(core.mgit_dir)
    return RmResult(todo, deleted)


def _delete_working_file(root: Path, rel: str) -> bool:
    """Delete the working-tree file ``rel`` (and the folders it leaves empty); False when
    there is none, or when reaching it would go through a symlinked folder (never followed)."""
    try:
        path = safe_join(root, rel)
    except UnsafePathError:
        return False
    if not (path.is_file() or path.is_symlink()):
        return False
    path.unlink()
    _prune_empty_dirs(root, rel)
    return True


def _checkout_plan(root: Path, tree: Tree, index: Index) -> list[tuple[str, Any]]:
    """The files of ``tree`` to write. Every path is checked before anything is written, so
    that a path that cannot be written (a symlink, a folder in the way) fails the checkout with
    nothing changed; files that already hold the right bytes are left alone."""
    plan = []
    for rel, entry in sorted(tree.files.items()):
        held = root / rel
        if held.is_symlink() and held.is_file() and index.current_xxh(rel, held) == entry.xxh:
            continue  # a followed link (hub cache, -L) that holds these bytes: nothing to write
        path = safe_join(root, rel)
        if path.is_dir():
            raise DirtyWorkingTreeError([rel], action="checkout (a folder is in the way)")
        parent = path.parent
        while parent != root:
            if parent.exists() and not parent.is_dir():
                raise DirtyWorkingTreeError([rel], action="checkout (a file is in the way)")
            parent = parent.parent
        if path.is_file() and index.current_xxh(rel, path) == entry.xxh:
            continue  # already these bytes
        plan.append((rel, entry))
    return plan


def relpath(root: Path, p: str | os.PathLike[str]) -> str:
    """``p`` (absolute, or relative to the current folder) relative to the model folder.

    Raises:
        UnsafePathError: outside the model folder, or inside ``.mgit``.
    """
    full = Path(p)
    if not full.is_absolute():
        full = Path.cwd() / full
    full = Path(os.path.normpath(full))
    try:
        rel = full.relative_to(root).as_posix()
    except ValueError:
        raise UnsafePathError(str(p), "outside the model folder") from None
    if rel == ".":
        return ""
    if rel == ".mgit" or rel.startswith(".mgit/"):
        raise UnsafePathError(str(p), "inside .mgit")
    return check_relpath(rel)


def _check_no_symlinked_folder(root: Path, rel: str, blobs: Path | None = None) -> None:
    """Refuse a path that goes through (or is) a symlinked folder: mgit does not follow them
    (without -L), and one may point outside the model folder. A symlinked file may point into
    ``blobs`` (the hub cache repository the model folder is a snapshot of)."""
    if not rel:
        return
    cur = root
    for part in rel.split("/"):
        cur = cur / part
        if cur.is_symlink() and cur.is_dir():
            err = UnsafePathError(rel, f"{cur.relative_to(root).as_posix()} is a symlinked folder")
            err.hint = "-L/--follow-symlinks follows it"
            raise err
        if cur.is_symlink():
            target = Path(os.path.realpath(cur))  # never raises on a loop (add reports it)
            if target.is_relative_to(root.resolve()) or (blobs is not None and target.is_relative_to(blobs)):
                continue
            if not target.exists():
                continue  # dangling: add reports it
            err = UnsafePathError(rel, "symlink points outside the model folder")
            err.hint = "-L/--follow-symlinks follows it"
            raise err


def _special_kind(path: Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder nor a symlink
    (a FIFO, a socket, a device), else None."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return None
    return file_kind(mode)


def _parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def _prune_empty_dirs(root: Path, rel: str) -> None:
    d = (root / rel).parent
    while d != root:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent
