"""S3Transport: a bare mgit store under a prefix of an S3-compatible bucket.

Same layout as on a path (``<prefix>/config``, ``<prefix>/objects/ab/<62 hex>``,
``<prefix>/refs/...``). boto3 is imported when an S3Transport is created, never at module
import of the rest of mgit.

Guarantees, and what they rest on:

- **Objects** are written with ``PUT If-None-Match: *``: write-once, and a PUT is atomic on
  S3, so a reader never sees a partial object. "Already exists" (412) is success.
- **Refs** change by compare-and-swap with S3 conditional writes: creating a ref is
  ``PUT If-None-Match: *``; moving it is ``GET`` (value and ETag), compare with the expected
  value, then ``PUT If-Match: <etag>``; deleting it is ``DELETE If-Match: <etag>``. A 412 or
  409 answer means someone else won, reported as :class:`~mgit.errors.RefConflictError`.
  Amazon S3 evaluates these conditions atomically (since 2024), as do MinIO, Ceph RGW and
  moto's server (when requests are serialized; see ``tests/s3server.py``).
- A server that silently **ignores** conditional headers would turn every CAS into a blind
  overwrite (lost updates). Before its first ref update a transport probes the server (a
  conditional PUT that must fail); a server that ignores the condition is refused with a
  :class:`~mgit.errors.RemoteError` rather than risk a lost update. Conditional DELETE is
  newer on some servers; a server that ignores it makes ref deletion last-writer-wins.
- **An unresponsive endpoint** (one that accepts connections and never answers) fails within
  ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT`, 30; per remote: ``mgit remote add NAME
  URL --timeout S``, or ``MGIT_REMOTE_TIMEOUT``): each of at most :data:`ATTEMPTS` tries gets
  an equal share of it as its connect and read timeout (read: the longest silence, not the
  whole transfer), and every retry says so on stderr (a
  :class:`~mgit.errors.RemoteRetryWarning`). botocore's own retries are off: these are them.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mgit.errors import (
    InvalidRefNameError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    RefConflictError,
    RemoteError,
    RemoteRetryWarning,
)
from mgit.objects.ids import is_oid
from mgit.remote.protocol import (
    MARKER_PREFIX,
    Marker,
    StoredObject,
    encode_store_config,
    object_path,
    parse_ref_value,
    parse_store_config,
    validate_marker_name,
    validate_oid,
    validate_ref_name,
)

__all__ = ["ATTEMPTS", "DEFAULT_TIMEOUT", "S3Transport", "s3_endpoint_from_env"]

#: Seconds an S3 request may go unanswered, all its tries together, unless configured.
DEFAULT_TIMEOUT = 30.0
#: Tries of one request (a connection error, a timeout, a 5xx or throttling answer is retried).
ATTEMPTS = 3
# Answers worth another try: the server is busy or failed, not the request.
_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)

_ENDPOINT_ENV = ("MGIT_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
_CONFLICT = frozenset({"ConditionalRequestConflict", "409", "OperationAborted"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "InvalidToken",
        "ExpiredToken",
    }
)
# Above this many wanted ids in one shard, a prefix listing is cheaper than HEAD requests.
_HEAD_PER_SHARD = 2


def s3_endpoint_from_env() -> str | None:
    """Return the S3 endpoint URL from the environment, or None for AWS's default.

    ``MGIT_S3_ENDPOINT_URL`` wins over ``AWS_ENDPOINT_URL_S3``, which wins over
    ``AWS_ENDPOINT_URL``.
    """
    for var in _ENDPOINT_ENV:
        value = os.environ.get(var)
        if value:
            return value
    return None


_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[tuple[str | None, ...], Any] = {}


def _session(boto3: Any) -> Any:
    """Return a boto3 session for the current AWS environment, reused across transports.

    Building a client from a fresh session re-reads botocore's service models (~0.1 s);
    clients of one session share them. Keyed by the variables that select credentials.
    """
    key = tuple(
        os.environ.get(v)
        for v in (
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        )
    )
    if key not in _SESSIONS:
        _SESSIONS[key] = boto3.session.Session()
    return _SESSIONS[key]


class _Retry(Exception):
    """A failure worth another try; ``error`` is what to raise when no try is left."""

    def __init__(self, reason: str, error: RemoteError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class _Expected(Exception):
    """An S3 answer the caller handles itself (not found, precondition failed, conflict)."""

    def __init__(self, kind: str, code: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.code = code


class S3Transport:
    """A bare store in ``s3://bucket/prefix`` on S3 or an S3-compatible server.

    Args:
        bucket: The bucket (it must exist).
        prefix: The store's key prefix inside the bucket ("" for the bucket's root).
        endpoint_url: The server's URL; default from :func:`s3_endpoint_from_env`.
        client: A ready boto3 S3 client (tests); built from the environment otherwise.
        max_workers: Parallel requests for listing refs and checking objects.
        timeout: Seconds a request may go unanswered, all tries together (default
            :data:`DEFAULT_TIMEOUT`).

    Raises:
        RemoteError: boto3 is not installed.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        max_workers: int = 8,
        timeout: float | None = None,
    ) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
            import botocore.config  # type: ignore[import-untyped]
            import botocore.exceptions  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RemoteError(
                "S3 remotes need boto3", hint="pip install 'mgit[s3]' (or pip install boto3)"
            ) from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or s3_endpoint_from_env()
        self.max_workers = max(1, max_workers)
        self.timeout = DEFAULT_TIMEOUT if timeout is None else max(0.1, float(timeout))
        # Each try gets an equal share, with room left for the back-off between tries.
        self._attempt_timeout = self.timeout / (ATTEMPTS + 0.5)
        self._botocore_exc = botocore.exceptions
        if client is None:
            s3_options: dict[str, Any] = {}
            if self.endpoint_url:
                # Custom servers (MinIO, moto, Ceph) expect path-style addressing.
                s3_options["addressing_style"] = os.environ.get("MGIT_S3_ADDRESSING_STYLE", "path")
            config = botocore.config.Config(
                retries={"total_max_attempts": 1, "mode": "standard"},  # _call retries
                connect_timeout=self._attempt_timeout,
                read_timeout=self._attempt_timeout,
                max_pool_connections=max(10, self.max_workers * 2),
                s3=s3_options or None,
            )
            with _SESSION_LOCK:  # boto3 sessions are not thread-safe; clients are
                client = _session(boto3).client("s3", endpoint_url=self.endpoint_url, config=config)
        self._client = client
        self._cas_checked = False
        self._cas_lock = threading.Lock()
        self._checked_names: set[str] = set()  # creations whose name check_new_refs did

    def __repr__(self) -> str:
        return f"S3Transport({self.url!r}, endpoint_url={self.endpoint_url!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _call(self, op: str, key: str | None, **kwargs: Any) -> Any:
        """Call ``client.<op>``, trying again (up to :data:`ATTEMPTS` times, within
        ``timeout`` seconds in all) after a connection error, a timeout or a busy server;
        map failures to RemoteError or :class:`_Expected`."""
        deadline = time.monotonic() + self.timeout
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._call_once(op, key, **kwargs)
            except _Retry as retry:
                backoff = 0.1 * 2**attempt
                left = deadline - time.monotonic()
                if attempt == ATTEMPTS or left < backoff + min(self._attempt_timeout, 1.0):
                    raise retry.error from retry.error.__cause__
                warnings.warn(
                    RemoteRetryWarning(
                        f"{self.url}: {retry.reason}; retrying ({attempt + 1}/{ATTEMPTS})"
                    ),
                    stacklevel=2,
                )
                time.sleep(backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, op: str, key: str | None, **kwargs: Any) -> Any:
        exc_mod = self._botocore_exc
        if key is not None:
            kwargs["Key"] = key
        try:
            return getattr(self._client, op)(Bucket=self.bucket, **kwargs)
        except exc_mod.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _RETRY_CODES or status in _RETRY_CODES:
                raise _Retry(
                    f"S3 {op} answered {code or status}",
                    self._client_error(code, status, str(err.get("Message", "")), op, key),
                ) from None
            if code in _NOT_FOUND or (status == "404" and code not in ("NoSuchBucket",)):
                raise _Expected("not_found", code) from None
            if code in _PRECONDITION or status == "412":
                raise _Expected("precondition", code) from None
            if code in _CONFLICT or status == "409":
                raise _Expected("conflict", code) from None
            raise self._client_error(code, status, str(err.get("Message", "")), op, key) from exc
        except (exc_mod.NoCredentialsError, exc_mod.PartialCredentialsError) as exc:
            raise RemoteError(
                f"no AWS credentials for {self.url}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
            ) from exc
        except (
            exc_mod.EndpointConnectionError,
            exc_mod.ConnectTimeoutError,
            exc_mod.ConnectionClosedError,
            exc_mod.ReadTimeoutError,
        ) as exc:
            where = self.endpoint_url or "the AWS S3 endpoint"
            hint = (
                "check the endpoint (MGIT_S3_ENDPOINT_URL) and the network; the time "
                "allowed is the remote's timeout ('mgit remote add NAME URL --timeout S', "
                "or MGIT_REMOTE_TIMEOUT)"
            )
            if isinstance(exc, exc_mod.EndpointConnectionError) and not isinstance(
                exc, exc_mod.ConnectTimeoutError
            ):
                # Refused or no such host: nothing listens there, another try will not help.
                raise RemoteError(
                    f"cannot connect to S3 at {where} for {self.url}",
                    hint="check the endpoint (MGIT_S3_ENDPOINT_URL) and the network",
                ) from exc
            silent = isinstance(exc, (exc_mod.ReadTimeoutError, exc_mod.ConnectTimeoutError))
            why = (
                f"no answer within {self._attempt_timeout:.3g} s" if silent else "connection closed"
            )
            error = RemoteError(
                f"cannot reach S3 at {where} for {self.url}: "
                + (
                    f"no answer within {self.timeout:g} s"
                    if silent
                    else "the connection keeps closing"
                ),
                hint=hint,
            )
            error.__cause__ = exc
            raise _Retry(f"S3 {op}: {why}", error) from exc
        except exc_mod.BotoCoreError as exc:
            raise RemoteError(f"S3 request to {self.url} failed: {exc}") from exc

    def _client_error(
        self, code: str, status: str, message: str, op: str, key: str | None
    ) -> RemoteError:
        if code == "NoSuchBucket":
            return RemoteError(
                f"no such bucket: {self.bucket} ({self.url})",
                hint="create the bucket, or check the remote URL and endpoint",
            )
        if code in _DENIED:
            return RemoteError(
                f"access denied to {self.url} ({code})",
                hint="check the credentials and the bucket policy",
            )
        what = f" {key}" if key else ""
        detail = f": {message}" if message else ""
        return RemoteError(f"S3 {op}{what} on {self.url} failed ({code or status}){detail}")

    def _get(
        self, rel: str, *, max_size: int | None = None, oid: str = ""
    ) -> tuple[bytes, str] | None:
        """Return (body, etag) of a key, or None if it does not exist; a body larger than
        ``max_size`` is refused before it is read (by its Content-Length) or past the limit."""
        try:
            resp = self._call("get_object", self._key(rel))
        except _Expected as exp:
            if exp.kind == "not_found":
                return None
            raise RemoteError(f"S3 GET {rel} on {self.url} failed ({exp.code})") from None
        body_stream = resp["Body"]
        length = resp.get("ContentLength")
        if max_size is not None and isinstance(length, int) and length > max_size:
            body_stream.close()
            raise ObjectTooLargeError(oid or rel, length, max_size, what="stored bytes")
        try:
            body = body_stream.read() if max_size is None else body_stream.read(max_size + 1)
        except Exception as exc:  # a connection dropped mid-body
            raise RemoteError(f"reading {rel} from {self.url} failed: {exc}") from exc
        if max_size is not None and len(body) > max_size:
            body_stream.close()
            raise ObjectTooLargeError(oid or rel, len(body), max_size, what="stored bytes")
        return body, str(resp.get("ETag", ""))

    def _list(self, rel_prefix: str) -> Iterator[str]:
        """Yield store-relative keys under ``rel_prefix``."""
        for rel, _item in self._list_items(rel_prefix):
            yield rel

    def _list_items(self, rel_prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(store-relative key, listing entry)`` under ``rel_prefix`` (the entry has
        ``Size`` and ``LastModified``)."""
        full = self._key(rel_prefix)
        strip = len(self._key(""))
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                resp = self._call("list_objects_v2", None, **kwargs)
            except _Expected as exp:
                raise RemoteError(
                    f"S3 listing of {full} on {self.url} failed ({exp.code})"
                ) from None
            for item in resp.get("Contents", ()):
                yield item["Key"][strip:], item
            if not resp.get("IsTruncated"):
                return
            token = resp.get("NextContinuationToken")

    def _list_once(self, rel_prefix: str) -> set[str] | None:
        """Object ids under ``rel_prefix`` if one listing request holds them all, else None."""
        try:
            resp = self._call("list_objects_v2", None, Prefix=self._key(rel_prefix), MaxKeys=1000)
        except _Expected as exp:
            raise RemoteError(f"S3 listing on {self.url} failed ({exp.code})") from None
        if resp.get("IsTruncated"):
            return None
        out = set()
        for item in resp.get("Contents", ()):
            parts = item["Key"].rsplit("/", 2)
            if len(parts) == 3 and is_oid(parts[1] + parts[2]):
                out.add(parts[1] + parts[2])
        return out

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.max_workers == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
            return list(pool.map(fn, items))

    # -- config -----------------------------------------------------------------------------

    def read_config(self) -> dict[str, object] | None:
        """Return the store's config, or None when there is no store under the prefix.

        Raises:
            RemoteError: No such bucket, access denied, unreachable, or a damaged config.
        """
        got = self._get("config")
        if got is None:
            return None
        return parse_store_config(got[0], self.url)

    def init(self, config: dict[str, object]) -> None:
        """Create the store's config if absent (``PUT If-None-Match: *``; idempotent).

        Raises:
            RemoteError: The bucket is missing or not writable, or the prefix holds other
                keys than a store's.
        """
        try:
            resp = self._call("list_objects_v2", None, Prefix=self._key(""), MaxKeys=100)
        except _Expected as exp:
            raise RemoteError(f"S3 listing on {self.url} failed ({exp.code})") from None
        strip = len(self._key(""))
        for item in resp.get("Contents", ()):
            rel = item["Key"][strip:]
            if rel != "config" and not rel.startswith(("objects/", "refs/", "tmp/", MARKER_PREFIX)):
                raise RemoteError(
                    f"{self.url} is not empty and holds no mgit store (found {rel})",
                    hint="use an empty or new prefix for a remote",
                )
        data = encode_store_config(config)
        try:
            self._call("put_object", self._key("config"), Body=data, IfNoneMatch="*")
        except _Expected as exp:
            if exp.kind in ("precondition", "conflict"):
                return  # someone created it first
            raise RemoteError(
                f"cannot create the store config on {self.url} ({exp.code})"
            ) from None

    # -- refs -------------------------------------------------------------------------------

    def _get_ref(self, name: str) -> tuple[str | None, str | None]:
        got = self._get(name)
        if got is None:
            return None, None
        return parse_ref_value(name, got[0], self.url), got[1]

    def read_ref(self, name: str) -> str | None:
        """Return the id ``name`` points at, or None if absent.

        Raises:
            InvalidRefNameError: ``name`` is not a valid ref name.
            RemoteError: The request failed or the ref is damaged.
        """
        validate_ref_name(name)
        return self._get_ref(name)[0]

    def list_refs(self) -> dict[str, str]:
        """Return every ref, ``{name: oid}`` (fetched in parallel).

        Raises:
            RemoteError: The request failed or a ref is damaged.
        """
        names = []
        for rel in self._list("refs/"):
            try:
                names.append(validate_ref_name(rel))
            except InvalidRefNameError:
                continue  # lock, temp or foreign keys are not refs
        values = self._map(lambda n: self._get_ref(n)[0], names)
        return {n: v for n, v in sorted(zip(names, values)) if v is not None}

    def _ensure_conditional_writes(self) -> None:
        """Refuse a server that ignores ``If-None-Match`` (CAS would silently be lost)."""
        with self._cas_lock:
            if self._cas_checked:
                return
            key = self._key(f"tmp/cas-probe-{uuid.uuid4().hex}")
            try:
                self._call("put_object", key, Body=b"1", IfNoneMatch="*")
                try:
                    self._call("put_object", key, Body=b"2", IfNoneMatch="*")
                except _Expected as exp:
                    if exp.kind not in ("precondition", "conflict"):
                        raise
                else:
                    raise RemoteError(
                        f"the S3 server of {self.url} ignores conditional writes",
                        hint="refs cannot be updated safely there; use a server that supports "
                        "If-None-Match/If-Match (AWS S3, MinIO, Ceph RGW)",
                    )
            except _Expected as exp:
                raise RemoteError(
                    f"the S3 server of {self.url} rejected a conditional write ({exp.code})"
                ) from None
            finally:
                try:
                    self._call("delete_object", key)
                except (_Expected, RemoteError):
                    pass
            self._cas_checked = True

    def _check_df_conflict(self, name: str) -> None:
        """Refuse refs/heads/a when refs/heads/a/... exists and the other way round.

        Paths cannot hold both; refusing them here too keeps every remote fetchable into a
        local repository. (Checked before the conditional create, so not atomic with it.)
        """
        parts = name.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(3, len(parts))]
        hits = self._map(lambda p: self._get(p) is not None, prefixes)
        for prefix, hit in zip(prefixes, hits):
            if hit:
                raise InvalidRefNameError(name, f"conflicts with existing ref {prefix}")
        try:
            resp = self._call("list_objects_v2", None, Prefix=self._key(name + "/"), MaxKeys=1)
        except _Expected:
            return
        if resp.get("KeyCount", 0) or resp.get("Contents"):
            raise InvalidRefNameError(name, "refs exist below this name")

    def check_new_refs(self, names: Iterable[str]) -> None:
        """Check, with one listing of ``refs/`` (a request per 1,000 refs), that none of
        ``names`` collides with an existing ref (``refs/heads/a`` beside ``refs/heads/a/b``),
        so that their :meth:`update_ref` creations skip that check (two requests each
        otherwise). Like the check it replaces, it is not atomic with the creation.

        Raises:
            InvalidRefNameError: A name collides with an existing ref.
            RemoteError: The listing failed.
        """
        names = [validate_ref_name(n) for n in names]
        existing = set(self._list("refs/"))
        for name in names:
            parts = name.split("/")
            for i in range(3, len(parts)):
                prefix = "/".join(parts[:i])
                if prefix in existing:
                    raise InvalidRefNameError(name, f"conflicts with existing ref {prefix}")
        wanted = set(names)
        for key in existing:
            parts = key.split("/")
            for i in range(3, len(parts)):
                if "/".join(parts[:i]) in wanted:
                    raise InvalidRefNameError("/".join(parts[:i]), "refs exist below this name")
        with self._cas_lock:
            self._checked_names.update(names)

    def update_ref(self, name: str, old: str | None, new: str | None) -> None:
        """Compare-and-swap ``name`` from ``old`` to ``new`` with S3 conditional writes.

        Args:
            name: The ref, e.g. ``refs/heads/org/bert``.
            old: The value expected now; None means the ref must not exist.
            new: The value to set; None deletes the ref.

        Raises:
            InvalidRefNameError: ``name`` is not a valid ref name or collides with another.
            RefConflictError: The ref's value is not ``old`` (or changed during the update).
            RemoteError: The request failed, or the server ignores conditional writes.
        """
        validate_ref_name(name)
        if old is not None:
            validate_oid(old)
        if new is not None:
            validate_oid(new)
        key = self._key(name)
        if old is None:
            if new is None:
                actual = self.read_ref(name)
                if actual is not None:
                    raise RefConflictError(name, None, actual)
                return
            self._ensure_conditional_writes()
            with self._cas_lock:
                checked = name in self._checked_names
                self._checked_names.discard(name)
            if not checked:
                self._check_df_conflict(name)
            try:
                self._call("put_object", key, Body=f"{new}\n".encode(), IfNoneMatch="*")
            except _Expected as exp:
                if exp.kind == "not_found":
                    raise RemoteError(f"S3 PUT {name} on {self.url} failed ({exp.code})") from None
                raise RefConflictError(name, None, self.read_ref(name)) from None
            return
        actual, etag = self._get_ref(name)
        if actual != old or etag is None:
            raise RefConflictError(name, old, actual)
        self._ensure_conditional_writes()
        try:
            if new is None:
                self._call("delete_object", key, IfMatch=etag)
            else:
                self._call("put_object", key, Body=f"{new}\n".encode(), IfMatch=etag)
        except _Expected:
            # 412: the ETag moved; 409: a concurrent conditional write; 404: deleted meanwhile.
            raise RefConflictError(name, old, self.read_ref(name)) from None

    # -- objects ----------------------------------------------------------------------------

    def _head(self, oid: str) -> bool:
        try:
            self._call("head_object", self._key(object_path(oid)))
        except _Expected as exp:
            if exp.kind == "not_found":
                return False
            raise RemoteError(f"S3 HEAD {oid} on {self.url} failed ({exp.code})") from None
        return True

    def has_objects(self, oids: Iterable[str]) -> set[str]:
        """Return the subset of ``oids`` present: HEAD requests for sparse shards, a prefix
        listing for shards with many wanted ids, in parallel.

        Raises:
            RemoteError: A request failed.
        """
        wanted_all = {validate_oid(oid) for oid in oids}
        if len(wanted_all) > _HEAD_PER_SHARD * 4:
            # A small store lists in one request: cheaper than anything per shard.
            listed = self._list_once("objects/")
            if listed is not None:
                return wanted_all & listed
        by_shard: dict[str, set[str]] = {}
        for oid in wanted_all:
            by_shard.setdefault(oid[:2], set()).add(oid)

        def check(item: tuple[str, set[str]]) -> set[str]:
            shard, wanted = item
            if len(wanted) <= _HEAD_PER_SHARD:
                return {o for o in wanted if self._head(o)}
            listed = {shard + rel.rsplit("/", 1)[-1] for rel in self._list(f"objects/{shard}/")}
            return wanted & listed

        present: set[str] = set()
        for found in self._map(check, sorted(by_shard.items())):
            present |= found
        return present

    def get_object(self, oid: str, *, max_size: int | None = None) -> bytes:
        """Return the stored bytes of ``oid``.

        Raises:
            ObjectNotFoundError: The store does not hold it.
            ObjectTooLargeError: It is larger than ``max_size`` (refused before it is read).
            RemoteError: The request failed.
        """
        got = self._get(object_path(validate_oid(oid)), max_size=max_size, oid=oid)
        if got is None:
            raise ObjectNotFoundError(oid, context=self.url)
        return got[0]

    def put_object(self, oid: str, data: bytes) -> None:
        """Store ``data`` as ``oid`` with ``PUT If-None-Match: *``; present = success.

        Raises:
            RemoteError: The request failed.
        """
        key = self._key(object_path(validate_oid(oid)))
        for _attempt in range(3):
            try:
                self._call("put_object", key, Body=data, IfNoneMatch="*")
                return
            except _Expected as exp:
                if exp.kind == "precondition":
                    return  # already there: write-once
                if exp.kind == "conflict" and self._head(oid):
                    return  # a concurrent writer of the same object finished first
        raise RemoteError(f"cannot write object {oid} to {self.url}: repeated write conflicts")

    def iter_objects(self) -> Iterator[str]:
        """Yield the id of every object under the prefix (not part of the Transport protocol;
        for inspecting a remote).

        Raises:
            RemoteError: A listing request failed.
        """
        for rel in self._list("objects/"):
            parts = rel.split("/")
            if len(parts) == 3 and len(parts[1]) == 2:
                oid = parts[1] + parts[2]
                if is_oid(oid):
                    yield oid

    # -- remote gc (MaintainedTransport) ----------------------------------------------------

    def write_marker(self, name: str, data: bytes) -> None:
        """Create or refresh ``inflight/<name>`` (a plain PUT: it moves ``LastModified``).

        Raises:
            RemoteError: The request failed.
        """
        key = self._key(MARKER_PREFIX + validate_marker_name(name))
        try:
            self._call("put_object", key, Body=data)
        except _Expected as exp:
            raise RemoteError(f"S3 PUT {key} on {self.url} failed ({exp.code})") from None

    def delete_marker(self, name: str) -> None:
        """Remove ``inflight/<name>``; absent is success.

        Raises:
            RemoteError: The request failed.
        """
        key = self._key(MARKER_PREFIX + validate_marker_name(name))
        try:
            self._call("delete_object", key)
        except _Expected as exp:
            if exp.kind != "not_found":
                raise RemoteError(f"S3 DELETE {key} on {self.url} failed ({exp.code})") from None

    def list_markers(self) -> list[Marker]:
        """Every in-flight marker with its ``LastModified`` (foreign keys skipped).

        Raises:
            RemoteError: The listing failed.
        """
        out = []
        for rel, item in self._list_items(MARKER_PREFIX):
            name = rel[len(MARKER_PREFIX) :]
            try:
                validate_marker_name(name)
            except ValueError:
                continue
            out.append(Marker(name, _timestamp(item)))
        return sorted(out, key=lambda m: m.name)

    def iter_stored_objects(self) -> Iterator[StoredObject]:
        """Every object with its size and ``LastModified`` (one paginated listing).

        Raises:
            RemoteError: A listing request failed.
        """
        for rel, item in self._list_items("objects/"):
            parts = rel.split("/")
            if len(parts) == 3 and len(parts[1]) == 2 and is_oid(parts[1] + parts[2]):
                yield StoredObject(parts[1] + parts[2], int(item.get("Size", 0)), _timestamp(item))

    def get_object_head(self, oid: str, size: int) -> bytes:
        """The first ``size`` bytes of ``oid`` (a ranged GET).

        Raises:
            ObjectNotFoundError: The store does not hold it.
            RemoteError: The request failed.
        """
        key = self._key(object_path(validate_oid(oid)))
        try:
            resp = self._call("get_object", key, Range=f"bytes=0-{max(size, 1) - 1}")
        except _Expected as exp:
            if exp.kind == "not_found":
                raise ObjectNotFoundError(oid, context=self.url) from None
            raise RemoteError(f"S3 GET {oid} on {self.url} failed ({exp.code})") from None
        try:
            return bytes(resp["Body"].read(size))[:size]
        except Exception as exc:  # a connection dropped mid-body
            raise RemoteError(f"reading {oid} from {self.url} failed: {exc}") from exc

    def delete_object(self, oid: str, *, written_before: float) -> bool:
        """Delete ``oid`` if its ``LastModified`` is before ``written_before``. (A HEAD reads
        the date; S3 has no conditional delete on a date, so a rewrite between the HEAD and
        the DELETE is not seen: the in-flight markers, not this check, keep pushes safe.)

        Raises:
            RemoteError: A request failed.
        """
        key = self._key(object_path(validate_oid(oid)))
        try:
            head = self._call("head_object", key)
        except _Expected as exp:
            if exp.kind == "not_found":
                return False
            raise RemoteError(f"S3 HEAD {oid} on {self.url} failed ({exp.code})") from None
        modified = head.get("LastModified")
        if modified is not None and modified.timestamp() >= written_before:
            return False
        try:
            self._call("delete_object", key)
        except _Expected as exp:
            if exp.kind == "not_found":
                return False
            raise RemoteError(f"S3 DELETE {oid} on {self.url} failed ({exp.code})") from None
        return True


def _timestamp(item: dict[str, Any]) -> float:
    """A listing entry's ``LastModified`` in seconds since the epoch (0 when absent)."""
    modified = item.get("LastModified")
    return float(modified.timestamp()) if modified is not None else 0.0
