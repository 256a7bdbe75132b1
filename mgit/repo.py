"""The repository: the Python API behind every command.

``Repository`` is :class:`mgit.core.RepoCore` (config, object store, refs, commit and tree
reads) plus one method per user action. Each method is a one-line delegate to the module that
owns the concern, and returns a dataclass; nothing here prints (``mgit.commands`` renders).

=====================  ========================================================
concern                module
=====================  ========================================================
REF syntax             :mod:`mgit.revspec`
reachability           :mod:`mgit.reach`
commit, import         :mod:`mgit.commit`
add, status, checkout  :mod:`mgit.worktree.ops`
export, tensors, diff  :mod:`mgit.tensors`
log, models, lineage   :mod:`mgit.history`
fsck, gc, stats        :mod:`mgit.maintenance`
branches, tags         :mod:`mgit.branches`
parent suggestion      :mod:`mgit.guess`
=====================  ========================================================

Example:
    >>> repo = Repository.init("bert-base")                       # doctest: +SKIP
    >>> repo.add(["."]); repo.commit("base")                       # doctest: +SKIP
    >>> repo.import_folder("ft/", model="bert-sst2", parent="bert-base",
    ...                    relation="finetune", message="sst2")    # doctest: +SKIP
    >>> sd = repo.load_state_dict("bert-sst2")                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit._fs import write_text_file
from mgit.core import CommitInfo, RepoCore
from mgit.format import DEFAULT_CHUNK_SIZE, FORMAT_VERSION

if TYPE_CHECKING:
    from mgit.commit import CommitResult
    from mgit.history import ModelInfo, ShowResult
    from mgit.maintenance import FsckResult, GcResult, StatsResult
    from mgit.objects.model import TensorManifest
    from mgit.tensors import ExportResult
    from mgit.worktree.ops import AddResult, CheckoutResult, StatusResult

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "AddResult",
    "CheckoutResult",
    "CommitInfo",
    "CommitResult",
    "ExportResult",
    "FsckResult",
    "GcResult",
    "ModelInfo",
    "Repository",
    "StatsResult",
    "write_text_file",
]

#: Result classes re-exported here for callers of the API, loaded only when asked for, so that
#: ``mgit.repo`` imports no concern module it does not run.
_RESULTS = {
    "CommitResult": "mgit.commit",
    "ModelInfo": "mgit.history",
    "ShowResult": "mgit.history",
    "ExportResult": "mgit.tensors",
    "CheckoutResult": "mgit.worktree.ops",
    "AddResult": "mgit.worktree.ops",
    "StatusResult": "mgit.worktree.ops",
    "StatsResult": "mgit.maintenance",
    "FsckResult": "mgit.maintenance",
    "GcResult": "mgit.maintenance",
}


def __getattr__(name: str) -> Any:
    if name in _RESULTS:
        import importlib

        return getattr(importlib.import_module(_RESULTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Repository(RepoCore):
    """An mgit repository: a model folder with ``.mgit/`` inside, or a bare store.

    Open one with :meth:`open` or create one with :meth:`init` (both from
    :class:`~mgit.core.RepoCore`).
    """

    # -- writing versions (mgit.commit) -------------------------------------------------------

    def commit(
        self,
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
        recipe: str | Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """Commit the staged changes of the working tree.

        Without ``model`` the commit is the next version of the checked-out model. With a new
        ``model`` name it starts a new model line derived from ``parent`` (default: HEAD) with
        ``relation`` (default ``finetune``), and HEAD moves to it.

        Args:
            message: the commit message.
            model: model line to commit to.
            parent: REF(s) the model was derived from (more than one: a merge).
            relation: how it was derived (``version``, ``finetune``, ...).
            meta: free metadata (task, dataset, metrics).
            eps: store lossily with absolute error at most ``eps`` (deltas against the parent).
            check: with ``eps``: a shell command run on the exported lossy model (``{}`` or the
                last argument is its folder); when it fails the commit is stored losslessly.
            allow_empty: commit even if nothing is staged.
            progress: called with byte counts as data is read.

        Raises:
            NothingToCommitError: nothing staged.
            UsageError: a staged file changed since it was added; bad options.
        """
        from mgit import commit as c

        return c.commit(self, message, model=model, parent=parent, relation=relation, meta=meta,
                        eps=eps, check=check, allow_empty=allow_empty, progress=progress, recipe=recipe)

    def import_folder(
        self,
        folder: str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        message: str | None = None,
        parent: str | Sequence[str] | None = None,
        relation: str | None = None,
        meta: dict[str, str] | None = None,
        eps: float | None = None,
        check: str | None = None,
        guess_parent: bool = False,
        progress: Callable[[int], None] | None = None,
        follow_symlinks: bool = False,
        hf_cache: str | None = None,
        recipe: str | Mapping[str, Any] | None = None,
        skip_unreadable: bool = False,
    ) -> CommitResult:
        """Commit a model folder from elsewhere as the next version of ``model``.

        The working tree and HEAD are not touched. With ``guess_parent`` and no ``parent``,
        the closest stored model version (see :meth:`guess_parent`) becomes the parent when
        at least a fifth of the tensor bytes are identical or close to it. Symlinks into the
        hub cache repository a snapshot folder belongs to are followed, any symlink with
        ``follow_symlinks``. ``hf_cache="ORG/NAME[@REV]"`` (with ``folder`` None) imports a
        snapshot of the local Hugging Face cache, recording ``hf_repo``, ``hf_revision`` and
        the model card's header; a PEFT adapter folder is an ``adapter`` of the base model its
        config names (see :func:`mgit.commit.import_folder`). An entry of the folder that
        cannot be imported (unreadable, a FIFO, a dangling link...) is an error, unless
        ``skip_unreadable``: then it is left out and listed in the result's ``skipped``.

        Raises:
            UsageError: the folder is missing or empty, or the snapshot is not in the cache.
            UnsafePathError: a symlink pointing outside the folder.
            UnreadableEntryError: an entry that cannot be imported (without ``skip_unreadable``).
            InvalidModelFileError: a malformed safetensors file or ``adapter_config.json``.
        """
        from mgit import commit as c

        return c.import_folder(self, folder, model=model, message=message, parent=parent,
                               relation=relation, meta=meta, eps=eps, check=check,
                               guess_parent=guess_parent, progress=progress,
                               follow_symlinks=follow_symlinks, hf_cache=hf_cache, recipe=recipe,
                               skip_unreadable=skip_unreadable)

    # -- working tree (mgit.worktree.ops) -----------------------------------------------------

    def add(
        self, paths: Iterable[str | os.PathLike[str]], *, follow_symlinks: bool = False,
        skip_unreadable: bool = False,
    ) -> AddResult:
        """Stage files (or every file under folders) for the next commit (``follow_symlinks``:
        through any symlink, linked folders too; ``skip_unreadable``: leave out, and list,
        entries that cannot be added instead of failing)."""
        from mgit.worktree import ops

        return ops.add(self, paths, follow_symlinks=follow_symlinks, skip_unreadable=skip_unreadable)

    def restore(self, paths: Iterable[str | os.PathLike[str]], *, staged: bool = False,
                source: str | None = None) -> Any:
        """Unstage ``paths`` (``staged``), or rewrite the working files from ``source`` (default
        HEAD); see :func:`mgit.worktree.ops.restore`."""
        from mgit.worktree import ops

        return ops.restore(self, paths, staged=staged, source=source)

    def rm(self, paths: Iterable[str | os.PathLike[str]], *, cached: bool = False,
           force: bool = False) -> Any:
        """Stage the deletion of tracked files and delete them (``cached``: keep the files);
        see :func:`mgit.worktree.ops.rm`."""
        from mgit.worktree import ops

        return ops.rm(self, paths, cached=cached, force=force)

    def status(self) -> StatusResult:
        """Staged, modified, deleted and untracked files."""
        from mgit.worktree import ops

        return ops.status(self)

    def checkout(self, ref: str, *, force: bool = False) -> CheckoutResult:
        """Make the working tree the files of REF (refuses to lose uncommitted changes unless
        ``force``); HEAD follows."""
        from mgit.worktree import ops

        return ops.checkout(self, ref, force=force)

    # -- reading versions (mgit.tensors) ------------------------------------------------------

    def export(self, ref: str, directory: str | os.PathLike[str], *, force: bool = False,
               progress: Callable[[int], None] | None = None,
               include: str | Iterable[str] | None = None,
               exclude: str | Iterable[str] | None = None) -> ExportResult:
        """Write REF's files into ``directory``, byte-identical to what was committed; with
        ``include``/``exclude`` globs, only the files they select (see
        :func:`mgit.tensors.export`)."""
        from mgit import tensors

        return tensors.export(self, ref, directory, force=force, progress=progress,
                              include=include, exclude=exclude)

    def tensors(self, ref: str, *, file: str | None = None) -> dict[str, TensorManifest]:
        """Every tensor of REF by key: its name, or ``"<path>:<name>"`` where several files hold
        the name (manifests only: no tensor data is read). ``file``: only that file's or
        component folder's tensors."""
        from mgit import tensors

        return tensors.tensor_manifests(self, ref, file=file)

    def tensor_ids(self, ref: str, *, file: str | None = None) -> dict[str, str]:
        """Tensor key -> content id (equal ids mean identical tensors); keys as :meth:`tensors`."""
        return {key: m.content_id for key, m in self.tensors(ref, file=file).items()}

    def load_tensor(self, ref: str, name: str, *, file: str | None = None, torch: bool = False) -> Any:
        """One tensor of REF (numpy, or ``torch``), reading only that tensor's chunks; ``file``
        (a file or a component folder such as ``"unet"``) says which file's, where several
        hold ``name`` (else :class:`~mgit.errors.AmbiguousTensorError`)."""
        from mgit import tensors

        return tensors.load_tensor(self, ref, name, file=file, torch=torch)

    def load_state_dict(self, ref: str, *, file: str | None = None, torch: bool = False,
                        merged: bool = False, base: str | None = None) -> dict[str, Any]:
        """Tensors of REF as numpy arrays (bf16/fp8 via ml_dtypes) or torch tensors, by key
        (:meth:`tensors`); ``file``: one file's or component folder's, by name. Raises
        :class:`~mgit.errors.NoTensorsError` when there are none. ``merged``: REF is a LoRA
        adapter; its base model's tensors with the adapter merged in (``base``: that base
        instead of the adapter's parent; see :mod:`mgit.adapters`)."""
        if merged:
            from mgit import adapters

            return adapters.merged_state_dict(self, ref, base=base, torch=torch)
        from mgit import tensors

        return tensors.load_state_dict(self, ref, file=file, torch=torch)

    def diff(self, a: str, b: str | None = None, *, rank: bool = True) -> Any:
        """Which tensors changed from REF ``a`` to REF ``b`` (default: the working tree).

        Returns:
            A :class:`mgit.diff.ModelDiff`.
        """
        from mgit import tensors

        return tensors.diff(self, a, b, rank=rank)

    def structural_diff(self, a: str, b: str | None = None, *, dataflow: bool = True) -> Any:
        """The architecture diff of two versions (a :class:`mgit.diff.StructuralDiff`)."""
        from mgit import tensors

        return tensors.structural_diff(self, a, b, dataflow=dataflow)

    # -- history (mgit.history, mgit.reach, mgit.guess) ---------------------------------------

    def all_commits(self) -> set[str]:
        """Every commit reachable from a model line, a tag or HEAD."""
        from mgit import reach

        return reach.all_commits(self)

    def log(self, ref: str | None = None, *, all: bool = False, limit: int | None = None) -> list[CommitInfo]:
        """Commits reachable from REF (default HEAD; ``all``: every ref), newest first."""
        from mgit import history

        return history.log(self, ref, all=all, limit=limit)

    def show(self, ref: str = "HEAD") -> ShowResult:
        """A version and its files (what ``mgit show`` prints)."""
        from mgit import history

        return history.show(self, ref)

    def is_ancestor(self, a: str, b: str) -> bool:
        """True when commit ``a`` is ``b`` or one of its ancestors."""
        from mgit import history

        return history.is_ancestor(self, a, b)

    def models(self) -> list[ModelInfo]:
        """Every model line with its latest version and the model it derives from."""
        from mgit import history

        return history.models(self)

    def lineage(self, ref: str | None = None, *, direction: str | None = None) -> Any:
        """The lineage graph as a ``networkx.DiGraph`` (see :func:`mgit.history.lineage`)."""
        from mgit import history

        return history.lineage(self, ref, direction=direction)

    def lineage_data(self, ref: str | None = None, *, direction: str | None = None) -> dict[str, Any]:
        """The lineage graph as plain data, ``{"nodes": [...], "edges": [...]}`` (what
        ``mgit lineage --json`` prints; see :func:`mgit.history.lineage_data`), without
        building a graph."""
        from mgit import history

        return history.lineage_data(self, ref, direction=direction)

    def find(
        self,
        *,
        task: str | None = None,
        relation: str | None = None,
        meta: dict[str, str] | None = None,
        derived_from: str | None = None,
        all_versions: bool = False,
        where: Sequence[str] = (),
        sort: str | None = None,
        reverse: bool = False,
    ) -> list[CommitInfo]:
        """Model versions matching every filter given; ``where``: metadata comparisons
        (``"accuracy>=0.9"``); ``sort``: by a metadata key, numeric when every value is a
        number (see :func:`mgit.history.find`)."""
        from mgit import history

        return history.find(self, task=task, relation=relation, meta=meta, derived_from=derived_from,
                            all_versions=all_versions, where=where, sort=sort, reverse=reverse)

    def guess_parent(self, folder: str | os.PathLike[str], *, limit: int = 5) -> list[Any]:
        """Stored model versions ranked by closeness to ``folder`` (see :mod:`mgit.guess`)."""
        from mgit.guess import guess_parents

        return guess_parents(self, Path(folder), limit=limit)

    def commit_objects(self, oid: str) -> set[str]:
        """Every object a commit needs besides its parents: tree, chunks, delta bases."""
        from mgit import reach

        return reach.commit_objects(self, oid)

    def objects_to_send(self, tips: Iterable[str], exclude: Iterable[str]) -> list[str]:
        """Objects reachable from ``tips`` and not from ``exclude``, in dependency order."""
        from mgit import reach

        return reach.objects_to_send(self, tips, exclude)

    def reachable_objects(self) -> set[str]:
        """Every object needed by a commit reachable from a ref or HEAD."""
        from mgit import reach

        return reach.reachable_objects(self)

    # -- maintenance (mgit.maintenance) -------------------------------------------------------

    def stats(self, ref: str | None = None) -> StatsResult:
        """Logical bytes and stored bytes per model (each object counted once)."""
        from mgit import maintenance

        return maintenance.stats(self, ref)

    def fsck(self, *, full: bool = True) -> FsckResult:
        """Check refs, reachability and (``full``) every object; reports, never raises."""
        from mgit import maintenance

        return maintenance.fsck(self, full=full)

    def gc(self, *, prune_age: float = 3600.0, dry_run: bool = False) -> GcResult:
        """Delete unreachable objects older than ``prune_age`` seconds."""
        from mgit import maintenance

        return maintenance.gc(self, prune_age=prune_age, dry_run=dry_run)

    # -- branches and tags (mgit.branches) ----------------------------------------------------

    def create_branch(self, name: str, ref: str | None = None) -> str:
        """Start model line ``name`` at REF (default HEAD)."""
        from mgit import branches

        return branches.create_branch(self, name, ref)

    def delete_branch(self, name: str) -> str:
        """Delete a model line's ref (its commits stay while something reaches them)."""
        from mgit import branches

        return branches.delete_branch(self, name)

    def create_tag(self, name: str, ref: str | None = None, *, force: bool = False) -> str:
        """Tag REF (default HEAD)."""
        from mgit import branches

        return branches.create_tag(self, name, ref, force=force)

    def delete_tag(self, name: str) -> str:
        """Delete a tag."""
        from mgit import branches

        return branches.delete_tag(self, name)

    # -- rebase (mgit.lifecycle.rebase) -------------------------------------------------------

    def rebase(self, model: str, *, onto: str, from_: str | None = None, strategy: str = "replay",
               fallback: str | None = None, dry_run: bool = False, ours: bool = False, theirs: bool = False,
               force: bool = False, tests: bool = True, timeout: float = 3600.0) -> Any:
        """Re-apply MODEL's derivation from OLDBASE (``from_``, default its ancestor on NEWBASE's
        line) onto NEWBASE as a new version of MODEL's line, gated by the stored tests;
        ``fallback="recipe"`` retrains by the recorded recipe when replay is refused or fails
        its tests (see :mod:`mgit.lifecycle.rebase`); returns a ``RebaseResult``."""
        from mgit.lifecycle import rebase as rb

        return rb.rebase(self, model, onto=onto, from_=from_, strategy=strategy, fallback=fallback,
                         dry_run=dry_run, ours=ours, theirs=theirs, force=force, tests=tests, timeout=timeout)

    def rebase_cascade(self, old: str, *, onto: str, **kw: Any) -> Any:
        """Rebase every model derived from OLD onto NEWBASE, upstreams first (``strategy``,
        ``fallback``, ``jobs``, ``executor``, ``dry_run``, ``tests``, ``only``, ``skip``...; see
        :mod:`mgit.lifecycle.rebase_cascade`); returns a ``CascadeResult``."""
        from mgit.lifecycle.rebase_cascade import cascade

        return cascade(self, old, onto=onto, **kw)

    def rebase_status(self) -> Any:
        """The last rebase cascade and the latest rebase attempt of each model
        (:mod:`mgit.lifecycle.rebase_attempts`); returns a ``RebaseStatus``."""
        from mgit.lifecycle.rebase_attempts import status

        return status(self)

    # -- merge (mgit.lifecycle.merge) ---------------------------------------------------------

    def merge(self, refs: Sequence[str] | None = None, *, model: str | None = None, message: str | None = None,
              method: str | None = None, redo: str | None = None, config: str | None = None,
              config_file: str | os.PathLike[str] | None = None, **kw: Any) -> Any:
        """Merge ``refs`` (``method``, ``base``, ``weights``, ``density``, ``lam``, ``seed``,
        ``dtype``, ``only``, ``t``, ``normalize``, ``strict``) into a new version of ``model``
        whose parents are the inputs and whose recipe redoes it; ``config``: a mergekit YAML
        recipe's text (or ``config_file``, its path) instead; ``redo``: recompute that merge commit and compare (nothing is
        written). See :mod:`mgit.lifecycle.merge`; returns a ``MergeResult`` or ``RedoResult``."""
        from mgit.errors import UsageError
        from mgit.lifecycle import merge as mg

        if redo is not None:
            return mg.redo(self, redo)
        if model is None or message is None:
            raise UsageError("give --model NAME and -m MSG for the merged model")
        if config_file is not None:
            config = mg.read_config_file(config_file)
        if config is not None:
            return mg.merge_config(self, config, model=model, message=message, **kw)
        if method is None:
            raise UsageError("give --method (linear, slerp, task-arithmetic, ties, dare-linear, dare-ties)")
        return mg.merge(self, list(refs or []), model=model, message=message, method=method, **kw)

    # -- integrations (mgit.cache, mgit.adapters, mgit.checkpoints) -------------------------------

    def read_file(self, ref: str, path: str) -> bytes:
        """The bytes of one file of REF, from the store (nothing written; see
        :func:`mgit.cache.read_file`). Raises :class:`~mgit.errors.PathNotFoundError`."""
        from mgit import cache

        return cache.read_file(self, ref, path)

    def file_info(self, ref: str, path: str) -> Any:
        """What REF's tree records about one file: kind, size, checksum, tensor count (a
        :class:`mgit.cache.FileInfo`; no data read). Raises
        :class:`~mgit.errors.PathNotFoundError`."""
        from mgit import cache

        return cache.file_info(self, ref, path)

    def model_config(self, ref: str, path: str = "config.json") -> dict[str, Any]:
        """REF's ``config.json`` parsed (``self.config`` is the repository's own config).
        Raises :class:`~mgit.errors.PathNotFoundError`, or
        :class:`~mgit.errors.InvalidModelFileError` when it is not a JSON object."""
        from mgit import cache

        return cache.read_config(self, ref, path)

    def materialize(self, ref: str, *, include: str | Iterable[str] | None = None,
                    exclude: str | Iterable[str] | None = None) -> Path:
        """A cached, read-only folder of REF's files (globs ``include``/``exclude``), built
        once and shared between versions file by file (see :mod:`mgit.cache`)."""
        from mgit import cache

        return cache.materialize(self, ref, include=include, exclude=exclude)

    def clean_cache(self, *, keep: Iterable[str] | None = None, min_age: float = 3600.0,
                    dry_run: bool = False) -> Any:
        """Drop cached folders of unreachable versions (older than ``min_age`` seconds) and
        cached files no folder uses; returns a :class:`mgit.cache.CacheCleanResult`."""
        from mgit import cache

        return cache.clean_cache(self, keep=None if keep is None else set(keep), min_age=min_age,
                                 dry_run=dry_run)

    def export_merged(self, ref: str, directory: str | os.PathLike[str], *, base: str | None = None,
                      force: bool = False) -> ExportResult:
        """Export the LoRA adapter REF merged into its base model as plain weights
        (``mgit export --merge-adapter``; see :mod:`mgit.adapters`)."""
        from mgit import adapters

        return adapters.export_merged(self, ref, directory, base=base, force=force)

    def commit_state_dict(self, state_dict: Any, *, model: str, message: str,
                          parent: str | Sequence[str] | None = None, relation: str | None = None,
                          meta: dict[str, str] | None = None, files: dict[str, bytes] | None = None,
                          files_from: str | None = None, filename: str = "model.safetensors",
                          metadata: dict[str, str] | None = None) -> CommitResult:
        """Commit tensors from memory (torch, any dtype, or numpy) as the next version of
        ``model``, plus ``files`` (path -> bytes) and, with ``files_from``, that version's other
        files; the tensor file is what ``safetensors.torch.save_file`` would write (see
        :mod:`mgit.checkpoints`)."""
        from mgit import checkpoints

        return checkpoints.commit_state_dict(self, state_dict, model=model, message=message, parent=parent,
                                             relation=relation, meta=meta, files=files, files_from=files_from,
                                             filename=filename, metadata=metadata)

    def commit_checkpoint(self, folder: str | os.PathLike[str], *, model: str, message: str,
                          parent: str | Sequence[str] | None = None, relation: str | None = None,
                          meta: dict[str, str] | None = None) -> CommitResult:
        """Commit a Trainer checkpoint folder's model files (its optimizer, scheduler and RNG
        state left out) as the next version of ``model`` (see :mod:`mgit.checkpoints`)."""
        from mgit import checkpoints

        return checkpoints.commit_checkpoint(self, folder, model=model, message=message, parent=parent,
                                             relation=relation, meta=meta)
