"""push against an in-memory Transport that injects faults: upload order, resuming an
interrupted upload, rolling back ref moves, and lost compare-and-swap races."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

import pytest

from mgit.errors import NonFastForwardError, ObjectNotFoundError, RefConflictError, RemoteError
from mgit.remote.protocol import Transport, validate_oid, validate_ref_name
from mgit.remote.push import push
from mgit.remote.results import RefUpdate
from tests.remote.conftest import Source, build_source

BERT, FT, V1 = "refs/heads/bert", "refs/heads/bert-ft", "refs/tags/v1"
UNKNOWN = "e" * 64  # a commit the pushing repository has never seen


class MemoryTransport:
    """A bare store in dicts, implementing :class:`Transport`, recording every write.

    Faults: ``fail_put_at`` makes the n-th ``put_object`` (0-based) fail; ``before_update``
    is called before every compare-and-swap (it may raise, or move refs as another writer).
    """

    def __init__(self) -> None:
        self.url = "memory://remote"
        self.config: dict[str, object] | None = None
        self.objects: dict[str, bytes] = {}
        self.refs: dict[str, str] = {}
        self.log: list[tuple[str, ...]] = []  # ("put", oid) and ("update", ref, old, new)
        self.fail_put_at: int | None = None
        self.before_update: Callable[[str, str | None, str | None], None] | None = None
        self._puts = 0
        self._lock = threading.Lock()

    def read_config(self) -> dict[str, object] | None:
        return self.config

    def init(self, config: dict[str, object]) -> None:
        if self.config is None:
            self.config = dict(config)

    def list_refs(self) -> dict[str, str]:
        with self._lock:
            return dict(sorted(self.refs.items()))

    def read_ref(self, name: str) -> str | None:
        validate_ref_name(name)
        with self._lock:
            return self.refs.get(name)

    def update_ref(self, name: str, old: str | None, new: str | None) -> None:
        validate_ref_name(name)
        if self.before_update is not None:
            self.before_update(name, old, new)
        with self._lock:
            actual = self.refs.get(name)
            if actual != old:
                raise RefConflictError(name, old, actual)
            if new is None:
                self.refs.pop(name, None)
            else:
                self.refs[name] = new
            self.log.append(("update", name, str(old), str(new)))

    def has_objects(self, oids: Iterable[str]) -> set[str]:
        with self._lock:
            return {o for o in oids if validate_oid(o) in self.objects}

    def get_object(self, oid: str, *, max_size: int | None = None) -> bytes:
        with self._lock:
            try:
                return self.objects[oid]
            except KeyError:
                raise ObjectNotFoundError(oid, context=self.url) from None

    def put_object(self, oid: str, data: bytes) -> None:
        validate_oid(oid)
        with self._lock:
            n, self._puts = self._puts, self._puts + 1
            if n == self.fail_put_at:
                raise RemoteError(f"injected: put #{n} failed")
            self.objects.setdefault(oid, bytes(data))
            self.log.append(("put", oid))

    # -- for the tests --

    def puts(self) -> list[str]:
        return [e[1] for e in self.log if e[0] == "put"]

    def updates(self) -> list[tuple[str, ...]]:
        return [e[1:] for e in self.log if e[0] == "update"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return build_source(tmp_path_factory.mktemp("push-faults"))


@pytest.fixture
def source(built: Source) -> Iterator[Source]:
    """The module's source repository, its local refs put back after each test."""
    before = built.repo.refs.iter_refs()
    yield built
    after = built.repo.refs.iter_refs()
    built.repo.refs.update_many(
        [(r, after.get(r), before.get(r)) for r in sorted(set(before) | set(after))
         if after.get(r) != before.get(r)],
        message="test: restore",
    )


def set_local(source: Source, ref: str, oid: str) -> None:
    source.repo.refs.update_many([(ref, source.repo.refs.read(ref), oid)], message="test")


def test_memory_transport_is_a_transport() -> None:
    assert isinstance(MemoryTransport(), Transport)


def test_upload_order_bases_first_trees_after_chunks_commits_parents_first(source: Source) -> None:
    t = MemoryTransport()
    res = push(source.repo, refs=["bert", "bert-ft"], transport=t, jobs=4)
    store = source.repo.store
    puts = t.puts()
    assert len(puts) == len(set(puts)) == res.objects_sent == len(t.objects) > 0
    pos = {o: i for i, o in enumerate(puts)}
    kinds = {o: store.header(o).kind for o in puts}
    deltas = 0
    for o in puts:
        h = store.header(o)
        if h.kind == "chunk" and h.base is not None:
            deltas += 1
            assert pos[h.base] < pos[o], "a delta went up before its base"
        elif h.kind == "tree":
            for c in source.repo.read_tree(o).files.values():
                assert all(pos[x] < pos[o] for x in c.chunk_ids()), "a tree before its chunks"
        elif h.kind == "commit":
            c = source.repo.read_commit(o)
            assert pos[c.tree] < pos[o]
            assert all(pos[p.oid] < pos[o] for p in c.parents), "a child before its parent"
    assert deltas > 0, "the fixture must have delta chunks for this test to mean anything"
    # every chunk, then every tree, then the commits; the refs only after the last object
    order = [kinds[o] for o in puts]
    assert order == sorted(order, key=["chunk", "tree", "commit"].index)
    assert [e[0] for e in t.log] == ["put"] * len(puts) + ["update", "update"]
    assert t.refs == {BERT: source.base, FT: source.ft}


def test_failed_upload_moves_no_ref_and_a_rerun_sends_only_what_is_missing(
    source: Source,
) -> None:
    t = MemoryTransport()
    full = push(source.repo, refs=["bert", "bert-ft"], transport=MemoryTransport(), jobs=1)
    t.fail_put_at = full.objects_sent // 2
    with pytest.raises(RemoteError, match="injected"):
        push(source.repo, refs=["bert", "bert-ft"], transport=t, jobs=1)
    assert t.refs == {} and t.updates() == []  # no ref points at a half-sent model
    landed = set(t.objects)
    assert 0 < len(landed) < full.objects_sent

    t.fail_put_at = None
    t.log.clear()
    res = push(source.repo, refs=["bert", "bert-ft"], transport=t, jobs=1)
    resent = t.puts()
    assert landed.isdisjoint(resent), "objects the remote already held were sent again"
    assert (res.objects_already_there, res.objects_sent) == (len(landed), len(resent))
    assert len(landed) + len(resent) == full.objects_sent
    assert t.refs == {BERT: source.base, FT: source.ft}


def test_failed_upload_with_parallel_jobs_also_moves_no_ref(source: Source) -> None:
    t = MemoryTransport()
    t.fail_put_at = 3
    with pytest.raises(RemoteError, match="injected"):
        push(source.repo, refs=["bert", "bert-ft"], transport=t, jobs=4)
    assert t.refs == {}
    t.fail_put_at = None
    push(source.repo, refs=["bert", "bert-ft"], transport=t, jobs=4)
    assert t.refs == {BERT: source.base, FT: source.ft}


def test_update_ref_failing_on_the_second_ref_rolls_the_first_back(source: Source) -> None:
    t = MemoryTransport()
    push(source.repo, refs=["bert"], transport=t)
    set_local(source, BERT, source.ft)  # bert fast-forwards to the finetune
    set_local(source, V1, source.ft)

    def fail_on_tag(name: str, old: str | None, new: str | None) -> None:
        if name == V1:
            raise RemoteError("injected: the tag cannot be written")

    t.before_update = fail_on_tag
    t.log.clear()
    with pytest.raises(RemoteError, match="injected"):
        push(source.repo, refs=["bert", "v1"], transport=t)
    assert t.refs == {BERT: source.base}  # moved, then moved back
    assert t.updates() == [(BERT, source.base, source.ft), (BERT, source.ft, source.base)]


def test_a_created_ref_is_deleted_again_when_a_later_ref_fails(source: Source) -> None:
    t = MemoryTransport()

    def fail(name: str, old: str | None, new: str | None) -> None:
        if name == FT:
            raise RemoteError("injected")

    t.before_update = fail
    with pytest.raises(RemoteError):
        push(source.repo, refs=["bert", "bert-ft"], transport=t)
    assert t.refs == {}
    assert t.updates() == [(BERT, "None", source.base), (BERT, source.base, "None")]


def test_lost_race_to_an_unknown_commit_rejects_and_rolls_back(source: Source) -> None:
    t = MemoryTransport()
    push(source.repo, refs=["bert"], transport=t)
    set_local(source, BERT, source.ft)
    set_local(source, FT, source.ft)

    def racer(name: str, old: str | None, new: str | None) -> None:
        if name == FT and new == source.ft:
            t.refs[FT] = UNKNOWN  # another user created bert-ft first

    t.before_update = racer
    with pytest.raises(NonFastForwardError, match="changed while pushing") as info:
        push(source.repo, refs=["bert", "bert-ft"], transport=t)
    assert info.value.ref == FT
    assert t.refs == {BERT: source.base, FT: UNKNOWN}  # ours undone, theirs untouched


def test_lost_race_to_an_ancestor_retries_against_it(source: Source) -> None:
    t = MemoryTransport()
    raced = []

    def racer(name: str, old: str | None, new: str | None) -> None:
        if name == FT and not raced:
            raced.append(name)
            t.refs[FT] = source.base  # someone pushed an ancestor of ours meanwhile

    t.before_update = racer
    res = push(source.repo, refs=["bert-ft"], transport=t)
    assert t.refs == {FT: source.ft}
    assert [(u.ref, u.old, u.new) for u in res.updates] == [(FT, source.base, source.ft)]


def test_lost_race_to_the_same_commit_is_success(source: Source) -> None:
    t = MemoryTransport()

    def racer(name: str, old: str | None, new: str | None) -> None:
        if new is not None:
            t.refs[name] = new  # someone pushed the very same commit

    t.before_update = racer
    res = push(source.repo, refs=["bert", "bert-ft"], transport=t)
    assert t.refs == {BERT: source.base, FT: source.ft}
    assert [u.status for u in res.updates] == ["created", "created"]


def test_a_remote_that_keeps_changing_gives_up_and_rolls_back(source: Source) -> None:
    t = MemoryTransport()
    push(source.repo, refs=["bert", "bert-ft"], transport=t)
    set_local(source, BERT, source.ft)  # bert fast-forwards
    set_local(source, FT, source.base)  # bert-ft goes back: needs --force
    counter = iter(range(1, 100))

    def racer(name: str, old: str | None, new: str | None) -> None:
        if name == FT and new == source.base:
            t.refs[FT] = f"{next(counter):064x}"  # moves before every attempt

    t.before_update = racer
    with pytest.raises(NonFastForwardError, match="keeps changing"):
        push(source.repo, refs=["bert", "bert-ft"], transport=t, force=True)
    assert t.refs[BERT] == source.base  # rolled back
    assert t.refs[FT] == f"{3:064x}"  # three attempts, then it gave up


def test_rejected_push_sends_nothing(source: Source) -> None:
    t = MemoryTransport()
    push(source.repo, refs=["bert-ft"], transport=t)
    set_local(source, FT, source.base)  # behind the remote
    t.log.clear()
    with pytest.raises(NonFastForwardError, match="non-fast-forward"):
        push(source.repo, refs=["bert-ft"], transport=t)
    assert t.log == []
    res = push(source.repo, refs=["bert-ft"], transport=t, force=True)
    assert res.updates == [RefUpdate(FT, source.ft, source.base, "forced")]
    assert t.puts() == []  # the base is already there (the finetune's parent)


def test_an_incremental_push_sends_only_what_is_missing(source: Source) -> None:
    """An incremental push (the remote has the base) sends only the finetune's objects, and its
    deltas' bases are not sent again."""
    t = MemoryTransport()
    push(source.repo, refs=["bert"], transport=t)
    have = set(t.objects)
    t.log.clear()
    res = push(source.repo, refs=["bert-ft"], transport=t)
    assert have.isdisjoint(t.puts())
    assert res.objects_sent == len(t.puts()) > 0
