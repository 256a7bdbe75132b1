"""Transport contract: one class of tests, run against every Transport implementation.

LocalTransport runs on ``tmp_path``; S3Transport on a real moto S3 server listening on
127.0.0.1 (``tests/s3server.py``), with a fresh bucket per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mgit.errors import (
    InvalidRefNameError,
    LockHeldError,
    ObjectNotFoundError,
    RefConflictError,
    RemoteError,
)
from mgit.format import new_config
from mgit.remote.local import LocalTransport
from mgit.remote.open import open_transport
from mgit.remote.protocol import Transport, validate_ref_name
from tests import s3server
from tests.s3server import make_client

# The S3 fixtures (a moto server on 127.0.0.1, its environment, a fresh bucket).
s3_server = s3server.s3_server
s3_env = s3server.s3_env
s3_bucket = s3server.s3_bucket

A = "a1" + "0" * 62
B = "b2" + "1" * 62
C = "c3" + "2" * 62


def oid(n: int, shard: str | None = None) -> str:
    """Return a well-formed, distinct object id (optionally in a given shard)."""
    text = f"{n:064x}"
    return (shard + text[2:]) if shard else text


BAD_NAMES = [
    "",
    "refs",
    "refs/heads",
    "heads/bert",
    "/refs/heads/bert",
    "refs/heads/../../etc/passwd",
    "refs/heads/..",
    "refs/heads/./bert",
    "refs/heads//bert",
    "refs/heads/bert/",
    "refs/heads/.hidden",
    "refs/heads/bert.lock",
    "refs/heads/bert.tmp",
    "refs/heads/has space",
    "refs/heads/back\\slash",
    "refs/heads/new\nline",
    "refs/heads/ünï",
    "refs/heads/star*",
    "../refs/heads/bert",
    "refs/remotes/origin/bert",
    "refs/other/bert",
    "refs/heads/-dash",
    "refs/heads/a..b",
]


class TransportContract:
    """What every Transport promises. Subclasses provide ``factory`` and ``raw_put``."""

    @pytest.fixture
    def factory(self) -> Callable[[], Transport]:
        """Return a callable making a new, independent transport to one empty store."""
        raise NotImplementedError

    @pytest.fixture
    def raw_put(self, factory: Callable[[], Transport]) -> Callable[[str, bytes], None]:
        """Return a callable writing raw bytes at a store-relative path (to damage it)."""
        raise NotImplementedError

    @pytest.fixture
    def unreachable(self) -> Transport:
        """Return a transport to a store that cannot be reached."""
        raise NotImplementedError

    @pytest.fixture
    def t(self, factory: Callable[[], Transport]) -> Transport:
        transport = factory()
        transport.init(new_config(bare=True))
        return transport

    # -- config -----------------------------------------------------------------------------

    def test_protocol(self, t: Transport) -> None:
        assert isinstance(t, Transport)
        assert isinstance(t.url, str) and t.url

    def test_config_absent_then_created_once(self, factory: Callable[[], Transport]) -> None:
        t = factory()
        assert t.read_config() is None
        t.init({"format_version": 1, "hash": "blake3", "bare": True, "first": True})
        t.init({"format_version": 1, "hash": "blake3", "bare": True, "second": True})
        assert t.read_config() == {
            "format_version": 1,
            "hash": "blake3",
            "bare": True,
            "first": True,
        }
        assert t.list_refs() == {}
        assert list(t.iter_objects()) == []

    def test_init_refuses_a_location_holding_other_things(
        self, factory: Callable[[], Transport], raw_put: Callable[[str, bytes], None]
    ) -> None:
        raw_put("notes/todo.txt", b"someone's files")
        t = factory()
        with pytest.raises(RemoteError, match="not empty and holds no mgit store"):
            t.init(new_config(bare=True))
        assert t.read_config() is None

    def test_damaged_config_is_a_remote_error(
        self, t: Transport, raw_put: Callable[[str, bytes], None]
    ) -> None:
        raw_put("config", b"{not json")
        with pytest.raises(RemoteError, match="not valid JSON"):
            t.read_config()

    # -- objects ----------------------------------------------------------------------------

    def test_put_get_has_iter(self, t: Transport) -> None:
        objects = {oid(i): f"object {i}".encode() * (i + 1) for i in range(5)}
        # Many ids in one shard: exercises the listing path of has_objects on S3.
        objects.update({oid(100 + i, "7f"): bytes([i]) * 10 for i in range(6)})
        objects[oid(999)] = b""  # an empty object is a valid object
        for o, data in objects.items():
            t.put_object(o, data)
        for o, data in objects.items():
            assert t.get_object(o) == data
        absent = {oid(5000 + i) for i in range(4)} | {oid(7000 + i, "7f") for i in range(4)}
        assert t.has_objects(set(objects) | absent) == set(objects)
        assert t.has_objects([]) == set()
        assert sorted(t.iter_objects()) == sorted(objects)

    def test_objects_are_write_once(self, t: Transport) -> None:
        t.put_object(A, b"first")
        t.put_object(A, b"first")  # same bytes again: success
        t.put_object(A, b"second")  # already present: success, first bytes kept
        assert t.get_object(A) == b"first"
        assert list(t.iter_objects()) == [A]

    def test_missing_object(self, t: Transport) -> None:
        with pytest.raises(ObjectNotFoundError) as info:
            t.get_object(A)
        assert info.value.oid == A
        assert isinstance(info.value, KeyError)
        assert t.has_objects([A]) == set()

    def test_malformed_oid_is_refused(self, t: Transport) -> None:
        for bad in ["", "A1" + "0" * 62, "a1" + "0" * 61, "../" + "0" * 61, "g" * 64]:
            with pytest.raises(ValueError):
                t.put_object(bad, b"x")
            with pytest.raises(ValueError):
                t.get_object(bad)
            with pytest.raises(ValueError):
                t.update_ref("refs/heads/m", None, bad)

    def test_concurrent_put_of_one_object(self, factory: Callable[[], Transport]) -> None:
        transports = [factory() for _ in range(6)]
        transports[0].init(new_config(bare=True))
        data = os.urandom(200_000)
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(transports))

        def put(tr: Transport) -> None:
            try:
                barrier.wait()
                tr.put_object(A, data)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=put, args=(tr,)) for tr in transports]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert transports[0].get_object(A) == data
        assert list(transports[0].iter_objects()) == [A]

    # -- refs -------------------------------------------------------------------------------

    def test_cas_create_update_delete(self, t: Transport) -> None:
        name = "refs/heads/bert"
        assert t.read_ref(name) is None
        t.update_ref(name, None, A)
        assert t.read_ref(name) == A
        t.update_ref(name, A, B)
        assert t.read_ref(name) == B
        assert t.list_refs() == {name: B}
        t.update_ref(name, B, B)  # a no-op swap is allowed
        t.update_ref(name, B, None)
        assert t.read_ref(name) is None
        assert t.list_refs() == {}
        t.update_ref(name, None, None)  # "must not exist" and stays so
        t.update_ref(name, None, C)  # re-created after delete
        assert t.read_ref(name) == C

    def test_cas_conflicts_carry_fields(self, t: Transport) -> None:
        name = "refs/heads/bert"
        t.update_ref(name, None, A)
        with pytest.raises(RefConflictError) as info:
            t.update_ref(name, None, B)  # create, but it exists
        assert (info.value.ref, info.value.expected, info.value.actual) == (name, None, A)
        with pytest.raises(RefConflictError) as info:
            t.update_ref(name, B, C)  # wrong expectation
        assert (info.value.expected, info.value.actual) == (B, A)
        with pytest.raises(RefConflictError):
            t.update_ref(name, C, None)  # delete with wrong expectation
        with pytest.raises(RefConflictError) as info:
            t.update_ref("refs/heads/other", A, B)  # update of a missing ref
        assert info.value.actual is None
        with pytest.raises(RefConflictError):
            t.update_ref(name, None, None)
        assert t.list_refs() == {name: A}  # nothing changed by the failures

    def test_ref_names_with_slashes_and_tags(self, t: Transport) -> None:
        refs = {
            "refs/heads/org/bert": A,
            "refs/heads/org/team/bert-large_v1.2": B,
            "refs/heads/gpt2": C,
            "refs/tags/v1.0": A,
            "refs/tags/release/2024-01": B,
        }
        for name, value in refs.items():
            t.update_ref(name, None, value)
        assert t.list_refs() == refs
        for name, value in refs.items():
            assert t.read_ref(name) == value
        t.update_ref("refs/heads/org/team/bert-large_v1.2", B, None)
        del refs["refs/heads/org/team/bert-large_v1.2"]
        assert t.list_refs() == refs

    def test_directory_file_conflicts_refused(self, t: Transport) -> None:
        t.update_ref("refs/heads/org/bert", None, A)
        with pytest.raises(InvalidRefNameError):
            t.update_ref("refs/heads/org", None, B)
        with pytest.raises(InvalidRefNameError):
            t.update_ref("refs/heads/org/bert/large", None, B)
        t.update_ref("refs/heads/org/bert", A, None)
        t.update_ref("refs/heads/org", None, B)  # free again once the deeper ref is gone
        assert t.list_refs() == {"refs/heads/org": B}

    def test_bad_names_refused(self, t: Transport) -> None:
        for name in BAD_NAMES:
            with pytest.raises(InvalidRefNameError):
                t.update_ref(name, None, A)
            with pytest.raises(InvalidRefNameError):
                t.read_ref(name)
            with pytest.raises(InvalidRefNameError):
                t.update_ref(name, A, None)
        assert t.list_refs() == {}

    def test_damaged_ref_is_a_remote_error(
        self, t: Transport, raw_put: Callable[[str, bytes], None]
    ) -> None:
        raw_put("refs/heads/bert", b"not an id\n")
        with pytest.raises(RemoteError, match="damaged"):
            t.read_ref("refs/heads/bert")
        with pytest.raises(RemoteError):
            t.list_refs()

    @pytest.mark.parametrize("rounds", [3])
    def test_concurrent_cas_exactly_one_winner(
        self, factory: Callable[[], Transport], rounds: int
    ) -> None:
        n = 8
        transports = [factory() for _ in range(n)]
        transports[0].init(new_config(bare=True))
        name = "refs/heads/org/shared"
        current: str | None = None
        for r in range(rounds):
            barrier = threading.Barrier(n)
            won: list[str] = []
            lost: list[RefConflictError] = []
            other: list[BaseException] = []
            lock = threading.Lock()

            def attempt(
                i: int,
                tr: Transport,
                expected: str | None,
                new: str,
                barrier: threading.Barrier = barrier,
                lock: threading.Lock = lock,
                won: list[str] = won,
                lost: list[RefConflictError] = lost,
                other: list[BaseException] = other,
            ) -> None:
                try:
                    barrier.wait()
                    tr.update_ref(name, expected, new)
                    with lock:
                        won.append(new)
                except RefConflictError as exc:
                    with lock:
                        lost.append(exc)
                except BaseException as exc:  # noqa: BLE001
                    with lock:
                        other.append(exc)

            threads = [
                threading.Thread(target=attempt, args=(i, tr, current, oid(1000 * (r + 1) + i)))
                for i, tr in enumerate(transports)
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert other == []
            assert len(won) == 1, f"round {r}: winners {won}"
            assert len(lost) == n - 1
            assert transports[0].read_ref(name) == won[0]
            current = won[0]


class TestLocalTransport(TransportContract):
    """The contract on a path."""

    @pytest.fixture
    def factory(self, tmp_path: Path) -> Callable[[], Transport]:
        return lambda: LocalTransport(tmp_path / "remote")

    @pytest.fixture
    def raw_put(self, tmp_path: Path) -> Callable[[str, bytes], None]:
        def put(rel: str, data: bytes) -> None:
            path = tmp_path / "remote" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return put

    @pytest.fixture
    def unreachable(self, tmp_path: Path) -> Transport:
        blocker = tmp_path / "a-file"
        blocker.write_bytes(b"")
        return LocalTransport(blocker / "remote")

    def test_unreachable_is_a_remote_error(self, unreachable: Transport) -> None:
        assert unreachable.read_config() is None
        with pytest.raises(RemoteError):
            unreachable.init(new_config(bare=True))

    def test_layout_and_read_only_objects(self, t: Transport, tmp_path: Path) -> None:
        t.put_object(A, b"data")
        t.update_ref("refs/heads/org/bert", None, B)
        root = tmp_path / "remote"
        obj = root / "objects" / A[:2] / A[2:]
        assert obj.read_bytes() == b"data"
        assert not os.access(obj, os.W_OK) or os.geteuid() == 0
        assert obj.stat().st_mode & 0o222 == 0
        assert (root / "refs" / "heads" / "org" / "bert").read_text() == B + "\n"
        # No lock or temp file is left behind.
        leftovers = [p for p in root.rglob("*") if p.name.endswith((".lock", ".tmp"))]
        assert leftovers == []

    def test_nothing_written_outside_root(self, t: Transport, tmp_path: Path) -> None:
        before = sorted(p.name for p in tmp_path.iterdir())
        for name in BAD_NAMES:
            with pytest.raises(InvalidRefNameError):
                t.update_ref(name, None, A)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        assert not (tmp_path / "etc").exists()

    def test_symlinked_refs_outside_root_refused(self, t: Transport, tmp_path: Path) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (tmp_path / "remote" / "refs" / "heads" / "evil").symlink_to(outside)
        with pytest.raises(RemoteError, match="outside"):
            t.update_ref("refs/heads/evil/x", None, A)
        assert list(outside.iterdir()) == []

    def test_lock_held_by_another_process(self, t: Transport, tmp_path: Path) -> None:
        t.update_ref("refs/heads/bert", None, A)
        lock = tmp_path / "remote" / "refs" / "heads" / "bert.lock"
        lock.write_bytes(b"")
        slow = LocalTransport(tmp_path / "remote", lock_timeout=0.2)
        with pytest.raises(LockHeldError) as info:
            slow.update_ref("refs/heads/bert", A, B)
        assert Path(str(info.value.path)) == lock
        assert lock.exists()  # someone else's lock is never removed
        assert slow.read_ref("refs/heads/bert") == A
        lock.unlink()
        slow.update_ref("refs/heads/bert", A, B)

    def test_lock_released_after_conflict(self, t: Transport, tmp_path: Path) -> None:
        t.update_ref("refs/heads/bert", None, A)
        with pytest.raises(RefConflictError):
            t.update_ref("refs/heads/bert", B, C)
        assert not (tmp_path / "remote" / "refs" / "heads" / "bert.lock").exists()
        t.update_ref("refs/heads/bert", A, C)

    def test_stray_files_are_ignored(self, t: Transport, tmp_path: Path) -> None:
        root = tmp_path / "remote"
        t.put_object(A, b"x")
        t.update_ref("refs/heads/bert", None, B)
        (root / "objects" / A[:2] / f"{A[2:]}.123.deadbeef.tmp").write_bytes(b"partial")
        (root / "objects" / "zz").mkdir()
        (root / "objects" / "README").write_bytes(b"")
        (root / "refs" / "heads" / "bert.lock").write_bytes(b"")
        (root / "refs" / "heads" / "x.1.abcd0123.tmp").write_bytes(b"")
        assert list(t.iter_objects()) == [A]
        assert t.list_refs() == {"refs/heads/bert": B}

    def test_emptied_directories_are_pruned(self, t: Transport, tmp_path: Path) -> None:
        t.update_ref("refs/heads/org/team/bert", None, A)
        t.update_ref("refs/heads/org/team/bert", A, None)
        assert not (tmp_path / "remote" / "refs" / "heads" / "org").exists()
        assert (tmp_path / "remote" / "refs" / "heads").is_dir()


class TestS3Transport(TransportContract):
    """The contract on a real S3 server (moto, 127.0.0.1)."""

    @pytest.fixture
    def factory(self, s3_bucket: str) -> Callable[[], Transport]:
        from mgit.remote.s3 import S3Transport

        return lambda: S3Transport(s3_bucket, "team/models")

    @pytest.fixture
    def raw_put(self, s3_bucket: str, s3_env: dict[str, str]) -> Callable[[str, bytes], None]:
        client = make_client(s3_env["MGIT_S3_ENDPOINT_URL"])

        def put(rel: str, data: bytes) -> None:
            client.put_object(Bucket=s3_bucket, Key=f"team/models/{rel}", Body=data)

        return put

    @pytest.fixture
    def unreachable(self, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Transport:
        import socket

        with socket.socket() as sock:  # a port with nothing listening
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        monkeypatch.setenv("MGIT_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        return open_transport("s3://some-bucket/prefix")

    def test_unreachable_is_a_remote_error(self, unreachable: Transport) -> None:
        with pytest.raises(RemoteError, match="cannot connect"):
            unreachable.read_config()
        with pytest.raises(RemoteError, match="cannot connect"):
            unreachable.put_object(A, b"x")

    def test_no_such_bucket(self, s3_env: dict[str, str]) -> None:
        t = open_transport("s3://no-such-bucket-here/x")
        with pytest.raises(RemoteError, match="no such bucket: no-such-bucket-here"):
            t.read_config()
        with pytest.raises(RemoteError, match="no such bucket"):
            t.init(new_config(bare=True))

    def test_layout_under_prefix(
        self, t: Transport, s3_bucket: str, s3_env: dict[str, str]
    ) -> None:
        t.put_object(A, b"data")
        t.update_ref("refs/heads/org/bert", None, B)
        client = make_client(s3_env["MGIT_S3_ENDPOINT_URL"])
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"])
        assert keys == [
            "team/models/config",
            f"team/models/objects/{A[:2]}/{A[2:]}",
            "team/models/refs/heads/org/bert",
        ]
        body = client.get_object(Bucket=s3_bucket, Key="team/models/refs/heads/org/bert")["Body"]
        assert body.read() == (B + "\n").encode()

    def test_has_objects_per_shard_paths(
        self, t: Transport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stored = [oid(300 + i, "7f") for i in range(4)] + [oid(400 + i) for i in range(20)]
        for o in stored:
            t.put_object(o, b"x")
        # Few ids: HEAD for sparse shards, one listing for the shard with several.
        few = [oid(300, "7f"), oid(301, "7f"), oid(399, "7f"), oid(400), oid(999)]
        assert t.has_objects(few) == {oid(300, "7f"), oid(301, "7f"), oid(400)}
        # Many ids, and a store too big for one listing page: per-shard requests.
        monkeypatch.setattr(type(t), "_list_once", lambda self, rel: None)
        many = stored + [oid(500 + i) for i in range(10)]
        assert t.has_objects(many) == set(stored)

    def test_bucket_root_prefix(self, s3_bucket: str) -> None:
        t = open_transport(f"s3://{s3_bucket}")
        t.init(new_config(bare=True))
        t.put_object(A, b"root")
        t.update_ref("refs/tags/v1", None, A)
        assert list(t.iter_objects()) == [A]
        assert t.list_refs() == {"refs/tags/v1": A}
        # A store under a prefix of the same bucket is a different store.
        assert open_transport(f"s3://{s3_bucket}/other").read_config() is None


# -- S3 error mapping and server checks, with a stubbed client --------------------------------


def _stubbed() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    from mgit.remote.s3 import S3Transport

    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return S3Transport("bkt", "p", client=client), Stubber(client)


def test_s3_access_denied_is_one_line() -> None:
    pytest.importorskip("boto3")
    t, stub = _stubbed()
    stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    with stub, pytest.raises(RemoteError) as info:
        t.read_config()
    assert str(info.value) == "access denied to s3://bkt/p (AccessDenied)"
    assert info.value.hint and "credentials" in info.value.hint


def test_s3_server_ignoring_conditional_writes_is_refused() -> None:
    pytest.importorskip("boto3")
    t, stub = _stubbed()
    stub.add_response("put_object", {"ETag": '"1"'})
    stub.add_response("put_object", {"ETag": '"2"'})  # the second If-None-Match PUT "succeeds"
    stub.add_response("delete_object", {})
    with stub, pytest.raises(RemoteError, match="ignores conditional writes"):
        t.update_ref("refs/heads/bert", None, A)


def test_validate_ref_name_accepts_model_names() -> None:
    for name in [
        "refs/heads/bert",
        "refs/heads/org/bert-base_v1.0",
        "refs/tags/v1",
        "refs/heads/a+b",
    ]:
        assert validate_ref_name(name) == name


def test_open_transport_urls(tmp_path: Path) -> None:
    assert isinstance(open_transport(str(tmp_path)), LocalTransport)
    assert open_transport(f"file://{tmp_path}").url == str(tmp_path)
    assert open_transport("relative/dir").url == os.path.abspath("relative/dir")
    for bad in ["http://example.com/x", "ssh://host/path", ""]:
        with pytest.raises(RemoteError):
            open_transport(bad)
    with pytest.raises(RemoteError, match="no bucket"):
        open_transport("s3:///prefix")


def test_transport_import_does_not_load_boto3() -> None:
    code = (
        "import sys, mgit.remote, mgit.remote.open, mgit.remote.local, mgit.remote.protocol\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
