"""Remotes: transports to bare mgit stores (a path, S3) and push/fetch/pull/clone.

Modules, lowest first (each imports only from those before it, and from below
:mod:`mgit.core`; ``pull`` and ``clone`` also use :mod:`mgit.worktree`):

- ``protocol``: the :class:`Transport` protocol, ref-name and id validation, store layout;
- ``local``: :class:`LocalTransport` (a path); ``s3``: ``S3Transport`` (boto3 is imported only
  there, when one is opened); ``open``: :func:`open_transport` picks one from a URL;
- ``results``: the dataclasses every operation returns; ``config``: remotes in a repository's
  config, and opening a remote store (format check);
- ``negotiate``: the decisions of push, fetch and pull, as pure functions;
- ``fetch`` (the receiver), ``push``; then ``pull`` and ``clone``.

Every operation takes a :class:`mgit.core.RepoCore` (a ``Repository`` is one). The
operations are in the modules of their name: ``from mgit.remote.push import push`` (so
``mgit.remote.push`` is that module, not the function). The transports, results and remote
config functions below are importable from this package too; each loads its module on first
use, so importing one module of the package does not import them all.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mgit.remote.config import add_remote, list_remotes, remove_remote
    from mgit.remote.local import LocalTransport
    from mgit.remote.open import open_transport
    from mgit.remote.protocol import Transport
    from mgit.remote.results import (
        CloneResult,
        FetchResult,
        PullResult,
        PushResult,
        RefUpdate,
        RemoteInfo,
        TransferProgress,
    )

_EXPORTS = {
    "CloneResult": "results",
    "FetchResult": "results",
    "LocalTransport": "local",
    "PullResult": "results",
    "PushResult": "results",
    "RefUpdate": "results",
    "RemoteInfo": "results",
    "TransferProgress": "results",
    "Transport": "protocol",
    "add_remote": "config",
    "list_remotes": "config",
    "open_transport": "open",
    "remove_remote": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
