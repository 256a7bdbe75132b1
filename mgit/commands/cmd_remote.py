"""``mgit remote``, ``push``, ``fetch``, ``pull`` and ``clone``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mgit.commands._common import (
    complete_model,
    complete_ref,
    complete_remote,
    ctx_obj,
    echo,
    emit,
    human_bytes,
    open_repo,
)

__all__ = ["COMMANDS", "RichTransferProgress"]


class RichTransferProgress:
    """A :class:`mgit.remote.results.TransferProgress` drawn with rich: bytes, rate, objects."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._objects = 0
        self._total_objects = 0
        self._bytes = 0
        self._start = 0.0

    def begin(self, label: str, *, objects: int, total_bytes: int | None) -> None:
        """Start a bar for one phase."""
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        self._objects, self._total_objects, self._bytes = 0, objects, 0
        self._start = time.monotonic()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[objs]}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            label, total=total_bytes, rate="", objs=f"0/{objects} objects"
        )

    def advance(self, *, objects: int = 0, nbytes: int = 0) -> None:
        """Move the bar."""
        if self._progress is None:
            return
        self._objects += objects
        self._bytes += nbytes
        elapsed = max(time.monotonic() - self._start, 1e-6)
        self._progress.update(
            self._task,
            advance=nbytes,
            rate=f"{human_bytes(self._bytes / elapsed)}/s",
            objs=f"{self._objects}/{self._total_objects} objects",
        )

    def end(self) -> None:
        """Remove the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def _progress() -> Iterator[RichTransferProgress | None]:
    obj = ctx_obj()
    if obj.quiet or obj.json:
        yield None
        return
    bar = RichTransferProgress()
    try:
        yield bar
    finally:
        bar.end()


def _short(oid: str | None) -> str:
    return oid[:12] if oid else "(none)"


def _render_updates(updates: list[Any]) -> None:
    for u in updates:
        if u.status == "up-to-date":
            echo(f" = {u.name}: up to date ({_short(u.new)})")
        elif u.status == "created":
            echo(f" * {u.name}: new ({_short(u.new)})")
        elif u.status == "deleted":
            echo(f" - {u.name}: deleted (was {_short(u.old)})")
        elif u.status == "kept":
            echo(f" ! {u.name}: kept the local tag ({_short(u.old)}; remote has {_short(u.new)})")
        else:
            echo(f"   {u.name}: {_short(u.old)}..{_short(u.new)} ({u.status})")


# -- remote ------------------------------------------------------------------------------------


@click.group("remote", invoke_without_command=True)
@click.pass_context
def remote_cmd(ctx: click.Context) -> None:
    """Manage remotes (shared folders and s3:// prefixes). Without a subcommand: list them.

    \b
    Examples:
      mgit remote add origin s3://models/team
      mgit remote
      mgit remote remove origin
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(remote_list_cmd)


@remote_cmd.command("list")
def remote_list_cmd() -> None:
    """List the remotes.

    \b
    Examples:
      mgit remote list
      mgit --json remote list
    """
    from mgit.remote.config import list_remotes

    remotes = list_remotes(open_repo())

    def render() -> None:
        for r in remotes:
            echo(f"{r.name}\t{r.url}")

    emit([r.to_json() for r in remotes], render)


@remote_cmd.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long an unresponsive S3 endpoint is waited for, retries included (default 30).")
def remote_add_cmd(name: str, url: str, timeout: float | None) -> None:
    """Add remote NAME at URL (a path, file:///PATH or s3://BUCKET/PREFIX).

    \b
    Examples:
      mgit remote add origin s3://models/team
      mgit remote add shared /mnt/shared/models
      mgit remote add origin s3://models/team --timeout 120
    """
    from mgit.remote.config import add_remote

    info = add_remote(open_repo(), name, url, base=ctx_obj().cwd, timeout=timeout)
    emit(info, lambda: echo(f"added remote {info.name}: {info.url}"))


@remote_cmd.command("remove")
@click.argument("name", shell_complete=complete_remote)
def remote_remove_cmd(name: str) -> None:
    """Remove remote NAME and its remote-tracking refs.

    \b
    Examples:
      mgit remote remove origin
    """
    from mgit.remote.config import remove_remote

    info = remove_remote(open_repo(), name)
    emit(info, lambda: echo(f"removed remote {info.name}"))


@remote_cmd.command("gc")
@click.argument("remote", required=False, shell_complete=complete_remote)
@click.option("--prune", "prune_age", type=click.FloatRange(min=0), default=3600.0,
              show_default=True, metavar="SECONDS",
              help="Only delete unreachable objects written more than this long ago.")
@click.option("-n", "--dry-run", is_flag=True, help="Report what would be deleted.")
def remote_gc_cmd(remote: str | None, prune_age: float, dry_run: bool) -> None:
    """Delete objects of REMOTE (default: origin) that none of its refs needs.

    Safe beside pushes: while one is uploading, nothing is deleted; a push that starts
    meanwhile waits for the gc to finish.

    \b
    Examples:
      mgit remote gc origin --dry-run
      mgit remote gc
    """
    from mgit.remote.gc import remote_gc

    res = remote_gc(open_repo(), remote, prune_age=prune_age, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"

    def render() -> None:
        echo(f"On {res.url}")
        if res.busy:
            echo(f"nothing removed: {len(res.busy)} push(es) in progress; run it again later")
            return
        echo(
            f"{verb} {res.removed} objects ({human_bytes(res.freed_bytes)}); kept "
            f"{res.reachable} reachable and {res.young} younger than {res.prune_age:g} s"
        )
        if res.dead_markers:
            echo(f"{verb} {res.dead_markers} markers left by killed pushes or gcs")

    emit(res, render)


@remote_cmd.command("check")
@click.argument("remote", required=False, shell_complete=complete_remote)
def remote_check_cmd(remote: str | None) -> None:
    """Check that every ref of REMOTE (default: origin) has its whole history there.

    \b
    Examples:
      mgit remote check origin
    """
    from mgit.errors import FsckFailedError
    from mgit.remote.gc import check_remote

    res = check_remote(open_repo(), remote)

    def render() -> None:
        echo(f"On {res.url}")
        for oid in res.missing:
            echo(f"missing object {oid}")
        for oid, why in res.damaged:
            echo(f"damaged object {oid}: {why}")
        echo(
            f"{len(res.refs)} refs, {res.reachable} objects reachable: "
            + ("ok" if res.ok else f"{len(res.missing) + len(res.damaged)} problem(s)")
        )

    emit(res, render)
    if not res.ok:
        raise FsckFailedError(len(res.missing) + len(res.damaged))


# -- push / fetch / pull / clone ---------------------------------------------------------------


def _jobs_option(what: str) -> Any:
    """``-j/--jobs``: how many objects move at once."""
    return click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
                        help=f"Parallel {what}.")


@click.command("push")
@click.argument("remote", required=False, shell_complete=complete_remote)
@click.argument("refs", nargs=-1, shell_complete=complete_ref)
@click.option("-f", "--force", is_flag=True, help="Allow non-fast-forward updates and moving tags.")
@click.option("--all", "all_models", is_flag=True, help="Push every model line.")
@click.option("--tags", is_flag=True, help="Push every tag.")
@_jobs_option("uploads")
def push_cmd(
    remote: str | None, refs: tuple[str, ...], force: bool, all_models: bool, tags: bool, jobs: int
) -> None:
    """Send models to REMOTE (default: origin): only the objects it lacks, then its refs.

    REFS are model or tag names (default: the checked-out model).

    \b
    Examples:
      mgit push origin bert-sst2
      mgit push origin --all --tags
      mgit push -f origin v1.0
    """
    from mgit.remote.config import split_remote_and_refs
    from mgit.remote.push import push

    repo = open_repo()
    remote, ref_list = split_remote_and_refs(repo, remote, list(refs))
    with _progress() as bar:
        res = push(
            repo,
            remote,
            ref_list,
            force=force,
            all_models=all_models,
            tags=tags,
            jobs=jobs,
            progress=bar,
        )

    def render() -> None:
        echo(f"To {res.url}")
        _render_updates(res.updates)
        extra = f" ({res.objects_already_there} already there)" if res.objects_already_there else ""
        echo(f"sent {res.objects_sent} objects, {human_bytes(res.bytes_sent)}{extra}")

    emit(res, render)


@click.command("fetch")
@click.argument("remote", required=False, shell_complete=complete_remote)
@click.option("--model", "models", multiple=True, shell_complete=complete_model, help="Only this model (repeatable).")
@click.option(
    "--prune", is_flag=True, help="Drop remote-tracking refs of models gone from the remote."
)
@click.option("--no-tags", is_flag=True, help="Do not create local tags from the remote's.")
@_jobs_option("downloads")
def fetch_cmd(
    remote: str | None, models: tuple[str, ...], prune: bool, no_tags: bool, jobs: int
) -> None:
    """Download new versions from REMOTE (default: origin) into refs/remotes/REMOTE/.

    \b
    Examples:
      mgit fetch origin
      mgit fetch origin --model bert-sst2
    """
    from mgit.remote.fetch import fetch

    repo = open_repo()
    with _progress() as bar:
        res = fetch(
            repo,
            remote,
            models=list(models) or None,
            tags=not no_tags,
            prune=prune,
            jobs=jobs,
            progress=bar,
        )

    def render() -> None:
        echo(f"From {res.url}")
        _render_updates(res.updates)
        echo(f"received {res.objects_received} objects, {human_bytes(res.bytes_received)}")

    emit(res, render)


@click.command("pull")
@click.argument("remote", required=False, shell_complete=complete_remote)
@click.argument("model", required=False, shell_complete=complete_model)
@_jobs_option("downloads")
def pull_cmd(remote: str | None, model: str | None, jobs: int) -> None:
    """Fetch MODEL (default: the checked-out one) and fast-forward it (and the working tree).

    \b
    Examples:
      mgit pull origin
      mgit pull origin bert-sst2
    """
    from mgit.remote.pull import pull

    repo = open_repo()
    with _progress() as bar:
        res = pull(repo, remote, model, jobs=jobs, progress=bar)

    def render() -> None:
        where = res.fetch.remote or res.fetch.url
        if res.status == "up-to-date":
            echo(f"{res.model}: already up to date with {where} ({_short(res.new)})")
        elif res.status == "ahead":
            echo(
                f"{res.model}: ahead of {where} ({_short(res.old)} contains {_short(res.new)}); "
                "nothing to pull"
            )
        else:
            echo(f"{res.model}: {_short(res.old)}..{_short(res.new)} ({res.status}) from {where}")
            if res.worktree_updated:
                echo(f" working tree: {len(res.written)} files written, {len(res.removed)} removed")
            else:
                echo(" working tree untouched (the model is not checked out)")

    emit(res, render)


@click.command("clone")
@click.argument("url")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--model", help="Only this model's history; check it out.")
@click.option(
    "-o", "--origin", "remote_name", default="origin", show_default=True, help="Name of the remote."
)
@_jobs_option("downloads")
def clone_cmd(
    url: str, directory: str | None, model: str | None, remote_name: str, jobs: int
) -> None:
    """Create a repository in DIRECTORY from the remote at URL and check out a model.

    \b
    Examples:
      mgit clone /mnt/shared/models work --model bert-sst2
      mgit clone s3://models/team team
    """
    from mgit.remote.clone import clone
    from mgit.remote.config import default_clone_dir

    cwd = ctx_obj().cwd
    target = Path(directory) if directory else Path(default_clone_dir(url, model))
    if not target.is_absolute():
        target = cwd / target
    with _progress() as bar:
        res = clone(
            url, target, model=model, remote_name=remote_name, base=cwd, jobs=jobs, progress=bar
        )

    def render() -> None:
        echo(f"Cloned {res.url} into {res.directory}")
        echo(
            f"received {res.fetch.objects_received} objects, {human_bytes(res.fetch.bytes_received)}"
        )
        if res.model is None:
            echo("the remote has no models yet")
        else:
            others = [m for m in res.models if m != res.model]
            echo(
                f"checked out {res.model} ({len(res.files)} files)"
                + (f"; other models: {', '.join(others)}" if others else "")
            )

    emit(res, render)


COMMANDS = [remote_cmd, push_cmd, fetch_cmd, pull_cmd, clone_cmd]
