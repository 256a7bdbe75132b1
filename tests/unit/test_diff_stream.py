"""The streamed numeric diff: chunk by chunk from the store, on a pool, with progress."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import mgit.diff.stats as stats_mod
from mgit.diff import DictTensorSource, diff_models
from mgit.diff.stats import StatsAccumulator, compute_stats
from mgit.diff.stream import ChunkReader, PieceReader, Scheduler, progress_to
from mgit.errors import CorruptObjectError
from mgit.repo import Repository
from mgit.sources import RepoTensorSource
from tests.helpers import write_safetensors

CHUNK = 64 * 1024


def two_versions() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    a = {
        "enc.w": (rng.standard_normal((300, 200)) * 0.02).astype(np.float32),  # 4 chunks
        "enc.same": rng.standard_normal((130, 200)).astype(np.float32),
        "enc.half": rng.standard_normal((64, 1024)).astype(np.float32),  # 4 chunks, 2 change
        "enc.bias": rng.standard_normal(50).astype(np.float32),  # packed
        "enc.ln": rng.standard_normal(40).astype(np.float32),  # packed, unchanged
        "emb": (rng.standard_normal((400, 96)) * 0.02).astype(ml_dtypes.bfloat16),
        "ids": np.arange(40000, dtype=np.int32),
        "vec": rng.standard_normal(70000).astype(np.float64),
    }
    u = rng.standard_normal((300, 3)).astype(np.float32)
    v = rng.standard_normal((3, 200)).astype(np.float32)
    half = a["enc.half"].copy()
    half[32:] += 0.5
    emb = a["emb"].astype(np.float32)
    emb[::50] += 0.25
    vec = a["vec"].copy()
    vec[5] = np.nan
    vec[7] = np.inf
    b = {
        **a,
        "enc.w": a["enc.w"] + (u @ v) * np.float32(1e-3),
        "enc.half": half,
        "enc.bias": a["enc.bias"] + np.float32(0.1),
        "emb": emb.astype(ml_dtypes.bfloat16),
        "ids": a["ids"] + (np.arange(40000) % 7 == 0).astype(np.int32),
        "vec": vec,
    }
    return a, b


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    a, b = two_versions()
    write_safetensors(tmp_path / "v1" / "model.safetensors", a)
    write_safetensors(tmp_path / "v2" / "model.safetensors", b)
    r = Repository.init(tmp_path / "repo", chunk_size=CHUNK)
    r.import_folder(tmp_path / "v1", model="m", message="v1")
    r.import_folder(tmp_path / "v2", model="m", message="v2")
    return r, a, b


def assert_same_diff(x: Any, y: Any) -> None:
    assert [t.name for t in x.tensors] == [t.name for t in y.tensors]
    for s, t in zip(x.tensors, y.tensors, strict=True):
        assert s.status == t.status, s.name
        assert (s.stats is None) == (t.stats is None), s.name
        if s.stats is None:
            continue
        js, jt = s.stats.to_json(), t.stats.to_json()
        rs, rt = js.pop("rank"), jt.pop("rank")
        for key, value in js.items():
            if isinstance(value, float):
                assert value == pytest.approx(jt[key], rel=1e-9, abs=1e-12), (s.name, key)
            else:
                assert value == jt[key], (s.name, key)
        assert (rs is None) == (rt is None), s.name
        if rs is not None:
            assert rs["effective"] == rt["effective"] and rs["energy99"] == rt["energy99"], s.name


def test_streamed_diff_equals_the_diff_of_whole_arrays(
    repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, a, b = repo
    streamed: list[str] = []
    real = Scheduler.stream

    def spy(self: Scheduler, pa: Any, pb: Any, dtype: str, shape: Any, **kw: Any) -> None:
        streamed.append(dtype)
        real(self, pa, pb, dtype, shape, **kw)

    monkeypatch.setattr(Scheduler, "stream", spy)
    d = r.diff("m~1", "m")
    ref = diff_models(DictTensorSource("a", a), DictTensorSource("b", b))
    assert_same_diff(d, ref)
    assert d.get("enc.same").status == "unchanged" and d.get("enc.ln").status == "unchanged"
    assert d.get("enc.w").stats.rank.effective == 3
    assert d.get("vec").stats.nonfinite_b == 2
    # every loaded pair went chunk by chunk: f32 (chunked and packed), bf16, i32, f64
    assert d.summary.loaded == len(streamed) and {"F32", "BF16", "I32", "F64"} <= set(streamed)


def test_streamed_diff_is_the_same_on_one_or_two_workers_and_both_ways(repo: Any) -> None:
    r, _, _ = repo
    one = diff_models(RepoTensorSource(r, "m~1"), RepoTensorSource(r, "m"), workers=1)
    two = diff_models(RepoTensorSource(r, "m~1"), RepoTensorSource(r, "m"), workers=2)
    assert one.to_json() == two.to_json()
    back = diff_models(RepoTensorSource(r, "m"), RepoTensorSource(r, "m~1"), workers=2)
    for t in back.tensors:
        fwd = one.get(t.name)
        assert t.status == fwd.status
        if t.stats is not None and fwd.stats is not None:
            assert t.stats.l2_diff == pytest.approx(fwd.stats.l2_diff, rel=1e-12)


def test_a_delta_chunk_is_decoded_over_the_other_side(
    repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2's chunks are deltas against v1's: each base is decoded once, not once per side."""
    r, _, _ = repo
    gets: list[str] = []
    real_get = r.store.get

    def counting_get(oid: str, **kw: Any) -> bytes:
        gets.append(oid)
        return real_get(oid, **kw)

    ra = PieceReader(RepoTensorSource(r, "m~1"))
    rb = PieceReader(RepoTensorSource(r, "m"))
    pa, pb = ra.pieces("enc.w"), rb.pieces("enc.w")
    assert pa is not None and pb is not None and len(pa) == 4
    assert r.store.parse_header(pb[0].oid, r.store.read_raw(pb[0].oid)).base == pa[0].oid
    monkeypatch.setattr(r.store, "get", counting_get)
    reader = pa[0].chunks
    assert isinstance(reader, ChunkReader) and reader is pb[0].chunks
    for x, y in zip(pa, pb, strict=True):
        for first, second in ((x, y), (y, x)):  # either side may be the base
            ba, bb = reader.pair(first, second)
            assert ba == real_get(first.oid, kind="chunk") and bb == real_get(
                second.oid, kind="chunk"
            )
    assert gets == []  # no chain decoded through the store's own reader


def test_a_damaged_delta_chunk_is_an_error(repo: Any) -> None:
    r, _, _ = repo
    pb = PieceReader(RepoTensorSource(r, "m")).pieces("enc.w")
    assert pb is not None
    path = r.store.path_for(pb[1].oid)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError):
        r.diff("m~1", "m")


def test_a_packed_tensor_that_does_not_match_its_digest_is_an_error(repo: Any) -> None:
    r, _, _ = repo
    reader = PieceReader(RepoTensorSource(r, "m"))
    (piece,) = reader.pieces("enc.bias") or []
    assert piece.chunks is None and piece.nbytes == 200
    assert piece.fetch() == np.asarray(r.load_tensor("m", "enc.bias")).tobytes()
    m = reader._manifests["enc.bias"]
    assert reader.chunks is not None
    with pytest.raises(CorruptObjectError):
        reader.chunks.packed(m.chunks[0], m.offset, m.offset + 200, m.digest[:-1] + "0")


def test_progress_reaches_the_total_and_reaches_repo_diff(repo: Any) -> None:
    r, _, _ = repo
    seen: list[tuple[int, int]] = []
    with progress_to(lambda done, total: seen.append((done, total))):
        r.diff("m~1", "m")
    assert seen and seen[-1][0] == seen[-1][1] > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    own: list[tuple[int, int]] = []
    diff_models(RepoTensorSource(r, "m~1"), RepoTensorSource(r, "m"),
                progress_bytes=lambda d, t: own.append((d, t)))  # fmt: skip
    assert own[-1] == seen[-1]


def test_whole_pairs_run_on_the_pool_too() -> None:
    """Sources without chunks (arrays, folders) are compared whole, in order, on the pool."""
    a, b = two_versions()
    one = diff_models(DictTensorSource("a", a), DictTensorSource("b", b), workers=1)
    three = diff_models(DictTensorSource("a", a), DictTensorSource("b", b), workers=3)
    assert one.to_json() == three.to_json()


# --------------------------------------------------------------------------------------
# the C kernel and its numpy fallback


def kernel_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(10007).astype(np.float32)
    y = x + rng.standard_normal(x.size).astype(np.float32) * np.float32(1e-3)
    y[::3] = x[::3]
    yn = y.copy()
    yn[[5, 9000]] = np.nan
    xn = x.copy()
    xn[[5, 17]] = [np.nan, -np.inf]
    z = x.copy()
    z[100] = -0.0 if x[100] == 0 else x[100]
    return [
        (x, y),
        (xn, yn),
        (x.astype(np.float64), y.astype(np.float64) * 1.5),
        (x.astype(ml_dtypes.bfloat16), y.astype(ml_dtypes.bfloat16)),
        (x, y.astype(np.float64)),
        (x[:3], y[:3]),
        (np.zeros(0, np.float32), np.zeros(0, np.float32)),
    ]


@pytest.mark.skipif(stats_mod._C is None, reason="mgit._diffstats is not built")
@pytest.mark.parametrize("case", range(len(kernel_cases())))
def test_c_kernel_matches_numpy(case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    xa, xb = kernel_cases()[case]
    out_c = np.full(xa.size, 7.0, np.float32)
    out_np = np.full(xa.size, 7.0, np.float32)
    c = StatsAccumulator()
    c.add(xa, xb, out_c)
    c_same = StatsAccumulator()
    c_same.add_same(xb)
    monkeypatch.setattr(stats_mod, "_C", None)
    n = StatsAccumulator()
    n.add(xa, xb, out_np)
    n_same = StatsAccumulator()
    n_same.add_same(xb)
    for got, want in ((c, n), (c_same, n_same)):
        for key in StatsAccumulator.__slots__:
            g, w = getattr(got, key), getattr(want, key)
            if isinstance(w, float):
                assert g == pytest.approx(w, rel=1e-12, abs=1e-300), key
            else:
                assert g == w, key
    np.testing.assert_array_equal(out_c, out_np)


@pytest.mark.skipif(stats_mod._C is None, reason="mgit._diffstats is not built")
def test_c_kernel_rejects_mismatched_buffers() -> None:
    kernel = stats_mod._C
    with pytest.raises(ValueError):
        kernel.pair_stats(np.zeros(4, np.float32), "f", np.zeros(3, np.float32), "f")
    with pytest.raises(ValueError):
        kernel.pair_stats(np.zeros(4, np.float32), "x", np.zeros(4, np.float32), "f")
    with pytest.raises(ValueError):
        kernel.pair_stats(
            np.zeros(4, np.float32), "f", np.zeros(4, np.float32), "f", np.zeros(3, np.float32)
        )


def test_stats_of_pieces_merge_to_the_stats_of_the_whole() -> None:
    xa, xb = kernel_cases()[1]
    whole = compute_stats(xa, xb, rank=False)
    acc = StatsAccumulator()
    for s in range(0, xa.size, 999):
        part = StatsAccumulator()
        part.add(xa[s : s + 999], xb[s : s + 999])
        acc.merge(part)
    merged = acc.result()
    assert merged.changed == whole.changed and merged.nonfinite_a == whole.nonfinite_a == 2
    assert merged.l2_diff == pytest.approx(whole.l2_diff, rel=1e-12)
    assert math.isclose(merged.max_abs_diff, whole.max_abs_diff)


# --------------------------------------------------------------------------------------
# the CLI's progress bar


def test_delayed_bar_shows_only_after_its_delay() -> None:
    from rich.console import Console

    from mgit.commands.cmd_diff import DelayedBar

    buf = io.StringIO()
    late = DelayedBar("diff a b", delay=60.0, console=Console(file=buf, force_terminal=True))
    late(10, 100)
    late.close()
    assert late.progress is None and buf.getvalue() == ""
    now = DelayedBar(
        "diff a b", delay=0.0, console=Console(file=buf, force_terminal=True, width=100)
    )
    now(10, 100)
    assert now.progress is not None
    now(100, 100)
    now.close()
    assert "diff a b" in buf.getvalue()
