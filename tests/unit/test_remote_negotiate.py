"""The negotiation rules of push, fetch and pull, as tables over plain dicts (no files)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mgit.errors import RefNotFoundError, UsageError
from mgit.objects.model import Commit, FileEntry, ParentLink, TensorManifest, Tree
from mgit.remote import negotiate
from mgit.remote.results import RefUpdate


def oid(name: str) -> str:
    """A well-formed id that reads as ``name`` in a failure message."""
    return name.encode().hex().ljust(64, "0")[:64]


# A small history:  c1 <- c2 <- c3 (model line "bert");  c1 <- x (a diverging line);
# u is a commit this repository has never seen.
C1, C2, C3, X, U = (oid(n) for n in ("c1", "c2", "c3", "x", "u"))
GRAPH: dict[str, list[str]] = {C1: [], C2: [C1], C3: [C2], X: [C1]}
KNOWN = set(GRAPH)


def parents(c: str) -> list[str]:
    return GRAPH.get(c, [])


H = "refs/heads/"
T = "refs/tags/"


# -- plan_updates -------------------------------------------------------------------------------

PLAN_CASES = [
    # (ref, local, remote, force) -> status, or "rejected: why"
    ("bert", C3, C3, False, "up-to-date"),
    ("bert", C3, None, False, "created"),
    ("bert", C3, C1, False, "fast-forward"),
    ("bert", C3, C2, True, "fast-forward"),  # forcing a fast-forward is still a fast-forward
    ("bert", C2, C3, False, "rejected: non-fast-forward"),  # remote is ahead
    ("bert", X, C3, False, "rejected: non-fast-forward"),  # diverged
    ("bert", X, C3, True, "forced"),
    ("bert", C3, U, False, "rejected: non-fast-forward"),  # remote commit unknown here
    ("bert", C3, U, True, "forced"),
    ("v1", C3, None, False, "created"),
    ("v1", C3, C3, False, "up-to-date"),
    ("v1", C3, C2, False, "rejected: tag exists on the remote"),  # tags never fast-forward
    ("v1", C3, C2, True, "forced"),
]


@pytest.mark.parametrize(("name", "local", "remote", "force", "want"), PLAN_CASES)
def test_plan_updates_table(
    name: str, local: str, remote: str | None, force: bool, want: str
) -> None:
    ref = (T if name.startswith("v") else H) + name
    remote_refs = {ref: remote} if remote is not None else {}
    updates, rejected = negotiate.plan_updates(
        {ref: local}, remote_refs, force=force, known=KNOWN, parents=parents
    )
    if want.startswith("rejected: "):
        assert updates == []
        assert rejected == [(ref, want[len("rejected: ") :])]
    else:
        assert rejected == []
        assert updates == [RefUpdate(ref, remote, local, want)]


def test_plan_updates_is_sorted_by_ref_and_keeps_remote_only_refs_alone() -> None:
    local = {H + "z": C3, H + "a": C2, T + "v1": C1}
    remote = {H + "a": C1, H + "other": X}
    updates, rejected = negotiate.plan_updates(
        local, remote, force=False, known=KNOWN, parents=parents
    )
    assert rejected == []
    assert [(u.ref, u.status) for u in updates] == [
        (H + "a", "fast-forward"),
        (H + "z", "created"),
        (T + "v1", "created"),
    ]


# -- select_push_refs ---------------------------------------------------------------------------

LOCAL_REFS = {H + "bert": C3, H + "gpt": X, T + "v1": C2, T + "gpt": C1}


def _select(refs: list[str], *, all_models: bool = False, tags: bool = False,
            head_model: str | None = "bert", local: dict[str, str] = LOCAL_REFS) -> dict[str, str]:
    return negotiate.select_push_refs(
        refs,
        all_models=all_models,
        tags=tags,
        head_model=head_model,
        read=local.get,
        iter_refs=lambda prefix: {k: v for k, v in local.items() if k.startswith(prefix)},
    )


@pytest.mark.parametrize(
    ("refs", "kwargs", "want"),
    [
        ([], {}, {H + "bert": C3}),  # default: the checked-out model
        (["v1"], {}, {T + "v1": C2}),
        (["gpt"], {}, {H + "gpt": X}),  # a model wins over a tag of the same name
        ([T + "gpt"], {}, {T + "gpt": C1}),  # a full name is taken as it is
        (["bert", "v1"], {}, {H + "bert": C3, T + "v1": C2}),
        ([], {"all_models": True}, {H + "bert": C3, H + "gpt": X}),
        ([], {"tags": True}, {T + "v1": C2, T + "gpt": C1}),
        (["v1"], {"all_models": True}, {H + "bert": C3, H + "gpt": X, T + "v1": C2}),
        ([], {"all_models": True, "head_model": None}, {H + "bert": C3, H + "gpt": X}),
    ],
)
def test_select_push_refs_table(refs: list[str], kwargs: dict, want: dict[str, str]) -> None:
    assert _select(refs, **kwargs) == want


@pytest.mark.parametrize(
    ("refs", "kwargs", "error", "match"),
    [
        (["nope"], {}, RefNotFoundError, "nope"),
        ([H + "v1"], {}, RefNotFoundError, "v1"),  # a full name is not re-resolved as a tag
        ([], {"head_model": None}, UsageError, "detached"),
        ([], {"head_model": "new"}, UsageError, "no commits yet"),
    ],
)
def test_select_push_refs_refusals(refs: list[str], kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _select(refs, **kwargs)


# -- after a lost compare-and-swap, and rolling back ---------------------------------------------


@pytest.mark.parametrize(
    ("ref", "old", "new", "status", "actual", "want"),
    [
        (H + "bert", C1, C3, "fast-forward", C3, "done"),  # someone pushed the same commit
        (H + "bert", C1, C3, "fast-forward", C2, "retry"),  # moved to a commit ours contains
        (H + "bert", None, C3, "created", C1, "retry"),  # created meanwhile, at an ancestor
        (H + "bert", C1, C3, "fast-forward", X, "reject"),  # moved elsewhere
        (H + "bert", C1, C3, "fast-forward", U, "reject"),  # moved to a commit we lack
        (H + "bert", C1, C3, "fast-forward", None, "reject"),  # deleted meanwhile
        (H + "bert", X, C3, "forced", U, "retry"),  # forced: always against the new value
        (H + "bert", X, C3, "forced", None, "retry"),
        (T + "v1", None, C3, "created", C2, "reject"),  # a tag never fast-forwards
        (T + "v1", None, C3, "created", C3, "done"),
    ],
)
def test_after_conflict_table(
    ref: str, old: str | None, new: str, status: str, actual: str | None, want: str
) -> None:
    u = RefUpdate(ref, old, new, status)
    assert negotiate.after_conflict(u, actual, known=KNOWN, parents=parents) == want


def test_rollback_plan_undoes_newest_first_with_compare_and_swap() -> None:
    done = [
        RefUpdate(H + "a", C1, C2, "fast-forward"),
        RefUpdate(H + "b", None, C3, "created"),
        RefUpdate(T + "v", X, C3, "forced"),
    ]
    assert negotiate.rollback_plan(done) == [
        (T + "v", C3, X),
        (H + "b", C3, None),  # a created ref is deleted, if it still holds our value
        (H + "a", C2, C1),
    ]
    assert negotiate.rollback_plan([]) == []


# -- upload order ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hdr:
    kind: str
    depth: int = 0


def test_upload_levels_split_by_depth_then_trees_then_each_commit() -> None:
    headers = {
        "a0": Hdr("chunk", 0), "b0": Hdr("chunk", 0), "a1": Hdr("chunk", 1),
        "a2": Hdr("chunk", 2), "b2": Hdr("chunk", 2), "t1": Hdr("tree"), "t2": Hdr("tree"),
        "k1": Hdr("commit"), "k2": Hdr("commit"),
    }
    order = ["a0", "b0", "a1", "a2", "b2", "t1", "t2", "k1", "k2"]
    assert negotiate.upload_levels(order, headers) == [
        ["a0", "b0"], ["a1"], ["a2", "b2"], ["t1", "t2"], ["k1"], ["k2"],
    ]


@pytest.mark.parametrize(
    ("order", "want"),
    [
        ([], []),
        (["t1"], [["t1"]]),
        (["k1", "k2"], [["k1"], ["k2"]]),  # commits never share a level (parents first)
        (["a0", "t1", "k1"], [["a0"], ["t1"], ["k1"]]),
    ],
)
def test_upload_levels_small_cases(order: list[str], want: list[list[str]]) -> None:
    headers = {"a0": Hdr("chunk"), "t1": Hdr("tree"), "k1": Hdr("commit"), "k2": Hdr("commit")}
    assert negotiate.upload_levels(order, headers) == want


# -- fetch: received commits and chunk order ----------------------------------------------------


def commit(tree: str, *parent_ids: str, t: int = 0) -> Commit:
    return Commit(
        tree=tree,
        parents=tuple(ParentLink(p, "finetune") for p in parent_ids),
        model="m",
        author="a",
        time=t,
        message="",
    )


def test_received_parents_first_orders_parents_before_children() -> None:
    # k1 <- k2 <- k4, k1 <- k3 <- k4 (a merge); "old" is already stored locally.
    k1, k2, k3, k4, old = (oid(n) for n in ("k1", "k2", "k3", "k4", "old"))
    received = {
        k4: commit("t", k2, k3, t=1),  # times lie: the order must follow the edges anyway
        k3: commit("t", k1, t=5),
        k2: commit("t", k1, t=9),
        k1: commit("t", old, t=10),
    }
    order = negotiate.received_parents_first(received)
    assert sorted(order) == sorted(received)
    pos = {c: i for i, c in enumerate(order)}
    for c, value in received.items():
        for p in value.parents:
            if p.oid in received:
                assert pos[p.oid] < pos[c], (p.oid, c)
    assert negotiate.received_parents_first({}) == []


def _entry(*chunks: str, header: str | None = None, tensors: tuple[str, ...] = ()) -> FileEntry:
    manifests = tuple(
        (f"w{i}", TensorManifest("F32", (1,), 4, (c,))) for i, c in enumerate(tensors)
    )
    kind = "blob" if not header else "safetensors"
    return FileEntry(kind, 0, "0" * 32, chunks, header, manifests)


def test_chunk_order_follows_older_commits_first_and_keeps_only_wanted() -> None:
    parent, child = oid("parent"), oid("child")
    received = {child: commit("t-child", parent, t=2), parent: commit("t-parent", t=1)}
    trees = {
        "t-parent": Tree(
            {"b.bin": _entry("p1", "p2"), "a.st": _entry(header="ph", tensors=("p3",))}
        ),
        "t-child": Tree({"a.st": _entry(header="ch", tensors=("c3", "p3")), "b.bin": _entry("c1")}),
    }
    wanted = {"p1", "p2", "p3", "ph", "ch", "c3", "c1", "stray"}
    order = negotiate.chunk_order(received, trees, wanted)
    # the parent's chunks (files by path; a file's blob chunks, header, tensors), then the
    # child's new ones, then chunks no tree names (a delta base), by id
    assert order == ["ph", "p3", "p1", "p2", "ch", "c3", "c1", "stray"]
    assert negotiate.chunk_order(received, trees, {"c1"}) == ["c1"]
    assert negotiate.chunk_order(received, {}, {"z", "y"}) == ["y", "z"]


def test_referenced_chunks() -> None:
    tree = Tree({"a.st": _entry(header="h", tensors=("x", "y")), "b": _entry("p", "q")})
    assert negotiate.referenced_chunks(tree) == {"h", "x", "y", "p", "q"}
    assert negotiate.referenced_chunks(Tree({})) == set()


def test_split_remote_refs() -> None:
    remote = {H + "bert": C3, H + "org/gpt": X, T + "v1": C2}
    heads, tags = negotiate.split_remote_refs(remote, None, where="R")
    assert (heads, tags) == ({"bert": C3, "org/gpt": X}, {"v1": C2})
    heads, tags = negotiate.split_remote_refs(remote, ["org/gpt"], where="R")
    assert (heads, tags) == ({"org/gpt": X}, {"v1": C2})
    with pytest.raises(RefNotFoundError, match="no such model on R"):
        negotiate.split_remote_refs(remote, ["bert", "v1"], where="R")


# -- tracking refs and pull ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        (None, C1, "created"),
        (C1, None, "deleted"),
        (None, None, "deleted"),
        (C1, C3, "fast-forward"),
        (C3, C1, "forced"),
        (X, C3, "forced"),
        (U, C3, "forced"),  # an old value we do not know cannot be shown to be an ancestor
    ],
)
def test_move_status_table(old: str | None, new: str | None, want: str) -> None:
    assert negotiate.move_status(old, new, known=KNOWN, parents=parents) == want


@pytest.mark.parametrize(
    ("old", "new", "want"),
    [
        (C3, C3, "up-to-date"),
        (C3, C1, "ahead"),
        (X, C3, "diverged"),
        (C3, X, "diverged"),
        (None, C3, "created"),
        (C1, C3, "fast-forward"),
    ],
)
def test_pull_action_table(old: str | None, new: str, want: str) -> None:
    assert negotiate.pull_action(old, new, parents=parents) == want


def test_short_ref() -> None:
    assert [negotiate.short_ref(r) for r in (H + "a/b", T + "v", "refs/remotes/o/m", "x")] == [
        "a/b", "v", "o/m", "x",
    ]
