"""Refs: compare-and-swap under lock files, all-or-nothing multi-ref updates, reflog, names."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mgit.errors import InvalidRefNameError, LockHeldError, RefConflictError
from mgit.refs.store import HEADS, TAGS, RefStore, check_name

A = "a" * 64
B = "b" * 64
C = "c" * 64


@pytest.fixture
def refs(tmp_path: Path) -> RefStore:
    root = tmp_path / ".mgit"
    root.mkdir()
    return RefStore(root, who="tester")


@pytest.fixture
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGIT_LOCK_TIMEOUT", "0.05")


def locks(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.lock"))


def test_create_read_update_delete(refs: RefStore) -> None:
    r = HEADS + "bert"
    assert refs.read(r) is None
    refs.set_if_equals(r, None, A, message="create")
    assert refs.read(r) == A
    refs.set_if_equals(r, A, B, message="update")
    assert refs.read(r) == B
    assert refs.iter_refs() == {r: B}
    refs.delete_if_equals(r, B, message="delete")
    assert refs.read(r) is None
    assert locks(refs.root) == []


def test_cas_conflict_leaves_ref_unchanged(refs: RefStore) -> None:
    r = HEADS + "bert"
    refs.set_if_equals(r, None, A, message="create")
    with pytest.raises(RefConflictError) as ei:
        refs.set_if_equals(r, B, C, message="stale")
    assert (ei.value.ref, ei.value.expected, ei.value.actual) == (r, B, A)
    assert refs.read(r) == A
    with pytest.raises(RefConflictError):
        refs.set_if_equals(r, None, C, message="create again")
    with pytest.raises(RefConflictError):
        refs.delete_if_equals(r, B, message="stale delete")
    assert refs.read(r) == A
    assert locks(refs.root) == []


def test_update_many_all_or_nothing(refs: RefStore) -> None:
    refs.set_if_equals(HEADS + "a", None, A, message="")
    refs.set_if_equals(HEADS + "b", None, B, message="")
    with pytest.raises(RefConflictError):
        refs.update_many(
            [
                (HEADS + "a", A, C),
                (HEADS + "new", None, C),
                (HEADS + "b", A, C),
                (TAGS + "t", None, C),
            ],
            message="one conflict",
        )
    assert refs.iter_refs() == {HEADS + "a": A, HEADS + "b": B}
    assert locks(refs.root) == []
    refs.update_many(
        [(HEADS + "a", A, C), (HEADS + "b", B, None), (TAGS + "t", None, A)], message="ok"
    )
    assert refs.iter_refs() == {HEADS + "a": C, TAGS + "t": A}


def test_update_many_refuses_a_bad_oid_before_locking(refs: RefStore) -> None:
    with pytest.raises(ValueError):
        refs.update_many([(HEADS + "a", None, "not-an-oid")], message="")
    assert refs.read(HEADS + "a") is None


def test_lock_held(refs: RefStore, short_lock_wait: None) -> None:
    r = HEADS + "bert"
    refs.set_if_equals(r, None, A, message="")
    lock = refs.root / "refs" / "heads" / "bert.lock"
    lock.write_text("")
    with pytest.raises(LockHeldError) as ei:
        refs.set_if_equals(r, A, B, message="")
    assert Path(str(ei.value.path)) == lock
    assert refs.read(r) == A
    assert lock.exists()  # someone else's lock is never removed
    lock.unlink()
    refs.set_if_equals(r, A, B, message="")
    assert refs.read(r) == B


def test_lock_held_on_one_of_many_changes_nothing(refs: RefStore, short_lock_wait: None) -> None:
    refs.set_if_equals(HEADS + "a", None, A, message="")
    (refs.root / "refs" / "heads" / "z.lock").write_text("")
    with pytest.raises(LockHeldError):
        refs.update_many([(HEADS + "a", A, B), (HEADS + "z", None, B)], message="")
    assert refs.read(HEADS + "a") == A
    assert [p.name for p in locks(refs.root)] == ["z.lock"]


def test_reflog(refs: RefStore) -> None:
    r = HEADS + "bert"
    refs.set_if_equals(r, None, A, message="first")
    refs.set_if_equals(r, A, B, message="second")
    refs.delete_if_equals(r, B, message="gone")
    log = refs.reflog(r)
    assert [(e["old"], e["new"], e["message"]) for e in log] == [
        (None, A, "first"),
        (A, B, "second"),
        (B, None, "gone"),
    ]
    assert all(e["who"] == "tester" and isinstance(e["time"], int) for e in log)
    assert refs.reflog(HEADS + "never") == []


def test_failed_update_writes_no_reflog(refs: RefStore) -> None:
    refs.set_if_equals(HEADS + "a", None, A, message="first")
    with pytest.raises(RefConflictError):
        refs.set_if_equals(HEADS + "a", B, C, message="nope")
    assert len(refs.reflog(HEADS + "a")) == 1


def test_head_symbolic_and_detached(refs: RefStore) -> None:
    refs.set_if_equals(HEADS + "bert", None, A, message="")
    refs.set_head(ref=HEADS + "bert", message="switch")
    assert refs.head_target() == HEADS + "bert"
    assert refs.read("HEAD") == A
    refs.set_head(oid=B, message="detach")
    assert refs.head_target() is None
    assert refs.read("HEAD") == B
    assert [e["new"] for e in refs.reflog("HEAD")] == [A, B]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "a..b",
        "a/../b",
        "../x",
        "-leading",
        "a/-b",
        ".hidden",
        "a/.b",
        "x.lock",
        "a.lock/b",
        "a//b",
        "a/",
        "/a",
        "HEAD",
        "has space",
        "tab\tname",
        "new\nline",
        "star*",
        "q?",
        "col:on",
        "back\\slash",
        "tilde~1",
        "caret^",
        "ünï",
        "x" * 201,
    ],
)
def test_invalid_names(refs: RefStore, name: str) -> None:
    with pytest.raises(InvalidRefNameError):
        check_name(name)
    with pytest.raises(InvalidRefNameError):
        refs.set_if_equals(HEADS + name, None, A, message="")
    assert refs.iter_refs() == {}


@pytest.mark.parametrize(
    "name", ["bert", "bert-base-uncased", "org/bert_v2.1", "a+b", "0day", "_x"]
)
def test_valid_names(refs: RefStore, name: str) -> None:
    assert check_name(name) == name
    refs.set_if_equals(HEADS + name, None, A, message="")
    assert refs.read(HEADS + name) == A


@pytest.mark.parametrize(
    "ref", ["refs/other/x", "heads/x", "x", "refs/heads/", "refs/heads/a/../../../etc"]
)
def test_full_ref_must_be_under_a_namespace(refs: RefStore, ref: str) -> None:
    with pytest.raises(InvalidRefNameError):
        refs.set_if_equals(ref, None, A, message="")


def test_concurrent_cas_has_exactly_one_winner(refs: RefStore) -> None:
    r = HEADS + "race"
    refs.set_if_equals(r, None, A, message="")
    n = 8
    barrier = threading.Barrier(n)
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        new = f"{i:064x}"
        barrier.wait()
        try:
            refs.set_if_equals(r, A, new, message=f"t{i}")
            results[i] = "won"
        except RefConflictError:
            results[i] = "conflict"
        except Exception as exc:  # noqa: BLE001
            results[i] = repr(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, v in results.items() if v == "won"]
    assert len(winners) == 1, results
    assert all(v in ("won", "conflict") for v in results.values()), results
    assert refs.read(r) == f"{winners[0]:064x}"
    assert locks(refs.root) == []


def test_concurrent_creates_from_processes_one_winner(tmp_path: Path) -> None:
    """Several RefStore instances (as separate processes would have) racing to create a ref."""
    root = tmp_path / ".mgit"
    root.mkdir()
    stores = [RefStore(root) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    won: list[int] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            stores[i].set_if_equals(TAGS + "v1", None, f"{i + 1:064x}", message="")
            won.append(i)
        except RefConflictError:
            pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert stores[0].read(TAGS + "v1") == f"{won[0] + 1:064x}"
