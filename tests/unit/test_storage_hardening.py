"""Issue #16, storage and remote side: FIFOs, receive caps, silent S3 endpoints, reflog on a
full disk, gc against concurrent writers, stale locks and leftovers, ``fsck --repair``."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zstandard

from mgit import maintenance
from mgit._lockfile import LockFile, holder_line, read_holder
from mgit.errors import (
    CorruptObjectError,
    LockHeldError,
    ReflogWarning,
    RemoteError,
    StaleLockWarning,
    UnreadableFileError,
)
from mgit.objects.ids import Hasher, hash_object
from mgit.objects.model import Commit, FileEntry, Tree
from mgit.objects.store import MAGIC, MAX_CONTENT, DiskStore, max_stored_size
from mgit.remote.fetch import fetch
from mgit.remote.local import LocalTransport
from mgit.remote.push import push
from tests.helpers import make_model_folder, run_main

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""

    def boom(*_: Any) -> None:
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def dead_pid() -> int:
    """The pid of a process that has just exited."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def dead_holder_line() -> bytes:
    info = json.loads(holder_line())
    info["pid"] = dead_pid()
    info["start"] = None
    return (json.dumps(info) + "\n").encode()


def imported(repo: Any, tmp_path: Path, name: str = "m", seed: int = 0) -> str:
    folder = tmp_path / f"src-{name}-{seed}"
    make_model_folder(folder, seed=seed)
    return repo.import_folder(folder, model=name, message="v1").commit.oid


# -- 4. FIFOs in place of objects and refs ---------------------------------------------------


def put_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_fifo_object_is_reported_by_fsck_and_refused_by_export(repo: Any, tmp_path: Path) -> None:
    oid = imported(repo, tmp_path)
    victim = next(o for o in repo.store.iter_oids() if repo.store.kind_of(o) == "chunk")
    path = repo.store.path_for(victim)
    put_fifo(path)
    with deadline(20):
        res = repo.fsck()
        assert not res.ok
        assert any(f.subject == victim and str(path) in f.message for f in res.findings)
        with pytest.raises(CorruptObjectError, match="FIFO"):
            repo.export(oid, tmp_path / "out")


def test_fifo_ref_is_an_error_naming_the_file(repo: Any, tmp_path: Path) -> None:
    imported(repo, tmp_path)
    ref = repo.mgit_dir / "refs" / "heads" / "m"
    put_fifo(ref)
    with deadline(20):
        with pytest.raises(UnreadableFileError, match="FIFO") as ei:
            repo.refs.read("refs/heads/m")
        assert str(ref) in str(ei.value)
        assert "refs/heads/m" in [f.subject for f in repo.fsck().findings]


def test_fifo_in_a_path_remote_fails_fetch_instead_of_hanging(
    make_repo: Any, tmp_path: Path
) -> None:
    src = make_repo("src", model="m")
    imported(src, tmp_path)
    remote = tmp_path / "remote"
    push(src, str(remote), ["m"])
    chunk = next(
        o for o in LocalTransport(remote).iter_objects() if src.store.kind_of(o) == "chunk"
    )
    put_fifo(remote / "objects" / chunk[:2] / chunk[2:])
    dst = make_repo("dst", model="m")
    with deadline(20):
        with pytest.raises(CorruptObjectError, match="FIFO"):
            fetch(dst, str(remote))
        put_fifo(remote / "refs" / "heads" / "m")
        with pytest.raises(RemoteError, match="FIFO"):
            fetch(dst, str(remote))


# -- 6. memory bombs ---------------------------------------------------------------------------


def zero_bomb(size: int) -> tuple[str, bytes]:
    """A chunk of ``size`` zero bytes with its true id, stored as one zstd frame (~33 KB/GiB)."""
    block = bytes(1 << 20)
    hasher = Hasher("chunk", size)
    cctx = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)
    comp = cctx.compressobj(size=size)
    parts = []
    for _ in range(size // len(block)):
        hasher.update(block)
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    meta = json.dumps(
        {"codec": "zstd/1", "size": size}, sort_keys=True, separators=(",", ":")
    ).encode()
    return hasher.oid(), MAGIC + b"c" + len(meta).to_bytes(4, "little") + meta + b"".join(parts)


def bomb_remote(tmp_path: Path, size: int) -> Path:
    """A path remote whose one model's one file is a chunk of ``size`` zeros (valid ids)."""
    remote = tmp_path / "bomb-remote"
    t = LocalTransport(remote)
    t.init({"format_version": 2, "hash": "blake3", "bare": True})
    scratch = DiskStore(tmp_path / "scratch" / "objects")
    chunk, data = zero_bomb(size)
    t.put_object(chunk, data)
    tree = scratch.put(
        "tree", Tree({"weights.bin": FileEntry("blob", size, "0" * 32, (chunk,))}).to_bytes()
    )
    commit = scratch.put("commit", Commit(tree, (), "bomb", "x", 0, "bomb").to_bytes())
    for oid in (tree, commit):
        t.put_object(oid, scratch.read_raw(oid))
    t.update_ref("refs/heads/bomb", None, commit)
    return remote


def test_a_declared_size_over_the_cap_is_refused_before_decompressing(tmp_path: Path) -> None:
    assert MAX_CONTENT["chunk"] < (1 << 30) and max_stored_size("chunk") < (1 << 30)
    remote = bomb_remote(tmp_path, 1 << 30)
    assert sum(p.stat().st_size for p in remote.rglob("*") if p.is_file()) < 64 * 1024
    script = textwrap.dedent(f"""
        import resource, sys, time
        from mgit.repo import Repository
        from mgit.errors import CorruptObjectError
        from mgit.remote.fetch import fetch
        repo = Repository.init({str(tmp_path / "dst")!r}, model="m")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.monotonic()
        try:
            fetch(repo, {str(remote)!r})
        except CorruptObjectError as exc:
            print("refused:", exc)
        print("seconds", time.monotonic() - t0)
        print("grew_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert "more than the" in lines["refused:"]
    assert float(lines["seconds"]) < 5
    assert int(lines["grew_kib"]) < 64 * 1024, out  # not the 1 GiB it declares


def test_decoded_bytes_in_flight_stay_under_the_budget(make_repo: Any, tmp_path: Path) -> None:
    """Chunks under the cap (valid, 32 MiB each) are decoded under a byte budget of
    ``jobs * chunk_size``: one at a time here, never four at once."""
    remote = tmp_path / "big-remote"
    t = LocalTransport(remote)
    t.init({"format_version": 2, "hash": "blake3", "bare": True})
    scratch = DiskStore(tmp_path / "scratch" / "objects")
    size = 32 << 20
    entries = {}
    for i in range(4):
        content = bytearray(size)
        content[-1] = i + 1
        oid = scratch.put("chunk", bytes(content))
        t.put_object(oid, scratch.read_raw(oid))
        entries[f"w{i}.bin"] = FileEntry("blob", size, "0" * 32, (oid,))
    tree = scratch.put("tree", Tree(entries).to_bytes())
    commit = scratch.put("commit", Commit(tree, (), "big", "x", 0, "big").to_bytes())
    for oid in (tree, commit):
        t.put_object(oid, scratch.read_raw(oid))
    t.update_ref("refs/heads/big", None, commit)

    from mgit.remote import fetch as fetch_mod

    seen: list[Any] = []
    real = fetch_mod._Receiver.__init__

    def spy(self: Any, *a: Any, **kw: Any) -> None:
        real(self, *a, **kw)
        seen.append(self)

    dst = make_repo("dst", model="m")
    fetch_mod._Receiver.__init__ = spy  # type: ignore[method-assign]
    try:
        fetch(dst, str(remote), jobs=4)
    finally:
        fetch_mod._Receiver.__init__ = real  # type: ignore[method-assign]
    budget = seen[0].budget
    assert budget.budget == 4 * max(
        dst.chunk_size, 1 << 20
    )  # 4 MiB here: one 32 MiB chunk at a time
    assert budget.peak <= budget.budget and budget.used == 0
    assert dst.fsck().ok


# -- 7. an S3 endpoint that never answers ------------------------------------------------------


def test_silent_s3_endpoint_fails_within_the_configured_timeout(
    repo: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("boto3")
    for k, v in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts connections; nobody ever answers
        port = silent.getsockname()[1]
        monkeypatch.setenv("MGIT_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        code, _, err = run_main(
            capsys, repo.root, "remote", "add", "slow", "s3://bucket/models", "--timeout", "2"
        )
        assert code == 0
        assert json.loads((repo.mgit_dir / "config").read_text())["remotes"]["slow"]["timeout"] == 2
        start = time.monotonic()
        code, _, err = run_main(capsys, repo.root, "fetch", "slow")
        took = time.monotonic() - start
    assert code == 1
    assert took < 6, took
    lines = err.splitlines()
    errors = [ln for ln in lines if ln.startswith("mgit: error:")]
    assert errors == [
        (
            f"mgit: error: cannot reach S3 at http://127.0.0.1:{port} for "
            "s3://bucket/models: no answer within 2 s"
        )
    ]
    assert any(ln.startswith("mgit: warning:") and "retrying" in ln for ln in lines)


def test_default_s3_timeout_is_30_seconds() -> None:
    pytest.importorskip("boto3")
    from mgit.remote.s3 import ATTEMPTS, DEFAULT_TIMEOUT, S3Transport

    t = S3Transport("b", "p", endpoint_url="http://127.0.0.1:9")
    assert DEFAULT_TIMEOUT == 30 and t.timeout == 30
    cfg = t._client.meta.config
    assert cfg.read_timeout * ATTEMPTS < 30 and cfg.connect_timeout * ATTEMPTS < 30
    assert cfg.retries["total_max_attempts"] == 1


# -- 8. disk full at the reflog write ----------------------------------------------------------


def test_reflog_failure_after_the_ref_moved_is_a_warning(
    repo: Any, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mgit.refs.store import RefStore

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    folder = tmp_path / "src"
    make_model_folder(folder)
    monkeypatch.setattr(RefStore, "_append_log", full)
    code, _out, err = run_main(capsys, repo.root, "import", str(folder), "--model", "m", "-m", "v1")
    assert code == 0, err
    assert "mgit: warning:" in err and "reflog" in err and "No space left" in err
    monkeypatch.undo()
    from mgit.repo import Repository

    again = Repository.open(repo.root)
    assert len(again.log("m")) == 1  # exit 0: nobody retries, nothing doubled
    monkeypatch.setattr(RefStore, "_append_log", full)
    tip = again.refs.read("refs/heads/m")
    assert tip is not None
    with pytest.warns(ReflogWarning):
        again.refs.set_if_equals("refs/tags/t", None, tip, message="x")
    assert again.refs.read("refs/tags/t") == again.refs.read("refs/heads/m")


# -- 9. gc against writers that reuse unreachable objects --------------------------------------


def _unreachable_version(repo: Any) -> tuple[bytes, bytes, bytes]:
    """Contents of a chunk, a tree naming it and a commit of that tree, stored but unreachable."""
    data = os.urandom(64)
    chunk = repo.store.put("chunk", data)
    tree = Tree({"w.bin": FileEntry("blob", 64, "0" * 32, (chunk,))}).to_bytes()
    repo.store.put("tree", tree)
    commit = Commit(hash_object("tree", tree), (), "race", "x", 0, "v").to_bytes()
    repo.store.put("commit", commit)
    return data, tree, commit


def test_gc_prune_0_never_deletes_what_a_writer_reuses_threads(repo: Any) -> None:
    seed = int(os.environ.get("MGIT_RACE_SEED", "1600"))
    rng = random.Random(seed)
    data, tree, commit = _unreachable_version(repo)
    oids = [hash_object("chunk", data), hash_object("tree", tree), hash_object("commit", commit)]
    repo.store.release_writer_mark()
    lost = 0
    iterations = int(os.environ.get("MGIT_RACE_ITERATIONS", "1000"))
    for i in range(iterations):
        old = time.time() - 86400
        for o in oids:
            os.utime(repo.store.path_for(o), (old, old))
        writer = DiskStore(repo.store.root)

        def write(writer: DiskStore = writer) -> None:
            time.sleep(rng.random() * 0.002)
            writer.put("chunk", data)  # reuse: chunks, then tree, then commit, then the ref
            writer.put("tree", tree)
            time.sleep(rng.random() * 0.002)
            writer.put("commit", commit)
            writer.sync()
            repo.refs.set_if_equals("refs/heads/race", None, oids[2], message="race")

        def collect() -> None:
            time.sleep(rng.random() * 0.002)
            maintenance.gc(repo, prune_age=0)

        errors: list[BaseException] = []

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as exc:  # reported below with the seed and iteration
                    errors.append(exc)

            return run

        threads = [
            threading.Thread(target=guarded(write)),
            threading.Thread(target=guarded(collect)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writer.release_writer_mark()
        assert not errors, f"seed {seed}, iteration {i}: {errors!r}"
        missing = [o for o in oids if o not in repo.store]
        if missing:
            lost += 1
        if repo.refs.read("refs/heads/race") is not None:
            repo.refs.delete_if_equals("refs/heads/race", oids[2], message="reset")
        for o, content in zip(oids, (data, tree, commit)):  # put back what was lost, if any
            if o not in repo.store:
                repo.store.put(["chunk", "tree", "commit"][oids.index(o)], content)
    assert lost == 0, f"{lost}/{iterations} races left a ref to a missing object (seed {seed})"


def test_gc_prune_0_against_real_import_processes(repo: Any, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    make_model_folder(folder, seed=3)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    mgit = [sys.executable, "-m", "mgit", "-C", str(repo.root)]
    for i in range(6):
        first = repo.import_folder(folder, model=f"gone{i}", message="v").commit.oid
        repo.refs.delete_if_equals(f"refs/heads/gone{i}", first, message="drop")
        old = time.time() - 86400
        for o in repo.store.iter_oids():
            os.utime(repo.store.path_for(o), (old, old))
        imp = subprocess.Popen(
            [*mgit, "import", str(folder), "--model", f"new{i}", "-m", "v"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.05 * i)
        gc = subprocess.run(
            [*mgit, "gc", "--prune", "0"], check=False, env=env, capture_output=True, timeout=120
        )
        _, err = imp.communicate(timeout=120)
        assert imp.returncode == 0, err
        assert gc.returncode in (0, 11), gc.stderr
        res = maintenance.fsck(type(repo).open(repo.root))
        assert res.ok, res.problems


# -- 10. stale locks, leftovers ----------------------------------------------------------------


def test_lock_names_its_holder_and_a_dead_holders_lock_is_broken(tmp_path: Path) -> None:
    with LockFile(tmp_path / "gc") as lock:
        holder, _ = read_holder(lock.lock_path)
        assert holder is not None and holder.pid == os.getpid()
        with pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
            LockFile(tmp_path / "gc").acquire()
    (tmp_path / "gc.lock").write_bytes(dead_holder_line())
    with pytest.warns(StaleLockWarning, match="stale lock"), LockFile(tmp_path / "gc"):
        pass
    assert not (tmp_path / "gc.lock").exists()


def test_gc_after_a_killed_gc_and_killed_writers(repo: Any, tmp_path: Path, capsys: Any) -> None:
    imported(repo, tmp_path)
    (repo.mgit_dir / "gc.lock").write_bytes(dead_holder_line())
    chunk = next(o for o in repo.store.iter_oids() if repo.store.kind_of(o) == "chunk")
    path = repo.store.path_for(chunk)
    pid = dead_pid()
    orphan = path.parent / f"{'f' * 62}.{pid}.0badf00d.tmp"
    orphan.write_bytes(b"half an object")
    whole = path.with_name(f"{path.name}.{pid}.12345678.tmp")  # a gc killed mid-move
    os.link(path, whole)
    path.unlink()
    res = maintenance.fsck(repo)
    kinds = {f.kind for f in res.findings}
    assert {"stale_lock", "orphaned_temp", "missing_object"} <= kinds
    code, out, err = run_main(capsys, repo.root, "gc", "--prune", "0")
    assert code == 0, err
    assert "stale lock" in err and "2 temp files" in out and "1 put back" in out
    assert not orphan.exists() and not whole.exists() and path.exists()
    assert maintenance.fsck(repo).findings == []


def test_push_checks_remote_ref_locks_before_uploading(repo: Any, tmp_path: Path) -> None:
    imported(repo, tmp_path)
    remote = tmp_path / "remote"
    t = LocalTransport(remote)
    t.init({"format_version": 2, "hash": "blake3", "bare": True})
    lock = remote / "refs" / "heads" / "m.lock"
    lock.write_bytes(holder_line())  # held by a running process: this one
    os.environ["MGIT_LOCK_TIMEOUT"] = "0.2"
    try:
        with pytest.raises(LockHeldError, match="m.lock"):
            push(repo, str(remote), ["m"])
        assert list(t.iter_objects()) == []  # nothing was uploaded
        lock.write_bytes(dead_holder_line())  # the pushing process was killed
        with pytest.warns(StaleLockWarning):
            push(repo, str(remote), ["m"])
    finally:
        del os.environ["MGIT_LOCK_TIMEOUT"]
    assert t.read_ref("refs/heads/m") == repo.refs.read("refs/heads/m")


# -- fsck --repair -----------------------------------------------------------------------------


def test_fsck_repair_from_a_path_remote(repo: Any, tmp_path: Path, capsys: Any) -> None:
    imported(repo, tmp_path)
    remote = tmp_path / "remote"
    run_main(capsys, repo.root, "remote", "add", "origin", str(remote))
    assert run_main(capsys, repo.root, "push", "origin", "m")[0] == 0
    chunks = sorted(o for o in repo.store.iter_oids() if repo.store.kind_of(o) == "chunk")
    flipped, deleted = chunks[0], chunks[1]
    p = repo.store.path_for(flipped)
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0x10
    os.chmod(p, 0o644)
    p.write_bytes(bytes(raw))
    repo.store.path_for(deleted).unlink()
    code, out, _ = run_main(capsys, repo.root, "fsck")
    assert code == 12 and flipped in out and deleted in out
    code, out, err = run_main(capsys, repo.root, "fsck", "--repair")
    assert code == 0, out + err
    assert f"repaired {flipped}" in out and f"repaired {deleted}" in out
    assert run_main(capsys, repo.root, "fsck")[0] == 0
    repo.export("m", tmp_path / "out")
