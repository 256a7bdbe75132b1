"""Opening the transport a remote URL names (a path, ``file://`` or ``s3://``).

boto3 is imported only when an ``s3://`` URL is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mgit.errors import RemoteError
from mgit.remote.local import LocalTransport
from mgit.remote.protocol import Transport

__all__ = ["open_transport"]


def open_transport(url: str, *, timeout: float | None = None) -> Transport:
    """Open the transport a remote URL names.

    Args:
        url: A path (``/mnt/models``, ``../shared``; a repository with a working tree is
            read through its ``.mgit`` folder), ``file:///path``, or
            ``s3://bucket/prefix``. For S3, the endpoint comes from ``MGIT_S3_ENDPOINT_URL``,
            ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, and credentials and region from
            the usual AWS environment variables and config files.

        timeout: For S3, seconds an unresponsive endpoint is waited for, all retries together
            (default ``mgit.remote.s3.DEFAULT_TIMEOUT``).

    Returns:
        A :class:`LocalTransport` or an ``S3Transport``.

    Raises:
        RemoteError: The URL's scheme is not supported, or it names no bucket.
    """
    if not url:
        raise RemoteError("empty remote URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        from mgit.remote.s3 import S3Transport  # boto3 only on this path

        if not parts.netloc:
            raise RemoteError(f"no bucket in remote URL {url!r}", hint="use s3://BUCKET/PREFIX")
        return S3Transport(parts.netloc, unquote(parts.path).strip("/"), timeout=timeout)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise RemoteError(f"file URL with a host is not supported: {url!r}")
        return _local(unquote(parts.path))
    if scheme and len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise RemoteError(
            f"unsupported remote URL {url!r}",
            hint="use a path, file:///PATH or s3://BUCKET/PREFIX",
        )
    return _local(os.path.expanduser(url))


def _local(path: str) -> LocalTransport:
    """A path transport; a repository with a working tree is served from its ``.mgit``."""
    inner = Path(path) / ".mgit"
    if (inner / "config").is_file():
        return LocalTransport(inner)
    return LocalTransport(path)
