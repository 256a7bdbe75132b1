"""Properties of the object model: canonical encodings round-trip, ids are stable and
kind-typed, and any single flipped byte of a stored object is detected on read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgit.errors import CorruptObjectError, ObjectNotFoundError
from mgit.objects.ids import KINDS, Hasher, hash_object
from mgit.objects.model import (
    DTYPE_SIZES,
    RELATIONS,
    Commit,
    FileEntry,
    ParentLink,
    TensorManifest,
    Tree,
    is_small_tensor,
)
from mgit.objects.store import DiskStore

oids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
xxhs = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
texts = st.text(max_size=40)  # no lone surrogates: hypothesis excludes them by default


@st.composite
def manifests(draw: st.DrawFn) -> TensorManifest:
    dtype = draw(st.sampled_from(sorted(DTYPE_SIZES)))
    shape = tuple(draw(st.lists(st.integers(0, 40), max_size=4)))
    item = DTYPE_SIZES[dtype]
    n = item
    for d in shape:
        n *= d
    # at most 8 chunks: chunk sizes from one element up
    cs = item * max(draw(st.integers(1, 64)), -(-n // (8 * item)))
    count = -(-n // cs) if n else 0
    if is_small_tensor(n) and draw(st.booleans()):  # packed: one chunk, aligned offset, room after it
        cs = max(cs, item * draw(st.integers(1, 64)) + n)
        offset = item * draw(st.integers(0, (cs - n) // item))
        return TensorManifest(dtype=dtype, shape=shape, chunk_size=cs, chunks=(draw(oids),),
                              offset=offset, digest=draw(oids))
    chunks = tuple(draw(st.lists(oids, min_size=count, max_size=count)))
    return TensorManifest(dtype=dtype, shape=shape, chunk_size=cs, chunks=chunks)


components = st.text(alphabet="abcxyz0123456789._-ü ", min_size=1, max_size=8).filter(
    lambda c: c not in (".", "..")
)
paths = (
    st.lists(components, min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda p: p.split("/")[0] != ".mgit")
)

entries = st.one_of(
    st.builds(
        lambda size, xxh, chunks: FileEntry(kind="blob", size=size, xxh=xxh, chunks=tuple(chunks)),
        st.integers(0, 1 << 40),
        xxhs,
        st.lists(oids, max_size=3),
    ),
    st.builds(
        lambda size, xxh, header, tensors: FileEntry(
            kind="safetensors", size=size, xxh=xxh, header=header, tensors=tuple(tensors)
        ),
        st.integers(0, 1 << 40),
        xxhs,
        oids,
        st.lists(st.tuples(texts, manifests()), max_size=3),
    ),
)
trees = st.builds(Tree, st.dictionaries(paths, entries, max_size=5))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 53), 1 << 53),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)

commits = st.builds(
    Commit,
    tree=oids,
    parents=st.lists(st.builds(ParentLink, oids, st.sampled_from(RELATIONS)), max_size=3).map(
        tuple
    ),
    model=texts,
    author=texts,
    time=st.integers(-(1 << 40), 1 << 40),
    message=st.text(max_size=200),
    meta=st.dictionaries(texts, texts, max_size=4),
    recipe=st.one_of(st.none(), st.dictionaries(texts, json_values, max_size=3)),
    lossy=st.one_of(
        st.none(),
        st.fixed_dictionaries({"eps": st.floats(1e-9, 10.0), "max_err": st.floats(0.0, 10.0)}),
    ),
)


@given(manifests())
def test_manifest_round_trip(m: TensorManifest) -> None:
    data = m.to_bytes()
    assert TensorManifest.from_bytes(data) == m
    assert TensorManifest.from_bytes(data).to_bytes() == data


@given(trees)
def test_tree_round_trip(t: Tree) -> None:
    data = t.to_bytes()
    assert Tree.from_bytes(data) == t
    assert Tree.from_bytes(data).to_bytes() == data


@given(commits)
def test_commit_round_trip(c: Commit) -> None:
    data = c.to_bytes()
    assert Commit.from_bytes(data) == c
    assert Commit.from_bytes(data).to_bytes() == data


@given(commits)
def test_commit_encoding_is_canonical(c: Commit) -> None:
    data = c.to_bytes()
    # re-encoding a parse of a pretty-printed, reordered copy gives the same bytes and id
    pretty = json.dumps(json.loads(data), indent=3, sort_keys=False)
    assert Commit.from_bytes(pretty.encode()).to_bytes() == data
    shuffled = Commit(**{**c.__dict__, "meta": dict(reversed(list(c.meta.items())))})
    assert hash_object("commit", shuffled.to_bytes()) == hash_object("commit", data)


@given(st.binary(max_size=300), st.sampled_from(KINDS), st.sampled_from(KINDS))
def test_ids_are_kind_typed(data: bytes, k1: str, k2: str) -> None:
    assert (hash_object(k1, data) == hash_object(k2, data)) == (k1 == k2)


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_hasher_matches_hash_object(data: bytes, cuts: list[int]) -> None:
    h = Hasher("chunk", len(data))
    prev = 0
    for c in sorted(min(c, len(data)) for c in cuts):
        h.update(data[prev:c])
        prev = c
    h.update(data[prev:])
    assert h.oid() == hash_object("chunk", data)


@given(st.binary(max_size=300))
def test_malformed_bytes_never_escape_as_other_errors(data: bytes) -> None:
    for cls in (TensorManifest, Tree, Commit):
        try:
            cls.from_bytes(data)
        except CorruptObjectError:
            pass


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prop-store")


@given(
    content=st.binary(min_size=0, max_size=3000),
    kind=st.sampled_from(KINDS),
    where=st.integers(0, 10**6),
    mask=st.integers(1, 255),
)
def test_single_byte_flip_is_detected(
    content: bytes, kind: str, where: int, mask: int, store_dir: Path
) -> None:
    store = DiskStore(store_dir / "objects")
    oid = store.put(kind, content)
    raw = store.read_raw(oid)
    bad = bytearray(raw)
    bad[where % len(raw)] ^= mask
    other = DiskStore(store_dir / "other")
    try:
        other.write_raw(oid, bytes(bad))
    except (CorruptObjectError, ObjectNotFoundError):
        pass
    else:
        raise AssertionError(f"flipped byte {where % len(raw)} of {len(raw)} was accepted")
    assert oid not in other


_KEYS = [
    "dtype",
    "shape",
    "chunk_size",
    "chunks",
    "files",
    "kind",
    "size",
    "xxh",
    "header",
    "tensors",
    "tree",
    "parents",
    "oid",
    "relation",
    "model",
    "author",
    "time",
    "message",
    "meta",
    "recipe",
    "lossy",
]
fuzz_values = st.recursive(
    st.one_of(
        json_scalars, oids, st.sampled_from(["F32", "blob", "safetensors", "version", "a/b"])
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), texts), inner, max_size=5),
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(_KEYS), fuzz_values, max_size=9))
def test_structured_garbage_raises_only_corrupt_object(value: dict) -> None:
    data = json.dumps(value).encode()
    for cls in (TensorManifest, Tree, Commit):
        try:
            cls.from_bytes(data)
        except CorruptObjectError:
            pass
