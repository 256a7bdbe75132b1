"""push, fetch, pull and clone: moving objects and refs between a repository and a remote.

The negotiation is git's "dumb" protocol over a :class:`~mgit.remote.transport.Transport`:

- **push** lists the remote's refs, refuses a non-fast-forward update (unless forced), computes
  the objects reachable from the pushed tips and not from what the remote has
  (:meth:`Repository.objects_to_send`), asks the remote which of those it already holds
  (:meth:`Transport.has_objects`: an interrupted push resumes where it stopped), uploads the
  rest in dependency order (a delta's base before the delta, chunks before trees before
  commits, parents first), and only then compare-and-swaps the remote refs.
  Several refs change all-or-nothing as far as the remote allows: all are checked before any
  byte is sent, and if one CAS loses a race the ones already moved are moved back.
- **fetch** walks the remote's commits and trees that the repository lacks (each
  decoded and verified against its id as it arrives), downloads the chunks they need, and
  writes everything with :meth:`DiskStore.write_raw` (which decodes and verifies again) in
  dependency order; only after the store is synced does it move ``refs/remotes/<remote>/*``.
  A damaged or substituted object on the remote raises
  :class:`~mgit.errors.CorruptObjectError` and is never written.
- **pull** is fetch plus a fast-forward of one model line (and of the working tree when that
  model is checked out). **clone** is init plus fetch plus checkout.

Everything here returns dataclasses and never prints; progress goes to an optional
:class:`TransferProgress`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from mgit.errors import (
    CorruptObjectError,
    InvalidRefNameError,
    MgitError,
    NonFastForwardError,
    ObjectNotFoundError,
    RefConflictError,
    RefNotFoundError,
    RemoteError,
    UnsupportedFormatError,
    UsageError,
    format_version_error,
)
from mgit.objects.model import Commit, Tree
from mgit.refs.store import HEADS, REMOTES, TAGS, check_name
from mgit.remote.transport import (
    REMOTE_FORMAT_VERSION,
    Transport,
    default_remote_config,
    open_transport,
)

if TYPE_CHECKING:
    from mgit.repo import CheckoutResult, Repository

__all__ = [
    "DEFAULT_JOBS",
    "CloneResult",
    "FetchResult",
    "PullResult",
    "PushResult",
    "RefUpdate",
    "RemoteInfo",
    "TransferProgress",
    "add_remote",
    "clone",
    "default_clone_dir",
    "fetch",
    "list_remotes",
    "normalize_url",
    "pull",
    "push",
    "remove_remote",
    "resolve_remote",
    "split_remote_and_refs",
]

#: Parallel object transfers (I/O bound: uploads, downloads and verification overlap).
DEFAULT_JOBS = 4
_COMMIT_BATCH = 64


class TransferProgress(Protocol):
    """Receives progress of a transfer (the CLI draws a bar; the library never prints)."""

    def begin(self, label: str, *, objects: int, total_bytes: int | None) -> None:
        """A phase starts: ``objects`` to move, ``total_bytes`` if known in advance."""
        ...

    def advance(self, *, objects: int = 0, nbytes: int = 0) -> None:
        """``objects`` more objects, ``nbytes`` more bytes moved."""
        ...

    def end(self) -> None:
        """The phase is over."""
        ...


# ----------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class RemoteInfo:
    """A configured remote."""

    name: str
    url: str

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"name": self.name, "url": self.url}


@dataclass(frozen=True)
class RefUpdate:
    """One ref that a push or fetch looked at.

    ``status`` is one of ``created``, ``fast-forward``, ``forced``, ``up-to-date``,
    ``deleted``, ``kept`` (a local tag differing from the remote's was left alone).
    """

    ref: str
    old: str | None
    new: str | None
    status: str

    @property
    def name(self) -> str:
        """The ref without its ``refs/heads/``, ``refs/tags/`` or ``refs/remotes/`` prefix."""
        for prefix in (HEADS, TAGS, REMOTES):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {"ref": self.ref, "old": self.old, "new": self.new, "status": self.status}


@dataclass(frozen=True)
class PushResult:
    """What ``push`` did."""

    remote: str | None
    url: str
    updates: list[RefUpdate]
    objects_sent: int
    bytes_sent: int
    objects_already_there: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "remote": self.remote,
            "url": self.url,
            "updates": [u.to_json() for u in self.updates],
            "objects_sent": self.objects_sent,
            "bytes_sent": self.bytes_sent,
            "objects_already_there": self.objects_already_there,
        }


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch`` did. ``heads`` maps each fetched model to the remote's commit."""

    remote: str | None
    url: str
    heads: dict[str, str]
    updates: list[RefUpdate]
    objects_received: int
    bytes_received: int

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "remote": self.remote,
            "url": self.url,
            "heads": self.heads,
            "updates": [u.to_json() for u in self.updates],
            "objects_received": self.objects_received,
            "bytes_received": self.bytes_received,
        }


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` did. ``status``: ``up-to-date``, ``fast-forward``, ``created`` or ``ahead``
    (the local model already contains the remote's)."""

    fetch: FetchResult
    model: str
    old: str | None
    new: str
    status: str
    worktree_updated: bool
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "fetch": self.fetch.to_json(),
            "model": self.model,
            "old": self.old,
            "new": self.new,
            "status": self.status,
            "worktree_updated": self.worktree_updated,
            "written": self.written,
            "removed": self.removed,
        }


@dataclass(frozen=True)
class CloneResult:
    """What ``clone`` did. ``model`` is the checked-out model (None for an empty remote)."""

    url: str
    directory: str
    remote: str
    model: str | None
    models: list[str]
    fetch: FetchResult
    files: list[str]

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "url": self.url,
            "directory": self.directory,
            "remote": self.remote,
            "model": self.model,
            "models": self.models,
            "fetch": self.fetch.to_json(),
            "files": self.files,
        }


# ----------------------------------------------------------------------------------------------
# remotes in the config


def _check_remote_name(name: str) -> str:
    check_name(name, what="remote name")
    if "/" in name:
        raise InvalidRefNameError(name, "a remote name may not contain '/'")
    return name


def normalize_url(url: str, base: str | os.PathLike[str] | None = None) -> str:
    """Return ``url`` with a local path made absolute (relative to ``base`` or the cwd).

    ``s3://`` and ``file://`` URLs are returned unchanged.

    Raises:
        UsageError: an empty URL.
    """
    if not url or not url.strip():
        raise UsageError("the remote URL is empty")
    scheme = urlsplit(url).scheme
    if scheme and len(scheme) > 1:
        return url
    path = Path(os.path.expanduser(url))
    if not path.is_absolute():
        path = Path(base if base is not None else os.getcwd()) / path
    return os.path.normpath(path)


def list_remotes(repo: Repository) -> list[RemoteInfo]:
    """Every configured remote, by name."""
    remotes = repo.config.get("remotes") or {}
    return [
        RemoteInfo(name, str(spec.get("url", "")))
        for name, spec in sorted(remotes.items())
        if isinstance(spec, dict)
    ]


def add_remote(
    repo: Repository, name: str, url: str, *, base: str | os.PathLike[str] | None = None
) -> RemoteInfo:
    """Add a remote to the repository's config.

    Args:
        repo: The repository.
        name: The remote's name (no ``/``).
        url: A path, ``file://`` URL or ``s3://bucket/prefix``.
        base: Folder a relative path is relative to (default: the current directory).

    Raises:
        InvalidRefNameError: A bad name.
        UsageError: A remote by that name exists.
        RemoteError: An unsupported URL.
    """
    _check_remote_name(name)
    url = normalize_url(url, base)
    open_transport(url)  # validates the URL (no network access)
    cfg = dict(repo.config)
    remotes = dict(cfg.get("remotes") or {})
    if name in remotes:
        raise UsageError(
            f"remote {name} already exists", hint="remove it first, or pick another name"
        )
    remotes[name] = {"url": url}
    cfg["remotes"] = remotes
    repo.write_config(cfg)
    return RemoteInfo(name, url)


def remove_remote(repo: Repository, name: str) -> RemoteInfo:
    """Remove a remote and its remote-tracking refs.

    Raises:
        UsageError: No remote by that name.
    """
    cfg = dict(repo.config)
    remotes = dict(cfg.get("remotes") or {})
    if name not in remotes:
        raise UsageError(f"no such remote: {name}", hint="see 'mgit remote list'")
    spec = remotes.pop(name)
    cfg["remotes"] = remotes
    repo.write_config(cfg)
    tracking = repo.refs.iter_refs(f"{REMOTES}{name}/")
    if tracking:
        repo.refs.update_many(
            [(ref, oid, None) for ref, oid in tracking.items()], message=f"remote remove {name}"
        )
    return RemoteInfo(name, str(spec.get("url", "")))


def resolve_remote(repo: Repository | None, remote: str | None) -> tuple[str | None, str]:
    """Return ``(name, url)`` for a remote name or a URL/path.

    With no ``remote``: ``origin`` if configured, else the only remote.

    Raises:
        UsageError: No remote given and none (or several) configured.
    """
    remotes = {r.name: r.url for r in list_remotes(repo)} if repo is not None else {}
    if remote is None:
        if "origin" in remotes:
            return "origin", remotes["origin"]
        if len(remotes) == 1:
            return next(iter(remotes.items()))
        if not remotes:
            raise UsageError("no remote configured", hint="mgit remote add origin URL")
        raise UsageError(
            "several remotes are configured; name one", hint="one of: " + ", ".join(sorted(remotes))
        )
    if remote in remotes:
        return remote, remotes[remote]
    scheme = urlsplit(remote).scheme
    if (
        (scheme and len(scheme) > 1)
        or "/" in remote
        or remote.startswith(".")
        or os.path.isdir(remote)
    ):
        return None, normalize_url(remote)
    raise UsageError(f"no such remote: {remote}", hint="see 'mgit remote list', or give a URL")


def split_remote_and_refs(
    repo: Repository, remote: str | None, refs: list[str]
) -> tuple[str | None, list[str]]:
    """Read ``push [REMOTE] [REF...]`` leniently: a first word that is no remote or URL but a
    local model or tag is taken as a REF of the default remote."""
    if remote is None:
        return None, refs
    if remote in {r.name for r in list_remotes(repo)}:
        return remote, refs
    try:
        resolve_remote(repo, remote)
        return remote, refs
    except UsageError:
        pass
    if repo.refs.read(HEADS + remote) is not None or repo.refs.read(TAGS + remote) is not None:
        return None, [remote, *refs]
    return remote, refs


def default_clone_dir(url: str, model: str | None = None) -> str:
    """The folder ``clone`` creates when none is given: the model's or the URL's last name."""
    if model:
        return model.rstrip("/").rsplit("/", 1)[-1]
    parts = urlsplit(url)
    path = parts.path if parts.scheme and len(parts.scheme) > 1 else url
    name = path.rstrip("/").rsplit("/", 1)[-1] or parts.netloc
    return name or "mgit-clone"


def _open_remote(url: str, *, create: bool) -> Transport:
    """Open a remote store and check its format; with ``create``, make it if absent."""
    transport = open_transport(url)
    cfg = transport.read_config()
    if cfg is None:
        if not create:
            raise RemoteError(
                f"no mgit store at {transport.url}", hint="check the URL, or push to it first"
            )
        transport.init(default_remote_config())
        cfg = transport.read_config() or default_remote_config()
    if cfg.get("format_version") != REMOTE_FORMAT_VERSION:
        raise format_version_error(
            f"remote {transport.url}", cfg.get("format_version"), REMOTE_FORMAT_VERSION
        )
    if cfg.get("hash", "blake3") != "blake3":
        raise UnsupportedFormatError(f"remote {transport.url} uses hash {cfg.get('hash')!r}")
    if create and cfg.get("bare") is False:
        raise RemoteError(
            f"cannot push to {transport.url}: it is a repository with a working tree",
            hint="push to a bare store (any empty folder or s3:// prefix), or pull from the other side",
        )
    return transport


# ----------------------------------------------------------------------------------------------
# stored-object helpers


def _parse_stored_header(repo: Repository, oid: str, data: bytes) -> Any:
    """Parse the header of an object received in its stored encoding (no trust, no write)."""
    return repo.store.parse_header(oid, data)


def _decode_stored(repo: Repository, oid: str, data: bytes, kind: str) -> bytes:
    """Decode a received object and verify it hashes to ``oid``; return its content.

    Raises:
        CorruptObjectError: It does not decode, is not of ``kind``, or hashes to another id.
    """
    return repo.store.decode_raw(oid, data, kind=kind)


def _from_remote(exc: CorruptObjectError, url: str) -> CorruptObjectError:
    err = CorruptObjectError(exc.oid, f"{exc.reason} (received from {url})", actual=exc.actual)
    err.hint = (
        "the remote's copy is damaged or was replaced; nothing was written for it. "
        "Push the object again from a repository that has it intact"
    )
    return err


def _referenced_chunks(tree: Tree) -> set[str]:
    out: set[str] = set()
    for entry in tree.files.values():
        out |= entry.chunk_ids()
    return out


# ----------------------------------------------------------------------------------------------
# push


def _select_push_refs(
    repo: Repository, refs: Sequence[str], *, all_models: bool, tags: bool
) -> dict[str, str]:
    """Map each REF given (model or tag name) to its full ref and local commit id."""
    out: dict[str, str] = {}
    if all_models:
        out.update(repo.refs.iter_refs(HEADS))
    if tags:
        out.update(repo.refs.iter_refs(TAGS))
    for ref in refs:
        for full in (
            (ref,) if ref.startswith(("refs/heads/", "refs/tags/")) else (HEADS + ref, TAGS + ref)
        ):
            oid = repo.refs.read(full)
            if oid is not None:
                out[full] = oid
                break
        else:
            raise RefNotFoundError(ref, reason="not a local model or tag")
    if not refs and not all_models and not tags:
        model = repo.head_model
        if model is None:
            raise UsageError("HEAD is detached: name the model(s) to push")
        oid = repo.refs.read(HEADS + model)
        if oid is None:
            raise UsageError(f"model {model} has no commits yet")
        out[HEADS + model] = oid
    return out


def _plan_updates(
    repo: Repository, local: dict[str, str], remote_refs: dict[str, str], *, force: bool
) -> tuple[list[RefUpdate], list[tuple[str, str]]]:
    updates: list[RefUpdate] = []
    rejected: list[tuple[str, str]] = []
    for ref, new in sorted(local.items()):
        old = remote_refs.get(ref)
        if old == new:
            updates.append(RefUpdate(ref, old, new, "up-to-date"))
        elif old is None:
            updates.append(RefUpdate(ref, old, new, "created"))
        elif ref.startswith(HEADS) and old in repo.store and repo.is_ancestor(old, new):
            updates.append(RefUpdate(ref, old, new, "fast-forward"))
        elif force:
            updates.append(RefUpdate(ref, old, new, "forced"))
        else:
            why = "tag exists on the remote" if ref.startswith(TAGS) else "non-fast-forward"
            rejected.append((ref, why))
    return updates, rejected


def _upload_levels(repo: Repository, oids: list[str]) -> list[list[str]]:
    """Split objects (in ``objects_to_send`` order) into levels that may go in parallel.

    Chunks of one delta depth form a level (bases are one depth lower), then all trees; each commit is its own level, parents first.
    """
    levels: list[list[str]] = []
    key_prev: Any = None
    for oid in oids:
        header = repo.store.header(oid)
        if header.kind == "chunk":
            key: Any = ("chunk", header.depth)
        elif header.kind == "tree":
            key = (header.kind,)
        else:
            key = ("commit", oid)
        if key != key_prev:
            levels.append([])
            key_prev = key
        levels[-1].append(oid)
    return levels


def _upload(
    repo: Repository,
    transport: Transport,
    oids: list[str],
    *,
    jobs: int,
    progress: TransferProgress | None,
) -> int:
    """Upload objects level by level (the remote never holds an object whose references are
    missing); return the bytes sent."""
    levels = _upload_levels(repo, oids)
    total = 0
    if progress is not None:
        size = sum(repo.store.stored_size(o) for o in oids)
        progress.begin("pushing", objects=len(oids), total_bytes=size)

    def send(oid: str) -> int:
        data = repo.store.read_raw(oid)
        # Never spread damage: the object must decode to content with its id before it goes.
        repo.store.decode_raw(oid, data)
        transport.put_object(oid, data)
        return len(data)

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="mgit-push") as pool:
            for level in levels:
                futures = {pool.submit(send, oid): oid for oid in level}
                try:
                    for fut in _as_completed(futures):
                        n = fut.result()
                        total += n
                        if progress is not None:
                            progress.advance(objects=1, nbytes=n)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        if progress is not None:
            progress.end()
    return total


def _as_completed(futures: Iterable[Future[Any]]) -> Iterator[Future[Any]]:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done


def _update_remote_refs(
    repo: Repository, transport: Transport, updates: list[RefUpdate]
) -> list[RefUpdate]:
    """CAS every update; on a lost race, move back the refs already moved and raise."""
    done: list[RefUpdate] = []
    for u in updates:
        old = u.old
        for _attempt in range(3):
            try:
                transport.update_ref(u.ref, old, u.new)
                break
            except RefConflictError as exc:
                actual = exc.actual
                if actual == u.new:
                    break  # someone pushed the very same commit
                # The remote moved to a commit ours already contains (still a fast-forward),
                # or the push is forced: compare-and-swap against the new value.
                if u.status == "forced" or (
                    u.ref.startswith(HEADS)
                    and actual is not None
                    and actual in repo.store
                    and u.new is not None
                    and repo.is_ancestor(actual, u.new)
                ):
                    old = actual
                    continue
                _roll_back(transport, done)
                raise NonFastForwardError(
                    u.ref,
                    f"push of {_short_ref(u.ref)} rejected: the remote's {_short_ref(u.ref)} "
                    f"changed while pushing (now {(actual or '(deleted)')[:12]})",
                    hint="run 'mgit pull' to get the new version, then push again",
                ) from None
            except BaseException:
                _roll_back(transport, done)
                raise
        else:
            _roll_back(transport, done)
            raise NonFastForwardError(
                u.ref,
                f"push of {_short_ref(u.ref)} rejected: the remote keeps changing",
                hint="run 'mgit pull', then push again",
            )
        done.append(RefUpdate(u.ref, old, u.new, u.status))
    return done


def _roll_back(transport: Transport, done: list[RefUpdate]) -> None:
    """Best effort: put back refs this push already moved (CAS, so never over someone else)."""
    for u in reversed(done):
        try:
            transport.update_ref(u.ref, u.new, u.old)
        except MgitError:
            pass


def _short_ref(ref: str) -> str:
    return RefUpdate(ref, None, None, "").name


def _move_status(repo: Repository, old: str | None, new: str | None) -> str:
    """How a local ref moves: ``created``, ``deleted``, ``fast-forward`` or ``forced``."""
    if new is None:
        return "deleted"
    if old is None:
        return "created"
    return "fast-forward" if old in repo.store and repo.is_ancestor(old, new) else "forced"


def _update_tracking(
    repo: Repository, name: str, values: dict[str, str | None], message: str
) -> list[RefUpdate]:
    """Set ``refs/remotes/<name>/<model>`` (CAS against the values read now; retried once)."""
    out: list[RefUpdate] = []
    for _attempt in range(2):
        batch: list[tuple[str, str | None, str | None]] = []
        out = []
        for model, new in sorted(values.items()):
            ref = f"{REMOTES}{name}/{model}"
            old = repo.refs.read(ref)
            if old == new:
                continue
            batch.append((ref, old, new))
            status = _move_status(repo, old, new)
            out.append(RefUpdate(ref, old, new, status))
        if not batch:
            return out
        try:
            repo.refs.update_many(batch, message=message)
            return out
        except RefConflictError:
            continue  # a concurrent fetch moved one; read again
    return out


def push(
    repo: Repository,
    remote: str | None = None,
    refs: Sequence[str] = (),
    *,
    force: bool = False,
    all_models: bool = False,
    tags: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: TransferProgress | None = None,
) -> PushResult:
    """Send model lines (and tags) to a remote: only the objects it lacks, then CAS its refs.

    Args:
        repo: The local repository.
        remote: A remote name or URL (default ``origin`` or the only remote). A missing
            remote store is created.
        refs: Model or tag names (default: the checked-out model).
        force: Allow non-fast-forward updates (and moving a tag).
        all_models: Push every model line.
        tags: Push every tag.
        jobs: Parallel uploads.
        progress: Receives transfer progress.

    Returns:
        A :class:`PushResult`.

    Raises:
        NonFastForwardError: A ref is not a fast-forward of the remote's (nothing was sent),
            or the remote's ref changed during the push (the other refs were moved back).
        RefNotFoundError: A REF that is neither a local model nor a tag.
        RemoteError: The remote cannot be reached or written, or has a working tree.
    """
    name, url = resolve_remote(repo, remote)
    local = _select_push_refs(repo, refs, all_models=all_models, tags=tags)
    transport = _open_remote(url, create=True)
    remote_refs = transport.list_refs()
    updates, rejected = _plan_updates(repo, local, remote_refs, force=force)
    if rejected:
        names = ", ".join(f"{_short_ref(r)} ({why})" for r, why in rejected)
        raise NonFastForwardError(
            rejected[0][0],
            f"push rejected: {names}",
            hint="the remote has versions you do not: run 'mgit pull' to take them, or keep "
            "both lines by pushing yours under a new name ('mgit branch NEW MODEL', "
            "'mgit push REMOTE NEW'), or replace the remote's with 'mgit push --force'",
        )
    moving = [u for u in updates if u.status != "up-to-date"]
    sent = nbytes = already = 0
    if moving:
        exclude = {oid for oid in remote_refs.values() if oid in repo.store}
        wanted = repo.objects_to_send([u.new for u in moving if u.new is not None], exclude)
        present = transport.has_objects(wanted) if wanted else set()
        missing = [o for o in wanted if o not in present]
        already = len(wanted) - len(missing)
        nbytes = _upload(repo, transport, missing, jobs=jobs, progress=progress) if missing else 0
        sent = len(missing)
        moved = _update_remote_refs(repo, transport, moving)
        by_ref = {u.ref: u for u in moved}
        updates = [by_ref.get(u.ref, u) for u in updates]
    if name is not None:
        heads = {u.name: u.new for u in updates if u.ref.startswith(HEADS)}
        _update_tracking(repo, name, heads, message=f"push {name}")
    return PushResult(name, transport.url, updates, sent, nbytes, already)


# ----------------------------------------------------------------------------------------------
# fetch


class _Receiver:
    """Downloads objects the repository lacks and writes them in dependency order."""

    def __init__(
        self,
        repo: Repository,
        transport: Transport,
        *,
        jobs: int,
        progress: TransferProgress | None,
    ) -> None:
        self.repo = repo
        self.transport = transport
        self.jobs = max(1, jobs)
        self.progress = progress
        self.objects = 0
        self.bytes = 0

    def _get(self, oid: str) -> bytes:
        return self.transport.get_object(oid)

    def _get_many(self, pool: ThreadPoolExecutor, oids: list[str]) -> dict[str, bytes]:
        futures = {pool.submit(self._get, oid): oid for oid in oids}
        out: dict[str, bytes] = {}
        try:
            for fut in _as_completed(futures):
                out[futures[fut]] = fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return out

    def _decode(self, oid: str, data: bytes, kind: str) -> bytes:
        try:
            return _decode_stored(self.repo, oid, data, kind)
        except CorruptObjectError as exc:
            raise _from_remote(exc, self.transport.url) from None

    def _write(self, oid: str, data: bytes) -> int:
        try:
            self.repo.store.write_raw(oid, data)
        except CorruptObjectError as exc:
            raise _from_remote(exc, self.transport.url) from None
        return len(data)

    def receive(self, tips: Iterable[str]) -> None:
        """Make every object reachable from ``tips`` present locally, dependency order."""
        store = self.repo.store
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mgit-fetch") as pool:
            # 1. Commits we lack, walking parents until commits we have: a commit present
            #    locally has its whole closure present (objects are written before commits).
            commits: dict[str, tuple[bytes, Commit]] = {}
            frontier = sorted({t for t in tips if t not in store})
            while frontier:
                batch, frontier = frontier[:_COMMIT_BATCH], frontier[_COMMIT_BATCH:]
                for oid, data in self._get_many(pool, batch).items():
                    commit = Commit.from_bytes(self._decode(oid, data, "commit"))
                    commits[oid] = (data, commit)
                    for p in commit.parents:
                        if p.oid not in store and p.oid not in commits and p.oid not in frontier:
                            frontier.append(p.oid)
            if not commits:
                return
            # 2. Trees (small; decoded and verified in memory; they hold the tensor manifests).
            tree_ids = sorted({c.tree for _, c in commits.values() if c.tree not in store})
            trees: dict[str, tuple[bytes, Tree]] = {}
            for oid, data in self._get_many(pool, tree_ids).items():
                trees[oid] = (data, Tree.from_bytes(self._decode(oid, data, "tree")))
            chunk_ids: set[str] = set()
            for _, tree in trees.values():
                chunk_ids |= _referenced_chunks(tree)
            chunks = _chunk_order(commits, trees, {o for o in chunk_ids if o not in store})
            n_meta = len(commits) + len(trees)
            if self.progress is not None:
                self.progress.begin("fetching", objects=len(chunks) + n_meta, total_bytes=None)
            try:
                # 3. Chunks, each written once its delta base is present.
                self._receive_chunks(pool, chunks)
                # 4. Then trees, and commits parents first.
                futures = {pool.submit(self._write, oid, data): oid for oid, (data, _) in trees.items()}
                for fut in _as_completed(futures):
                    self._advance(fut.result())
                for oid in _parents_first(commits):
                    self._advance(self._write(oid, commits[oid][0]))
            finally:
                if self.progress is not None:
                    self.progress.end()
        store.sync()  # objects durable before any ref points at them

    def _advance(self, nbytes: int) -> None:
        self.objects += 1
        self.bytes += nbytes
        if self.progress is not None:
            self.progress.advance(objects=1, nbytes=nbytes)

    def _receive_chunks(self, pool: ThreadPoolExecutor, chunks: list[str]) -> None:
        store = self.repo.store
        todo = list(reversed(chunks))  # pop() from the end keeps the given order
        scheduled: set[str] = set(chunks)
        waiting: dict[str, list[tuple[str, bytes]]] = {}  # base -> deltas waiting for it
        written: set[str] = set()
        in_flight: dict[Future[Any], tuple[str, str]] = {}
        window = self.jobs * 2

        def download(oid: str) -> tuple[str | None, bytes]:
            data = self._get(oid)
            try:
                header = _parse_stored_header(self.repo, oid, data)
            except CorruptObjectError as exc:
                raise _from_remote(exc, self.transport.url) from None
            if header.kind != "chunk":
                raise _from_remote(
                    CorruptObjectError(oid, f"expected a chunk, found a {header.kind}"),
                    self.transport.url,
                )
            return header.base, data

        def ready(base: str | None) -> bool:
            return base is None or base in written or (base not in scheduled and base in store)

        try:
            while todo or in_flight:
                while todo and len(in_flight) < window:
                    oid = todo.pop()
                    in_flight[pool.submit(download, oid)] = ("get", oid)
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for fut in done:
                    what, oid = in_flight.pop(fut)
                    if what == "get":
                        base, data = fut.result()
                        if ready(base):
                            in_flight[pool.submit(self._write, oid, data)] = ("put", oid)
                        else:
                            assert base is not None
                            waiting.setdefault(base, []).append((oid, data))
                            if base not in scheduled:  # a base no tree names directly
                                scheduled.add(base)
                                todo.append(base)
                    else:
                        self._advance(fut.result())
                        written.add(oid)
                        for child, data in waiting.pop(oid, []):
                            in_flight[pool.submit(self._write, child, data)] = ("put", child)
        except BaseException:
            for fut in in_flight:
                fut.cancel()
            raise
        if waiting:
            missing = min(waiting)
            raise ObjectNotFoundError(
                missing, context=f"delta base missing on {self.transport.url}"
            )


def _chunk_order(
    commits: dict[str, tuple[bytes, Commit]],
    trees: dict[str, tuple[bytes, Tree]],
    wanted: set[str],
) -> list[str]:
    """The chunks to download, older commits' first: a delta's base (a chunk of the parent
    model) then usually arrives before the delta, so few deltas wait in memory for it."""
    order: list[str] = []
    seen: set[str] = set()

    def add(oid: str) -> None:
        if oid in wanted and oid not in seen:
            seen.add(oid)
            order.append(oid)

    for commit_oid in _parents_first(commits):
        tree = trees.get(commits[commit_oid][1].tree)
        if tree is None:
            continue
        for _path, entry in sorted(tree[1].files.items()):
            for oid in entry.chunks:
                add(oid)
            if entry.header is not None:
                add(entry.header)
            for _name, manifest in entry.tensors:
                for oid in manifest.chunks:
                    add(oid)
    order.extend(sorted(wanted - seen))
    return order


def _parents_first(commits: dict[str, tuple[bytes, Commit]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    for start in sorted(commits):
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            oid, expanded = stack.pop()
            if expanded:
                order.append(oid)
                continue
            if oid in seen:
                continue
            seen.add(oid)
            stack.append((oid, True))
            for p in commits[oid][1].parents:
                if p.oid in commits and p.oid not in seen:
                    stack.append((p.oid, False))
    return order


def fetch(
    repo: Repository,
    remote: str | None = None,
    *,
    models: Sequence[str] | None = None,
    tags: bool = True,
    prune: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: TransferProgress | None = None,
) -> FetchResult:
    """Download what the repository lacks of a remote's models; update ``refs/remotes/``.

    Every object is verified against its id before it is written, and written in dependency
    order; remote-tracking refs move only after the objects are durable.

    Args:
        repo: The local repository.
        remote: A remote name or URL (with a URL, no remote-tracking refs are written; the
            result's ``heads`` says what was fetched).
        models: Only these models (default: every model of the remote, and its tags).
        tags: Create local tags for the remote's tags that point at fetched commits (a local
            tag with another value is kept).
        prune: Delete remote-tracking refs of models the remote no longer has.
        jobs: Parallel downloads.
        progress: Receives transfer progress.

    Returns:
        A :class:`FetchResult`.

    Raises:
        CorruptObjectError: An object on the remote is damaged or substituted (nothing was
            written for it, and no ref moved).
        RefNotFoundError: A model in ``models`` that the remote does not have.
        RemoteError: The remote cannot be reached or holds no mgit store.
    """
    name, url = resolve_remote(repo, remote)
    transport = _open_remote(url, create=False)
    remote_refs = transport.list_refs()
    heads = {r[len(HEADS) :]: o for r, o in remote_refs.items() if r.startswith(HEADS)}
    remote_tags = {r[len(TAGS) :]: o for r, o in remote_refs.items() if r.startswith(TAGS)}
    if models:
        missing = [m for m in models if m not in heads]
        if missing:
            raise RefNotFoundError(missing[0], reason=f"no such model on {transport.url}")
        heads = {m: heads[m] for m in models}
    tips = set(heads.values())
    if tags and not models:
        tips |= set(remote_tags.values())
    receiver = _Receiver(repo, transport, jobs=jobs, progress=progress)
    receiver.receive(tips)
    updates: list[RefUpdate] = []
    if name is not None:
        values: dict[str, str | None] = dict(heads)
        if prune and not models:
            for ref in repo.refs.iter_refs(f"{REMOTES}{name}/"):
                model = ref[len(f"{REMOTES}{name}/") :]
                if model not in heads:
                    values[model] = None
        updates += _update_tracking(repo, name, values, message=f"fetch {name}")
    if tags:
        updates += _create_tags(repo, remote_tags, message=f"fetch {name or transport.url}")
    return FetchResult(name, transport.url, heads, updates, receiver.objects, receiver.bytes)


def _create_tags(repo: Repository, remote_tags: dict[str, str], *, message: str) -> list[RefUpdate]:
    out: list[RefUpdate] = []
    batch: list[tuple[str, str | None, str | None]] = []
    for tag, oid in sorted(remote_tags.items()):
        if oid not in repo.store:
            continue  # points outside what was fetched
        ref = TAGS + tag
        local = repo.refs.read(ref)
        if local is None:
            batch.append((ref, None, oid))
            out.append(RefUpdate(ref, None, oid, "created"))
        elif local != oid:
            out.append(RefUpdate(ref, local, oid, "kept"))
    if batch:
        try:
            repo.refs.update_many(batch, message=message)
        except RefConflictError:
            return [u for u in out if u.status == "kept"]  # created concurrently: leave them
    return out


# ----------------------------------------------------------------------------------------------
# pull and clone


def _fast_forward(
    repo: Repository, model: str, old: str | None, new: str, *, message: str
) -> CheckoutResult | None:
    """Move ``refs/heads/<model>`` from ``old`` to ``new``; update the working tree when the
    model is checked out (refusing to overwrite uncommitted changes)."""
    ref = HEADS + model
    if repo.bare or repo.head_model != model:
        repo.refs.set_if_equals(ref, old, new, message=message)
        return None
    # Checked out: write the new files first (checkout compares with HEAD's tree and refuses
    # to lose changes), then move the ref, then put HEAD back on the model line.
    result = repo.checkout(new)
    try:
        repo.refs.set_if_equals(ref, old, new, message=message)
    except BaseException:
        if old is not None:
            repo.checkout(old, force=True)
        repo.refs.set_head(ref=ref, message=f"{message} (undone)")
        raise
    repo.refs.set_head(ref=ref, message=message)
    return result


def pull(
    repo: Repository,
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
    if old == new:
        return PullResult(fr, model, old, new, "up-to-date", False)
    if old is not None and repo.is_ancestor(new, old):
        return PullResult(fr, model, old, new, "ahead", False)
    if old is not None and not repo.is_ancestor(old, new):
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
    status = "created" if old is None else "fast-forward"
    if co is None:
        return PullResult(fr, model, old, new, status, False)
    return PullResult(fr, model, old, new, status, True, list(co.written), list(co.removed))


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
    from mgit.repo import Repository

    _check_remote_name(remote_name)
    url = normalize_url(url, base)
    transport = _open_remote(url, create=False)
    heads = {r[len(HEADS) :]: o for r, o in transport.list_refs().items() if r.startswith(HEADS)}
    if model is not None and model not in heads:
        raise RefNotFoundError(model, reason=f"no such model on {transport.url}")
    chosen = model if model is not None else (min(heads) if heads else None)
    dest = Path(directory).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"destination {directory} exists and is not an empty folder")
    created = not dest.exists()
    try:
        repo = Repository.init(dest, model=chosen)
        cfg = dict(repo.config)
        cfg["remotes"] = {remote_name: {"url": url}}
        repo.write_config(cfg)
        fr = fetch(
            repo, remote_name, models=[model] if model else None, jobs=jobs, progress=progress
        )
        files: list[str] = []
        if chosen is not None:
            # Check out first (HEAD's model has no commit yet, so nothing can be lost), then
            # create the local model lines, then put HEAD on the chosen one.
            co = repo.checkout(fr.heads[chosen])
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
