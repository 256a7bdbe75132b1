"""REF syntax (mgit.revspec) on a graph of plain dicts: no repository, no files."""

from __future__ import annotations

from typing import Any

import pytest

from mgit.errors import AmbiguousRefError, CorruptObjectError, InvalidRefNameError, RefNotFoundError
from mgit.revspec import commits_with_prefix, parse, resolve


def oid(c: str) -> str:
    return c * 64


# a1 <- a2 <- a3 (line "base"); a2 <- b1 <- b2 (line "ft"); m1 merges a3 and b2 (line "merged")
PARENTS = {
    oid("1"): [],
    oid("2"): [oid("1")],
    oid("3"): [oid("2")],
    oid("4"): [oid("2")],
    oid("5"): [oid("4")],
    oid("6"): [oid("3"), oid("5")],
}
# two commits sharing a 5-digit prefix, and one chunk sharing a prefix with a commit
AMBIG = ["abcde" + "0" * 59, "abcde" + "1" * 59]
CHUNK = "3" * 10 + "f" * 54


class FakeRefs:
    def __init__(self, refs: dict[str, str]) -> None:
        self.refs = refs

    def read(self, name: str) -> str | None:
        if " " in name:
            raise InvalidRefNameError(name, "has a space")
        return self.refs.get(name)


class FakeStore:
    def __init__(self, kinds: dict[str, str], damaged: set[str] = frozenset()) -> None:
        self.kinds = kinds
        self.damaged = damaged

    def __contains__(self, o: object) -> bool:
        return o in self.kinds

    def oids_with_prefix(self, prefix: str) -> list[str]:
        return sorted(o for o in self.kinds if o.startswith(prefix))

    def kind_of(self, o: str) -> str:
        if o in self.damaged:
            raise CorruptObjectError(o, "flipped byte")
        return self.kinds[o]


REFS = {
    "HEAD": oid("3"),
    "refs/heads/base": oid("3"),
    "refs/heads/ft": oid("5"),
    "refs/heads/merged": oid("6"),
    "refs/tags/v1": oid("1"),
    "refs/remotes/origin/base": oid("2"),
}


def run(ref: str, *, refs: dict[str, str] = REFS, damaged: set[str] = frozenset()) -> str:
    kinds = {o: "commit" for o in PARENTS} | {a: "commit" for a in AMBIG} | {CHUNK: "chunk"}
    return resolve(ref, refs=FakeRefs(refs), store=FakeStore(kinds, damaged),  # type: ignore[arg-type]
                   parents_of=lambda c: PARENTS.get(c, []))


@pytest.mark.parametrize(
    ("ref", "base", "steps"),
    [
        ("base", "base", []),
        ("base~", "base", [("~", 1)]),
        ("base~3^2", "base", [("~", 3), ("^", 2)]),
        ("HEAD^^", "HEAD", [("^", 1), ("^", 1)]),
        ("v1^0", "v1", [("^", 0)]),
        (" ft~1 ", "ft", [("~", 1)]),
        ("base~1~", "base", [("~", 1), ("~", 1)]),  # a bare ~ is ~1, as in git
    ],
)
def test_parse(ref: str, base: str, steps: list[tuple[str, int]]) -> None:
    assert parse(ref) == (base, steps)


@pytest.mark.parametrize("ref", ["", "~1", "base~x", "^", "a~1b"])
def test_parse_refuses_what_is_not_ref_syntax(ref: str) -> None:
    with pytest.raises(RefNotFoundError):
        parse(ref)


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("base", "3"), ("ft", "5"), ("v1", "1"), ("origin/base", "2"), ("HEAD", "3"), ("@", "3"),
        ("base~1", "2"), ("base~2", "1"), ("base~0", "3"), ("base^", "2"), ("base^0", "3"),
        ("merged^1", "3"), ("merged^2", "5"), ("merged^2~1", "4"), ("merged~1~1", "2"),
        ("ft~2", "2"), ("4444", "4"), (oid("5"), "5"), ("5555~1", "4"),
    ],
)
def test_resolve(ref: str, want: str) -> None:
    assert run(ref) == oid(want)


def test_a_model_line_shadows_a_tag_and_a_tag_a_remote() -> None:
    refs = dict(REFS, **{"refs/tags/base": oid("1"), "refs/tags/x": oid("1"), "refs/remotes/x": oid("2")})
    assert run("base", refs=refs) == oid("3")
    assert run("x", refs=refs) == oid("1")


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("nope", None), ("base~3", "history is not that long"), ("merged^3", "2 parent(s)"),
        ("abc", None),  # too short for a prefix
        ("3333333333f", None),  # prefix of a chunk, not a commit
        ("has space", None),
    ],
)
def test_resolve_refuses(ref: str, reason: str | None) -> None:
    with pytest.raises(RefNotFoundError) as err:
        run(ref)
    if reason:
        assert reason in str(err.value)


def test_ambiguous_prefix_names_every_match() -> None:
    with pytest.raises(AmbiguousRefError) as err:
        run("abcde")
    assert set(err.value.candidates) == set(AMBIG)
    assert run("abcde0") == AMBIG[0]


def test_head_before_the_first_commit() -> None:
    with pytest.raises(RefNotFoundError, match="no commit yet"):
        run("HEAD", refs={})


def test_damaged_objects_are_skipped_for_a_prefix_but_reported_for_a_whole_id() -> None:
    kinds: dict[str, Any] = {oid("1"): "commit", "1" * 63 + "2": "commit"}
    store = FakeStore(kinds, damaged={"1" * 63 + "2"})
    assert commits_with_prefix(store, "1111") == [oid("1")]  # type: ignore[arg-type]
    with pytest.raises(CorruptObjectError):
        commits_with_prefix(store, "1" * 63 + "2")  # type: ignore[arg-type]
