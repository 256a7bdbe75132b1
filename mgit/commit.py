"""Writing versions: ``commit`` (from the working tree) and ``import`` (from any folder).

Parent and relation planning are pure functions (:func:`default_parent`, :func:`plan_parents`)
so they can be table-tested; :func:`write_commit` ingests files, writes tree and commit, makes
them durable and only then moves the model line; :func:`gated` runs the lossy ``--check`` gate
before any ref points at a lossy version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit._fs import check_relpath
from mgit.core import CommitInfo, RepoCore, author_name, check_relation, commit_time
from mgit.errors import NothingToCommitError, UsageError
from mgit.objects.model import Commit, FileEntry, ParentLink, Tree
from mgit.refs.store import HEADS, check_name
from mgit.revspec import warn_if_shadows

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
    skipped: list[Any] = field(default_factory=list)  # import: files of the folder left out, and why

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
            "skipped": [k.to_json() for k in self.skipped],
            "warnings": list(s.warnings),
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


def check_recipe(recipe: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``recipe`` field for ``--recipe CMD``: ``{"cmd": CMD, "seed": N}`` plus identifiers
    of the code and data it used (``{"code": "git:3f2a...", "data": "sst2@v2"}``, strings), see
    :mod:`mgit.lifecycle.rebase_recipe`; or None. ``recipe`` is CMD, or a mapping with ``cmd``,
    an optional integer ``seed`` (default 0) and string identifiers.

    Raises:
        UsageError: an empty or non-UTF-8 command, a seed that is not an integer, an identifier
            that is not text.
    """
    if recipe is None:
        return None
    fields = {"cmd": recipe} if isinstance(recipe, str) else dict(recipe)
    cmd = fields.pop("cmd", None)
    if not isinstance(cmd, str) or not cmd.strip():
        raise UsageError("--recipe needs a command")
    seed = fields.pop("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise UsageError(f"the recipe seed must be a non-negative integer, got {seed!r}")
    out: dict[str, Any] = {"cmd": check_text(cmd, "the recipe command"), "seed": seed}
    for k, v in sorted(fields.items()):
        if k in ("rebase", "method") or not isinstance(v, str) or not isinstance(k, str) or not k:
            raise UsageError(f"recipe identifier {k!r}: give KEY=VALUE text (code=..., data=...)")
        out[check_text(k, "a recipe identifier")] = check_text(v, "a recipe identifier")
    return out


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
    from mgit.ingest import IngestStats, ingest_file
    from mgit.pairing import ParentIndex

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


#: A lossy gate: a shell command run on the export (True when it exits 0), or a callable
#: given the commit id (``mgit.lifecycle.testing.gate``: the stored tests that apply to it).
Check = str | Callable[[str], bool]


def run_check(core: RepoCore, check: Check, oid: str) -> bool:
    """Run the gate on a written (not yet referenced) commit: a callable is called with its
    id; a command runs on its export in a temp folder. True when it passed."""
    if callable(check):
        return bool(check(oid))
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
    check: Check | None,
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
    check: Check | None = None,
    allow_empty: bool = False,
    progress: Callable[[int], None] | None = None,
    recipe: str | Mapping[str, Any] | None = None,
) -> CommitResult:
    """Commit the staged changes of the working tree (see ``Repository.commit``).

    Raises:
        NothingToCommitError: nothing staged.
        UsageError: a staged file changed since it was added; bad options.
    """
    from mgit.worktree.index import Index, index_lock, snapshot

    core.need_worktree()
    eps = check_eps(eps)
    recipe_v = check_recipe(recipe)
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
        if tip is None:
            warn_if_shadows(target, core.store)
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
                meta=meta, eps=e, progress=progress, move_head=True, update_ref=update, recipe=recipe_v,
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
    folder: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    message: str | None = None,
    parent: str | Sequence[str] | None = None,
    relation: str | None = None,
    meta: dict[str, str] | None = None,
    eps: float | None = None,
    check: Check | None = None,
    guess_parent: bool = False,
    progress: Callable[[int], None] | None = None,
    follow_symlinks: bool = False,
    hf_cache: str | None = None,
    recipe: str | Mapping[str, Any] | None = None,
    skip_unreadable: bool = False,
) -> CommitResult:
    """Commit a model folder from elsewhere as the next version of ``model`` (see
    ``Repository.import_folder``). The working tree and HEAD are not touched.

    ``hf_cache="ORG/NAME[@REV]"`` (instead of ``folder``) imports that snapshot of the local
    Hugging Face hub cache (:func:`mgit.hf.find_snapshot`); ``model`` defaults to NAME and
    ``message`` to ``ORG/NAME@<revision>``. Such a version (or a snapshot folder given by its
    path) records ``hf_repo`` and ``hf_revision``, and its model card's YAML header
    (``license``, ``base_model``...) as metadata. A folder with ``adapter_config.json`` (PEFT) records ``adapter_type``, ``r``,
    ``lora_alpha`` and ``target_modules``. Metadata given in ``meta`` wins.

    Without ``parent``, the parent is the model line that the card's ``base_model`` or the
    adapter's ``base_model_name_or_path`` names (by ``hf_repo`` metadata, then by name), else
    (``guess_parent``) the closest stored version: for an adapter, the version whose weights
    the LoRA factors fit. The relation defaults to the card's ``base_model_relation``, else
    ``adapter`` for adapters.

    Raises:
        UsageError: the folder is missing or empty; the snapshot is not in the cache.
        UnsafePathError: a symlink pointing outside the folder (without ``follow_symlinks``).
        UnreadableEntryError: an entry of the folder that cannot be imported (unreadable, not a
            regular file, a dangling or looping symlink, a symlinked folder without
            ``follow_symlinks``), unless ``skip_unreadable`` (then it is listed in ``skipped``).
        InvalidModelFileError: a malformed safetensors file or ``adapter_config.json``.
    """
    from mgit import hf
    from mgit.worktree.scan import Skipped, scan

    eps = check_eps(eps)
    recipe_v = check_recipe(recipe)
    extra: dict[str, str] = {}
    bases: list[str] = []
    card_rel: str | None = None
    snap: hf.HubSnapshot | None = None
    if hf_cache is not None:
        if folder is not None:
            raise UsageError("give a folder or --hf-cache, not both")
        snap = hf.find_snapshot(hf_cache)
        src = snap.path
        if model is None:
            model = _model_name_of(snap.repo_id)
        if message is None:
            message = f"{snap.repo_id}@{snap.revision[:12]}"
    else:
        if folder is None:
            raise UsageError("give a folder to import (or --hf-cache ORG/NAME)")
        src = Path(folder)
        if not src.is_dir():
            raise UsageError(f"not a folder: {folder}")
        snap = hf.snapshot_of(src)  # a hub cache snapshot given by its path: the same metadata
    if snap is not None:
        card = hf.read_model_card(src)
        extra.update(hf.card_meta(card))
        extra["hf_repo"] = snap.repo_id
        extra["hf_revision"] = snap.revision
        bases = hf.card_base_models(card)
        card_rel = hf.card_relation(card)
    if model is None:
        raise UsageError("give --model NAME: the model line the folder becomes a version of")
    if message is None:
        raise UsageError("give -m MSG: the commit message")
    check_text(message, "the commit message")
    check_name(model, what="model name")
    user_meta = check_meta(meta)
    adapter = hf.read_adapter_config(src)
    if adapter is not None:
        extra.update(adapter.meta())
        if adapter.base_model:
            bases.append(adapter.base_model)
    meta = check_meta({**extra, **user_meta})
    skipped: list[Skipped] = []
    found = scan(src, strict=True, follow_symlinks=follow_symlinks, skipped=skipped,
                 skip_unreadable=skip_unreadable)
    if not found:
        raise UsageError(f"no files to import in {hf_cache or folder}")
    files: dict[str, FileEntry | Path] = {check_relpath(rel): p for rel, p in found.items()}
    tip = core.refs.read(HEADS + model)
    if tip is None:
        warn_if_shadows(model, core.store)
    candidates: list[Any] = []
    if parent is None and bases:
        found_parents = _lines_named(core, bases, exclude=model)
        if found_parents:
            merge = card_rel == "merge" or (relation == "merge")
            parent = found_parents if merge and len(found_parents) > 1 else found_parents[0]
    if guess_parent and parent is None:
        if adapter is not None:
            candidates = guess_adapter_base(core, src, adapter)
            if candidates and candidates[0].score == 1.0 and candidates[0].oid != tip:
                parent = candidates[0].oid
        else:
            from mgit.guess import guess_parents

            candidates = guess_parents(core, src)
            if candidates and candidates[0].score >= GUESS_MIN_SCORE and candidates[0].oid != tip:
                parent = candidates[0].oid
    resolved = _resolve_parents(core, parent)
    if relation is None and any(pm != model for _, pm in resolved):
        relation = card_rel or ("adapter" if adapter is not None else None)
    links = plan_parents(model, tip, resolved, relation)
    target_model = model
    msg = message

    def write(e: float | None, update: bool) -> tuple[CommitInfo, IngestStats]:
        return write_commit(
            core, model=target_model, tip=tip, parents=links, files=files, message=msg,
            meta=meta, eps=e, progress=progress, update_ref=update, recipe=recipe_v,
        )

    info, stats, checked = gated(
        core, eps=eps, check=check, write=write, model=model, tip=tip, message=message, move_head=False
    )
    return CommitResult(info, stats, len(files), checked, candidates, skipped)


def _model_name_of(repo_id: str) -> str:
    """A model line name for a hub repository: its NAME, made a valid name."""
    import re

    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", repo_id.rsplit("/", 1)[-1]).strip(".-") or "model"
    if not re.match(r"^[A-Za-z0-9_]", name):
        name = "m" + name
    return name[:100]


def _lines_named(core: RepoCore, names: Sequence[str], *, exclude: str) -> list[str]:
    """The latest versions of the model lines ``names`` designate (:func:`mgit.hf.match_model_lines`),
    one per name found, in order; never the line ``exclude``."""
    from mgit.hf import match_model_lines

    heads = {m: oid for m, oid in core.model_heads().items() if m != exclude}
    lines = {m: core.read_commit(oid).meta for m, oid in heads.items()}
    out: list[str] = []
    for n in names:
        found = match_model_lines(n, lines)
        if found and heads[found[0]] not in out:
            out.append(heads[found[0]])
    return out


@dataclass(frozen=True)
class AdapterCandidate:
    """A stored version an adapter's LoRA factors were checked against."""

    oid: str
    model: str
    score: float  # fraction of the adapter's target modules that fit
    modules: int  # target modules of the adapter
    fitting: int  # of them, those whose base weight the candidate has with fitting shapes
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "oid": self.oid, "model": self.model, "score": round(self.score, 4), "modules": self.modules,
            "fitting": self.fitting, "seconds": round(self.seconds, 4),
        }


def guess_adapter_base(
    core: RepoCore, folder: Path, adapter: Any, *, limit: int = 5
) -> list[AdapterCandidate]:
    """Rank the stored versions by how many of the adapter's target modules they fit (reads
    tree manifests only). Ties go to model-line tips, then to versions without parents (a base
    model more likely than its finetunes), then to the newest."""
    import time

    from mgit.hf import adapter_fit, lora_shapes
    from mgit.reach import all_commits

    lora = lora_shapes(folder)
    if not lora:
        return []
    tips = set(core.model_heads().values())
    ranked = []
    for oid in all_commits(core):
        t0 = time.perf_counter()
        shapes: dict[str, tuple[int, ...]] = {}
        for entry in core.commit_tree(oid).files.values():
            for name, m in entry.tensors:
                shapes.setdefault(name, tuple(m.shape))
        n = adapter_fit(lora, shapes, fan_in_fan_out=adapter.fan_in_fan_out)
        c = core.read_commit(oid)
        cand = AdapterCandidate(oid, c.model, n / len(lora), len(lora), n, time.perf_counter() - t0)
        ranked.append((-cand.score, oid not in tips, bool(c.parents), -c.time, oid, cand))
    ranked.sort(key=lambda x: x[:5])
    return [x[-1] for x in ranked if x[-1].fitting][:limit]
