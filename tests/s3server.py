"""A real S3 server for tests: moto's S3 server on 127.0.0.1, a free port, in a thread.

moto checks S3's conditional-write preconditions (``If-None-Match``/``If-Match``) and then
stores the object in separate steps, without a lock; Amazon S3 evaluates them atomically.
:class:`MotoS3Server` therefore serializes requests (one WSGI call at a time, connections
still concurrent), so that the server behaves like the real service for compare-and-swap
tests.

Usage in a test module::

    from tests.s3server import s3_server, s3_env, s3_bucket  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["S3_TEST_ENV", "MotoS3Server", "make_client", "s3_bucket", "s3_env", "s3_server"]

S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class _Serialized:
    """WSGI middleware: one request inside the app at a time."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            # Materialize the body under the lock: moto's app may stream lazily.
            result = self._app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class MotoS3Server:
    """moto's S3 server on ``127.0.0.1:<free port>`` in a daemon thread.

    Example:
        >>> server = MotoS3Server(); server.start()  # doctest: +SKIP
        >>> server.endpoint_url  # doctest: +SKIP
        'http://127.0.0.1:41234'
        >>> server.stop()  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""

    def start(self) -> None:
        """Start serving; port 0 lets the kernel pick a free port (no race)."""
        from moto.moto_server.threaded_moto_server import MotoRequestHandler
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        app = _Serialized(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def make_client(endpoint_url: str) -> Any:
    """Return a boto3 S3 client for the test server (test credentials), cached per endpoint."""
    import boto3

    with _clients_lock:
        if endpoint_url not in _clients:
            _clients[endpoint_url] = _new_client(boto3, endpoint_url)
        return _clients[endpoint_url]


def _new_client(boto3: Any, endpoint_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    """One moto S3 server for the whole session."""
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    server = MotoS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: MotoS3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the AWS environment (and ``MGIT_S3_ENDPOINT_URL``) at the test server.

    Returns:
        The environment variables set, ready to pass to a subprocess.
    """
    env = dict(S3_TEST_ENV, MGIT_S3_ENDPOINT_URL=s3_server.endpoint_url)
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_bucket(s3_env: dict[str, str]) -> str:
    """Create a fresh bucket on the test server and return its name."""
    name = f"mgit-test-{uuid.uuid4().hex[:12]}"
    make_client(s3_env["MGIT_S3_ENDPOINT_URL"]).create_bucket(Bucket=name)
    return name
