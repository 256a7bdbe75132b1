"""Remotes in a repository's config (add, remove, list, resolve), and opening a remote store.

A remote is ``{"remotes": {NAME: {"url": URL, "timeout": SECONDS}}}`` in the repository's
config (``timeout``, optional: how long an unresponsive S3 endpoint is waited for, all retries
together; ``MGIT_REMOTE_TIMEOUT`` overrides it, default 30); its remote-tracking refs are
``refs/remotes/NAME/<model>``. Opening a remote checks its store's
config with :mod:`mgit.format`, the one format version of repositories and bare stores.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from mgit import format as fmt
from mgit.core import RepoCore
from mgit.errors import InvalidRefNameError, RemoteError, UnsupportedFormatError, UsageError
from mgit.refs.store import HEADS, REMOTES, TAGS, check_name
from mgit.remote.open import open_transport
from mgit.remote.protocol import Transport
from mgit.remote.results import RemoteInfo

__all__ = [
    "add_remote",
    "check_remote_name",
    "default_clone_dir",
    "list_remotes",
    "normalize_url",
    "open_remote",
    "remote_timeout",
    "remove_remote",
    "resolve_remote",
    "split_remote_and_refs",
]


def check_remote_name(name: str) -> str:
    """Return ``name`` if it may name a remote (a ref-name component, no ``/``).

    Raises:
        InvalidRefNameError: A bad name.
    """
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


def list_remotes(repo: RepoCore) -> list[RemoteInfo]:
    """Every configured remote, by name."""
    remotes = repo.config.get("remotes") or {}
    return [
        RemoteInfo(name, str(spec.get("url", "")))
        for name, spec in sorted(remotes.items())
        if isinstance(spec, dict)
    ]


def _check_timeout(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
        raise UsageError(
            f"{where}: a timeout is a number of seconds above 0 (at most 86400), got {value!r}"
        )
    return float(value)


def remote_timeout(repo: RepoCore | None, name: str | None) -> float | None:
    """Seconds a remote may go unanswered: ``MGIT_REMOTE_TIMEOUT``, else the remote's
    ``timeout`` setting, else None (the transport's default).

    Raises:
        UsageError: a value that is not a positive number of seconds.
    """
    env = os.environ.get("MGIT_REMOTE_TIMEOUT")
    if env:
        try:
            return _check_timeout(float(env), "MGIT_REMOTE_TIMEOUT")
        except ValueError:
            raise UsageError(f"MGIT_REMOTE_TIMEOUT is not a number: {env!r}") from None
    if repo is None or name is None:
        return None
    spec = (repo.config.get("remotes") or {}).get(name)
    if isinstance(spec, dict) and spec.get("timeout") is not None:
        return _check_timeout(spec["timeout"], f"remote {name}")
    return None


def add_remote(
    repo: RepoCore,
    name: str,
    url: str,
    *,
    base: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> RemoteInfo:
    """Add a remote to the repository's config.

    Args:
        repo: The repository.
        name: The remote's name (no ``/``).
        url: A path, ``file://`` URL or ``s3://bucket/prefix``.
        base: Folder a relative path is relative to (default: the current directory).
        timeout: Seconds an unresponsive endpoint is waited for, all retries together
            (default 30).

    Raises:
        InvalidRefNameError: A bad name.
        UsageError: A remote by that name exists.
        RemoteError: An unsupported URL.
    """
    check_remote_name(name)
    if timeout is not None:
        timeout = _check_timeout(timeout, "--timeout")
    url = normalize_url(url, base)
    open_transport(url)  # validates the URL (no network access)
    cfg = dict(repo.config)
    remotes = dict(cfg.get("remotes") or {})
    if name in remotes:
        raise UsageError(
            f"remote {name} already exists", hint="remove it first, or pick another name"
        )
    remotes[name] = {"url": url} if timeout is None else {"url": url, "timeout": timeout}
    cfg["remotes"] = remotes
    repo.write_config(cfg)
    return RemoteInfo(name, url)


def remove_remote(repo: RepoCore, name: str) -> RemoteInfo:
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


def resolve_remote(repo: RepoCore | None, remote: str | None) -> tuple[str | None, str]:
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
    repo: RepoCore, remote: str | None, refs: list[str]
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


def open_remote(url: str, *, create: bool, timeout: float | None = None) -> Transport:
    """Open a remote store and check its format; with ``create``, make it if absent.

    ``timeout``: seconds an unresponsive endpoint is waited for (see :func:`remote_timeout`).

    Raises:
        RemoteError: No store at ``url`` (and not ``create``), a damaged config, or (with
            ``create``) a repository with a working tree.
        UnsupportedFormatError: Another format version or hash.
    """
    transport = open_transport(url, timeout=timeout)
    cfg = transport.read_config()
    if cfg is None:
        if not create:
            raise RemoteError(
                f"no mgit store at {transport.url}", hint="check the URL, or push to it first"
            )
        transport.init(fmt.new_config(bare=True))
        cfg = transport.read_config() or fmt.new_config(bare=True)
    what = f"remote {transport.url}"
    try:
        fmt.check_config(cfg, what)
    except UnsupportedFormatError:
        if cfg.get("format_version") == fmt.FORMAT_VERSION:  # the version is right: the hash
            raise UnsupportedFormatError(f"{what} uses hash {cfg.get('hash')!r}") from None
        raise
    if create and cfg.get("bare") is False:
        raise RemoteError(
            f"cannot push to {transport.url}: it is a repository with a working tree",
            hint="push to a bare store (any empty folder or s3:// prefix), or pull from the other side",
        )
    return transport
