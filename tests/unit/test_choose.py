"""The chunk encoding policy (``mgit.codecs.choose``) as a decision table, without files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mgit.codecs.choose import (
    DELTA,
    LOSSY,
    MAX_CHAIN_DEPTH,
    REUSE,
    REUSE_LOSSY,
    STANDALONE,
    Base,
    Choice,
    choose,
    lossy_capable,
)

SIZE = 1000
WHOLE = Base("chunk", SIZE, 0, stored_bytes=600)  # a base stored whole, 600 bytes on disk
DEEP = Base("chunk", SIZE, 3)  # a delta itself: no estimate of the standalone size


def run(
    *,
    size: int = SIZE,
    lossy: bool = False,
    stored: bool = False,
    base: Base | None = None,
    lossy_size: int | None = None,
    lossy_stored: bool = False,
    delta: int | None = None,
    alone: int | None = None,
    max_depth: int = MAX_CHAIN_DEPTH,
) -> tuple[Choice, list[str]]:
    """choose() on fixed facts; also returns which facts it asked for, in order."""
    asked: list[str] = []

    def fact(name: str, value: Any) -> Callable[[], Any]:
        def get() -> Any:
            assert name not in asked, f"{name} asked twice"
            asked.append(name)
            assert value is not None or name in ("base", "lossy_size"), f"{name} not given"
            return value

        return get

    got = choose(
        size,
        lossy=lossy,
        stored=fact("stored", stored),
        base=fact("base", base),
        lossy_size=fact("lossy_size", lossy_size),
        lossy_stored=fact("lossy_stored", lossy_stored),
        delta_size=fact("delta", delta),
        standalone_size=fact("alone", alone),
        max_depth=max_depth,
    )
    return got, asked


# (id, facts, expected choice, facts asked for in order). Derived from what DiskStore.put_chunk
# did before the policy moved out of it.
ROWS: list[tuple[str, dict[str, Any], Choice, list[str]]] = [
    # -- lossless ------------------------------------------------------------------------------
    ("no base -> standalone", dict(alone=500), Choice(STANDALONE), ["stored", "base"]),
    ("stored -> reuse, base never read", dict(stored=True, base=WHOLE, delta=10), Choice(REUSE), ["stored"]),
    ("stored, no base -> reuse", dict(stored=True), Choice(REUSE), ["stored"]),
    ("base and a small delta -> delta", dict(base=WHOLE, delta=100, alone=500), Choice(DELTA, 1),
     ["stored", "base", "delta"]),
    ("delta under 0.9 x whole base -> delta, standalone not tried",
     dict(base=WHOLE, delta=539, alone=1), Choice(DELTA, 1), ["stored", "base", "delta"]),
    ("delta over 0.9 x whole base, standalone smaller -> standalone",
     dict(base=WHOLE, delta=541, alone=540), Choice(STANDALONE), ["stored", "base", "delta", "alone"]),
    ("delta over the mark, standalone equal -> standalone",
     dict(base=WHOLE, delta=700, alone=700), Choice(STANDALONE), ["stored", "base", "delta", "alone"]),
    ("delta over the mark but still smaller -> delta",
     dict(base=WHOLE, delta=700, alone=701), Choice(DELTA, 1), ["stored", "base", "delta", "alone"]),
    ("delta larger than standalone -> standalone",
     dict(base=WHOLE, delta=2000, alone=900), Choice(STANDALONE), ["stored", "base", "delta", "alone"]),
    ("deep base: mark is half the chunk, delta under it",
     dict(base=DEEP, delta=500, alone=1), Choice(DELTA, 4), ["stored", "base", "delta"]),
    ("deep base: delta over half the chunk, standalone smaller",
     dict(base=DEEP, delta=501, alone=500), Choice(STANDALONE), ["stored", "base", "delta", "alone"]),
    ("whole base of unknown stored size: mark is half the chunk",
     dict(base=Base("chunk", SIZE, 0), delta=501, alone=400), Choice(STANDALONE),
     ["stored", "base", "delta", "alone"]),
    ("base one below the cap -> delta at the cap",
     dict(base=Base("chunk", SIZE, MAX_CHAIN_DEPTH - 1), delta=10), Choice(DELTA, MAX_CHAIN_DEPTH),
     ["stored", "base", "delta"]),
    ("base at the cap -> standalone, a new chain",
     dict(base=Base("chunk", SIZE, MAX_CHAIN_DEPTH), delta=1, alone=900), Choice(STANDALONE),
     ["stored", "base"]),
    ("a lower cap", dict(base=Base("chunk", SIZE, 2), max_depth=2, delta=1), Choice(STANDALONE),
     ["stored", "base"]),
    ("base of another size -> standalone",
     dict(base=Base("chunk", SIZE + 4, 0, 600), delta=1), Choice(STANDALONE), ["stored", "base"]),
    ("base that is not a chunk -> standalone",
     dict(base=Base("tree", SIZE, 0, 600), delta=1), Choice(STANDALONE), ["stored", "base"]),
    # -- lossy ---------------------------------------------------------------------------------
    ("lossy on a float dtype -> lossy",
     dict(lossy=True, base=WHOLE, lossy_size=50, delta=100), Choice(LOSSY, 1),
     ["base", "lossy_size", "lossy_stored"]),
    ("lossy, its content stored -> reuse the lossy object",
     dict(lossy=True, base=DEEP, lossy_size=50, lossy_stored=True), Choice(REUSE_LOSSY, 4),
     ["base", "lossy_size", "lossy_stored"]),
    ("lossy is taken even when larger than the lossless delta",
     dict(lossy=True, base=WHOLE, lossy_size=999, delta=10), Choice(LOSSY, 1),
     ["base", "lossy_size", "lossy_stored"]),
    ("lossy not smaller than the chunk -> lossless delta",
     dict(lossy=True, base=WHOLE, lossy_size=SIZE, delta=100), Choice(DELTA, 1),
     ["base", "lossy_size", "stored", "delta"]),
    ("codec declines -> lossless",
     dict(lossy=True, base=WHOLE, lossy_size=None, delta=100), Choice(DELTA, 1),
     ["base", "lossy_size", "stored", "delta"]),
    ("lossy declined, chunk stored -> reuse (after the base was read)",
     dict(lossy=True, stored=True, base=WHOLE, lossy_size=SIZE), Choice(REUSE),
     ["base", "lossy_size", "stored"]),
    ("lossy without a base -> standalone (no lossy attempt)",
     dict(lossy=True, lossy_size=1, alone=500), Choice(STANDALONE), ["base", "stored"]),
    ("lossy without a base, stored -> reuse", dict(lossy=True, stored=True), Choice(REUSE),
     ["base", "stored"]),
    ("lossy with the base at the cap -> standalone",
     dict(lossy=True, base=Base("chunk", SIZE, MAX_CHAIN_DEPTH), lossy_size=1, alone=500),
     Choice(STANDALONE), ["base", "stored"]),
    # an error bound on an int dtype, and every pack of small tensors (the caller passes no
    # bound for those), is the lossless policy: lossy=False whatever the lossy codec would give
    ("eps on an int dtype / a pack -> lossless delta",
     dict(lossy=False, base=WHOLE, lossy_size=1, delta=100), Choice(DELTA, 1),
     ["stored", "base", "delta"]),
    ("eps on an int dtype / a pack, stored -> reuse before the base",
     dict(lossy=False, stored=True, base=WHOLE, lossy_size=1), Choice(REUSE), ["stored"]),
]


@pytest.mark.parametrize(("facts", "expected", "asked"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_decision_table(facts: dict[str, Any], expected: Choice, asked: list[str]) -> None:
    got, order = run(**facts)
    assert got == expected
    assert order == asked  # the costly facts are learned only when they matter, in this order


@pytest.mark.parametrize(
    ("dtype", "capable"),
    [("F32", True), ("F16", True), ("BF16", True), ("F64", True), ("I64", False), ("I8", False),
     ("U8", False), ("BOOL", False), ("F8_E4M3", False), (None, False)],
)
def test_lossy_capable(dtype: str | None, capable: bool) -> None:
    assert lossy_capable(dtype) is capable


def test_depth_cap_is_the_stores() -> None:
    from mgit.objects import store

    assert store.MAX_CHAIN_DEPTH == MAX_CHAIN_DEPTH == 8
