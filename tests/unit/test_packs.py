"""Small tensors (biases, norms, small heads) are packed several to a chunk: fewer objects,
the same exact bytes, and packs that line up with the parent's so a finetune stores deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_tensor, same_array, sha256_tree, write_model_folder

from mgit.errors import CorruptObjectError, InvalidModelFileError
from mgit.materialize import tensor_bytes
from mgit.objects.ids import hash_object
from mgit.objects.model import SMALL_TENSOR, TensorManifest


def model(seed: int = 0, *, small: int = 12) -> dict[str, np.ndarray]:
    """F32: a big embedding (several 64 KiB chunks), ``small`` small tensors, and some
    mid-sized ones (80 KiB: one chunk and a bit) between them."""
    rng = np.random.default_rng(seed)

    def t(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    out: dict[str, np.ndarray] = {"embeddings.weight": t(600, 64)}
    for i in range(small):
        out[f"layer.{i}.norm.weight"] = t(64)
        if i % 4 == 0:
            out[f"layer.{i}.dense.weight"] = t(160, 128)
    return out


def nudge(tensors: dict[str, np.ndarray], names: list[str] | None = None) -> dict[str, np.ndarray]:
    """A finetune: tiny changes to ``names`` (default: every float tensor)."""
    out = {}
    for n, a in tensors.items():
        if names is None or n in names:
            out[n] = (a + np.float32(1e-3) * np.sign(a + np.float32(0.5))).astype(a.dtype)
        else:
            out[n] = a
    return out


def commit_base(repo: Any, tmp_path: Path) -> dict[str, np.ndarray]:
    """Commit :func:`model` as model line ``base``; return its tensors."""
    base = model()
    write_model_folder(tmp_path / "base", base)
    repo.import_folder(tmp_path / "base", model="base", message="b")
    return base


def assert_exports_identical(repo: Any, ref: str, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    repo.export(ref, out)
    assert sha256_tree(out) == sha256_tree(folder)


def packs_of(repo: Any, ref: str) -> dict[str, list[tuple[str, TensorManifest]]]:
    out: dict[str, list[tuple[str, TensorManifest]]] = {}
    for name, m in repo.tensors(ref).items():
        if m.packed:
            out.setdefault(m.chunks[0], []).append((name, m))
    return out


def test_small_tensors_are_packed_and_round_trip(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "m"
    tensors = model()
    write_model_folder(src, tensors)
    res = repo.import_folder(src, model="m", message="x")
    ms = repo.tensors("m")
    for name, m in ms.items():
        assert m.packed == (0 < m.nbytes < SMALL_TENSOR), name
    packs = packs_of(repo, "m")
    assert len(packs) == 1  # 12 x 256 bytes fit in one pack
    [(pack, members)] = packs.items()
    # laid out in file order, back to back
    offsets = [m.offset for _, m in members]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert repo.store.header(pack).size == sum(m.nbytes for _, m in members)
    # one object for all small tensors: the chunks of the big ones, one pack, the header
    big_chunks = sum(len(m.chunks) for m in ms.values() if not m.packed)
    assert res.stats.chunks == big_chunks + 1 + 2  # + the two blob files of the folder
    for name, arr in tensors.items():
        assert same_array(repo.load_tensor("m", name), arr), name
        m = ms[name]
        if m.packed:
            assert m.digest == hash_object("chunk", arr.tobytes())
    assert_exports_identical(repo, "m", src, tmp_path)


def test_packs_split_by_dtype_and_capacity(repo: Any, tmp_path: Path) -> None:
    src = tmp_path / "m"
    tensors = {f"a.{i}": make_tensor("F32", (4000,), i) for i in range(10)}  # 16 KB each
    tensors.update({f"b.{i}": make_tensor("BF16", (33,), 50 + i) for i in range(3)})
    tensors["c"] = make_tensor("I64", (5,), 99)
    write_model_folder(src, tensors)
    repo.import_folder(src, model="m", message="x")
    packs = packs_of(repo, "m")
    dtypes = sorted({m.dtype for members in packs.values() for _, m in members})
    assert dtypes == ["BF16", "F32", "I64"]
    for pack, members in packs.items():
        assert len({m.dtype for _, m in members}) == 1
        assert all(m.offset % m.itemsize == 0 for _, m in members)
        assert repo.store.header(pack).size <= repo.chunk_size
    f32_packs = [p for p, members in packs.items() if members[0][1].dtype == "F32"]
    assert len(f32_packs) == 3  # 160 KB of F32 in 64 KiB packs: 4 + 4 + 2 tensors
    assert_exports_identical(repo, "m", src, tmp_path)


def test_finetune_packs_follow_the_parent_layout(repo: Any, tmp_path: Path) -> None:
    base = commit_base(repo, tmp_path)
    # the child renames every tensor with a task-head prefix, writes them in another order,
    # and changes every value a little
    child = {f"bert.{n}": a for n, a in reversed(list(nudge(base).items()))}
    write_model_folder(tmp_path / "ft", child)
    res = repo.import_folder(tmp_path / "ft", model="ft", parent="base", relation="finetune", message="f")
    [(bpack, bmembers)] = packs_of(repo, "base").items()
    [(cpack, cmembers)] = packs_of(repo, "ft").items()
    assert cpack != bpack
    assert repo.store.header(cpack).base == bpack  # a delta against the parent's pack
    assert {n: m.offset for n, m in bmembers} == {n[5:]: m.offset for n, m in cmembers}
    assert res.stats.delta_chunks >= 1
    assert_exports_identical(repo, "ft", tmp_path / "ft", tmp_path)


def test_unchanged_small_tensors_reuse_the_parent_pack(repo: Any, tmp_path: Path) -> None:
    base = commit_base(repo, tmp_path)
    child = nudge(base, ["embeddings.weight"])
    write_model_folder(tmp_path / "ft", child)
    res = repo.import_folder(tmp_path / "ft", model="ft", parent="base", message="f")
    assert set(packs_of(repo, "ft")) == set(packs_of(repo, "base"))
    assert res.stats.new_chunks == len(repo.tensors("ft")["embeddings.weight"].chunks)
    ids_b, ids_f = repo.tensor_ids("base"), repo.tensor_ids("ft")
    assert {n for n in ids_b if ids_b[n] != ids_f[n]} == {"embeddings.weight"}


def test_new_small_tensors_get_a_pack_of_their_own(repo: Any, tmp_path: Path) -> None:
    base = commit_base(repo, tmp_path)
    child = dict(base)
    child["classifier.weight"] = make_tensor("F32", (2, 64), 777)
    child["classifier.bias"] = make_tensor("F32", (2,), 778)
    write_model_folder(tmp_path / "ft", child)
    before = set(repo.store.iter_oids())
    res = repo.import_folder(tmp_path / "ft", model="ft", parent="base", message="head")
    new = set(repo.store.iter_oids()) - before
    head = {repo.tensors("ft")[n].chunks[0] for n in ("classifier.weight", "classifier.bias")}
    assert len(head) == 1
    assert new == head | {_header_of(repo, "ft"), res.commit.tree, res.commit.oid}
    assert sum(repo.store.stored_size(o) for o in head) < 2 * 4 * 130 + 200


def _header_of(repo: Any, ref: str) -> str:
    tree = repo.read_tree(repo.read_commit(repo.resolve(ref)).tree)
    return tree.files["model.safetensors"].header


def test_a_parent_pack_only_partly_present_is_not_used(repo: Any, tmp_path: Path) -> None:
    base = commit_base(repo, tmp_path)
    child = nudge(base)
    del child["layer.3.norm.weight"]
    write_model_folder(tmp_path / "ft", child)
    repo.import_folder(tmp_path / "ft", model="ft", parent="base", message="f")
    [(cpack, _)] = packs_of(repo, "ft").items()
    assert repo.store.header(cpack).base is None
    assert_exports_identical(repo, "ft", tmp_path / "ft", tmp_path)


def test_lossy_commit_keeps_small_tensors_exact(repo: Any, tmp_path: Path) -> None:
    base = commit_base(repo, tmp_path)
    child = {n: (a + np.float32(3e-4) * np.sin(np.arange(a.size, dtype=np.float32)).reshape(a.shape)).astype(np.float32)
             for n, a in base.items()}
    write_model_folder(tmp_path / "ft", child)
    res = repo.import_folder(tmp_path / "ft", model="ft", parent="base", message="f", eps=1e-3)
    assert res.commit.lossy is not None
    for name, arr in child.items():
        got = repo.load_tensor("ft", name)
        if arr.nbytes < SMALL_TENSOR:
            assert got.tobytes() == arr.tobytes(), name
        else:
            assert float(np.max(np.abs(got - arr))) <= 1e-3, name


def test_packed_tensor_that_does_not_match_is_an_error(repo: Any, tmp_path: Path) -> None:
    write_model_folder(tmp_path / "m", model())
    repo.import_folder(tmp_path / "m", model="m", message="x")
    m = repo.tensors("m")["layer.0.norm.weight"]
    assert m.packed and m.offset is not None
    wrong_digest = TensorManifest(m.dtype, m.shape, m.chunk_size, m.chunks, m.offset, "0" * 64)
    with pytest.raises(CorruptObjectError, match="digest"):
        tensor_bytes(repo.store, wrong_digest)
    size = repo.store.header(m.chunks[0]).size
    past_end = TensorManifest(m.dtype, m.shape, m.chunk_size, m.chunks, size - m.itemsize, m.digest)
    with pytest.raises(CorruptObjectError, match="past the end"):
        tensor_bytes(repo.store, past_end)


def test_a_small_tensor_changing_during_the_commit_is_refused(
    repo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Packed tensors are read twice (into the pack, then for the file checksum, in order): a
    # file rewritten in between must fail the commit, not record a checksum of other bytes.
    from mgit import ingest

    write_model_folder(tmp_path / "m", model())
    seen: set[tuple[int, int]] = set()
    real = ingest._Reader.read

    def read(self: Any, start: int, end: int) -> bytes:
        data = real(self, start, end)
        if self.name.endswith(".safetensors") and 0 < end - start < SMALL_TENSOR and start > 0:
            if (start, end) in seen:
                return bytes([data[0] ^ 1]) + data[1:]
            seen.add((start, end))
        return data

    monkeypatch.setattr(ingest._Reader, "read", read)
    with pytest.raises(InvalidModelFileError, match="changed while it was being read"):
        repo.import_folder(tmp_path / "m", model="m", message="x")
    assert repo.head() is None
