"""The lineage index (``.mgit/lineage-index``): every model version's graph and metadata in one file.

Like git's commit-graph, it answers the history queries (``log``, ``models``, ``find``,
``lineage``, parent suggestion) without opening one object file per commit. Per commit it holds
the parents with their relations, the model line, the time, a generation number (1 for a root,
else one more than its highest parent), the logical size of its files, what the views print
(author, message, meta, tree, recipe, lossy bound, as one small JSON record read only when
needed), the ids of its tensor chunks (the inverted index of parent suggestion) and a layout key
(the multiset of its tensors' dtypes and shapes); plus the ``log --all`` order, precomputed.

It is a cache, never trusted over the objects:

- it records the ref tips it covers; when the refs point elsewhere, it is brought up to date by
  walking from the new tips and stopping at commits already indexed (so commit, import and
  fetch need no hook), and commits no longer reachable (after a branch deletion and gc) are
  dropped: the index always holds exactly the ancestors of the tips it records;
- a missing, truncated, corrupt (CRC-32 of the body), foreign-version or foreign-endian file is
  rebuilt from the objects;
- it is rewritten under ``lineage-index.lock`` taken without waiting (a busy lock: this process
  keeps its fresh copy in memory and skips the write), by temp file and rename;
- any damage met while updating it (a missing or corrupt commit) makes the queries fall back to
  reading the objects, which report the damage as they always did;
- :func:`verify` compares it with the objects (``fsck``).

``MGIT_NO_LINEAGE_INDEX=1`` turns it off (the queries then read every commit object: the
baseline that the tests and benchmarks compare against).

File layout: ``MGITLIX1``, a little-endian u32 header length, a JSON header (format version,
byte order, counts, model names, section offsets, CRC-32 of the body) and the body: fixed-size
arrays (``array`` typecodes ``i``, ``q``, ``Q``, ``B``) and two byte strings (the hex ids, the
JSON records). Loading is one read, one CRC and a few ``array.frombytes``: no per-commit parsing.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import struct
import sys
import weakref
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgit._fs import atomic_write
from mgit._lockfile import LockFile
from mgit.errors import LockHeldError, MgitError
from mgit.objects.model import RELATIONS, Commit, Tree
from mgit.refs.store import TESTS

#: Longest ref file read (as ``RefStore`` reads them).
_REF_MAX = 4096

if TYPE_CHECKING:
    from mgit.core import CommitInfo, RepoCore

__all__ = [
    "ENV_DISABLE",
    "FILE_NAME",
    "IndexProblem",
    "LineageIndex",
    "RefSnapshot",
    "build",
    "chunk_key",
    "enabled",
    "layout_key",
    "load",
    "scan_refs",
    "verify",
]

#: Set to ``1`` to answer every query from the objects (no index read or written).
ENV_DISABLE = "MGIT_NO_LINEAGE_INDEX"
#: The index file, in the repository's mgit folder.
FILE_NAME = "lineage-index"

_MAGIC = b"MGITLIX1"
_VERSION = 1
_HLEN = struct.Struct("<I")
#: Body sections: name -> array typecode (``b""``: raw bytes).
_SECTIONS: dict[str, str] = {
    "oids": "",  # 64 hex characters per commit
    "time": "q",
    "gen": "i",
    "model": "i",  # index into the header's model names
    "pstart": "i",  # n + 1 offsets into pidx / prel
    "pidx": "i",
    "prel": "B",  # index into RELATIONS
    "lbytes": "q",
    "coff": "q",  # n + 1 offsets into cold
    "cold": "",  # per commit: JSON [author, message, meta, tree, recipe, lossy]
    "kstart": "i",  # n + 1 offsets into keys
    "keys": "Q",  # chunk keys (first 64 bits of each tensor data chunk id)
    "layout": "Q",
    "tips": "i",  # indices of the tips covered, sorted by id
    "order": "i",  # ``log --all`` order: newest first, children before parents
}
_OK_SIZES = array("i").itemsize == 4 and array("q").itemsize == 8 and array("Q").itemsize == 8

_CACHE: weakref.WeakKeyDictionary[Any, LineageIndex] = weakref.WeakKeyDictionary()


def enabled() -> bool:
    """Whether the index is used (``MGIT_NO_LINEAGE_INDEX`` is not set to a true value)."""
    return os.environ.get(ENV_DISABLE, "") in ("", "0") and _OK_SIZES


def chunk_key(chunk_id: str) -> int:
    """The 64-bit key of a chunk id in the inverted index (its first 16 hex digits)."""
    return int(chunk_id[:16], 16)


def layout_key(specs: Iterable[tuple[str, tuple[int, ...]]]) -> int:
    """A 64-bit key of a multiset of tensor ``(dtype, shape)``: equal for two versions of one
    architecture, whatever their tensor names."""
    text = "\n".join(sorted(f"{d}:{','.join(map(str, s))}" for d, s in specs))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class IndexProblem:
    """One difference between the lineage index on disk and the objects (what ``fsck`` reports).

    Attributes:
        subject: the commit id concerned, or ``"lineage-index"`` for the file as a whole.
        message: what differs.
    """

    subject: str
    message: str


class LineageIndex:
    """The index in memory: parallel arrays over commits ``0 .. n-1`` (parents before children)."""

    def __init__(self, sec: dict[str, Any], models: list[str]) -> None:
        self.models = models
        raw: bytes = sec["oids"]
        text = raw.decode("ascii")
        self.oids: list[str] = [text[i : i + 64] for i in range(0, len(text), 64)]
        self.n = len(self.oids)
        self.pos: dict[str, int] = dict(zip(self.oids, range(self.n)))
        self.time: array[int] = sec["time"]
        self.gen: array[int] = sec["gen"]
        self.model: array[int] = sec["model"]
        self.pstart: array[int] = sec["pstart"]
        self.pidx: array[int] = sec["pidx"]
        self.prel: array[int] = sec["prel"]
        self.lbytes: array[int] = sec["lbytes"]
        self.coff: array[int] = sec["coff"]
        self.cold: bytes = sec["cold"]
        self.kstart: array[int] = sec["kstart"]
        self.keys: array[int] = sec["keys"]
        self.layout: array[int] = sec["layout"]
        self.tip_idx: array[int] = sec["tips"]
        self.order: array[int] = sec["order"]
        self.tips: list[str] = [self.oids[i] for i in self.tip_idx]
        self._records: dict[int, list[Any]] = {}
        self._children: list[list[int]] | None = None
        self._layouts: dict[int, list[int]] | None = None
        #: The refs as :func:`load` last read them (what the index was checked against).
        self.snapshot = RefSnapshot({}, None)
        self._check()

    def _check(self) -> None:
        n = self.n
        if not (
            len(self.time)
            == len(self.gen)
            == len(self.model)
            == len(self.lbytes)
            == len(self.layout)
            == n
            and len(self.pstart) == len(self.coff) == len(self.kstart) == n + 1
            and len(self.order) == n
            and len(self.pidx) == len(self.prel) == self.pstart[n]
            and self.coff[n] == len(self.cold)
            and self.kstart[n] == len(self.keys)
        ):
            raise ValueError("inconsistent section lengths")
        if n and (
            max(self.pidx, default=0) >= n
            or min(self.pidx, default=0) < 0
            or max(self.model) >= len(self.models)
            or min(self.model) < 0
            or max(self.prel, default=0) >= len(RELATIONS)
            or max(self.tip_idx, default=0) >= n
            or max(self.order) >= n
        ):
            raise ValueError("index out of range")

    # -- per commit ---------------------------------------------------------------------------

    def parents(self, i: int) -> list[int]:
        """Parent indices of commit ``i``, in parent order."""
        return list(self.pidx[self.pstart[i] : self.pstart[i + 1]])

    def parent_links(self, i: int) -> list[tuple[str, str]]:
        """``(parent id, relation)`` pairs of commit ``i``."""
        a, b = self.pstart[i], self.pstart[i + 1]
        return [(self.oids[self.pidx[k]], RELATIONS[self.prel[k]]) for k in range(a, b)]

    def model_name(self, i: int) -> str:
        """The model line of commit ``i``."""
        return self.models[self.model[i]]

    def record(self, i: int) -> list[Any]:
        """``[author, message, meta, tree, recipe, lossy]`` of commit ``i`` (decoded once)."""
        r = self._records.get(i)
        if r is None:
            r = json.loads(self.cold[self.coff[i] : self.coff[i + 1]])
            self._records[i] = r
        return r

    def records(self, idx: Sequence[int]) -> list[list[Any]]:
        """:meth:`record` of each commit of ``idx``, decoded in one ``json.loads`` (not kept:
        for a pass over many commits)."""
        cold, coff, have = self.cold, self.coff, self._records
        todo = [i for i in idx if i not in have]
        fresh = dict(zip(todo, json.loads(
            b"[" + b",".join([cold[coff[i] : coff[i + 1]] for i in todo]) + b"]"
        ))) if todo else {}
        return [have[i] if i in have else fresh[i] for i in idx]

    def meta(self, i: int) -> dict[str, str]:
        """The commit's metadata."""
        return dict(self.record(i)[2])

    def info(self, i: int) -> CommitInfo:
        """Commit ``i`` as the API returns it (the same value as ``RepoCore.commit_info``)."""
        from mgit.core import CommitInfo

        author, message, meta, tree, recipe, lossy = self.record(i)
        links = self.parent_links(i)
        return CommitInfo(
            oid=self.oids[i],
            model=self.model_name(i),
            parents=links,
            author=author,
            time=self.time[i],
            message=message,
            meta=dict(meta),
            lossy=lossy,
            tree=tree,
            recipe=recipe,
            parent_models=tuple(self.model_name(p) for p in self.parents(i)),
        )

    def chunk_keys(self, i: int) -> list[int]:
        """The chunk keys of commit ``i``'s tensors."""
        return list(self.keys[self.kstart[i] : self.kstart[i + 1]])

    # -- whole-graph walks ----------------------------------------------------------------------

    def ancestors(self, starts: Iterable[int]) -> set[int]:
        """Every commit reachable from ``starts`` through parent edges (``starts`` included)."""
        seen: set[int] = set()
        stack = list(starts)
        pstart, pidx = self.pstart, self.pidx
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            stack.extend(pidx[pstart[c] : pstart[c + 1]])
        return seen

    def children(self) -> list[list[int]]:
        """Child indices of every commit (built once)."""
        if self._children is None:
            ch: list[list[int]] = [[] for _ in range(self.n)]
            pstart, pidx = self.pstart, self.pidx
            for c in range(self.n):
                for k in range(pstart[c], pstart[c + 1]):
                    ch[pidx[k]].append(c)
            self._children = ch
        return self._children

    def descendants(self, i: int) -> set[int]:
        """Commits that have ``i`` as an ancestor (``i`` excluded)."""
        ch = self.children()
        out: set[int] = set()
        stack = list(ch[i])
        while stack:
            c = stack.pop()
            if c in out:
                continue
            out.add(c)
            stack.extend(ch[c])
        return out

    def topo_order(self, members: Iterable[int]) -> list[int]:
        """``members`` newest first, every child before its parents, ties by time then id: the
        order of :func:`mgit.lineage.graph.topo_order`."""
        return _kahn(len(self.oids), self.pstart, self.pidx, self.time, self.oids, members=set(members))

    def with_chunks(self, keys: Iterable[int]) -> set[int]:
        """Commits holding a tensor chunk with one of these keys."""
        return set(self.chunk_overlap(keys))

    def chunk_overlap(self, keys: Iterable[int]) -> dict[int, int]:
        """Commit -> how many of its tensor chunks have one of these keys, for every commit
        holding one (one vectorised pass over the key column: 0.1 s at 100,000 commits)."""
        import numpy as np

        want = np.fromiter(set(keys), dtype=np.uint64)
        if not len(want) or not len(self.keys):
            return {}
        hits = np.flatnonzero(np.isin(np.frombuffer(self.keys, dtype=np.uint64), want))
        if not len(hits):
            return {}
        owner = np.searchsorted(np.frombuffer(self.kstart, dtype=np.int32), hits, side="right") - 1
        counts = np.bincount(owner)
        held = np.flatnonzero(counts)
        return dict(zip(held.tolist(), counts[held].tolist()))

    def with_layout(self, key: int) -> set[int]:
        """Commits whose tensors have this layout key."""
        if self._layouts is None:
            lay: dict[int, list[int]] = {}
            for c in range(self.n):
                lay.setdefault(self.layout[c], []).append(c)
            self._layouts = lay
        return set(self._layouts.get(key, ()))


# ----------------------------------------------------------------------------------------------
# reading and writing


def _path(core: RepoCore) -> Path:
    return Path(core.mgit_dir) / FILE_NAME


def _decode(data: bytes) -> LineageIndex:
    """Parse the file's bytes.

    Raises:
        ValueError: anything wrong (bad magic, version, byte order, length, CRC, sections).
    """
    if data[:8] != _MAGIC or len(data) < 12:
        raise ValueError("not a lineage index")
    (hlen,) = _HLEN.unpack_from(data, 8)
    start = 12 + hlen
    if start > len(data):
        raise ValueError("truncated header")
    header = json.loads(data[12:start])
    if header.get("version") != _VERSION or header.get("byteorder") != sys.byteorder:
        raise ValueError("another format version or byte order")
    body = memoryview(data)[start:]
    if len(body) != header["size"] or zlib.crc32(body) != header["crc"]:
        raise ValueError("truncated or corrupt body")
    sec: dict[str, Any] = {}
    for name, tc in _SECTIONS.items():
        off, length = header["sections"][name]
        if off < 0 or length < 0 or off + length > len(body):
            raise ValueError("section out of range")
        if tc:
            a = array(tc)
            a.frombytes(body[off : off + length])
            sec[name] = a
        else:
            sec[name] = bytes(body[off : off + length])
    models = header["models"]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ValueError("bad model names")
    return LineageIndex(sec, models)


def _encode(sec: dict[str, Any], models: list[str]) -> bytes:
    parts: list[bytes] = []
    offsets: dict[str, list[int]] = {}
    off = 0
    for name, tc in _SECTIONS.items():
        b = sec[name].tobytes() if tc else bytes(sec[name])
        offsets[name] = [off, len(b)]
        parts.append(b)
        off += len(b)
    body = b"".join(parts)
    header = json.dumps(
        {
            "version": _VERSION,
            "byteorder": sys.byteorder,
            "n": len(sec["time"]),
            "models": models,
            "sections": offsets,
            "size": len(body),
            "crc": zlib.crc32(body),
        },
        separators=(",", ":"),
    ).encode()
    return _MAGIC + _HLEN.pack(len(header)) + header + body


def read(core: RepoCore) -> LineageIndex | None:
    """The index file as it is on disk, or None when missing or unreadable (no update)."""
    try:
        return _decode(_path(core).read_bytes())
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        UnicodeDecodeError,
        OverflowError,
    ):
        return None


def _write(core: RepoCore, data: bytes) -> bool:
    """Replace the file under its lock, taken without waiting; False when busy or not writable."""
    lock = LockFile(_path(core), timeout=0)
    try:
        lock.acquire()
    except (LockHeldError, OSError):
        return False
    try:
        atomic_write(_path(core), data, sync_dir=False)
        return True
    except OSError:
        return False
    finally:
        lock.abort()


@dataclass(frozen=True)
class RefSnapshot:
    """Every ref read once (``refs/...`` -> id) and HEAD's commit: what one query works on."""

    refs: dict[str, str]
    head: str | None

    @classmethod
    def read(cls, core: RepoCore) -> RefSnapshot:
        """Read the refs (one walk of ``refs/``) and HEAD."""
        return cls(scan_refs(Path(core.refs.root)), core.head())

    @property
    def tips(self) -> list[str]:
        """The commits of model versions the refs and HEAD point at, sorted, each once (what
        ``RepoCore.ref_tips(history=True)`` lists)."""
        tips = {oid for ref, oid in self.refs.items() if ref != TESTS}
        if self.head:
            tips.add(self.head)
        return sorted(tips)

    def under(self, prefix: str) -> dict[str, str]:
        """The refs under ``prefix`` by their name without it (model lines, tags), sorted."""
        return {k[len(prefix) :]: v for k, v in self.refs.items() if k.startswith(prefix)}


def scan_refs(root: Path) -> dict[str, str]:
    """Every ref under ``root/refs`` (:func:`mgit.refs.store.scan_refs`)."""
    from mgit.refs.store import scan_refs as scan

    return scan(root)


def _tips(core: RepoCore) -> list[str]:
    return RefSnapshot.read(core).tips


def load(core: RepoCore, *, write: bool = True) -> LineageIndex | None:
    """The index, up to date with the refs, or None when it is off or cannot be brought up to
    date (a damaged repository: the caller then reads the objects, which report the damage).

    Reads the file (kept in memory per ``core`` while the refs stay the same); a stale file is
    updated from the new tips, a bad one rebuilt, and the result written back (unless ``write``
    is False or another process holds the lock).
    """
    if not enabled():
        return None
    snap = RefSnapshot.read(core)
    tips = snap.tips
    cached = _CACHE.get(core)
    if cached is not None and cached.tips == tips:
        cached.snapshot = snap
        return cached
    disk = read(core)
    if disk is not None and disk.tips == tips:
        disk.snapshot = snap
        _CACHE[core] = disk
        return disk
    base = disk if disk is not None else cached
    try:
        sec, models = _refresh(core, base, tips)
        data = _encode(sec, models)
        ix = _decode(data)
    except (MgitError, KeyError, ValueError):
        return None
    if write:
        _write(core, data)
    ix.snapshot = snap
    _CACHE[core] = ix
    return ix


def build(core: RepoCore) -> LineageIndex:
    """A fresh index from the objects alone (nothing read from or written to the file).

    Raises:
        ObjectNotFoundError, CorruptObjectError: a commit or tree of the history is damaged.
    """
    sec, models = _refresh(core, None, _tips(core))
    return _decode(_encode(sec, models))


def _tree_facts(core: RepoCore, tree_oid: str) -> tuple[int, list[int], int]:
    """(logical bytes, chunk keys, layout key) of a tree."""
    tree: Tree = core.read_tree(tree_oid)
    keys: list[int] = []
    specs: list[tuple[str, tuple[int, ...]]] = []
    for entry in tree.files.values():
        for _name, m in entry.tensors:
            specs.append((m.dtype, tuple(m.shape)))
            keys.extend(chunk_key(c) for c in m.data_ids)
    return tree.logical_bytes, list(dict.fromkeys(keys)), layout_key(specs)


def _refresh(
    core: RepoCore, old: LineageIndex | None, tips: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """The sections of the index of exactly the ancestors of ``tips``, reusing ``old``'s
    entries and reading only the commits (and their trees) it lacks."""
    known = old.pos if old is not None else {}
    new: dict[str, Commit] = {}
    stack = list(tips)
    while stack:
        c = stack.pop()
        if c in known or c in new:
            continue
        cm = core.read_commit(c)
        new[c] = cm
        stack.extend(p.oid for p in cm.parents)
    # Old entries still reachable, in their order (parents first): from the old tips kept and
    # the old parents of new commits.
    kept: list[int] = []
    if old is not None:
        starts = [known[t] for t in tips if t in known]
        starts += [known[p.oid] for cm in new.values() for p in cm.parents if p.oid in known]
        kept = sorted(old.ancestors(starts))
    # New commits parents first: a depth-first post-order over the new ones.
    new_order: list[str] = []
    done: set[str] = set()
    for root in sorted(new):
        if root in done:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        done.add(root)
        while work:
            c, k = work[-1]
            ps = new[c].parents
            if k < len(ps):
                work[-1] = (c, k + 1)
                p = ps[k].oid
                if p in new and p not in done:
                    done.add(p)
                    work.append((p, 0))
            else:
                work.pop()
                new_order.append(c)

    n = len(kept) + len(new_order)
    rel_id = {r: k for k, r in enumerate(RELATIONS)}
    models: list[str] = []
    model_id: dict[str, int] = {}

    def mid(name: str) -> int:
        k = model_id.get(name)
        if k is None:
            k = model_id[name] = len(models)
            models.append(name)
        return k

    oids: list[str] = []
    time, gen, model, lbytes, layout = array("q"), array("i"), array("i"), array("q"), array("Q")
    pstart, pidx, prel = array("i", [0]), array("i"), array("B")
    coff, cold = array("q", [0]), bytearray()
    kstart, keys = array("i", [0]), array("Q")
    remap: dict[int, int] = {}
    for i in kept:
        assert old is not None
        remap[i] = len(oids)
        oids.append(old.oids[i])
        time.append(old.time[i])
        model.append(mid(old.model_name(i)))
        ps = [remap[p] for p in old.parents(i)]
        pidx.extend(ps)
        prel.extend(old.prel[old.pstart[i] : old.pstart[i + 1]])
        pstart.append(len(pidx))
        gen.append(1 + max((gen[p] for p in ps), default=0))
        lbytes.append(old.lbytes[i])
        layout.append(old.layout[i])
        cold += old.cold[old.coff[i] : old.coff[i + 1]]
        coff.append(len(cold))
        keys.extend(old.keys[old.kstart[i] : old.kstart[i + 1]])
        kstart.append(len(keys))
    pos = {o: k for k, o in enumerate(oids)}
    for c in new_order:
        cm = new[c]
        pos[c] = len(oids)
        oids.append(c)
        time.append(cm.time)
        model.append(mid(cm.model))
        ps = [pos[p.oid] for p in cm.parents]
        pidx.extend(ps)
        prel.extend(rel_id[p.relation] for p in cm.parents)
        pstart.append(len(pidx))
        gen.append(1 + max((gen[p] for p in ps), default=0))
        size, ks, lay = _tree_facts(core, cm.tree)
        lbytes.append(size)
        layout.append(lay)
        cold += json.dumps(
            [cm.author, cm.message, cm.meta, cm.tree, cm.recipe, cm.lossy],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        coff.append(len(cold))
        keys.extend(ks)
        kstart.append(len(keys))
    assert len(oids) == n
    sec: dict[str, Any] = {
        "oids": "".join(oids).encode("ascii"),
        "time": time,
        "gen": gen,
        "model": model,
        "pstart": pstart,
        "pidx": pidx,
        "prel": prel,
        "lbytes": lbytes,
        "coff": coff,
        "cold": bytes(cold),
        "kstart": kstart,
        "keys": keys,
        "layout": layout,
        "tips": array("i", [pos[t] for t in tips]),
        "order": array("i"),
    }
    # The ``log --all`` order, over every commit (all are reachable from the tips).
    sec["order"] = array("i", _kahn(n, pstart, pidx, time, oids))
    return sec, models


def _kahn(
    n: int, pstart: array[int], pidx: array[int], time: array[int], oids: list[str],
    *, members: set[int] | None = None,
) -> list[int]:
    """Commits (``members``, else all ``n``) newest first, every child before its parents,
    ties by time then id: parents outside ``members`` are not waited for."""
    nodes: Iterable[int] = range(n) if members is None else members
    pending = [0] * n
    for c in nodes:
        for k in range(pstart[c], pstart[c + 1]):
            p = pidx[k]
            if members is None or p in members:
                # A parent listed twice by one child counts twice, and is released by both.
                pending[p] += 1
    heap = [(-time[c], oids[c], c) for c in nodes if pending[c] == 0]
    heapq.heapify(heap)
    out: list[int] = []
    while heap:
        c = heapq.heappop(heap)[2]
        out.append(c)
        for k in range(pstart[c], pstart[c + 1]):
            p = pidx[k]
            if members is None or p in members:
                pending[p] -= 1
                if pending[p] == 0:
                    heapq.heappush(heap, (-time[p], oids[p], p))
    return out


def iter_problems(core: RepoCore) -> Iterator[IndexProblem]:
    """Differences between the index file and a fresh index built from the objects."""
    disk = read(core)
    path = _path(core)
    if disk is None:
        if path.exists():
            yield IndexProblem(
                FILE_NAME,
                f"{FILE_NAME}: unreadable (truncated, corrupt or another version): "
                "it is rebuilt on the next history query",
            )
        return
    try:
        fresh = build(core)
    except MgitError:
        return  # the damage itself is what fsck reports
    for i, oid in enumerate(disk.oids):
        j = fresh.pos.get(oid)
        if j is None:
            continue  # no longer reachable: dropped on the next update
        if (
            disk.parent_links(i) != fresh.parent_links(j)
            or disk.time[i] != fresh.time[j]
            or disk.model_name(i) != fresh.model_name(j)
            or disk.gen[i] != fresh.gen[j]
            or disk.lbytes[i] != fresh.lbytes[j]
            or disk.record(i) != fresh.record(j)
            or disk.chunk_keys(i) != fresh.chunk_keys(j)
            or disk.layout[i] != fresh.layout[j]
        ):
            yield IndexProblem(oid, f"{FILE_NAME}: commit {oid} differs from its object")
    if disk.tips == fresh.tips and [disk.oids[i] for i in disk.order] != [
        fresh.oids[i] for i in fresh.order
    ]:
        yield IndexProblem(FILE_NAME, f"{FILE_NAME}: the log order differs from the objects'")
    missing = set(disk.oids) - set(fresh.pos)
    if disk.tips == fresh.tips and missing:
        yield IndexProblem(
            FILE_NAME, f"{FILE_NAME}: {len(missing)} commits not reachable from its tips"
        )


def verify(core: RepoCore) -> list[IndexProblem]:
    """Compare the lineage index file with the objects (for ``fsck``): every indexed commit
    that is still reachable must match its object. A missing file is no problem (it is built
    on the next query); an unreadable one is reported. Never raises for damage."""
    return list(iter_problems(core))
