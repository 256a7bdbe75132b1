"""Remotes: transports to bare mgit stores (a path, S3) and push/fetch/pull/clone.

``mgit.remote.transport`` holds the :class:`Transport` protocol and the path transport;
``mgit.remote.s3`` the S3 transport (boto3 is imported only there, when one is opened).
"""

from __future__ import annotations

from mgit.remote.transport import LocalTransport, Transport, open_transport

__all__ = ["LocalTransport", "Transport", "open_transport"]
