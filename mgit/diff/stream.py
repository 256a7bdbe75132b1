"""The numeric part of a diff, streamed: chunk by chunk, on a thread pool.

A stored model version keeps each tensor as chunks of (by default) 4 MiB aligned to elements,
cut at the same offsets in every version of the same dtype. So the statistics of a changed
tensor need only one decoded chunk of each side at a time: each chunk pair is one job on a
:class:`~mgit._pool.WorkerPool` (decode both, compare in float64 blocks that stay in cache,
:class:`~mgit.diff.stats.StatsAccumulator`), and the accumulators of a tensor's chunks are
merged in order. A chunk whose id is the same on both sides is read once (its bytes are equal:
nothing changed in it). numpy, zstd and BLAKE3 release the GIL, so the jobs use every core.

The rank estimate needs the difference as a matrix: a 2-D float tensor's chunk jobs write
``b - a`` (float32) into one buffer of the tensor's size, and the estimate
(:func:`~mgit.diff.rank.rank_of_delta`) runs as a job of its own once the last chunk is in.

Memory: at most ``2 * workers + 2`` chunk jobs are in flight (two decoded chunks each), at
most ``workers`` whole-tensor jobs (the pairs that cannot be streamed: quantized, another
dtype or shape, sources without chunks; two tensors each) and at most ``workers + 1`` rank
buffers waiting for their estimate, plus those of the tensors being read.

A source is read by chunks when it has a ``tensor_pieces(key)`` method (a list of
:class:`Piece`, or ``None`` for a tensor it cannot cut), or when it is a stored version
(``repo`` and ``oid`` attributes, as :class:`mgit.sources.RepoTensorSource`): its manifests
are read from the version's tree and its chunks with ``DiskStore.get``, which decodes delta
chains and verifies every chunk. Any other source is read whole with ``load``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from mgit import codecs
from mgit._pool import Job, WorkerPool, default_workers
from mgit.diff.rank import DEFAULT_RANK_RTOL, rank_of_delta
from mgit.diff.source import numpy_dtype
from mgit.diff.stats import StatsAccumulator, TensorStats, wants_rank
from mgit.errors import CodecError, CorruptObjectError
from mgit.formats.names import tensor_keys
from mgit.objects.ids import hash_object

__all__ = [
    "ChunkReader",
    "Piece",
    "PieceReader",
    "Scheduler",
    "StreamedResult",
    "blas_single_threaded",
    "current_progress",
    "default_workers",
    "progress_to",
]


@dataclass(frozen=True)
class Piece:
    """A run of whole elements of a tensor, read on demand.

    Attributes:
        nbytes: Its length in bytes.
        oid: An id of its bytes (equal ids on both sides: equal bytes), or ``None``.
        fetch: Returns the bytes (verified).
        chunks: For a whole stored chunk: the reader that can decode it over the other side's
            chunk when that is its delta base (see :meth:`ChunkReader.pair`).
    """

    nbytes: int
    oid: str | None
    fetch: Callable[[], bytes]
    chunks: ChunkReader | None = None


class ChunkReader:
    """Reads the chunks of one store: verified, a pack decoded once for all its tensors, and a
    chunk whose delta base is the other side's chunk decoded over the bytes already in hand.

    The last is what makes a diff of a version against its parent cheap: the child's chunk is
    stored as a delta against the parent's, so ``DiskStore.get`` of both would decode the
    parent's chunk (and its own chain) twice.
    """

    _PACKS = 8

    def __init__(self, store: Any) -> None:
        """Read from ``store`` (a :class:`~mgit.objects.store.DiskStore`)."""
        self.store = store
        self._packs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def chunk(self, oid: str, nbytes: int) -> bytes:
        """One chunk's bytes, decoded and verified."""
        return _checked(oid, self.store.get(oid, kind="chunk"), nbytes)

    def packed(self, oid: str, start: int, end: int, digest: str) -> bytes:
        """The bytes of a small tensor inside a pack, checked against its digest."""
        with self._lock:
            data = self._packs.get(oid)
            if data is None:
                data = self.store.get(oid, kind="chunk")
                if len(self._packs) >= self._PACKS:
                    self._packs.pop(next(iter(self._packs)))
                self._packs[oid] = data
        if end > len(data):
            raise CorruptObjectError(oid, "a tensor lies past the end of its pack")
        piece = data[start:end]
        if hash_object("chunk", piece) != digest:
            raise CorruptObjectError(oid, "a packed tensor does not match its digest")
        return piece

    def _decode(self, oid: str, raw: bytes, base_oid: str | None, base: bytes | None) -> bytes:
        h = self.store.parse_header(oid, raw)
        if h.kind != "chunk":
            raise CorruptObjectError(oid, f"expected a chunk object, found a {h.kind}")
        if base is None or h.base is None or h.base != base_oid:
            content: bytes = self.store.decode_raw(oid, raw, kind="chunk")
            return content
        try:
            payload: Any = memoryview(raw)[h.payload_offset :]  # decode reads any buffer
            content = codecs.decode(h.codec, payload, h.params, size=h.size, base=base)
        except CodecError as exc:
            raise CorruptObjectError(oid, str(exc)) from None
        actual = hash_object("chunk", content)
        if actual != oid:
            raise CorruptObjectError(oid, f"content hashes to {actual}", actual=actual)
        return content

    def pair(self, pa: Piece, pb: Piece) -> tuple[bytes, bytes]:
        """The bytes of two whole chunks of this store; when one is stored as a delta against
        the other, the other is decoded once and the delta applied to it."""
        assert pa.oid is not None and pb.oid is not None
        raw_a, raw_b = self.store.read_raw(pa.oid), self.store.read_raw(pb.oid)
        if self.store.parse_header(pa.oid, raw_a).base == pb.oid:
            bb = self._decode(pb.oid, raw_b, None, None)
            ba = self._decode(pa.oid, raw_a, pb.oid, bb)
        else:
            ba = self._decode(pa.oid, raw_a, None, None)
            bb = self._decode(pb.oid, raw_b, pa.oid, ba)
        return _checked(pa.oid, ba, pa.nbytes), _checked(pb.oid, bb, pb.nbytes)


def _checked(oid: str, data: bytes, nbytes: int) -> bytes:
    if len(data) != nbytes:
        raise CorruptObjectError(oid, "tensor chunks have the wrong total size")
    return data


class PieceReader:
    """Cuts the tensors of one side of a diff into :class:`Piece` s, where it can."""

    def __init__(self, source: Any) -> None:
        """Look at ``source`` once (see the module docstring for what it can be)."""
        self._own: Callable[[str], list[Piece] | None] | None = getattr(
            source, "tensor_pieces", None
        )
        self.chunks: ChunkReader | None = None
        self._manifests: dict[str, Any] = {}
        repo, oid = getattr(source, "repo", None), getattr(source, "oid", None)
        if self._own is None and repo is not None and isinstance(oid, str):
            store = getattr(repo, "store", None)
            read_commit = getattr(repo, "read_commit", None)
            read_tree = getattr(repo, "read_tree", None)
            if store is not None and callable(read_commit) and callable(read_tree):
                tree = read_tree(read_commit(oid).tree)
                items = [(p, n, m) for p, e in tree.files.items() for n, m in e.tensors]
                keys = tensor_keys((p, n) for p, n, _ in items)
                self._manifests = {keys[(p, n)]: m for p, n, m in items}
                self.chunks = _shared_reader(store)

    def pieces(self, key: str) -> list[Piece] | None:
        """The pieces of one tensor in order, or ``None`` (read it whole)."""
        if self._own is not None:
            return self._own(key)
        m = self._manifests.get(key)
        cr = self.chunks
        if m is None or cr is None:
            return None
        if m.packed:  # a small tensor inside a pack shared with others
            ((oid, start, end),) = m.segments()
            return [Piece(end - start, m.digest, partial(cr.packed, oid, start, end, m.digest))]
        return [
            Piece(end - start, oid, partial(cr.chunk, oid, end - start), cr)
            for oid, start, end in m.segments()
        ]


_READERS: dict[int, tuple[Any, ChunkReader]] = {}


def _shared_reader(store: Any) -> ChunkReader:
    """One :class:`ChunkReader` per store, so both sides of a diff share their packs."""
    hit = _READERS.get(id(store))
    if hit is not None and hit[0] is store:
        return hit[1]
    reader = ChunkReader(store)
    _READERS.clear()  # keep only the latest store alive
    _READERS[id(store)] = (store, reader)
    return reader


@dataclass
class StreamedResult:
    """What the streamed comparison of one tensor pair found.

    Attributes:
        same_bytes: Every piece was byte-identical (the tensor is unchanged).
        stats: The statistics (``None`` when ``same_bytes`` or when they failed).
        error: Why the statistics failed.
    """

    same_bytes: bool
    stats: TensorStats | None
    error: str | None = None


def _compare_piece(
    pa: Piece, pb: Piece, dtype: np.dtype[Any], d_out: np.ndarray | None
) -> tuple[StatsAccumulator, bool]:
    acc = StatsAccumulator()
    if pa.oid is not None and pa.oid == pb.oid:
        acc.add_same(np.frombuffer(pa.fetch(), dtype=dtype), d_out)
        return acc, True
    if pa.chunks is not None and pa.chunks is pb.chunks:
        ba, bb = pa.chunks.pair(pa, pb)
    else:
        ba, bb = pa.fetch(), pb.fetch()
    if ba == bb:
        acc.add_same(np.frombuffer(ba, dtype=dtype), d_out)
        return acc, True
    acc.add(np.frombuffer(ba, dtype=dtype), np.frombuffer(bb, dtype=dtype), d_out)
    return acc, False


def _finish_rank(acc: StatsAccumulator, d: np.ndarray, rtol: float) -> StreamedResult:
    try:
        est = rank_of_delta(d, rtol=rtol, fro2=acc.ss_d)
    except ValueError:  # a difference beyond float32: no rank, the statistics still hold
        est = None
    except (ArithmeticError, np.linalg.LinAlgError) as exc:
        return StreamedResult(False, None, f"{type(exc).__name__}: {exc}")
    return StreamedResult(False, acc.result(rank=est))


class _Streamed:
    """One tensor pair being streamed: its chunk jobs, then (maybe) its rank job."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any], want_rank: bool) -> None:
        numel = 1
        for s in shape:
            numel *= int(s)
        self.shape = shape
        self.dtype = dtype
        self.numel = numel
        self.d: np.ndarray | None = np.empty(shape, np.float32) if want_rank else None
        self.parts: list[Job] = []
        self.remaining = 0
        self.final: Job | None = None


_PROGRESS: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar(
    "mgit_diff_progress", default=None
)


@contextlib.contextmanager
def progress_to(callback: Callable[[int, int], None] | None) -> Iterator[None]:
    """Report the bytes every diff started inside this block reads, as
    ``callback(bytes read, bytes to read)``, unless the call is given its own
    ``progress_bytes`` (the CLI wraps ``Repository.diff`` in it to show a progress bar)."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def current_progress() -> Callable[[int, int], None] | None:
    """The callback set by the innermost :func:`progress_to`, if any."""
    return _PROGRESS.get()


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """One BLAS thread per calling thread while the diff's own workers run.

    OpenBLAS's own threads spin on a busy machine: on this project's 2-core machine, shared
    with other work, a float64 dot product of 64 Ki elements took 2.7 ms with them and 15 us
    without, a 384 x 384 ``eigvalsh`` 4x longer. Sets the OpenBLAS bundled in numpy's wheel
    directly (27 ms less than importing ``threadpoolctl``), else uses ``threadpoolctl`` when it
    is installed; changes nothing when neither applies.
    """
    get_set = _bundled_openblas()
    if get_set is not None:
        get, set_ = get_set
        before = int(get())
        set_(1)
        try:
            yield
        finally:
            set_(before)
        return
    try:  # another BLAS (numpy built from source): threadpoolctl knows them, when installed
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


_OPENBLAS: list[tuple[Any, Any] | None] = []


def _bundled_openblas() -> tuple[Any, Any] | None:
    """``get_num_threads`` and ``set_num_threads`` of the OpenBLAS inside numpy's wheel (looked
    up once)."""
    if not _OPENBLAS:
        _OPENBLAS.append(_find_bundled_openblas())
    return _OPENBLAS[0]


def _find_bundled_openblas() -> tuple[Any, Any] | None:
    import ctypes
    import glob

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                set_.argtypes = [ctypes.c_int]
                return get, set_
    return None


class Scheduler:
    """Runs the numeric work of a diff on a pool, in a bounded window, results in order.

    Submit each tensor pair with :meth:`stream` (chunk by chunk) or :meth:`whole` (one job),
    then :meth:`results`: one value per submitted pair, in submission order.

    Args:
        pool: The worker pool.
        workers: Its number of threads (sets the window).
        rank: Estimate the effective rank of 2-D float differences.
        rank_rtol: Relative threshold of the effective rank.
        progress_bytes: Called as ``(bytes compared, bytes to compare)`` as jobs finish (both
            sides' bytes; a chunk equal on both sides is read once but counts twice).
    """

    def __init__(
        self,
        pool: WorkerPool,
        workers: int,
        *,
        rank: bool = True,
        rank_rtol: float = DEFAULT_RANK_RTOL,
        progress_bytes: Callable[[int, int], None] | None = None,
    ) -> None:
        """Start with nothing submitted."""
        self.pool = pool
        self.rank = rank
        self.rank_rtol = rank_rtol
        self._limit = 2 * workers + 2
        self._whole_limit = max(1, workers)
        self._rank_limit = workers + 1
        self._window: deque[tuple[Job, Any, int]] = deque()  # chunk and whole jobs
        self._ranking: deque[_Streamed] = deque()
        self._items: list[Any] = []  # _Streamed or Job (whole), in submission order
        self._progress = progress_bytes
        self.total_bytes = 0
        self.done_bytes = 0

    def plan_bytes(self, n: int) -> None:
        """Announce ``n`` more bytes of tensor data to compare (for progress)."""
        self.total_bytes += n

    def _report(self, n: int) -> None:
        self.done_bytes += n
        if self._progress is not None:
            self._progress(self.done_bytes, self.total_bytes)

    def _retire_oldest(self) -> None:
        job, owner, nbytes = self._window.popleft()
        job.result()  # waits; raises the job's error
        self._report(nbytes)
        if isinstance(owner, _Streamed):
            owner.remaining -= 1
            if owner.remaining == 0:
                self._finish(owner)

    def _finish(self, s: _Streamed) -> None:
        if s.d is None:
            return
        same = all(j.result()[1] for j in s.parts)
        if same:
            s.d = None
            return
        while len(self._ranking) >= self._rank_limit:
            self._ranking.popleft().final.result()  # type: ignore[union-attr]
        acc = self._merge(s)
        s.final = self.pool.submit(_finish_rank, acc, s.d, self.rank_rtol)
        s.d = None  # the job holds it until the estimate is done
        self._ranking.append(s)

    @staticmethod
    def _merge(s: _Streamed) -> StatsAccumulator:
        acc = StatsAccumulator()
        for j in s.parts:
            acc.merge(j.result()[0])
        return acc

    def _room(self, whole: bool = False) -> None:
        while len(self._window) >= self._limit:
            self._retire_oldest()
        if whole:
            while sum(1 for _, o, _ in self._window if o is None) >= self._whole_limit:
                self._retire_oldest()

    def stream(
        self,
        pa: list[Piece],
        pb: list[Piece],
        dtype_name: str,
        shape: tuple[int, ...],
        *,
        is_float: bool,
    ) -> None:
        """Submit one tensor pair of one dtype and shape, cut into matching pieces."""
        dtype = numpy_dtype(dtype_name)
        s = _Streamed(shape, dtype, wants_rank(shape, rank=self.rank, is_float=is_float))
        self._items.append(s)
        flat = s.d.reshape(-1) if s.d is not None else None
        s.remaining = len(pa)
        e0 = 0
        for x, y in zip(pa, pb, strict=True):
            n = x.nbytes // dtype.itemsize
            self._room()
            out = flat[e0 : e0 + n] if flat is not None else None
            job = self.pool.submit(_compare_piece, x, y, dtype, out)
            s.parts.append(job)
            self._window.append((job, s, x.nbytes + y.nbytes))
            e0 += n
        if not pa:
            self._finish(s)

    def whole(self, fn: Callable[[], Any], nbytes: int) -> None:
        """Submit one job that compares a pair read whole (``fn`` returns its result)."""
        self._room(whole=True)
        job = self.pool.submit(fn)
        self._items.append(job)
        self._window.append((job, None, nbytes))

    def results(self) -> list[Any]:
        """Wait for everything; one value per submitted pair, in order: a
        :class:`StreamedResult` for :meth:`stream`, ``fn()`` for :meth:`whole`."""
        while self._window:
            self._retire_oldest()
        out: list[Any] = []
        for item in self._items:
            if isinstance(item, Job):
                out.append(item.result())
                continue
            if item.final is not None:
                out.append(item.final.result())
                continue
            parts = [j.result() for j in item.parts]
            if all(same for _, same in parts):
                out.append(StreamedResult(True, None))
            else:
                out.append(StreamedResult(False, self._merge(item).result()))
        return out
