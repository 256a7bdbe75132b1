"""Tensor and module names: grouping by module and block, and pairing across two models.

A tensor name is a dotted path (``encoder.layer.3.attention.self.query.weight``). Its
*module* is the name without the last component (``encoder.layer.3.attention.self.query``);
its *block* is the coarser unit a person thinks in: the path up to and including the first
numeric component (``encoder.layer.3``, ``model.layers.12``, ``h.0``), or, for names with no
numeric component, the first component after any task-head prefix (``embeddings``,
``bert.embeddings``, ``classifier``, ``lm_head``).

Task models wrap a base model under a prefix (``BertForSequenceClassification`` stores
``bert.embeddings...`` where ``BertModel`` stores ``embeddings...``). :func:`pair_names` pairs
such names instead of reporting one removed and one added tensor. It and
:func:`strip_head_prefix` are the one pairing rule of :mod:`mgit.formats.names`, which storage
(delta bases) and parent guessing use too, so a diff pairs exactly the tensors storage pairs.

A tensor is identified by its file and its name (a diffusers folder's ``unet/`` and ``vae/``
both hold ``conv_in.weight``). :func:`pair_tensors` pairs the tensors of two sources: same
file and name first, then same component folder and name, then the name rule above on the
keys left over; for single-file models this is exactly :func:`pair_names`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from mgit.formats.names import HEAD_PREFIXES, pair_names, strip_head_prefix

if TYPE_CHECKING:
    from mgit.diff.source import TensorInfo

__all__ = [
    "DEFAULT_HEAD_PREFIXES",
    "ROOT_GROUP",
    "module_of",
    "block_of",
    "strip_head_prefix",
    "pair_names",
    "pair_tensors",
    "dominant_prefix_change",
    "apply_prefix_change",
]

#: Prefixes under which task models and wrappers keep their base model's tensors.
DEFAULT_HEAD_PREFIXES: tuple[str, ...] = HEAD_PREFIXES

#: Group name used for tensors that sit at the top level (names without a dot).
ROOT_GROUP = "(root)"


def module_of(name: str) -> str:
    """Return the module path of a tensor name: the name without its last component.

    Args:
        name: A dotted tensor name.

    Returns:
        The module path, or :data:`ROOT_GROUP` for a top-level tensor.

    Example:
        >>> module_of("encoder.layer.3.attention.self.query.weight")
        'encoder.layer.3.attention.self.query'
    """
    head, sep, _ = name.rpartition(".")
    return head if sep else ROOT_GROUP


def block_of(name: str, *, prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES) -> str:
    """Return the block of a tensor name (see the module docstring for the rule).

    Args:
        name: A dotted tensor name.
        prefixes: Task-head prefixes skipped before taking the first component of a name
            without numeric components.

    Returns:
        The block path, or :data:`ROOT_GROUP` for a top-level tensor.

    Example:
        >>> block_of("encoder.layer.3.attention.self.query.weight")
        'encoder.layer.3'
        >>> block_of("bert.embeddings.LayerNorm.weight")
        'bert.embeddings'
    """
    parts = name.split(".")
    if len(parts) == 1:
        return ROOT_GROUP
    module_parts = parts[:-1]
    for i, part in enumerate(module_parts):
        if part.isdigit():
            return ".".join(module_parts[: i + 1])
    stripped = strip_head_prefix(".".join(module_parts), prefixes=prefixes)
    skipped = len(module_parts) - len(stripped.split("."))
    return ".".join(module_parts[: skipped + 1])


def _unique_pairs(
    left_a: list[str],
    left_b: list[str],
    key_a: Mapping[str, object],
    key_b: Mapping[str, object],
) -> list[tuple[str, str]]:
    """Pairs of keys whose ``key_*`` value is held by exactly one left-over key on each side."""
    ga: dict[object, list[str]] = defaultdict(list)
    gb: dict[object, list[str]] = defaultdict(list)
    for k in left_a:
        if key_a[k] is not None:
            ga[key_a[k]].append(k)
    for k in left_b:
        if key_b[k] is not None:
            gb[key_b[k]].append(k)
    return [(xs[0], gb[v][0]) for v, xs in ga.items() if len(xs) == 1 and len(gb.get(v, ())) == 1]


def pair_tensors(
    infos_a: Mapping[str, TensorInfo],
    infos_b: Mapping[str, TensorInfo],
    *,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
) -> list[tuple[str | None, str | None]]:
    """Pair the tensors of two sources (keys of ``tensors()``), every key exactly once.

    1. The same file and the same name pair (``unet/m.safetensors`` ``conv_in.weight``).
    2. Then the same component folder and the same name, where unique on both sides (a
       component whose file was renamed or re-sharded).
    3. Then :func:`pair_names` (equal keys, then keys equal up to task-head prefixes) on the
       keys left over.

    Args:
        infos_a: The first side's tensors, by key.
        infos_b: The second side's tensors, by key.
        prefixes: Task-head prefixes for step 3 (``()``: equal keys only).

    Returns:
        ``(key_a, key_b)`` pairs, ``(key_a, None)`` and ``(None, key_b)`` for unpaired keys,
        sorted as :func:`pair_names` sorts.
    """
    pairs: list[tuple[str, str]] = []
    left_a, left_b = list(infos_a), list(infos_b)
    for key_of in (
        lambda i: (i.file, i.name) if i.file is not None else None,
        lambda i: (i.component, i.name) if i.file is not None else None,
    ):
        if not left_a or not left_b:
            break
        found = _unique_pairs(
            left_a,
            left_b,
            {k: key_of(infos_a[k]) for k in left_a},
            {k: key_of(infos_b[k]) for k in left_b},
        )
        if found:
            pairs.extend(found)
            done_a = {x for x, _ in found}
            done_b = {y for _, y in found}
            left_a = [k for k in left_a if k not in done_a]
            left_b = [k for k in left_b if k not in done_b]
    out: list[tuple[str | None, str | None]] = [*pairs]
    out.extend(pair_names(left_a, left_b, prefixes=prefixes))
    out.sort(key=lambda p: (p[1] if p[1] is not None else p[0]) or "")
    return out


def dominant_prefix_change(
    pairs: Iterable[tuple[str | None, str | None]],
    *,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
) -> tuple[str, str] | None:
    """Return the most common prefix change among paired names.

    Args:
        pairs: Output of :func:`pair_names`.
        prefixes: The prefixes used for pairing.

    Returns:
        ``(prefix_a, prefix_b)`` such that most renamed pairs are ``prefix_a + key`` and
        ``prefix_b + key`` (either may be ``""``), or ``None`` if no pair was renamed.

    Example:
        >>> dominant_prefix_change([("e.w", "bert.e.w"), ("p.w", "bert.p.w"), ("x", "x")])
        ('', 'bert.')
    """
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for na, nb in pairs:
        if na is None or nb is None or na == nb:
            continue
        key = strip_head_prefix(na, prefixes=prefixes)
        counts[(na[: len(na) - len(key)], nb[: len(nb) - len(key)])] += 1
    if not counts:
        return None
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


def apply_prefix_change(name: str, change: tuple[str, str] | None) -> str:
    """Rename ``prefix_a + rest`` to ``prefix_b + rest``; other names are returned as they are.

    Args:
        name: A name of the first model.
        change: ``(prefix_a, prefix_b)`` from :func:`dominant_prefix_change`, or ``None``.

    Returns:
        The name as the second model would spell it.
    """
    if change is None:
        return name
    pa, pb = change
    if name.startswith(pa):
        return pb + name[len(pa) :]
    return name
