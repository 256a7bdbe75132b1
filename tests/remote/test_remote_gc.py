"""Remote gc (``mgit remote gc``) and remote check, on a path and on S3: what is deleted, the
grace period, the in-flight markers, and races against concurrent pushes."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mgit.errors import RemoteError
from mgit.remote import inflight
from mgit.remote.gc import check_remote, remote_gc, walk_remote
from mgit.remote.local import LocalTransport
from mgit.remote.open import open_transport
from mgit.remote.protocol import MaintainedTransport, object_path
from mgit.remote.push import push
from mgit.repo import Repository
from tests.helpers import run_main
from tests.remote.conftest import RemoteSpec, Source

BERT, FT = "refs/heads/bert", "refs/heads/bert-ft"


def _past_clock_tick(remote: RemoteSpec) -> None:
    """S3 dates have whole seconds: wait until objects just written are older than "now"."""
    if remote.kind == "s3":
        time.sleep(1.1)


def _drop_ref(url: str, ref: str) -> None:
    t = open_transport(url)
    t.update_ref(ref, t.read_ref(ref), None)


def test_transports_support_remote_gc(remote: RemoteSpec, source: Source) -> None:
    push(source.repo, remote.url, ["bert"])
    t = open_transport(remote.url)
    assert isinstance(t, MaintainedTransport)
    stored = {s.oid: s for s in t.iter_stored_objects()}
    assert set(stored) == set(t.iter_objects())  # type: ignore[attr-defined]
    some = next(iter(stored.values()))
    assert some.size == len(t.get_object(some.oid)) and abs(some.mtime - time.time()) < 120
    assert t.get_object_head(some.oid, 4) == t.get_object(some.oid)[:4]
    t.write_marker("push-" + "a" * 32, b"{}\n")
    assert [m.name for m in t.list_markers()] == ["push-" + "a" * 32]
    t.delete_marker("push-" + "a" * 32)
    t.delete_marker("push-" + "a" * 32)  # absent is success
    assert t.list_markers() == []
    with pytest.raises(ValueError):
        t.write_marker("../refs/heads/x", b"")


def test_gc_deletes_only_what_no_ref_reaches(remote: RemoteSpec, source: Source) -> None:
    push(source.repo, remote.url, ["bert", "bert-ft"])
    t = open_transport(remote.url)
    before = set(t.iter_objects())  # type: ignore[attr-defined]
    reach_base, _, _ = walk_remote(t, [source.base])
    _drop_ref(remote.url, FT)  # the finetune's own objects are unreachable now

    young = remote_gc(transport=t)  # default grace period: an hour
    assert (young.removed, young.young) == (0, len(before - reach_base))
    _past_clock_tick(remote)
    dry = remote_gc(transport=t, prune_age=0, dry_run=True)
    assert dry.removed == len(before - reach_base) > 0 and dry.freed_bytes > 0
    assert set(t.iter_objects()) == before  # type: ignore[attr-defined]

    res = remote_gc(transport=t, prune_age=0)
    assert res.removed == len(before - reach_base) and res.busy == []
    assert set(t.iter_objects()) == reach_base  # type: ignore[attr-defined]
    assert check_remote(transport=t).ok
    assert t.list_markers() == []  # gc removed its own marker
    # The finetune can be pushed again (its objects are sent anew).
    again = push(source.repo, remote.url, ["bert-ft"])
    assert again.objects_sent == len(before - reach_base)
    assert check_remote(transport=t).ok


def test_delta_bases_no_tree_names_are_kept(tmp_path: Path, source: Source) -> None:
    """A commit whose chunks are deltas against chunks that no tree it reaches names (as a
    rebased or re-parented version can be): gc must keep those bases, found in the chunk
    headers."""
    from mgit.objects.model import Commit

    ft = source.repo.read_commit(source.ft)
    orphan = source.repo.store.put(
        "commit",
        Commit(
            tree=ft.tree, parents=(), model="orphan", author="t", time=1, message="m"
        ).to_bytes(),
    )
    source.repo.refs.update_many([("refs/heads/orphan", None, orphan)], message="test")
    url = str(tmp_path / "r")
    push(source.repo, url, ["orphan"])
    t = open_transport(url)
    stored = set(t.iter_objects())  # type: ignore[attr-defined]
    named = {orphan, ft.tree} | {
        c for e in source.repo.read_tree(ft.tree).files.values() for c in e.chunk_ids()
    }
    assert named < stored  # the bases went up too, named by no tree
    res = remote_gc(transport=t, prune_age=0)
    assert res.removed == 0 and res.reachable == len(stored)
    assert check_remote(transport=t).ok
    dest = Repository.init(tmp_path / "copy", bare=True)
    from mgit.remote.fetch import fetch

    fetch(dest, url)  # every object decodes and verifies
    assert dest.fsck().ok


def test_check_names_missing_and_damaged_objects(remote: RemoteSpec, source: Source) -> None:
    push(source.repo, remote.url, ["bert"])
    t = open_transport(remote.url)
    commit = source.repo.read_commit(source.base)
    remote.put_raw(object_path(commit.tree), b"MGOB garbage")
    res = check_remote(transport=t)
    assert not res.ok and [o for o, _ in res.damaged] == [commit.tree]
    with pytest.raises(RemoteError, match="damaged.*nothing was deleted"):
        remote_gc(transport=t, prune_age=0)


def test_a_live_push_marker_stops_gc_and_a_dead_one_is_removed(
    tmp_path: Path, source: Source
) -> None:
    url = str(tmp_path / "r")
    push(source.repo, url, ["bert", "bert-ft"])
    _drop_ref(url, FT)
    t = open_transport(url)
    n = len(list(t.iter_objects()))  # type: ignore[attr-defined]
    live = "push-" + "1" * 32
    t.write_marker(live, b"{}\n")
    res = remote_gc(transport=t, prune_age=0)
    assert res.busy == [live] and res.removed == 0
    assert len(list(t.iter_objects())) == n  # type: ignore[attr-defined]
    # The same marker, not refreshed for longer than the timeout: a killed push.
    old = time.time() - 100
    os.utime(tmp_path / "r" / "inflight" / live, (old, old))
    res = remote_gc(transport=t, prune_age=0, marker_timeout=50)
    assert res.busy == [] and res.removed > 0 and res.dead_markers == 1
    assert t.list_markers() == []


def test_a_dead_push_marker_on_s3_stops_counting(remote: RemoteSpec, source: Source) -> None:
    if remote.kind != "s3":
        pytest.skip("S3 only (the path case ages the marker with utime)")
    push(source.repo, remote.url, ["bert", "bert-ft"])
    _drop_ref(remote.url, FT)
    t = open_transport(remote.url)
    t.write_marker("push-" + "2" * 32, b"{}\n")
    _past_clock_tick(remote)
    assert remote_gc(transport=t, prune_age=0, marker_timeout=600).busy
    time.sleep(2.1)  # S3 LastModified has whole seconds
    res = remote_gc(transport=t, prune_age=0, marker_timeout=1)
    assert res.busy == [] and res.removed > 0 and res.dead_markers == 1


def test_a_push_waits_for_a_running_gc(tmp_path: Path, source: Source) -> None:
    url = str(tmp_path / "r")
    push(source.repo, url, ["bert"])
    t = open_transport(url)
    gc_marker = "gc-" + "3" * 32
    t.write_marker(gc_marker, b"{}\n")
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with pytest.warns(Warning, match="waiting for the remote's gc"):
                push(source.repo, url, ["bert-ft"])
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        done.set()

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.5)
    assert not done.is_set()  # waiting, having written its own marker first
    assert any(m.kind == "push" for m in t.list_markers())
    assert open_transport(url).read_ref(FT) is None
    t.delete_marker(gc_marker)
    th.join(timeout=30)
    assert done.is_set() and not errors, errors
    assert check_remote(transport=t).ok and t.list_markers() == []


def test_a_push_gives_up_on_a_gc_that_does_not_finish(
    tmp_path: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "r")
    push(source.repo, url, ["bert"])
    t = open_transport(url)
    t.write_marker("gc-" + "4" * 32, b"{}\n")
    monkeypatch.setattr(inflight, "GC_WAIT", 0.3)
    with pytest.warns(Warning), pytest.raises(RemoteError, match="a gc is running"):
        push(source.repo, url, ["bert-ft"])
    assert open_transport(url).read_ref(FT) is None
    assert [m.kind for m in t.list_markers()] == ["gc"]  # the push removed its own


def _race(url: str, source: Source, iterations: int, seed: int, slow: Any) -> int:
    """Each iteration: the remote holds bert-ft's objects, unreachable (its ref deleted) and
    past any grace period; a push of bert-ft (which reuses them: the remote has them) races a
    ``gc --prune 0``. Returns how many iterations lost an object."""
    rng = random.Random(seed)
    lost = 0
    for _ in range(iterations):
        if open_transport(url).read_ref(FT) is not None:
            _drop_ref(url, FT)
        if url.startswith("s3://"):
            time.sleep(1.1)  # whole-second dates: the objects must be older than gc's "now"
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def do_push(barrier: threading.Barrier = barrier, errors: list[Any] = errors) -> None:
            barrier.wait()
            time.sleep(rng.random() * slow)
            try:
                push(source.repo, url, ["bert-ft"])
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        def do_gc(barrier: threading.Barrier = barrier, errors: list[Any] = errors) -> None:
            barrier.wait()
            time.sleep(rng.random() * slow)
            try:
                remote_gc(transport=open_transport(url), prune_age=0)
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=do_push), threading.Thread(target=do_gc)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, errors
        res = check_remote(transport=open_transport(url))
        assert res.refs.get(FT) == source.ft
        lost += not res.ok
    return lost


def test_gc_racing_pushes_on_a_path_remote_loses_nothing(
    tmp_path: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "r")
    push(source.repo, url, ["bert", "bert-ft"])
    # Widen the window between the existence check and the ref update.
    has = LocalTransport.has_objects

    def slow_has(self: LocalTransport, oids: Any) -> set[str]:
        out = has(self, oids)
        time.sleep(random.random() * 0.004)
        return out

    monkeypatch.setattr(LocalTransport, "has_objects", slow_has)
    assert _race(url, source, iterations=60, seed=1, slow=0.004) == 0


def test_gc_racing_pushes_on_s3_loses_nothing(remote: RemoteSpec, source: Source) -> None:
    if remote.kind != "s3":
        pytest.skip("the path remote has its own, longer race test")
    push(source.repo, remote.url, ["bert", "bert-ft"])
    assert _race(remote.url, source, iterations=4, seed=2, slow=0.05) == 0


def test_remote_gc_and_check_through_the_cli(
    source: Source, remote: RemoteSpec, capsys: Any
) -> None:
    assert run_main(capsys, source.path, "remote", "add", "team", remote.url)[0] == 0
    assert run_main(capsys, source.path, "push", "team", "bert", "bert-ft")[0] == 0
    _drop_ref(remote.url, FT)
    _past_clock_tick(remote)
    code, out, err = run_main(capsys, source.path, "remote", "gc", "team")
    assert code == 0, err
    assert f"On {remote.url}" in out and "removed 0 objects" in out and "younger than 3600 s" in out
    code, out, err = run_main(capsys, source.path, "remote", "gc", "team", "--prune", "0", "-n")
    assert code == 0 and "would remove" in out
    code, out, err = run_main(capsys, source.path, "--json", "remote", "gc", "team", "--prune", "0")
    assert code == 0, err
    data = json.loads(out)
    assert data["removed"] > 0 and data["busy"] == [] and data["dry_run"] is False
    code, out, err = run_main(capsys, source.path, "remote", "check", "team")
    assert code == 0 and out.rstrip().endswith(": ok"), out
    commit = source.repo.read_commit(source.base)
    remote.put_raw(object_path(commit.tree), b"MGOB garbage")
    code, out, err = run_main(capsys, source.path, "remote", "check", "team")
    assert code != 0 and f"damaged object {commit.tree}" in out
    code, out, err = run_main(capsys, source.path, "remote", "gc", "team", "--prune", "-1")
    assert code == 2
