"""Object ids and the canonical encoding of tensor manifests, trees and commits."""

from __future__ import annotations

import json

import blake3
import pytest

from mgit.errors import CorruptObjectError
from mgit.objects.ids import KINDS, Hasher, hash_object, is_oid
from mgit.objects.model import Commit, FileEntry, ParentLink, TensorManifest, Tree, canonical_json

A = "a" * 64
B = "b" * 64
C = "c" * 64
X32 = "0" * 32


def manifest(**kw):
    v = {"dtype": "F32", "shape": (4, 4), "chunk_size": 32, "chunks": (A, B)}
    v.update(kw)
    return TensorManifest(**v)


def packed(**kw):
    v = {"dtype": "F32", "shape": (3,), "chunk_size": 32, "chunks": (C,), "offset": 8, "digest": A}
    v.update(kw)
    return TensorManifest(**v)


def tree():
    return Tree(
        {
            "config.json": FileEntry(kind="blob", size=10, xxh=X32, chunks=(A,)),
            "sub/model.safetensors": FileEntry(
                kind="safetensors", size=100, xxh=X32, header=B,
                tensors=(("w", manifest()), ("b", packed())),
            ),
            "empty": FileEntry(kind="blob", size=0, xxh=X32, chunks=()),
        }
    )


def commit(**kw):
    v: dict = {
        "tree": A,
        "parents": (ParentLink(B, "version"), ParentLink(C, "merge")),
        "model": "bert/base",
        "author": "tester",
        "time": 1700000000,
        "message": "first line\n\nbody ünïcode ✓",
        "meta": {"task": "sst2", "acc": "0.91"},
        "recipe": {"lr": 1e-5, "steps": [1, 2, 3], "nested": {"x": None, "y": True}},
        "lossy": {"eps": 0.001, "max_err": 0.0009},
    }
    v.update(kw)
    return Commit(**v)


# -- ids ------------------------------------------------------------------------------------------


def test_oid_is_blake3_of_typed_header_and_content() -> None:
    expected = blake3.blake3(b"chunk 5\x00hello").hexdigest()
    assert hash_object("chunk", b"hello") == expected
    assert is_oid(expected)


def test_oid_is_stable_golden_value() -> None:
    # A change here changes every id of every repository: it must be deliberate.
    assert hash_object("chunk", b"") == blake3.blake3(b"chunk 0\x00").hexdigest()
    assert hash_object("commit", b"{}") == blake3.blake3(b"commit 2\x00{}").hexdigest()


def test_oid_depends_on_kind() -> None:
    ids = {hash_object(k, b"same bytes") for k in KINDS}
    assert len(ids) == len(KINDS)


def test_oid_depends_on_every_byte() -> None:
    assert hash_object("chunk", b"abc") != hash_object("chunk", b"abd")
    assert hash_object("chunk", b"abc") != hash_object("chunk", b"abc\x00")


def test_hasher_incremental_equals_one_shot() -> None:
    data = bytes(range(256)) * 50
    h = Hasher("chunk", len(data))
    for i in range(0, len(data), 777):
        h.update(data[i : i + 777])
    assert h.oid() == hash_object("chunk", data)
    assert hash_object("chunk", memoryview(data)) == hash_object("chunk", data)


@pytest.mark.parametrize(
    "text,ok",
    [
        (A, True),
        ("A" * 64, False),
        ("a" * 63, False),
        ("a" * 65, False),
        ("g" * 64, False),
        ("", False),
    ],
)
def test_is_oid(text: str, ok: bool) -> None:
    assert is_oid(text) is ok


# -- canonical encoding ---------------------------------------------------------------------------


def test_manifest_round_trip_and_canonical() -> None:
    m = manifest()
    data = m.to_bytes()
    assert TensorManifest.from_bytes(data) == m
    assert data == canonical_json(json.loads(data))
    assert b" " not in data
    assert m.nbytes == 64 and m.segments() == [(A, 0, 32), (B, 0, 32)]
    assert not m.packed and m.data_ids == (A, B)


def test_packed_manifest() -> None:
    p = packed()
    assert TensorManifest.from_bytes(p.to_bytes()) == p
    assert p.packed and p.nbytes == 12
    assert p.segments() == [(C, 8, 20)]
    assert p.data_ids == (A,)
    # the content id depends on dtype, shape and the tensor's own bytes, not on its pack
    assert p.content_id == packed(chunks=(B,), offset=0).content_id
    assert p.content_id != packed(digest=B).content_id
    assert p.content_id != packed(shape=(1, 3)).content_id


def test_unpacked_content_id_is_the_format_1_manifest_id() -> None:
    m = manifest()
    v1 = canonical_json({"dtype": "F32", "shape": [4, 4], "chunk_size": 32, "chunks": [A, B]})
    assert m.content_id == hash_object("tensor", v1)


def test_tree_round_trip_and_canonical() -> None:
    t = tree()
    data = t.to_bytes()
    assert Tree.from_bytes(data) == t
    # insertion order does not change the encoding
    rev = Tree(dict(reversed(list(t.files.items()))))
    assert rev.to_bytes() == data
    assert t.logical_bytes == 110
    assert t.files["sub/model.safetensors"].chunk_ids() == {A, B, C}


def test_commit_round_trip_and_canonical() -> None:
    c = commit()
    data = c.to_bytes()
    assert Commit.from_bytes(data) == c
    c2 = commit(meta={"acc": "0.91", "task": "sst2"})
    assert c2.to_bytes() == data
    assert hash_object("commit", c2.to_bytes()) == hash_object("commit", data)
    # non-ASCII text is UTF-8, not \u escapes
    assert "ünïcode".encode() in data


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_equal_values_equal_ids() -> None:
    assert hash_object("tree", tree().to_bytes()) == hash_object("tree", tree().to_bytes())
    assert hash_object("commit", commit().to_bytes()) != hash_object(
        "commit", commit(time=1).to_bytes()
    )


def test_empty_tensor_manifest() -> None:
    m = TensorManifest("F16", (0, 7), 32, ())
    assert TensorManifest.from_bytes(m.to_bytes()) == m
    scalar = TensorManifest("F64", (), 64, (A,))
    assert TensorManifest.from_bytes(scalar.to_bytes()).nbytes == 8


# -- malformed objects ----------------------------------------------------------------------------


def _j(v: object) -> bytes:
    return json.dumps(v).encode()


GOOD_M = json.loads(manifest().to_bytes())
GOOD_P = json.loads(packed().to_bytes())
GOOD_T = json.loads(tree().to_bytes())
GOOD_C = json.loads(commit().to_bytes())


def _with(base: dict, **kw: object) -> bytes:
    v = json.loads(json.dumps(base))
    for k, x in kw.items():
        if x is ...:
            v.pop(k)
        else:
            v[k] = x
    return _j(v)


BAD_MANIFESTS = [
    b"",
    b"not json",
    b"\xff\xfe",
    b"[1, 2]",
    b"null",
    _with(GOOD_M, dtype="F128"),
    _with(GOOD_M, dtype=...),
    _with(GOOD_M, dtype=["F32"]),  # unhashable: must not escape as TypeError
    _with(GOOD_M, dtype={"F32": 1}),
    _with(GOOD_M, shape=[4, -4]),
    _with(GOOD_M, shape=[4, True]),
    _with(GOOD_M, shape="4x4"),
    _with(GOOD_M, shape=[4.0, 4]),
    _with(GOOD_M, chunk_size=0),
    _with(GOOD_M, chunk_size=30),  # not a multiple of the element size
    _with(GOOD_M, chunk_size=True),
    _with(GOOD_M, chunks=[A]),  # too few chunks for 64 bytes
    _with(GOOD_M, chunks=[A, B, C]),  # too many
    _with(GOOD_M, chunks=[A, "b" * 63]),
    _with(GOOD_M, chunks=[A, B.upper()]),
    _with(GOOD_M, chunks=A),
]


@pytest.mark.parametrize("data", BAD_MANIFESTS)
def test_malformed_manifest(data: bytes) -> None:
    with pytest.raises(CorruptObjectError):
        TensorManifest.from_bytes(data)


def _tree_with_file(path: str, entry: object) -> bytes:
    return _j({"files": {path: entry}})


GOOD_BLOB = GOOD_T["files"]["config.json"]
GOOD_ST = GOOD_T["files"]["sub/model.safetensors"]

BAD_TREES = [
    b"{",
    b"[]",
    _j({}),
    _j({"files": []}),
    _tree_with_file("../escape", GOOD_BLOB),
    _tree_with_file("a/../../escape", GOOD_BLOB),
    _tree_with_file("/etc/passwd", GOOD_BLOB),
    _tree_with_file("a//b", GOOD_BLOB),
    _tree_with_file("./a", GOOD_BLOB),
    _tree_with_file("", GOOD_BLOB),
    _tree_with_file("a\\b", GOOD_BLOB),
    _tree_with_file("a\x00b", GOOD_BLOB),
    _tree_with_file(".mgit/config", GOOD_BLOB),
    _tree_with_file("C:/x", GOOD_BLOB),
    _tree_with_file("f", "not an object"),
    _tree_with_file("f", {**GOOD_BLOB, "kind": "pickle"}),
    _tree_with_file("f", {**GOOD_BLOB, "size": -1}),
    _tree_with_file("f", {**GOOD_BLOB, "size": "10"}),
    _tree_with_file("f", {**GOOD_BLOB, "xxh": "short"}),
    _tree_with_file("f", {**GOOD_BLOB, "chunks": ["nope"]}),
    _tree_with_file("f", {**GOOD_ST, "header": "x"}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w"]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [[1, A]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", "zz"]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", A]]}),  # format 1: a manifest id
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_M, "chunks": [A]}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "offset": 3}]]}),  # unaligned
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "offset": -4}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "offset": 24}]]}),  # past end
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "offset": True}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "chunks": [A, B]}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "digest": "x"}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "digest": None}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_M, "digest": A}]]}),
    _tree_with_file("f", {**GOOD_ST, "tensors": [["w", {**GOOD_P, "shape": [0]}]]}),  # empty
]


@pytest.mark.parametrize("data", BAD_TREES)
def test_malformed_tree(data: bytes) -> None:
    with pytest.raises(CorruptObjectError):
        Tree.from_bytes(data)


BAD_COMMITS = [
    b"\x00",
    b"42",
    _with(GOOD_C, tree=...),
    _with(GOOD_C, tree="abc"),
    _with(GOOD_C, parents={"oid": A}),
    _with(GOOD_C, parents=[{"oid": A, "relation": "cousin"}]),
    _with(GOOD_C, parents=[{"oid": "x", "relation": "version"}]),
    _with(GOOD_C, parents=[A]),
    _with(GOOD_C, model=None),
    _with(GOOD_C, author=3),
    _with(GOOD_C, message=["a"]),
    _with(GOOD_C, time="now"),
    _with(GOOD_C, time=True),
    _with(GOOD_C, time=1.5),
    _with(GOOD_C, meta={"acc": 0.9}),
    _with(GOOD_C, meta=["a"]),
    _with(GOOD_C, recipe=[1]),
    _with(GOOD_C, lossy="yes"),
]


@pytest.mark.parametrize("data", BAD_COMMITS)
def test_malformed_commit(data: bytes) -> None:
    with pytest.raises(CorruptObjectError):
        Commit.from_bytes(data)


@pytest.mark.parametrize(
    "lossy", [{"eps": "0.1", "max_err": 0.0}, {"eps": 0.1, "max_err": None}, {"eps": 0.1}]
)
def test_commit_lossy_values_must_be_numbers(lossy: dict) -> None:
    # ``mgit log``/``show`` format these with ``:g``; a commit from a remote is not trusted.
    with pytest.raises(CorruptObjectError):
        Commit.from_bytes(_with(GOOD_C, lossy=lossy))


def test_malformed_errors_carry_a_reason() -> None:
    with pytest.raises(CorruptObjectError) as ei:
        Tree.from_bytes(_tree_with_file("../x", GOOD_BLOB))
    assert "tree" in str(ei.value)
    assert ei.value.reason
