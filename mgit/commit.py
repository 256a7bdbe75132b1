"""Writing versions: ``commit`` (from the working tree) and ``import`` (from any folder).

Parent and relation planning are pure functions (:func:`default_parent`, :func:`plan_parents`)
so they can be table-tested; :func:`write_commit` ingests files, writes tree and commit, makes
them durable and only then moves the model line; :func:`gated` runs the lossy ``--check`` gate
before any ref points at a lossy version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit._fs import check_relpath
from mgit.core import CommitInfo, RepoCore, author_name, check_relation, commit_time
from mgit.errors import NothingToCommitError, UsageError
from mgit.objects.model import Commit, FileEntry, ParentLink, Tree
from mgit.refs.store import HEADS, check_name

if TYPE_CHECKING:
    from mgit.ingest import IngestStats

__all__ = [
    "CommitResult",
    "commit",
    "import_folder",
    "default_parent",
    "plan_parents",
    "write_commit",
    "GUESS_MIN_SCORE",
]

#: A guessed parent is taken when at least this fraction of the tensor bytes match it.
GUESS_MIN_SCORE = 0.2


@dataclass(frozen=True)
class CommitResult:
    """What ``commit`` and ``import`` did."""

    commit: CommitInfo
    stats: IngestStats
    files: int
    check: str | None = None  # None, "passed", or "failed: stored losslessly"
    candidates: list[Any] = field(default_factory=list)  # --guess-parent: ranked candidates

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        s = self.stats
        return {
            "commit": self.commit.to_json(),
            "files": self.files,
            "logical_bytes": s.logical_bytes,
            "new_stored_bytes": s.new_bytes,
            "chunks": s.chunks,
            "new_chunks": s.new_chunks,
            "delta_chunks": s.delta_chunks,
            "lossy_chunks": s.lossy_chunks,
            "max_err": s.max_err,
            "check": self.check,
            "guessed_parents": [c.to_json() for c in self.candidates],
        }


# -- planning (pure) ---------------------------------------------------------------------------


def default_parent(
    *,
    target: str,
    tip: str | None,
    head: str | None,
    current_model: str | None,
    model_given: bool,
    parent: str | Sequence[str] | None,
    relation: str | None,
) -> tuple[str | Sequence[str] | None, str | None]:
    """The parent REF(s) and relation a working-tree commit to model line ``target`` gets when
    the user gave none.

    - A new model line (no ``tip``) started from another line's checkout derives from HEAD,
      as a ``finetune`` when ``--model`` named it.
    - An existing other line (``tip`` is not HEAD) gets HEAD as an extra parent: the files
      come from HEAD's checkout.
    """
    if tip is None and parent is None and head is not None and target != current_model:
        parent = head
    if tip is None and model_given and target != current_model and relation is None:
        relation = "finetune"
    if tip is not None and tip != head and target != current_model and parent is None:
        parent = head
    return parent, relation


def plan_parents(
    model: str,
    tip: str | None,
    parents: Sequence[tuple[str, str]],
    relation: str | None,
) -> list[ParentLink]:
    """The parent links of a new version of ``model``.

    Args:
        model: the model line written to.
        tip: its latest version (the first parent, as ``version``), or None for a new line.
        parents: the other parents asked for, resolved: ``(commit id, its model line)``.
        relation: the relation asked for, or None.

    Returns:
        The tip first (``relation`` only when it is the sole parent, else ``version``), then
        each other parent once: ``relation`` if given, else ``merge`` when there are several,
        ``version`` when it is on the same line, ``finetune`` otherwise.

    Raises:
        UsageError: an unknown relation.
    """
    links: list[ParentLink] = []
    if tip is not None:
        rel = relation if (relation and not parents) else "version"
        links.append(ParentLink(tip, check_relation(rel)))
    for oid, pmodel in parents:
        rel = relation or ("version" if pmodel == model else "finetune")
        if len(parents) > 1 and relation is None:
            rel = "merge"
        if all(link.oid != oid for link in links):
            links.append(ParentLink(oid, check_relation(rel)))
    return links


def _resolve_parents(core: RepoCore, parent: str | Sequence[str] | None) -> list[tuple[str, str]]:
    refs = [parent] if isinstance(parent, str) else list(parent or [])
    out = []
    for p in refs:
        oid = core.resolve(p)
        out.append((oid, core.read_commit(oid).model))
    return out


def check_text(text: str, what: str) -> str:
    """``text`` if it can be stored (valid UTF-8).

    Raises:
        UsageError: it is not.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8") from None
    return text


def check_meta(meta: dict[str, str] | None) -> dict[str, str]:
    """A copy of ``meta`` if every key and value is a storable string.

    Raises:
        UsageError: a bad entry.
    """
    meta = dict(meta or {})
    for k, v in meta.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise UsageError(f"bad metadata entry {k!r}")
        check_text(k, "a metadata key")
        check_text(v, "a metadata value")
    return meta


def check_eps(eps: float | None) -> float | None:
    """A lossy error bound, checked.

    Raises:
        UsageError: not a positive bound below 1000.
    """
    if eps is None:
        return None
    if not (eps > 0 and eps < 1e3):
        raise UsageError(f"--lossy must be a positive error bound, got {eps}")
    return float(eps)


# -- writing -----------------------------------------------------------------------------------


def write_commit(
    core: RepoCore,
    *,
    model: str,
    tip: str | None,
    parents: list[ParentLink],
    files: dict[str, FileEntry | Path],
    message: str,
    meta: dict[str, str],
    eps: float | None,
    recipe: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    move_head: bool = False,
    allow_empty_change: bool = True,
    update_ref: bool = True,
) -> tuple[CommitInfo, IngestStats]:
    """Ingest files, write tree and commit, sync, then (``update_ref``) move the model ref by
    compare-and-swap.

    Raises:
        NothingToCommitError: (``allow_empty_change`` False) the tree equals the first parent's.
        RefConflictError: the model line moved meanwhile.
    """
    from mgit.ingest import IngestStats, ParentIndex, ingest_file

    stats = IngestStats()
    parent_tree = core.commit_tree(parents[0].oid) if parents else None
    pindex = ParentIndex.for_files(core.store, parent_tree, files)
    entries: dict[str, FileEntry] = {}
    with core.pool() as pool:
        for rel in sorted(files):
            src = files[rel]
            if isinstance(src, FileEntry):
                entries[rel] = src
                stats.logical_bytes += src.size
                continue
            entries[rel] = ingest_file(
                core.store, src, relpath=rel, chunk_size=core.chunk_size, parents=pindex,
                pool=pool, workers=core.workers, stats=stats, eps=eps, progress=progress,
            )
    tree_oid = core.store.put("tree", Tree(entries).to_bytes())
    if not allow_empty_change and parent_tree is not None and tree_oid == core.read_commit(parents[0].oid).tree:
        raise NothingToCommitError("nothing to commit: the tree is identical to its parent")
    lossy = {"eps": eps, "max_err": stats.max_err} if eps is not None and stats.lossy_chunks else None
    c = Commit(
        tree=tree_oid, parents=tuple(parents), model=model, author=author_name(core.config),
        time=commit_time(), message=message, meta=meta, recipe=recipe, lossy=lossy,
    )
    oid = core.store.put("commit", c.to_bytes())
    core.store.sync()  # objects durable before any ref points at them
    if update_ref:
        move_model_ref(core, model, tip, oid, message=message, move_head=move_head)
    return core.commit_info(oid), stats


def move_model_ref(core: RepoCore, model: str, tip: str | None, oid: str, *, message: str, move_head: bool) -> None:
    """Compare-and-swap the model line from ``tip`` to ``oid``; HEAD follows if asked."""
    first = message.splitlines()[0] if message else ""
    core.refs.update_many([(HEADS + model, tip, oid)], message=f"commit: {first}")
    if move_head and core.head_model != model:
        core.refs.set_head(ref=HEADS + model, message=f"commit to {model}")


def run_check(core: RepoCore, check: str, oid: str) -> bool:
    """Export a commit to a temp folder and run ``check`` on it; True when it exits 0."""
    import shlex
    import subprocess
    import tempfile

    from mgit.tensors import export

    with tempfile.TemporaryDirectory(prefix="mgit-check-") as tmp:
        export(core, oid, tmp)
        cmd = check.replace("{}", shlex.quote(tmp)) if "{}" in check else f"{check} {shlex.quote(tmp)}"
        env = dict(os.environ, MGIT_CHECK_DIR=tmp)
        proc = subprocess.run(cmd, shell=True, env=env, stdin=subprocess.DEVNULL)  # noqa: S602
        return proc.returncode == 0


def gated(
    core: RepoCore,
    *,
    eps: float | None,
    check: str | None,
    write: Callable[[float | None, bool], tuple[CommitInfo, IngestStats]],
    model: str,
    tip: str | None,
    message: str,
    move_head: bool,
) -> tuple[CommitInfo, IngestStats, str | None]:
    """Write the commit; with ``check``, gate a lossy commit before any ref points at it.

    The lossy commit is written (objects durable) but the model ref stays where it was
    while CMD runs on its export; only then does the ref move, to the lossy commit if CMD
    passed, else to the same files stored losslessly. A process killed during CMD leaves
    the model line untouched.
    """
    if check is not None and eps is None:
        raise UsageError("--check needs --lossy: it gates a lossy commit")
    if check is None:
        info, stats = write(eps, True)
        return info, stats, None
    info, stats = write(eps, False)
    if info.lossy is None:
        move_model_ref(core, model, tip, info.oid, message=message, move_head=move_head)
        return info, stats, None
    if run_check(core, check, info.oid):
        move_model_ref(core, model, tip, info.oid, message=message, move_head=move_head)
        return info, stats, "passed"
    info2, stats2 = write(None, True)
    return info2, stats2, "failed: stored losslessly"


# -- the two verbs -----------------------------------------------------------------------------


def commit(
    core: RepoCore,
    message: str,
    *,
    model: str | None = None,
    parent: str | Sequence[str] | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    eps: float | None = None,
    check: str | None = None,
    allow_empty: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CommitResult:
    """Commit the staged changes of the working tree (see ``Repository.commit``).

    Raises:
        NothingToCommitError: nothing staged.
        UsageError: a staged file changed since it was added; bad options.
    """
    from mgit.worktree.index import Index, index_lock, snapshot

    core.need_worktree()
    eps = check_eps(eps)
    meta = check_meta(meta)
    check_text(message, "the commit message")
    with index_lock(core.mgit_dir):
        index = Index.load(core.mgit_dir)
        if not index.staged and not allow_empty:
            raise NothingToCommitError()
        head = core.head()
        cur_model = core.head_model
        target = model or cur_model
        if target is None:
            raise UsageError("HEAD is detached: give --model NAME to commit to a model line")
        check_name(target, what="model name")
        tip = core.refs.read(HEADS + target)
        parent, relation = default_parent(
            target=target, tip=tip, head=head, current_model=cur_model, model_given=model is not None,
            parent=parent, relation=relation,
        )
        files: dict[str, FileEntry | Path] = dict(core.head_tree().files)
        for rel, snap in sorted(index.staged.items()):
            if snap is None:
                files.pop(rel, None)
                continue
            path = core.root / rel
            try:
                st = path.stat()
            except FileNotFoundError:
                raise UsageError(f"{rel} was deleted after 'mgit add'", hint="run 'mgit add' again") from None
            if not snap.matches_stat(st) and snapshot(path).xxh != snap.xxh:
                raise UsageError(f"{rel} changed after 'mgit add'", hint=f"run 'mgit add {rel}' again")
            files[rel] = path
        links = plan_parents(target, tip, _resolve_parents(core, parent), relation)

        def write(e: float | None, update: bool) -> tuple[CommitInfo, IngestStats]:
            return write_commit(
                core, model=target, tip=tip, parents=links, files=files, message=message,
                meta=meta, eps=e, progress=progress, move_head=True, update_ref=update,
            )

        info, stats, checked = gated(
            core, eps=eps, check=check, write=write, model=target, tip=tip, message=message, move_head=True,
        )
        tree = core.read_tree(info.tree)
        for rel, snap in index.staged.items():
            if snap is not None and rel in tree.files:
                index.cache[rel] = snap
            else:
                index.cache.pop(rel, None)
        index.staged = {}
        index.save(core.mgit_dir)
    return CommitResult(info, stats, len(tree.files), checked)


def import_folder(
    core: RepoCore,
    folder: str | os.PathLike[str],
    *,
    model: str,
    message: str,
    parent: str | Sequence[str] | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    eps: float | None = None,
    check: str | None = None,
    guess_parent: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CommitResult:
    """Commit a model folder from elsewhere as the next version of ``model`` (see
    ``Repository.import_folder``). The working tree and HEAD are not touched.

    Raises:
        UsageError: the folder is missing or empty.
        UnsafePathError: a symlink pointing outside the folder.
        InvalidModelFileError: a malformed safetensors file.
    """
    from mgit.worktree.scan import scan

    eps = check_eps(eps)
    meta = check_meta(meta)
    check_text(message, "the commit message")
    check_name(model, what="model name")
    src = Path(folder)
    if not src.is_dir():
        raise UsageError(f"not a folder: {folder}")
    found = scan(src, strict=True)
    if not found:
        raise UsageError(f"no files to import in {folder}")
    files: dict[str, FileEntry | Path] = {check_relpath(rel): p for rel, p in found.items()}
    tip = core.refs.read(HEADS + model)
    candidates: list[Any] = []
    if guess_parent and parent is None:
        from mgit.guess import guess_parents

        candidates = guess_parents(core, src)
        if candidates and candidates[0].score >= GUESS_MIN_SCORE and candidates[0].oid != tip:
            parent = candidates[0].oid
    links = plan_parents(model, tip, _resolve_parents(core, parent), relation)

    def write(e: float | None, update: bool) -> tuple[CommitInfo, IngestStats]:
        return write_commit(
            core, model=model, tip=tip, parents=links, files=files, message=message,
            meta=meta, eps=e, progress=progress, update_ref=update,
        )

    info, stats, checked = gated(
        core, eps=eps, check=check, write=write, model=model, tip=tip, message=message, move_head=False
    )
    return CommitResult(info, stats, len(files), checked, candidates)
