"""One ref compare-and-swap contract, run against the local RefStore and the path transport.

A path remote is a bare repository byte for byte, so both must keep the same promises over
the same files: ``<ref>`` holds ``"<64 hex>\\n"``, a change is a compare-and-swap under an
``O_EXCL`` ``<ref>.lock``, a held lock is waited for (``MGIT_LOCK_TIMEOUT``) and never stolen,
and of concurrent writers expecting the same value exactly one wins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from mgit.errors import LockHeldError, MgitError, RefConflictError
from mgit.refs.store import RefStore
from mgit.remote.local import LocalTransport

A = "a1" + "0" * 62
B = "b2" + "1" * 62
C = "c3" + "2" * 62
REF = "refs/heads/org/bert"


class RefCAS(Protocol):
    """What the contract needs: read a ref, compare-and-swap it, and where its file lives."""

    root: Path

    def read(self, ref: str) -> str | None: ...

    def update(self, ref: str, old: str | None, new: str | None) -> None: ...


class RefStoreCAS:
    """:class:`RefStore` (a repository's refs) through the contract's interface."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = RefStore(root)

    def read(self, ref: str) -> str | None:
        return self.store.read(ref)

    def update(self, ref: str, old: str | None, new: str | None) -> None:
        self.store.update_many([(ref, old, new)], message="contract")


class TransportCAS:
    """:class:`LocalTransport` (a path remote's refs) through the contract's interface."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.transport = LocalTransport(root)

    def read(self, ref: str) -> str | None:
        return self.transport.read_ref(ref)

    def update(self, ref: str, old: str | None, new: str | None) -> None:
        self.transport.update_ref(ref, old, new)


FACTORIES: dict[str, Callable[[Path], RefCAS]] = {
    "refstore": RefStoreCAS,
    "path-transport": TransportCAS,
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], RefCAS]:
    """A factory of handles on one store (several handles = several writers)."""
    root = tmp_path / "store"
    (root / "refs" / "heads").mkdir(parents=True)
    (root / "refs" / "tags").mkdir(parents=True)
    return lambda: FACTORIES[request.param](root)


def ref_file(cas: RefCAS, ref: str = REF) -> Path:
    return cas.root.joinpath(*ref.split("/"))


def lock_files(cas: RefCAS) -> list[str]:
    return sorted(p.name for p in (cas.root / "refs").rglob("*.lock"))


def test_missing_ref_reads_as_none(make: Callable[[], RefCAS]) -> None:
    cas = make()
    assert cas.read(REF) is None
    assert cas.read("refs/tags/nothing") is None


def test_create_writes_the_id_and_a_newline(make: Callable[[], RefCAS]) -> None:
    cas = make()
    cas.update(REF, None, A)
    assert cas.read(REF) == A
    assert ref_file(cas).read_bytes() == f"{A}\n".encode()  # the same bytes on both sides
    assert lock_files(cas) == []


def test_create_over_an_existing_ref_conflicts(make: Callable[[], RefCAS]) -> None:
    cas = make()
    cas.update(REF, None, A)
    with pytest.raises(RefConflictError) as info:
        cas.update(REF, None, B)
    assert (info.value.expected, info.value.actual) == (None, A)
    assert cas.read(REF) == A
    assert lock_files(cas) == []


def test_update_with_the_right_old_value(make: Callable[[], RefCAS]) -> None:
    cas = make()
    cas.update(REF, None, A)
    cas.update(REF, A, B)
    assert cas.read(REF) == B
    assert ref_file(cas).read_bytes() == f"{B}\n".encode()


def test_update_with_a_wrong_old_value_changes_nothing(make: Callable[[], RefCAS]) -> None:
    cas = make()
    cas.update(REF, None, A)
    with pytest.raises(RefConflictError) as info:
        cas.update(REF, C, B)
    assert (info.value.ref, info.value.expected, info.value.actual) == (REF, C, A)
    assert cas.read(REF) == A
    assert lock_files(cas) == []


def test_update_of_a_missing_ref_conflicts(make: Callable[[], RefCAS]) -> None:
    cas = make()
    with pytest.raises(RefConflictError) as info:
        cas.update(REF, A, B)
    assert info.value.actual is None
    assert cas.read(REF) is None


def test_delete_with_the_right_and_a_wrong_old_value(make: Callable[[], RefCAS]) -> None:
    cas = make()
    cas.update(REF, None, A)
    with pytest.raises(RefConflictError):
        cas.update(REF, B, None)
    assert cas.read(REF) == A
    cas.update(REF, A, None)
    assert cas.read(REF) is None
    assert not ref_file(cas).exists()
    with pytest.raises(RefConflictError):
        cas.update(REF, A, None)  # already gone
    cas.update(REF, None, B)  # and it can be created again
    assert cas.read(REF) == B


def test_a_held_lock_makes_the_writer_wait_then_give_up(
    make: Callable[[], RefCAS], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "0.2")
    cas = make()
    cas.update(REF, None, A)
    lock = ref_file(cas).with_name(ref_file(cas).name + ".lock")
    lock.write_bytes(b"")  # another writer holds it (or a killed one left it)
    start = time.monotonic()
    with pytest.raises(LockHeldError):
        cas.update(REF, A, B)
    assert time.monotonic() - start >= 0.15  # it waited, within the bound
    assert lock.exists(), "a held lock must never be stolen"
    assert cas.read(REF) == A  # readers do not wait for writers
    lock.unlink()
    cas.update(REF, A, B)
    assert cas.read(REF) == B


def test_a_lock_released_within_the_timeout_lets_the_writer_through(
    make: Callable[[], RefCAS], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "5")
    cas = make()
    cas.update(REF, None, A)
    lock = ref_file(cas).with_name(ref_file(cas).name + ".lock")
    lock.write_bytes(b"")
    timer = threading.Timer(0.2, lock.unlink)
    timer.start()
    try:
        cas.update(REF, A, B)
    finally:
        timer.join()
    assert cas.read(REF) == B
    assert lock_files(cas) == []


def test_of_concurrent_writers_expecting_the_same_value_exactly_one_wins(
    make: Callable[[], RefCAS], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "10")
    make().update(REF, None, A)
    news = [f"{i:064x}" for i in range(1, 9)]
    results: dict[str, str] = {}
    barrier = threading.Barrier(len(news))

    def writer(new: str) -> None:
        cas = make()  # each writer its own handle, as separate processes would have
        barrier.wait()
        try:
            cas.update(REF, A, new)
            results[new] = "won"
        except RefConflictError as exc:
            results[new] = f"lost to {exc.actual}"

    threads = [threading.Thread(target=writer, args=(n,)) for n in news]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if r == "won"]
    assert len(winners) == 1, results
    assert make().read(REF) == winners[0]
    assert all(r == f"lost to {winners[0]}" for n, r in results.items() if n != winners[0])
    assert lock_files(make()) == []


def test_a_damaged_ref_is_an_error_not_a_missing_ref(make: Callable[[], RefCAS]) -> None:
    cas = make()
    cas.update(REF, None, A)
    ref_file(cas).write_bytes(b"not an id\n")
    with pytest.raises(MgitError):
        cas.read(REF)
    with pytest.raises(MgitError):
        cas.update(REF, None, B)  # never taken for "no such ref"
    assert ref_file(cas).read_bytes() == b"not an id\n"
    assert lock_files(cas) == []


def test_the_two_sides_read_each_others_refs(tmp_path: Path) -> None:
    """A ref written by either implementation is read, and swapped, by the other."""
    root = tmp_path / "store"
    (root / "refs" / "heads").mkdir(parents=True)
    local, remote = RefStoreCAS(root), TransportCAS(root)
    local.update(REF, None, A)
    assert remote.read(REF) == A
    remote.update(REF, A, B)
    assert local.read(REF) == B
    local.update(REF, B, None)
    assert remote.read(REF) is None
