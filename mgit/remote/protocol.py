"""The Transport protocol: byte-level access to a remote bare mgit store, and its helpers.

A remote is a *bare mgit store*, laid out identically on a path and under an S3 prefix::

    <root>/config                JSON: {"format_version": 2, "hash": "blake3", "bare": true, ...}
    <root>/objects/ab/<62 hex>   one file per object, named by its id; bytes opaque here
    <root>/refs/heads/<model>    "<64 hex>\\n" (model names may contain '/')
    <root>/refs/tags/<tag>

A transport moves opaque object bytes and compare-and-swaps refs; it never parses objects.
Verifying what comes back (the id is a hash of the decoded content) is the job of the
receiving object store, see :mod:`mgit.remote.fetch`.

Implementations: :class:`mgit.remote.local.LocalTransport` (a path) and
``mgit.remote.s3.S3Transport`` (S3-compatible object storage);
:func:`mgit.remote.open.open_transport` picks one from a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mgit import format as fmt
from mgit.errors import InvalidRefNameError, RemoteError, UnsupportedFormatError
from mgit.objects.ids import is_oid
from mgit.refs.store import TESTS, check_name

__all__ = [
    "MARKER_PREFIX",
    "REMOTE_REF_PREFIXES",
    "RESERVED_SUFFIXES",
    "MaintainedTransport",
    "Marker",
    "StoredObject",
    "Transport",
    "encode_store_config",
    "object_path",
    "parse_ref_value",
    "parse_store_config",
    "validate_marker_name",
    "validate_oid",
    "validate_ref_name",
]

REMOTE_REF_PREFIXES = ("refs/heads/", "refs/tags/")
"""The refs a remote store holds: model lines and tags (and the one ref ``refs/tests``)."""

#: Suffixes of the transports' own scratch files; a ref name may not end with them.
RESERVED_SUFFIXES = (".lock", ".tmp")

#: Where pushes and remote gcs announce themselves: ``<root>/inflight/<kind>-<32 hex>``
#: (see :mod:`mgit.remote.inflight`).
MARKER_PREFIX = "inflight/"
_MARKER_NAME = re.compile(r"^(push|gc)-[0-9a-f]{32}$")


def validate_marker_name(name: str) -> str:
    """Return ``name`` if it names an in-flight marker (``push-<32 hex>`` or ``gc-<32 hex>``).

    Raises:
        ValueError: any other name (a programming error: names are made by
            :mod:`mgit.remote.inflight`; listings skip foreign names).
    """
    if not isinstance(name, str) or not _MARKER_NAME.match(name):
        raise ValueError(f"not a marker name: {name!r}")
    return name


@dataclass(frozen=True)
class Marker:
    """An in-flight marker as a listing shows it.

    Attributes:
        name: ``push-<32 hex>`` or ``gc-<32 hex>``.
        mtime: When it was last written, by the remote's clock (file mtime, S3
            ``LastModified``), seconds since the epoch.
    """

    name: str
    mtime: float

    @property
    def kind(self) -> str:
        """``push`` or ``gc``."""
        return self.name.split("-", 1)[0]


@dataclass(frozen=True)
class StoredObject:
    """An object as a listing of the store shows it: id, bytes, and when it was written
    (by the remote's clock: file mtime, S3 ``LastModified``)."""

    oid: str
    size: int
    mtime: float


def validate_oid(oid: str) -> str:
    """Return ``oid`` if it is a well-formed object id.

    Args:
        oid: The candidate id.

    Returns:
        The same string.

    Raises:
        ValueError: ``oid`` is not 64 lowercase hex digits (a programming error: ids handed
            to a transport come from the local store or from validated remote refs).
    """
    if not isinstance(oid, str) or not is_oid(oid):
        raise ValueError(f"not an object id: {oid!r}")
    return oid


def validate_ref_name(name: str) -> str:
    """Return ``name`` if it is a ref name a remote store may hold.

    A remote holds ``refs/heads/<model>``, ``refs/tags/<tag>`` and ``refs/tests``; the part after the prefix
    follows the local rules (:func:`mgit.refs.store.check_name`: letters, digits, ``._+-``
    and ``/``, no ``..``, no component starting with ``.`` or ``-`` or ending in ``.lock``),
    and no component may end in ``.tmp`` (the transports' temp files). Such a name can never
    reach outside the store's root, on a path or under an S3 prefix.

    Args:
        name: The candidate name, e.g. ``refs/heads/org/bert``.

    Returns:
        The same string.

    Raises:
        InvalidRefNameError: The name is not allowed.
    """
    if not isinstance(name, str):
        raise InvalidRefNameError(str(name), "not a string")
    if name == TESTS:
        return name  # the test notes (mgit.lifecycle.notes)
    prefix = next((p for p in REMOTE_REF_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        raise InvalidRefNameError(name, "a remote ref is refs/heads/NAME or refs/tags/NAME")
    rest = name[len(prefix) :]
    check_name(rest, what="ref name")
    if any(part.endswith(RESERVED_SUFFIXES) for part in rest.split("/")):
        raise InvalidRefNameError(name, "a component may not end with '.lock' or '.tmp'")
    return name


def parse_ref_value(name: str, data: bytes, where: str) -> str:
    """Parse the stored bytes of a remote ref into an object id.

    Args:
        name: The ref's name (for the message).
        data: The ref file's bytes, ``b"<64 hex>\\n"``.
        where: The remote's URL (for the message).

    Returns:
        The object id.

    Raises:
        RemoteError: The stored value is not an object id (nothing read from a remote is
            trusted).
    """
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not is_oid(text):  # nothing read from a remote is trusted
        raise RemoteError(
            f"ref {name} on {where} is damaged: not an object id",
            hint="repair or delete the ref on the remote",
        )
    return text


def object_path(oid: str) -> str:
    """Return the store-relative path of an object: ``objects/ab/<62 hex>``."""
    return f"objects/{oid[:2]}/{oid[2:]}"


def parse_store_config(data: bytes, where: str) -> dict[str, object]:
    """Parse a remote store's config file (:func:`mgit.format.parse_config`, no version check).

    Raises:
        RemoteError: Not JSON, or not a JSON object (a remote's damage is a remote error).
    """
    what = f"remote {where}"
    try:
        return fmt.parse_config(data, what)
    except UnsupportedFormatError as exc:
        message = exc.message
        if not message.endswith("is not a JSON object"):
            message = f"the config of {what} is not valid JSON"
        raise RemoteError(message) from exc


def encode_store_config(config: dict[str, object]) -> bytes:
    """The bytes a transport writes for a new store's ``config``, exactly as given."""
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


@runtime_checkable
class Transport(Protocol):
    """Byte-level access to a remote bare store. Implementations are thread-safe.

    This is all push, fetch, pull and clone use; the transports also list their objects
    (``iter_objects``) for inspection and tests.
    """

    url: str

    def read_config(self) -> dict[str, object] | None:
        """Return the store's config, or None when there is no store at the URL."""
        ...

    def init(self, config: dict[str, object]) -> None:
        """Create the bare store with ``config`` if it is absent (idempotent)."""
        ...

    def list_refs(self) -> dict[str, str]:
        """Return every ref: ``{"refs/heads/x": oid, "refs/tags/t": oid}``."""
        ...

    def read_ref(self, name: str) -> str | None:
        """Return the id a ref points at, or None if it does not exist."""
        ...

    def update_ref(self, name: str, old: str | None, new: str | None) -> None:
        """Compare-and-swap a ref: ``old`` None = must not exist, ``new`` None = delete."""
        ...

    def has_objects(self, oids: Iterable[str]) -> set[str]:
        """Return the subset of ``oids`` the store holds."""
        ...

    def get_object(self, oid: str, *, max_size: int | None = None) -> bytes:
        """Return an object's stored bytes; ObjectNotFoundError if absent; an
        :class:`~mgit.errors.ObjectTooLargeError` when larger than ``max_size``, refused
        before the bytes are read."""
        ...

    def put_object(self, oid: str, data: bytes) -> None:
        """Store an object atomically, write-once; already present is success."""
        ...


@runtime_checkable
class MaintainedTransport(Transport, Protocol):
    """A transport that also supports remote gc: in-flight markers, listing objects with their
    age, reading an object's first bytes, deleting objects. Both transports are one."""

    def write_marker(self, name: str, data: bytes) -> None:
        """Create or rewrite (refresh) the in-flight marker ``name``."""
        ...

    def delete_marker(self, name: str) -> None:
        """Remove the marker ``name``; absent is success."""
        ...

    def list_markers(self) -> list[Marker]:
        """Every in-flight marker (foreign names skipped)."""
        ...

    def iter_stored_objects(self) -> Iterator[StoredObject]:
        """Every object of the store, with its size and age."""
        ...

    def get_object_head(self, oid: str, size: int) -> bytes:
        """The first ``size`` bytes of an object (all of it when shorter);
        ObjectNotFoundError if absent."""
        ...

    def delete_object(self, oid: str, *, written_before: float) -> bool:
        """Delete an object unless it was written (or refreshed) at or after
        ``written_before`` (the remote's clock); True if it was deleted."""
        ...
