"""clone: create a repository from a remote (init, fetch, create the model lines, check out)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mgit import format as fmt
from mgit.core import RepoCore
from mgit.errors import UsageError
from mgit.refs.store import HEADS
from mgit.remote import negotiate
from mgit.remote.config import check_remote_name, normalize_url, open_remote, remote_timeout
from mgit.remote.fetch import fetch
from mgit.remote.results import DEFAULT_JOBS, CloneResult, TransferProgress

__all__ = ["clone"]


def clone(
    url: str,
    directory: str | os.PathLike[str],
    *,
    model: str | None = None,
    remote_name: str = "origin",
    base: str | os.PathLike[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    progress: TransferProgress | None = None,
) -> CloneResult:
    """Create a repository in ``directory`` from a remote and check out a model.

    Args:
        url: The remote (path, ``file://`` or ``s3://``).
        directory: Where to create the repository (absent or empty).
        model: Fetch only this model's history (and what it derives from) and check it out;
            default: every model, checking out the only one or the first by name.
        remote_name: Name of the remote in the new repository.
        base: Folder a relative ``url`` is relative to (default: the current directory).
        jobs: Parallel downloads.
        progress: Receives transfer progress.

    Returns:
        A :class:`CloneResult`.

    Raises:
        UsageError: ``directory`` is not empty.
        RefNotFoundError: ``model`` is not on the remote.
        RemoteError: No mgit store at ``url``.
    """
    from mgit.worktree.ops import checkout

    check_remote_name(remote_name)
    url = normalize_url(url, base)
    transport = open_remote(url, create=False, timeout=remote_timeout(None, None))
    heads, _tags = negotiate.split_remote_refs(
        transport.list_refs(), [model] if model is not None else None, where=transport.url
    )
    chosen = model if model is not None else (min(heads) if heads else None)
    dest = Path(directory).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"destination {directory} exists and is not an empty folder")
    created = not dest.exists()
    try:
        repo = RepoCore.init(dest, model=chosen)
        cfg = dict(repo.config)
        cfg["remotes"] = {remote_name: {"url": url}}
        repo.write_config(cfg)
        fr = fetch(
            repo, remote_name, models=[model] if model else None, jobs=jobs, progress=progress
        )
        files: list[str] = []
        if chosen is not None:
            size = _chunk_size_of(repo, fr.heads[chosen])
            if size is not None and size != repo.chunk_size:
                # New versions chunked as the cloned ones were: their deltas line up.
                cfg = dict(repo.config)
                cfg["chunk_size"] = size
                repo.write_config(cfg)
                repo.chunk_size = size
            # Check out first (HEAD's model has no commit yet, so nothing can be lost), then
            # create the local model lines, then put HEAD on the chosen one.
            co = checkout(repo, fr.heads[chosen])
            files = list(co.written)
            repo.refs.update_many(
                [(HEADS + m, None, oid) for m, oid in sorted(fr.heads.items())],
                message=f"clone: from {url}",
            )
            repo.refs.set_head(ref=HEADS + chosen, message=f"clone: from {url}")
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in dest.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return CloneResult(url, str(dest), remote_name, chosen, sorted(fr.heads), fr, files)


def _chunk_size_of(repo: RepoCore, commit: str) -> int | None:
    """The chunk size the repository that made ``commit`` used, read off its tensors (a
    tensor of several chunks records its chunk size: the repository's, cut down to whole
    elements); None when no tensor spans two chunks. A bare store records none of its own."""
    seen = 0
    for entry in repo.commit_tree(commit).files.values():
        for _name, m in entry.tensors:
            if len(m.chunks) > 1 and not m.packed:
                seen = max(seen, m.chunk_size)
    if not seen:
        return None
    size = 1 << (seen - 1).bit_length()  # back to the power of two it was cut from
    return size if fmt.MIN_CHUNK_SIZE <= size <= fmt.MAX_CHUNK_SIZE else None
