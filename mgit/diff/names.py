"""Tensor and module names: grouping by module and block, and pairing across two models.

A tensor name is a dotted path (``encoder.layer.3.attention.self.query.weight``). Its
*module* is the name without the last component (``encoder.layer.3.attention.self.query``);
its *block* is the coarser unit a person thinks in: the path up to and including the first
numeric component (``encoder.layer.3``, ``model.layers.12``, ``h.0``), or, for names with no
numeric component, the first component after any task-head prefix (``embeddings``,
``bert.embeddings``, ``classifier``, ``lm_head``).

Task models wrap a base model under a prefix (``BertForSequenceClassification`` stores
``bert.embeddings...`` where ``BertModel`` stores ``embeddings...``). :func:`pair_names` pairs
such names instead of reporting one removed and one added tensor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from mgit.formats.names import HEAD_PREFIXES

__all__ = [
    "DEFAULT_HEAD_PREFIXES",
    "ROOT_GROUP",
    "module_of",
    "block_of",
    "strip_head_prefix",
    "pair_names",
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


def strip_head_prefix(name: str, *, prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES) -> str:
    """Remove known task-head prefixes from the front of a name, repeatedly.

    A prefix is removed only if something is left after it.

    Args:
        name: A dotted name.
        prefixes: The prefixes to remove (each ends with ``.``).

    Returns:
        The name without its leading prefixes.

    Example:
        >>> strip_head_prefix("base_model.model.model.layers.0.mlp.weight")
        'layers.0.mlp.weight'
    """
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if name.startswith(p) and len(name) > len(p):
                name = name[len(p) :]
                changed = True
                break
    return name


def pair_names(
    names_a: Iterable[str],
    names_b: Iterable[str],
    *,
    prefixes: Sequence[str] = DEFAULT_HEAD_PREFIXES,
) -> list[tuple[str | None, str | None]]:
    """Pair the names of two models, tolerating task-head prefixes.

    Equal names pair first. The names left over on each side are then compared with their
    head prefixes removed (:func:`strip_head_prefix`); a stripped name that occurs exactly once
    among the leftovers of each side pairs those two names (``embeddings.x`` with
    ``bert.embeddings.x``). Everything else is unpaired.

    Args:
        names_a: Names of the first model.
        names_b: Names of the second model.
        prefixes: The prefixes that may differ between paired names.

    Returns:
        ``(name_a, name_b)`` pairs, ``(name_a, None)`` for a name only in a and
        ``(None, name_b)`` for a name only in b; every input name appears exactly once. Sorted
        by ``name_b`` (or ``name_a`` where there is none).

    Example:
        >>> pair_names(["embeddings.w", "pooler.w"], ["bert.embeddings.w", "classifier.w"])
        [('embeddings.w', 'bert.embeddings.w'), (None, 'classifier.w'), ('pooler.w', None)]
    """
    set_a = list(dict.fromkeys(names_a))
    set_b = list(dict.fromkeys(names_b))
    in_b = set(set_b)
    pairs: list[tuple[str | None, str | None]] = [(n, n) for n in set_a if n in in_b]
    common = {n for n, _ in pairs}
    left_a = [n for n in set_a if n not in common]
    left_b = [n for n in set_b if n not in common]

    by_key_a: dict[str, list[str]] = defaultdict(list)
    by_key_b: dict[str, list[str]] = defaultdict(list)
    for n in left_a:
        by_key_a[strip_head_prefix(n, prefixes=prefixes)].append(n)
    for n in left_b:
        by_key_b[strip_head_prefix(n, prefixes=prefixes)].append(n)
    paired_a: set[str] = set()
    paired_b: set[str] = set()
    for key, group_a in by_key_a.items():
        group_b = by_key_b.get(key, [])
        if len(group_a) == 1 and len(group_b) == 1:
            pairs.append((group_a[0], group_b[0]))
            paired_a.add(group_a[0])
            paired_b.add(group_b[0])
    pairs.extend((n, None) for n in left_a if n not in paired_a)
    pairs.extend((None, n) for n in left_b if n not in paired_b)
    pairs.sort(key=lambda p: (p[1] if p[1] is not None else p[0]) or "")
    return pairs


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
