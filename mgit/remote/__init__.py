"""Remotes: transports to bare mgit stores (a path, S3) and push/fetch/pull/clone.

``mgit.remote.transport`` holds the :class:`Transport` protocol and the path transport;
``mgit.remote.s3`` the S3 transport (boto3 is imported only there, when one is opened);
``mgit.remote.sync`` the push/fetch negotiation.
"""

from __future__ import annotations

from mgit.remote.sync import (
    CloneResult,
    FetchResult,
    PullResult,
    PushResult,
    RefUpdate,
    RemoteInfo,
    TransferProgress,
    add_remote,
    clone,
    fetch,
    list_remotes,
    pull,
    push,
    remove_remote,
)
from mgit.remote.transport import LocalTransport, Transport, open_transport

__all__ = [
    "CloneResult",
    "FetchResult",
    "LocalTransport",
    "PullResult",
    "PushResult",
    "RefUpdate",
    "RemoteInfo",
    "TransferProgress",
    "Transport",
    "add_remote",
    "clone",
    "fetch",
    "list_remotes",
    "open_transport",
    "pull",
    "push",
    "remove_remote",
]
