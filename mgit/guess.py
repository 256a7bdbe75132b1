"""Parent suggestion: which stored model version is closest to a model folder?

For every candidate commit the score is the fraction of the new model's tensor bytes that are
either identical to the candidate's (same chunk ids: no tensor data is read) or close to it,
estimated from a sample: the first chunk of the few largest changed tensors is decoded and the
fraction of elements whose high bits (sign, exponent, top mantissa bits) agree is measured.
Tensor names are paired tolerating task-head prefixes (``bert.``...). MGit instead traces every
model with torch.fx (7.5 s per insert at 23 models); this needs one hash pass over the new
model plus milliseconds per candidate.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mgit import lineage_index
from mgit.formats.dtypes import DTYPE_SIZES
from mgit.formats.names import pair
from mgit.formats.safetensors import UnknownDtypeError, read_header
from mgit.lineage_index import chunk_key, layout_key
from mgit.objects.chunking import tensor_chunk_ids
from mgit.objects.ids import Oid
from mgit.objects.model import TensorManifest, tensor_chunk_size
from mgit.reach import all_commits
from mgit.tensors import tree_manifests
from mgit.worktree.scan import scan

if TYPE_CHECKING:
    from mgit.core import RepoCore

__all__ = ["Candidate", "guess_parents"]

_SAMPLED_TENSORS = 2
#: Up to this many versions, every one is scored (exactly the full ranking); above it, the
#: lineage index picks the candidates.
SCAN_ALL_BELOW = 256
#: Above :data:`SCAN_ALL_BELOW`, at most this many candidates of each kind (sharing chunks;
#: sharing the layout) are scored: those sharing the most chunks, then the newest.
SCORE_AT_MOST = 64


@dataclass(frozen=True)
class Candidate:
    """A possible parent and how close it is."""

    oid: str
    model: str
    score: float
    identical_fraction: float
    paired_fraction: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON value."""
        return {
            "oid": self.oid,
            "model": self.model,
            "score": round(self.score, 4),
            "identical_fraction": round(self.identical_fraction, 4),
            "paired_fraction": round(self.paired_fraction, 4),
            "seconds": round(self.seconds, 4),
        }


@dataclass
class _NewTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    chunks: list[Oid]
    path: Path
    start: int


def _scan_folder(folder: Path, chunk_size: int) -> list[_NewTensor]:
    out = []
    for rel, path in scan(folder, strict=True).items():
        if not rel.endswith(".safetensors"):
            continue
        try:
            header = read_header(path)
        except UnknownDtypeError:
            continue
        with open(path, "rb") as f:
            for spec in header.tensors:
                chunks = tensor_chunk_ids(f, spec, chunk_size)
                out.append(
                    _NewTensor(
                        spec.name, spec.dtype, spec.shape, spec.nbytes, chunks, path, spec.start
                    )
                )
    return out


def _closeness(new: bytes, old: bytes, itemsize: int) -> float:
    """Fraction of elements whose top 12 bits agree (sign, exponent, leading mantissa)."""
    n = min(len(new), len(old)) // itemsize
    if n == 0 or itemsize == 1:
        return float(new[: n * itemsize] == old[: n * itemsize])
    dt = {2: "<u2", 4: "<u4", 8: "<u8"}[itemsize]
    a = np.frombuffer(new, dtype=dt, count=n)
    b = np.frombuffer(old, dtype=dt, count=n)
    shift = itemsize * 8 - 12
    return float(np.mean((a >> shift) == (b >> shift)))


def guess_parents(repo: RepoCore, folder: str | Path, *, limit: int = 5) -> list[Candidate]:
    """Rank the stored model versions by closeness to the model in ``folder``.

    In a repository of more than :data:`SCAN_ALL_BELOW` versions with the lineage index
    (:mod:`mgit.lineage_index`), only likely candidates are scored: the
    :data:`SCORE_AT_MOST` versions holding the most of the folder's tensor chunks (the
    index's inverted index: chunk -> versions; ties: the newest); when none of them shares
    half of the bytes (a full finetune shares no chunk), also the newest
    :data:`SCORE_AT_MOST` versions whose tensors have the folder's layout (dtypes and shapes);
    then, while fewer than ``limit`` are scored, the newest of the others. Otherwise every
    version is scored. Versions with the same tree are scored once.

    Returns:
        Up to ``limit`` candidates, best first (ties: the newest, then by id); empty when the
        repository has no commits or the folder has no safetensors tensors.
    """
    tensors = _scan_folder(Path(folder), repo.chunk_size)
    total = sum(t.nbytes for t in tensors) or 1
    ix = lineage_index.load(repo)
    out: list[Candidate] = []
    by_tree: dict[str, tuple[float, float, float]] = {}  # tree -> (score, identical, paired)

    def scored_as(oid: str, model: str, tree: str) -> Candidate:
        t0 = time.perf_counter()
        hit = by_tree.get(tree)
        if hit is None:
            hit = by_tree[tree] = _score_tree(repo, tree, tensors, total)
        return Candidate(oid, model, *hit, time.perf_counter() - t0)

    if ix is None:
        for oid in sorted(all_commits(repo)):
            c = repo.read_commit(oid)
            out.append(scored_as(oid, c.model, c.tree))
        times = {c.oid: repo.read_commit(c.oid).time for c in out}
    else:
        scored: set[int] = set()

        def score(cands: Iterable[int]) -> None:
            for i in cands:
                if i not in scored:
                    scored.add(i)
                    out.append(scored_as(ix.oids[i], ix.model_name(i), ix.record(i)[3]))

        def newest_first(cands: Iterable[int], rank: dict[int, int] | None = None) -> list[int]:
            return sorted(
                cands, key=lambda i: (-(rank or {}).get(i, 0), -ix.time[i], ix.oids[i])
            )[:SCORE_AT_MOST]

        if ix.n <= SCAN_ALL_BELOW or not tensors:
            score(range(ix.n))
        else:
            shared = ix.chunk_overlap(chunk_key(c) for t in tensors for c in t.chunks)
            score(newest_first(shared, shared))
            if not out or max(c.identical_fraction for c in out) < 0.5:
                score(newest_first(ix.with_layout(layout_key((t.dtype, t.shape) for t in tensors))))
            if len(out) < limit:
                score([i for i in ix.order if i not in scored][: limit - len(out)])
        times = {c.oid: ix.time[ix.pos[c.oid]] for c in out}
    out.sort(key=lambda c: (-c.score, -times[c.oid], c.oid))
    return out[:limit]


def _score_tree(
    repo: RepoCore, tree: str, tensors: list[_NewTensor], total: int
) -> tuple[float, float, float]:
    """How close the version with ``tree`` is to the folder's ``tensors`` (``total`` bytes):
    ``(score, identical fraction, paired fraction)``."""
    manifests = tree_manifests(repo.read_tree(tree))
    identical = paired = 0
    changed: list[tuple[int, _NewTensor, TensorManifest]] = []
    pairs = pair([t.name for t in tensors], manifests)
    for t in tensors:
        pname = pairs.get(t.name)
        if pname is None:
            continue
        m = manifests[pname]
        if (
            m.dtype != t.dtype
            or m.shape != t.shape
            or m.chunk_size != tensor_chunk_size(t.dtype, repo.chunk_size)
        ):
            continue
        paired += t.nbytes
        same = sum(
            min(m.chunk_size, t.nbytes - i * m.chunk_size)
            for i, (a, b) in enumerate(zip(t.chunks, m.data_ids))
            if a == b
        )
        identical += same
        if same < t.nbytes and m.chunks:
            changed.append((t.nbytes - same, t, m))
    close_bytes = 0.0
    changed.sort(key=lambda x: -x[0])
    sampled = changed[:_SAMPLED_TENSORS]
    if sampled:
        fracs = []
        for _, t, m in sampled:
            first, start, end = m.segments()[0]
            old = repo.store.get(first, kind="chunk")[start:end]
            with open(t.path, "rb") as f:
                f.seek(t.start)
                new = f.read(len(old))
            fracs.append(_closeness(new, old, DTYPE_SIZES[t.dtype]))
        close_bytes = float(np.mean(fracs)) * sum(c[0] for c in changed)
    return (identical + close_bytes) / total, identical / total, paired / total
