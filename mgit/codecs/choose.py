"""What a chunk is stored as: the encoding policy, as one pure function.

:func:`choose` decides between reusing a stored object, storing the chunk whole (the smallest
standalone codec), as a lossless delta against the parent's aligned chunk, or as a lossy
(quantized) delta. It reads no file and runs no codec: everything it needs comes in as
arguments, and the facts that cost something to learn (is the chunk stored already? what is the
base? how big is each candidate encoding?) come as zero-argument callables that :func:`choose`
calls only when the answer matters, in the order the policy needs them. So
:meth:`mgit.objects.store.DiskStore.put_chunk` hashes, reads the base and runs the codecs only as
far as the decision requires, and the benchmark and the tests ask the very same function.

The policy:

1. Lossless (no lossy request): a chunk already stored is reused, before its base is read.
2. The base is used only if it is a stored chunk of the same size and its chain depth is below
   ``max_depth`` (:data:`MAX_CHAIN_DEPTH`); the chunk's depth is then the base's plus one. A
   chunk whose base is at the cap starts a new chain (stored whole).
3. Lossy (an error bound was given and the dtype is one the lossy codec handles; callers pass no
   bound for packs of small tensors, which are always lossless): with a usable base, the lossy
   delta is taken when its payload is smaller than the chunk; its content may already be stored
   (reused). Otherwise the chunk goes on losslessly, reusing it if stored.
4. With a usable base, the lossless delta is taken unless it is larger than a "good enough"
   mark: 0.9 x the base's stored size when the base is stored whole (a finetune barely changes
   a chunk, so that is what storing this one whole would cost), else half the chunk. Past the
   mark the standalone encoding is computed too, and taken when it is no larger than the delta.
5. Without a usable base: standalone.

A chunk paired with a parent tensor of another float dtype (a dtype cast,
:mod:`mgit.codecs.cast`) is decided by :func:`choose_cast` instead, always losslessly: reuse when
stored; else the cast is used when its base is a stored chunk holding the elements it casts and
below the depth cap (the chunk's depth is the base's plus one), unless the cast's payload is above
half the chunk and storing the chunk whole is no larger; else standalone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mgit.codecs._common import LOSSY_DTYPES

__all__ = [
    "MAX_CHAIN_DEPTH",
    "GOOD_DELTA",
    "GOOD_VS_WHOLE_BASE",
    "REUSE",
    "REUSE_LOSSY",
    "LOSSY",
    "DELTA",
    "CAST",
    "STANDALONE",
    "Base",
    "Choice",
    "choose",
    "choose_cast",
    "lossy_capable",
]

#: A delta chain never gets deeper than this; a chunk that would is stored whole.
MAX_CHAIN_DEPTH = 8
#: Without an estimate of the standalone size, a delta this much smaller than the chunk is
#: taken without also trying standalone.
GOOD_DELTA = 0.5
#: With a base stored whole, a delta this much smaller than the base's stored size is taken
#: without also trying standalone.
GOOD_VS_WHOLE_BASE = 0.9

#: The chunk (lossless) is stored already: nothing to write.
REUSE = "reuse"
#: The lossy delta's content is stored already: nothing to write.
REUSE_LOSSY = "reuse-lossy"
#: Store the lossy (quantized) delta against the base.
LOSSY = "lossy"
#: Store the lossless delta against the base.
DELTA = "delta"
#: Store the chunk as a dtype cast of its base plus a correction (:func:`choose_cast`).
CAST = "cast"
#: Store the chunk whole.
STANDALONE = "standalone"


@dataclass(frozen=True)
class Base:
    """What the store holds under the paired base id.

    Attributes:
        kind: its object kind (only a ``"chunk"`` can be a base).
        size: its content length in bytes.
        depth: its delta-chain depth (0: stored whole).
        stored_bytes: its size on disk, or None when unknown; used when ``depth`` is 0 as the
            estimate of what storing the child whole would cost.
    """

    kind: str
    size: int
    depth: int
    stored_bytes: int | None = None


@dataclass(frozen=True)
class Choice:
    """The decision.

    Attributes:
        action: :data:`REUSE`, :data:`REUSE_LOSSY`, :data:`LOSSY`, :data:`DELTA`,
            :data:`CAST` or :data:`STANDALONE`.
        depth: the chunk's chain depth (base's + 1) for :data:`LOSSY`, :data:`REUSE_LOSSY`,
            :data:`DELTA` and :data:`CAST`; 0 otherwise.
    """

    action: str
    depth: int = 0


def lossy_capable(dtype: str | None) -> bool:
    """Whether the lossy codec handles ``dtype`` (a safetensors name: F64, F32, F16, BF16)."""
    return dtype in LOSSY_DTYPES


def _no_base() -> Base | None:
    return None


def _never() -> bool:
    return False


def _missing() -> int:
    raise AssertionError("a candidate the policy needs was not given")


def choose(
    size: int,
    *,
    lossy: bool = False,
    stored: Callable[[], bool] = _never,
    base: Callable[[], Base | None] = _no_base,
    lossy_size: Callable[[], int | None] = _missing,
    lossy_stored: Callable[[], bool] = _never,
    delta_size: Callable[[], int] = _missing,
    standalone_size: Callable[[], int] = _missing,
    max_depth: int = MAX_CHAIN_DEPTH,
) -> Choice:
    """Decide what a chunk of ``size`` bytes is stored as (see the module's docstring).

    Each callable is called at most once, and only when the decision depends on it.

    Args:
        size: the chunk's length in bytes.
        lossy: an error bound was given and the dtype is :func:`lossy_capable`.
        stored: whether the chunk itself (its lossless id) is in the store already.
        base: the paired base as the store holds it; None when there is none (no base id, or
            not in the store).
        lossy_size: payload bytes of the lossy delta against the base, or None when the codec
            declines.
        lossy_stored: whether the lossy delta's content is in the store already (asked only
            once the lossy delta was chosen).
        delta_size: payload bytes of the lossless delta against the base.
        standalone_size: payload bytes of the smallest standalone encoding.
        max_depth: the chain-depth cap.

    Returns:
        The :class:`Choice`.
    """
    if not lossy and stored():
        return Choice(REUSE)
    b = base()
    usable = b is not None and b.kind == "chunk" and b.size == size and b.depth < max_depth
    depth = b.depth + 1 if usable and b is not None else 0
    if lossy and usable:
        n = lossy_size()
        if n is not None and n < size:
            return Choice(REUSE_LOSSY if lossy_stored() else LOSSY, depth)
    if lossy and stored():  # (lossless chunks were looked up first)
        return Choice(REUSE)
    if not usable or b is None:
        return Choice(STANDALONE)
    d = delta_size()
    if b.depth == 0 and b.stored_bytes is not None:
        good = GOOD_VS_WHOLE_BASE * b.stored_bytes
    else:
        good = GOOD_DELTA * size
    if d > good and standalone_size() <= d:
        return Choice(STANDALONE)
    return Choice(DELTA, depth)


def choose_cast(
    size: int,
    *,
    base_bytes: int,
    stored: Callable[[], bool] = _never,
    base: Callable[[], Base | None] = _no_base,
    cast_size: Callable[[], int] = _missing,
    standalone_size: Callable[[], int] = _missing,
    max_depth: int = MAX_CHAIN_DEPTH,
) -> Choice:
    """Decide what a chunk paired with a parent chunk of another dtype is stored as (see the
    module's docstring). Each callable is called at most once, and only when needed.

    Args:
        size: the chunk's length in bytes.
        base_bytes: how many bytes of the base the cast reads (up to its last element); a base
            shorter than that is not usable.
        stored: whether the chunk is in the store already.
        base: the paired base as the store holds it, or None.
        cast_size: payload bytes of the cast (plus correction) against the base.
        standalone_size: payload bytes of the smallest standalone encoding.
        max_depth: the chain-depth cap.

    Returns:
        The :class:`Choice`: :data:`REUSE`, :data:`CAST` or :data:`STANDALONE`.
    """
    if stored():
        return Choice(REUSE)
    b = base()
    if b is None or b.kind != "chunk" or b.size < base_bytes or b.depth >= max_depth:
        return Choice(STANDALONE)
    n = cast_size()
    if n > GOOD_DELTA * size and standalone_size() <= n:
        return Choice(STANDALONE)
    return Choice(CAST, b.depth + 1)
