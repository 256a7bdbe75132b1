"""pull: fetch a model from a remote and fast-forward the local model line to it.

When the model is checked out the working tree follows (through
:func:`mgit.worktree.ops.checkout`, which refuses to overwrite uncommitted changes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mgit.core import RepoCore
from mgit.errors import NonFastForwardError, UsageError
from mgit.refs.store import HEADS, check_name
from mgit.remote import negotiate
from mgit.remote.fetch import fetch
from mgit.remote.results import DEFAULT_JOBS, PullResult, TransferProgress

if TYPE_CHECKING:
    from mgit.worktree.ops import CheckoutResult

__all__ = ["pull"]


def _fast_forward(
    repo: RepoCore, model: str, old: str | None, new: str, *, message: str
) -> CheckoutResult | None:
    """Move ``refs/heads/<model>`` from ``old`` to ``new``; update the working tree when the
    model is checked out (refusing to overwrite uncommitted changes)."""
    from mgit.worktree.ops import checkout

    ref = HEADS + model
    if repo.bare or repo.head_model != model:
        repo.refs.set_if_equals(ref, old, new, message=message)
        return None
    # Checked out: write the new files first (checkout compares with HEAD's tree and refuses
    # to lose changes), then move the ref, then put HEAD back on the model line.
    result = checkout(repo, new)
    try:
        repo.refs.set_if_equals(ref, old, new, message=message)
    except BaseException:
        if old is not None:
            checkout(repo, old, force=True)
        repo.refs.set_head(ref=ref, message=f"{message} (undone)")
        raise
    repo.refs.set_head(ref=ref, message=message)
    return result


def pull(
    repo: RepoCore,
    remote: str | None = None,
    model: str | None = None,
    *,
    jobs: int = DEFAULT_JOBS,
    progress: TransferProgress | None = None,
) -> PullResult:
    """Fetch a model from a remote and fast-forward the local model line to it.

    When the model is checked out, the working tree follows (uncommitted changes that would
    be overwritten make it refuse, with nothing changed but the fetched objects).

    Args:
        repo: The local repository.
        remote: A remote name or URL (default ``origin`` or the only remote).
        model: The model line (default: the checked-out one).
        jobs: Parallel downloads.
        progress: Receives transfer progress.

    Returns:
        A :class:`PullResult`.

    Raises:
        NonFastForwardError: The local model and the remote's have diverged.
        DirtyWorkingTreeError: Uncommitted changes in the way.
        RefNotFoundError: The remote has no such model.
    """
    if model is None:
        model = repo.head_model
        if model is None:
            raise UsageError("HEAD is detached: name the model to pull")
    check_name(model, what="model name")
    fr = fetch(repo, remote, models=[model], jobs=jobs, progress=progress)
    new = fr.heads[model]
    old = repo.refs.read(HEADS + model)
    where = fr.remote or fr.url
    action = negotiate.pull_action(old, new, parents=repo.parents_of)
    if action in ("up-to-date", "ahead"):
        return PullResult(fr, model, old, new, action, False)
    if action == "diverged":
        raise NonFastForwardError(
            HEADS + model,
            f"cannot pull {model}: the local model and {where}'s have diverged",
            hint=(
                f"compare with 'mgit diff {model} {fr.remote or 'REMOTE'}/{model}'; keep theirs as a "
                f"new model line with 'mgit branch {model}-theirs {fr.remote or 'REMOTE'}/{model}', "
                "or replace the remote's versions with yours with 'mgit push --force'"
            ),
        )
    co = _fast_forward(repo, model, old, new, message=f"pull {where}: fast-forward")
    if co is None:
        return PullResult(fr, model, old, new, action, False)
    return PullResult(fr, model, old, new, action, True, list(co.written), list(co.removed))
